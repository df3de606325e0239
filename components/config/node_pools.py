"""`nodePools` and `cpuNodePool`: the Karpenter NodePools, their instance types and AMIs."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.catalog import gpus, versions
from components.config.base import (
    DNS_LABEL,
    DURATION,
    ConfigModel,
)

AMI_VERSION_PATTERNS = {"AL2023": r"^v[0-9]{8}$", "Bottlerocket": r"^v[0-9]+\.[0-9]+\.[0-9]+$"}
AMI_VERSION_EXAMPLES = {"AL2023": "v20260714", "Bottlerocket": "v1.50.0"}


def check_ami_version(family: str, version: str | None) -> None:
    """Raise ValueError ("@amiVersion: ...") unless `version` pins a release of `family` (or is `latest`)."""
    if version is None:
        if versions.KARPENTER_AMI_VERSION.get(family) is None:
            raise ValueError(
                f"@amiVersion: required for amiFamily {family} (no verified default); set a release such as "
                f"{AMI_VERSION_EXAMPLES[family]} (list them with `aws ssm get-parameters-by-path --path "
                f"/aws/service/bottlerocket/aws-k8s-{versions.EKS_VERSION}-nvidia --recursive`)"
            )
        return
    if version != "latest" and not re.match(AMI_VERSION_PATTERNS[family], version):
        raise ValueError(
            f"@amiVersion: {version!r} is not a {family} release; write it like {AMI_VERSION_EXAMPLES[family]} "
            "(or latest, which replaces every node on each AMI release)"
        )


# First releases that pull images in parallel with the SOCI snapshotter (`nodePools[].fastImagePull`):
# AL2023: nodeadm's FastImagePull feature gate ships from awslabs/amazon-eks-ami v20250821 (the first tag
# holding commit 28454ab9 "rename feature flag", nodeadm/internal/api/featuregates.go); Bottlerocket: the
# settings.container-runtime-plugins.soci-snapshotter settings are documented from 1.44.x
# (bottlerocket.dev/en/os/1.44.x/api/settings/container-runtime-plugins).
FAST_IMAGE_PULL_SINCE = {"AL2023": "v20250821", "Bottlerocket": "v1.44.0"}


def _release_key(family: str, version: str) -> tuple[int, ...]:
    """Sortable form of an AMI release (vYYYYMMDD or vX.Y.Z)."""
    return (
        tuple(int(part) for part in version.lstrip("v").split(".")) if family == "Bottlerocket" else (int(version[1:]),)
    )


def check_fast_image_pull(family: str, version: str | None) -> None:
    """Raise ValueError ("@fastImagePull: ...") when the pinned AMI release predates parallel pull."""
    pinned = version or versions.KARPENTER_AMI_VERSION.get(family)
    if pinned is None or pinned == "latest":
        return
    since = FAST_IMAGE_PULL_SINCE[family]
    if _release_key(family, pinned) < _release_key(family, since):
        raise ValueError(
            f"@fastImagePull: {family} {pinned} predates parallel image pull (SOCI) which ships from {since}; "
            f"set amiVersion to {since} or later, or fastImagePull: false"
        )


# `nodePools[].imageCache` (docs/coldstart.md "Images on the node"): the node class binds only kubelet and pod
# logs onto the instance store with `apiclient ephemeral-storage init` + `bind --dirs`, commands Bottlerocket
# has from bottlerocket-core-kit v2.4.0 (commit 213f01fa "add ephemeral-storage commands"), which Bottlerocket
# v1.22.0 ships ("Update bottlerocket-core-kit to v2.4.1", bottlerocket CHANGELOG.md). Kubernetes 1.34
# variants (aws-k8s-1.34, aws-k8s-1.34-nvidia) are added in Bottlerocket v1.47.0 (its release notes,
# "Add new kubernetes 1.34 variants (#4631)"), so for our EKS_VERSION the later of the two holds.
IMAGE_CACHE_SINCE = "v1.47.0"


def check_image_cache(family: str, version: str | None) -> None:
    """Raise ValueError ("@imageCache.enabled: ...") unless the pool can start containerd from a snapshot."""
    if family != "Bottlerocket":
        raise ValueError(
            f"@imageCache.enabled: amiFamily {family} boots from one root volume that holds containerd's "
            "images, and EC2 keeps the AMI's own snapshot for a root device, so there is no data volume to "
            "start from a snapshot; set amiFamily: Bottlerocket (with amiVersion) or imageCache.enabled: false"
        )
    if version is None or version == "latest":
        raise ValueError(
            "@imageCache.enabled: the snapshot is built on one Bottlerocket release (its containerd lays out "
            f"the data volume); pin amiVersion to a release such as {IMAGE_CACHE_SINCE} instead of latest"
        )
    if _release_key(family, version) < _release_key(family, IMAGE_CACHE_SINCE):
        raise ValueError(
            f"@imageCache.enabled: Bottlerocket {version} predates {IMAGE_CACHE_SINCE}, the first release with "
            f"Kubernetes {versions.EKS_VERSION} variants; set amiVersion to {IMAGE_CACHE_SINCE} or later"
        )


def ami_alias(family: str, version: str | None) -> str:
    return f"{versions.KARPENTER_AMI_ALIAS_FAMILY[family]}@{version or versions.KARPENTER_AMI_VERSION[family]}"


class CpuNodePoolConfig(ConfigModel):
    """A small Karpenter NodePool of CPU nodes for pods that need no GPU (monitoring, gateway, jobs)."""

    enabled: bool = Field(True, description="Create the CPU NodePool `cpu` next to the GPU pools")
    instance_families: list[str] = Field(
        ["m7i", "m6i", "c7i", "c6i"], min_length=1, description="EC2 instance families (amd64)"
    )
    capacity_types: list[Literal["on-demand", "spot"]] = Field(
        ["on-demand"], min_length=1, description="Karpenter capacity types"
    )
    max_cpu: int = Field(32, ge=2, le=1000, description="NodePool limit on total vCPU")
    disk_size_gib: int = Field(50, ge=20, description="Encrypted gp3 root volume (GiB)")
    ami_version: str | None = Field(
        None, description=f"AL2023 release (default {versions.KARPENTER_AMI_VERSION['AL2023']})"
    )

    @field_validator("instance_families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        bad = [f for f in value if not re.match(r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*$", f)]
        if bad:
            raise ValueError(f"{bad} are not EC2 instance families; write them like m7i")
        return value

    @model_validator(mode="after")
    def _ami(self) -> CpuNodePoolConfig:
        check_ami_version("AL2023", self.ami_version)
        return self

    @property
    def ami_alias(self) -> str:
        return ami_alias("AL2023", self.ami_version)


# EC2's instance type names: family = series, generation, attribute letters; the attribute `g` is "AWS
# Graviton processors" (EC2 Instance Types guide, "Instance type naming conventions"), plus the first
# Graviton family a1. Graviton types are arm64 only.
GRAVITON_TYPE = re.compile(r"^(a1|[a-z]+[0-9]+[a-z-]*g[a-z-]*)\.")


class ImageCacheConfig(ConfigModel):
    """The pool's serving images pre-pulled on an EBS snapshot that every new node's data volume starts from."""

    enabled: bool = Field(
        False,
        description="Bottlerocket only: build a snapshot of the data volume with the serving images of the "
        "pool's models pulled (rebuilt only when an image or the AMI release changes) and start every node's "
        "containerd from it; turns fastImagePull off (docs/coldstart.md)",
    )
    fast_snapshot_restore: bool = Field(
        False,
        description="Enable EBS Fast Snapshot Restore for the snapshot in the pool's zones: volumes are fully "
        "initialized at creation instead of loading blocks from S3 on first read; billed per snapshot per "
        "zone-hour while enabled",
    )
    volume_initialization_rate: int | None = Field(
        None,
        ge=100,
        le=300,
        description="EBS Provisioned Rate for Volume Initialization (MiB/s, 100-300) of each node's data "
        "volume: its snapshot blocks arrive at this rate after creation, a predictable time to a fully "
        "initialized volume (an EBS charge of its own; see EBS pricing)",
    )
    build_instance_type: str = Field(
        "m6i.large",
        pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$",
        description="EC2 instance type (x86_64) that pulls the images before the snapshot; it runs only "
        "while the snapshot is built",
    )
    timeout_minutes: int = Field(
        60, ge=10, le=240, description="Limit on one snapshot build (instance start, pulls, snapshot)"
    )

    @field_validator("build_instance_type")
    @classmethod
    def _x86_64(cls, value: str) -> str:
        """RunInstances refuses an arm64 type with the x86_64 AMI the build uses (the pools' nodes are amd64)."""
        if GRAVITON_TYPE.match(value):
            raise ValueError(
                f"{value!r} is an arm64 (AWS Graviton) type and the build runs the pool's x86_64 Bottlerocket "
                "AMI; use an x86_64 type such as m6i.large"
            )
        return value


class NodePoolConfig(ConfigModel):
    """A Karpenter NodePool of GPU nodes."""

    name: str = Field(..., pattern=DNS_LABEL, description="NodePool name (required); models refer to it")
    instance_families: list[str] = Field(
        [], description="GPU instance families, e.g. [g6e]; every size in the catalog is allowed"
    )
    instance_types: list[str] = Field([], description="Explicit instance types; overrides instanceFamilies")
    capacity_types: list[Literal["on-demand", "spot", "reserved"]] = Field(
        ["on-demand"], min_length=1, description="Karpenter capacity types, e.g. [spot, on-demand]"
    )
    max_gpus: int = Field(16, ge=1, description="NodePool limit on total nvidia.com/gpu")
    max_cpu: int = Field(1000, ge=1, description="NodePool limit on total vCPU")
    disk_size_gib: int = Field(
        500, ge=100, description="Encrypted gp3 root volume (GiB); Triton LLM images are 15-20 GB"
    )
    ami_family: Literal["AL2023", "Bottlerocket"] = Field(
        "AL2023", description="AMI family; Karpenter picks its NVIDIA variant for GPU types"
    )
    ami_version: str | None = Field(
        None,
        description=f"AMI release the alias is pinned to: AL2023 vYYYYMMDD (default "
        f"{versions.KARPENTER_AMI_VERSION['AL2023']}), Bottlerocket vX.Y.Z (required); `latest` "
        "replaces every node on each AMI release",
    )
    fast_image_pull: bool = Field(
        True,
        description="Pull images with the SOCI snapshotter's parallel pull and unpack (AL2023: nodeadm's "
        "FastImagePull feature gate; Bottlerocket: settings.container-runtime snapshotter soci), onto the "
        "instance-store RAID0; about half the pull time of a 10 GB image (docs/coldstart.md). Default on, "
        "off on an imageCache pool (its images were unpacked by overlayfs)",
    )
    image_cache: ImageCacheConfig = Field(default_factory=ImageCacheConfig, description="See nodePools[].imageCache.*")
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field(
        "WhenEmpty", description="When Karpenter may remove nodes"
    )
    consolidate_after: str = Field("5m", pattern=DURATION, description="Idle time before consolidation")
    expire_after: str = Field("720h", pattern=DURATION, description="Maximum node lifetime")
    weight: int = Field(10, ge=1, le=100, description="Priority among NodePools")
    zones: list[str] = Field(
        [],
        description="Availability zones (e.g. [us-west-2a]) the pool may use; default every zone of the VPC. "
        "A pool serving a multiNode model needs exactly one",
    )

    @model_validator(mode="before")
    @classmethod
    def _fast_image_pull_default(cls, data: object) -> object:
        """fastImagePull defaults to on, and to off on an imageCache pool: the snapshot's layers were unpacked
        by containerd's default overlayfs snapshotter, and containerd keeps unpacked layers per snapshotter, so a
        containerd running SOCI would find none of them and unpack every image again before its first start."""
        if not isinstance(data, dict):
            return data
        cache = data.get("imageCache", data.get("image_cache"))
        enabled = cache.get("enabled") if isinstance(cache, dict) else getattr(cache, "enabled", False)
        key = "fastImagePull" if "fastImagePull" in data else "fast_image_pull"
        if key not in data:
            return {**data, key: not enabled}
        if enabled is True and data[key] is True:
            raise ValueError(
                "@fastImagePull: an imageCache pool's images were unpacked by the overlayfs snapshotter, and a "
                "containerd running SOCI would unpack them all again; leave fastImagePull out (it defaults to off there) or turn "
                "imageCache.enabled off"
            )
        return data

    @field_validator("instance_families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in gpus.FAMILIES]
        if unknown:
            raise ValueError(f"unknown GPU instance families {unknown}; known: {sorted(gpus.FAMILIES)}")
        return value

    @field_validator("instance_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in gpus.INSTANCE_TYPES]
        if unknown:
            raise ValueError(
                f"unknown GPU instance types {unknown}; use types from components/catalog/gpus.py, e.g. g6e.2xlarge"
            )
        return value

    @model_validator(mode="after")
    def _some_types(self) -> NodePoolConfig:
        if not self.instance_families and not self.instance_types:
            raise ValueError(
                "@instanceFamilies: set instanceFamilies (e.g. [g6e]) or instanceTypes (e.g. [g6e.2xlarge])"
            )
        check_ami_version(self.ami_family, self.ami_version)
        if self.fast_image_pull:
            check_fast_image_pull(self.ami_family, self.ami_version)
        if self.image_cache.enabled:
            check_image_cache(self.ami_family, self.ami_version)
        return self

    @property
    def ami_alias(self) -> str:
        """Karpenter amiSelectorTerms alias, e.g. al2023@v20260714."""
        return ami_alias(self.ami_family, self.ami_version)

    @property
    def catalog_types(self) -> list[gpus.GpuInstanceType]:
        return gpus.instance_types_for(self.instance_families, self.instance_types)

    @property
    def max_gpus_per_node(self) -> int:
        return max(t.gpus for t in self.catalog_types)

    @property
    def gpu_models(self) -> list[gpus.GpuModel]:
        return sorted({t.gpu for t in self.catalog_types}, key=lambda g: g.name)
