"""A Pulumi program with only the ModelStore and one ModelRepository, for the mocks harness.

It uploads `model_repository/local` (the CPU model repository) to `repositories/local`.
"""

import pulumi
import pulumi_aws as aws

from components.config import read_pulumi_config
from components.serving.resources.model_store import ModelStore, ModelStoreArgs

SOURCE_DIR = "model_repository/local"  # the harness runs programs from the repository root

cfg = read_pulumi_config()
aws_provider = aws.Provider("aws", region=cfg.region)
store = ModelStore(
    cfg.name,
    ModelStoreArgs(model_store=cfg.model_store, region=cfg.region),
    opts=pulumi.ResourceOptions(providers={"aws": aws_provider}),
)
repository = store.repository("local-models", source_dir=SOURCE_DIR, prefix="/repositories/local/")

pulumi.export("bucketName", store.bucket_name)
pulumi.export("repositoryUri", repository.s3_uri)
