"""`efs` and `modelStore`: the shared file system and the S3 model store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.config.base import (
    QUANTITY,
    ConfigModel,
)


class EfsConfig(ConfigModel):
    """Shared EFS file system for engines and the Hugging Face cache."""

    enabled: bool = Field(True, description="Create EFS, its StorageClass and the shared RWX claim")
    throughput_mode: Literal["elastic", "bursting"] = Field("elastic", description="EFS throughput mode")
    claim_size: str = Field("200Gi", pattern=QUANTITY, description="Requested size of the shared claim")


class WeightsMirrorConfig(ConfigModel):
    """The Hugging Face snapshots mirrored into the model store (hf-mirror/<repo>/<commit>/): every
    runtime reads its weights and tokenizer from there, never from the internet (docs/weights.md)."""

    timeout_minutes: int = Field(
        60, ge=5, le=1440, description="Deadline of one mirror Job (download from Hugging Face, upload to S3)"
    )


class ModelStoreConfig(ConfigModel):
    """The S3 bucket that holds model repositories and engines."""

    force_destroy: bool = Field(
        False, description="Let `pulumi destroy` delete a non-empty bucket (its uploaded objects)"
    )
    noncurrent_version_days: int = Field(30, ge=1, description="Days to keep overwritten object versions")
    mirror: WeightsMirrorConfig = Field(default_factory=WeightsMirrorConfig, description="See modelStore.mirror.*")
