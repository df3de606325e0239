"""ModelStore: the S3 bucket for model repositories and engines; ModelRepository: a directory mirrored to a prefix.

`ModelStore` registers a private bucket: default encryption (SSE-KMS with a
given key, else SSE-S3), all public access blocked, ACLs disabled, a policy
that denies any request not made over TLS, versioning, and a lifecycle that
expires overwritten versions after `modelStore.noncurrentVersionDays`.

`ModelRepository` is a Pulumi dynamic resource. Its inputs carry the content
hash of the local directory (computed when the program runs, cached by file
stat), so `pulumi up` with nothing changed sees equal inputs, never calls
`update`, and sends no S3 request. The provider's work is in `s3_sync`.

IAM documents are pure functions: `read_prefix_policy` is what a Triton
service account gets; `write_prefix_policy` suits a job that fills a prefix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pulumi
import pulumi.dynamic
import pulumi_aws as aws
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from components import s3_sync
from components.config import StackConfig
from components.iam import policy_document

# --- pure builders ----------------------------------------------------------------


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
    prefix = s3_sync.normalize_prefix(prefix)
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
    prefix = s3_sync.normalize_prefix(prefix)
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


def encryption_rule(kms_key_arn: pulumi.Input[str] | None) -> dict[str, Any]:
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


PUBLIC_ACCESS_BLOCK = {
    "block_public_acls": True,
    "block_public_policy": True,
    "ignore_public_acls": True,
    "restrict_public_buckets": True,
}


# --- the dynamic provider ----------------------------------------------------------

# Changing where the objects live means a new resource; the rest is an in-place update.
REPLACE_KEYS = ("bucket", "prefix")
UPDATE_KEYS = ("content_hash", "region", "endpoint_url")
INPUT_KEYS = ("bucket", "prefix", "source_dir", "content_hash", "region", "endpoint_url")


def _is_unknown(value: Any) -> bool:
    # The provider host hands unknowns over as `Unknown` objects; the raw wire sentinel is a string.
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def repository_diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> pulumi.dynamic.DiffResult:
    """Diff of a ModelRepository: equal content hash and location means no change, no S3 call.

    During preview any input may be unknown; an unknown location is reported as
    a replacement, an unknown hash as an update, never an error. Replacing onto
    a prefix that contains or is contained by the old one deletes first, since
    deleting the old prefix afterwards would remove the new objects.
    """

    def changed(key: str) -> bool:
        return _is_unknown(news.get(key)) or (news.get(key) or None) != (olds.get(key) or None)

    replaces = [key for key in REPLACE_KEYS if changed(key)]
    updates = [key for key in UPDATE_KEYS if changed(key)]
    if not replaces and not updates:
        return pulumi.dynamic.DiffResult(changes=False, replaces=[], delete_before_replace=False)
    delete_first = False
    if replaces:
        old_bucket, new_bucket = olds.get("bucket"), news.get("bucket")
        old_prefix, new_prefix = olds.get("prefix"), news.get("prefix")
        same_bucket = _is_unknown(new_bucket) or new_bucket == old_bucket
        delete_first = same_bucket and (
            _is_unknown(new_prefix)
            or not old_prefix
            or not new_prefix
            or s3_sync.prefixes_overlap(old_prefix, new_prefix)
        )
    return pulumi.dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=delete_first)


def _location(props: Mapping[str, Any]) -> s3_sync.S3Location:
    return s3_sync.S3Location(
        bucket=str(props["bucket"]),
        prefix=s3_sync.normalize_prefix(str(props["prefix"])),
        region=props.get("region") or None,
        endpoint_url=props.get("endpoint_url") or None,
    )


def _outputs(props: Mapping[str, Any], location: s3_sync.S3Location, manifest: s3_sync.Manifest) -> dict[str, Any]:
    return {
        **{key: props.get(key) for key in INPUT_KEYS},
        "prefix": location.prefix,
        # The hash of what is really under the prefix: if files changed after the
        # program hashed them, the next diff sees it and uploads again.
        "content_hash": s3_sync.tree_hash(manifest),
        "manifest": s3_sync.manifest_to_json(manifest),
        "s3_uri": location.uri,
        "file_count": sum(1 for entry in manifest.values() if not entry.is_dir_marker),
        "total_bytes": s3_sync.total_size(manifest),
    }


class ModelRepositoryProvider(pulumi.dynamic.ResourceProvider):
    """create/update mirror the directory; delete removes the prefix; read detects drift.

    `settings` and `cache_dir` exist for tests and the benchmark; a deployed
    provider uses the defaults. The provider holds no clients: it is pickled
    into the state and must stay importable as `components.model_store`.
    """

    serialize_as_secret_always = False  # it captures nothing secret; keep the state readable

    def __init__(self, settings: s3_sync.TransferSettings | None = None, cache_dir: str | None = None):
        super().__init__()
        self.settings = settings
        self.cache_dir = cache_dir

    def _settings(self) -> s3_sync.TransferSettings:
        return self.settings or s3_sync.TransferSettings()

    def _cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else s3_sync.default_cache_dir()

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        for key in ("bucket", "prefix", "source_dir", "content_hash"):
            if not news.get(key):
                failures.append(pulumi.dynamic.CheckFailure(key, f"{key} is required"))
        prefix = news.get("prefix")
        if prefix and not _is_unknown(prefix):
            try:
                news = {**news, "prefix": s3_sync.normalize_prefix(str(prefix))}
            except ValueError as exc:
                failures.append(pulumi.dynamic.CheckFailure("prefix", str(exc)))
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return repository_diff(olds, news)

    def _sync(self, props: Mapping[str, Any], old: s3_sync.Manifest) -> dict[str, Any]:
        location = _location(props)
        settings = self._settings()
        tree = s3_sync.scan_tree(props["source_dir"], cache_dir=self._cache_dir())
        client = s3_sync.s3_client(location, settings)
        result = s3_sync.sync_tree(client, location, tree, old, settings)
        return _outputs(props, location, result.manifest)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._sync(props, {})
        return pulumi.dynamic.CreateResult(f"{outs['bucket']}/{outs['prefix']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._sync(news, s3_sync.manifest_from_json(olds.get("manifest"))))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        location = _location(props)
        settings = self._settings()
        s3_sync.delete_prefix(s3_sync.s3_client(location, settings), location, settings)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        if not props.get("bucket") or not props.get("prefix"):
            raise ValueError(
                f"cannot read ModelRepository {id_!r} without its state: import is not supported, "
                "declare the resource and run `pulumi up` (identical objects are re-uploaded once)"
            )
        location = _location(props)
        client = s3_sync.s3_client(location, self._settings())
        try:
            live = s3_sync.list_prefix(client, location)
        except client.exceptions.NoSuchBucket:
            live = {}
        manifest = s3_sync.reconcile_manifest(s3_sync.manifest_from_json(props.get("manifest")), live)
        return pulumi.dynamic.ReadResult(id_, _outputs(props, location, manifest))


class ModelRepository(pulumi.dynamic.Resource, module="tritonllm", name="ModelRepository"):
    """A local directory mirrored to s3://bucket/prefix/ (type `pulumi-python:dynamic/tritonllm:ModelRepository`).

    The directory is hashed when the program runs; a TreeError (missing
    directory, symlink loop, unreadable file...) stops the program with the path at fault.
    """

    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    s3_uri: pulumi.Output[str]
    content_hash: pulumi.Output[str]
    file_count: pulumi.Output[int]
    total_bytes: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        prefix: str,
        source_dir: str | os.PathLike[str],
        region: pulumi.Input[str] | None = None,
        endpoint_url: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        root = Path(source_dir).expanduser().absolute()
        props = {
            "bucket": bucket,
            "prefix": s3_sync.normalize_prefix(prefix),
            "source_dir": str(root),
            "content_hash": s3_sync.content_hash(root),
            "region": region,
            "endpoint_url": endpoint_url,
            "manifest": None,
            "s3_uri": None,
            "file_count": None,
            "total_bytes": None,
        }
        super().__init__(ModelRepositoryProvider(), name, props, opts)


# --- the component -------------------------------------------------------------------


class ModelStore(pulumi.ComponentResource):
    """The private, versioned, encrypted, TLS-only bucket that holds model repositories and engines.

    Attributes: bucket (aws.s3.Bucket), bucket_name, bucket_arn (Outputs), region.
    `repository(...)` mirrors a local directory to a prefix of this bucket.
    """

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        *,
        kms_key_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tritonllm:storage:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.region = cfg.region
        self.kms_key_arn = kms_key_arn
        # Auto-named (name + random suffix): bucket names are global.
        self.bucket = aws.s3.Bucket(f"{name}-models", force_destroy=cfg.model_store.force_destroy, opts=child)
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-models-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},  # ACLs off: the policy alone grants access
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-models-public-access", bucket=self.bucket.id, **PUBLIC_ACCESS_BLOCK, opts=child
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-models-encryption", bucket=self.bucket.id, rules=[encryption_rule(kms_key_arn)], opts=child
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-models-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-models-lifecycle",
            bucket=self.bucket.id,
            rules=lifecycle_rules(cfg.model_store.noncurrent_version_days),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        policy = aws.s3.BucketPolicy(
            f"{name}-models-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            # S3 rejects policy writes racing the public access block; order them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        # Uploads wait until the bucket is locked down and encrypting.
        self.ready: list[pulumi.Resource] = [ownership, public_access, encryption, versioning, lifecycle, policy]
        self.bucket_name: pulumi.Output[str] = self.bucket.bucket
        self.bucket_arn: pulumi.Output[str] = self.bucket.arn
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})

    def repository(
        self,
        name: str,
        *,
        source_dir: str | os.PathLike[str],
        prefix: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> ModelRepository:
        """Mirror `source_dir` to s3://<bucket>/<prefix>/ once the bucket is configured."""
        base = pulumi.ResourceOptions(parent=self, depends_on=self.ready)
        return ModelRepository(
            name,
            bucket=self.bucket_name,
            prefix=prefix,
            source_dir=source_dir,
            region=self.region,
            opts=pulumi.ResourceOptions.merge(base, opts),
        )

    def read_policy_json(self, prefix: str) -> pulumi.Output[str]:
        """`read_prefix_policy` for this bucket as JSON, for an IAM policy of a reader's role."""
        return pulumi.Output.all(self.bucket_arn, self.kms_key_arn).apply(
            lambda args: json.dumps(read_prefix_policy(args[0], prefix, kms_key_arn=args[1]))
        )
