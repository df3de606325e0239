"""The model store's pure builders: bucket policy, prefix-scoped IAM documents, encryption and lifecycle.

`read_prefix_policy` is what a Triton service account gets; `write_prefix_policy` suits a job
that fills a prefix (the engine build).
"""

from __future__ import annotations

from typing import Any, TypedDict

from components.platform.builders.iam import policy_document


def normalize_prefix(prefix: str) -> str:
    """'models/llama/' -> 'models/llama'. Refuses the bucket root and relative segments."""
    cleaned = prefix.strip("/")
    if not cleaned:
        raise ValueError("prefix must not be empty: the resource deletes everything under its prefix")
    parts = cleaned.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' segment")
    return cleaned


def tls_only_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy denying every request made without TLS, to the bucket and its objects."""
    return policy_document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )


def _kms_statement(kms_key_arn: str, actions: list[str]) -> dict[str, Any]:
    return {"Sid": "UseBucketKmsKey", "Effect": "Allow", "Action": actions, "Resource": [kms_key_arn]}


def read_prefix_policy(bucket_arn: str, prefix: str, *, kms_key_arn: str | None = None) -> dict[str, Any]:
    """Least-privilege read of one prefix: GetObject under it, ListBucket limited to it.

    Pass `kms_key_arn` when the bucket encrypts with a customer-managed key
    (reading an SSE-KMS object needs kms:Decrypt on its key).
    """
    prefix = normalize_prefix(prefix)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadPrefixObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{bucket_arn}/{prefix}/*"],
        },
        {
            "Sid": "ListPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            # Triton lists "prefix", "prefix/" and "prefix/model/..." while it polls the repository.
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/", f"{prefix}/*"]}},
        },
    ]
    if kms_key_arn:
        statements.append(_kms_statement(kms_key_arn, ["kms:Decrypt"]))
    return policy_document(statements)


def write_prefix_policy(bucket_arn: str, prefix: str, *, kms_key_arn: str | None = None) -> dict[str, Any]:
    """Read, write and delete under one prefix (multipart uploads included), nothing else."""
    document = read_prefix_policy(bucket_arn, prefix, kms_key_arn=None)
    prefix = normalize_prefix(prefix)
    document["Statement"].append(
        {
            "Sid": "WritePrefixObjects",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [f"{bucket_arn}/{prefix}/*"],
        }
    )
    if kms_key_arn:
        # SSE-KMS uploads generate a data key; multipart completion decrypts it.
        document["Statement"].append(_kms_statement(kms_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]))
    return document


def encryption_rule(kms_key_arn: Any) -> dict[str, Any]:  # a str or an Output of one
    """Default-encryption rule: SSE-KMS with a bucket key when a key is given, else SSE-S3."""
    if kms_key_arn is None:
        return {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
    return {
        "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": kms_key_arn},
        # One data key per bucket instead of per object: far fewer KMS calls on model loads.
        "bucket_key_enabled": True,
    }


def lifecycle_rules(noncurrent_version_days: int) -> list[dict[str, Any]]:
    """Expire overwritten versions, orphaned delete markers and abandoned multipart uploads."""
    return [
        {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": {"prefix": ""},  # the whole bucket, stated (an absent filter is deprecated)
            "noncurrent_version_expiration": {"noncurrent_days": noncurrent_version_days},
            "expiration": {"expired_object_delete_marker": True},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        },
    ]


class PublicAccessBlock(TypedDict):
    """The four switches of an S3 public access block (keyword arguments of `aws.s3.BucketPublicAccessBlock`)."""

    block_public_acls: bool
    block_public_policy: bool
    ignore_public_acls: bool
    restrict_public_buckets: bool


PUBLIC_ACCESS_BLOCK: PublicAccessBlock = {
    "block_public_acls": True,
    "block_public_policy": True,
    "ignore_public_acls": True,
    "restrict_public_buckets": True,
}


def also_read_prefix(document: dict[str, Any], bucket_arn: str, prefix: str, sid_suffix: str) -> dict[str, Any]:
    """`document` plus read of one more prefix (GetObject under it, ListBucket limited to it), with Sids
    suffixed so they stay unique; the KMS statement, if any, is already there."""
    extra = read_prefix_policy(bucket_arn, prefix)["Statement"]
    return {**document, "Statement": [*document["Statement"], *({**st, "Sid": st["Sid"] + sid_suffix} for st in extra)]}
