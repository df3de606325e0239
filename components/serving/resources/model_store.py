"""ModelStore: the S3 bucket for model repositories and engines.

It registers a private bucket: default encryption (SSE-KMS with a given key, else SSE-S3),
all public access blocked, ACLs disabled, a policy that denies any request not made over TLS,
versioning, and a lifecycle that expires overwritten versions after
`modelStore.noncurrentVersionDays`. `repository()` adds a ModelRepository (a dynamic resource,
`components/providers/model_repository.py`) under a prefix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pulumi
import pulumi.dynamic
import pulumi_aws as aws

from components.config import ModelStoreConfig
from components.providers.model_repository import (
    ModelRepository,
)
from components.serving.builders.model_store import (
    PUBLIC_ACCESS_BLOCK,
    encryption_rule,
    lifecycle_rules,
    read_prefix_policy,
    tls_only_bucket_policy,
)
from components.tokens import component_type, with_previous_types


@dataclass(frozen=True)
class ModelStoreArgs:
    model_store: ModelStoreConfig
    region: str  # the bucket's region, for the dynamic provider's S3 client
    kms_key_arn: pulumi.Input[str] | None = None  # SSE-KMS with this key, else SSE-S3


class ModelStore(pulumi.ComponentResource):
    """The private, versioned, encrypted, TLS-only bucket that holds model repositories and engines.

    Attributes: bucket (aws.s3.Bucket), bucket_name, bucket_arn (Outputs), region.
    `repository(...)` mirrors a local directory to a prefix of this bucket.
    """

    def __init__(
        self,
        name: str,
        args: ModelStoreArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            component_type("serving", "ModelStore"),
            name,
            None,
            with_previous_types(opts, "tritonllm:storage:ModelStore"),
        )
        child = pulumi.ResourceOptions(parent=self)
        self.region = args.region
        self.kms_key_arn = args.kms_key_arn
        # Auto-named (name + random suffix): bucket names are global.
        self.bucket = aws.s3.Bucket(f"{name}-models", force_destroy=args.model_store.force_destroy, opts=child)
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
            f"{name}-models-encryption",
            bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(**encryption_rule(args.kms_key_arn))],
            opts=child,
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
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(**rule)
                for rule in lifecycle_rules(args.model_store.noncurrent_version_days)
            ],
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
