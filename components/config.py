"""The typed stack config: every key, its type, default and validation rule.

Stack files set keys in the `tritonllm:` namespace (e.g. `tritonllm:models`).
`parse_stack_config` turns those raw values into a `StackConfig` or raises
`ConfigError` naming every bad key and how to fix it, before any resource is
registered. Secrets (the Hugging Face token, the NGC API key) are never read
here: the loader is only told whether they are set, and the program reads them
as Pulumi secret Outputs.
"""
from __future__ import annotations

import ipaddress
import json
import re
import types
from typing import Any, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components import gpu_catalog, metrics, versions

NAMESPACE = "tritonllm"
SECRET_KEYS = ("hfToken", "ngcApiKey", "apiKeys")

# Organisations whose Hugging Face repositories are gated (a license must be
# accepted and a token sent); `gated` on a model overrides this guess.
GATED_ORGS = ("meta-llama", "mistralai", "google")

CPU_NODE_POOL_NAME = "cpu"  # the CPU NodePool and its EC2NodeClass
DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
DURATION = r"^([0-9]+(s|m|h))+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"


class ConfigError(ValueError):
    """Stack config is invalid; `problems` holds one (key, message) pair per error."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  {NAMESPACE}:{key}: {message}" for key, message in problems]
        super().__init__("invalid stack config:\n" + "\n".join(lines))


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=False
    )


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR block ({exc}); write it like 10.0.0.0/16") from exc


class NetworkConfig(_Model):
    """VPC layout."""

    az_count: int = Field(3, ge=2, le=6, description="Availability zones to spread subnets over")
    vpc_cidr: str = Field("10.0.0.0/16", description="Primary VPC CIDR (nodes, load balancers)")
    pod_cidr: str = Field(
        "100.64.0.0/16", description="Secondary VPC CIDR for pod IPs (VPC CNI custom networking)"
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        "single", description="One NAT gateway for the VPC, or one per AZ for zone-independent egress"
    )

    _check_cidrs = field_validator("vpc_cidr", "pod_cidr")(classmethod(lambda cls, v: _cidr(v)))

    @model_validator(mode="after")
    def _no_overlap(self) -> "NetworkConfig":
        if ipaddress.ip_network(self.vpc_cidr).overlaps(ipaddress.ip_network(self.pod_cidr)):
            raise ValueError(
                f"@podCidr: {self.pod_cidr} overlaps vpcCidr {self.vpc_cidr}; "
                "choose disjoint blocks (e.g. vpcCidr 10.0.0.0/16, podCidr 100.64.0.0/16)"
            )
        for name, cidr in (("vpcCidr", self.vpc_cidr), ("podCidr", self.pod_cidr)):
            prefix = ipaddress.ip_network(cidr).prefixlen
            if not 16 <= prefix <= 20:
                raise ValueError(f"@{name}: {cidr} must be between /16 and /20 to fit subnets for every AZ")
        return self


class SystemNodeGroupConfig(_Model):
    """The managed node group that runs controllers (Karpenter, CoreDNS, monitoring)."""

    instance_types: list[str] = Field(["m6i.xlarge"], min_length=1, description="EC2 instance types")
    min_size: int = Field(2, ge=1, description="Minimum nodes")
    desired_size: int = Field(2, ge=1, description="Initial nodes")
    max_size: int = Field(4, ge=1, description="Maximum nodes")
    disk_size_gib: int = Field(100, ge=20, description="Root volume size (GiB, encrypted gp3)")

    @model_validator(mode="after")
    def _sizes(self) -> "SystemNodeGroupConfig":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"@desiredSize: need minSize <= desiredSize <= maxSize, got {self.min_size}/{self.desired_size}/{self.max_size}"
            )
        return self


# CIDRs shorter than this admit a large part of the internet (0.0.0.0/0, or 0.0.0.0/1 + 128.0.0.0/1).
MIN_ENDPOINT_PREFIX = 8


class ClusterConfig(_Model):
    """The EKS control plane."""

    version: str = Field(versions.EKS_VERSION, pattern=r"^1\.[0-9]{2}$", description="Kubernetes version")
    endpoint_public_access: bool = Field(
        False,
        description="Also expose the API server endpoint publicly (to endpointPublicAccessCidrs only); "
        "the private endpoint is always on",
    )
    endpoint_public_access_cidrs: list[str] = Field(
        [], description="CIDRs allowed to reach the public API endpoint (required when endpointPublicAccess is true)"
    )
    allow_public_endpoint_from_anywhere: bool = Field(
        False,
        description="DANGER: accept 0.0.0.0/0 (or any CIDR wider than /8) in endpointPublicAccessCidrs",
    )
    admin_principal_arns: list[str] = Field(
        [],
        description="IAM role/user ARNs given cluster-admin through EKS access entries "
        "(the deploying identity is dropped from it: EKS already makes it admin)",
    )
    system_node_group: SystemNodeGroupConfig = Field(
        default_factory=SystemNodeGroupConfig, description="See cluster.systemNodeGroup.*"
    )
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = Field(
        ["api", "audit", "authenticator"], description="Control-plane log types sent to CloudWatch"
    )

    @field_validator("endpoint_public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(v) for v in value]

    @field_validator("admin_principal_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.match(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/Name)")
        return value

    @model_validator(mode="after")
    def _public(self) -> "ClusterConfig":
        if not self.endpoint_public_access:
            return self
        if not self.endpoint_public_access_cidrs:
            raise ValueError(
                "@endpointPublicAccessCidrs: empty while endpointPublicAccess is true; "
                "list the CIDRs that may reach the API (e.g. your egress IP as 203.0.113.7/32) "
                "or set endpointPublicAccess false (private endpoint only)"
            )
        wide = [c for c in self.endpoint_public_access_cidrs
                if ipaddress.ip_network(c).prefixlen < MIN_ENDPOINT_PREFIX]
        if wide and not self.allow_public_endpoint_from_anywhere:
            raise ValueError(
                f"@endpointPublicAccessCidrs: {wide} admit (a large part of) the whole internet to the "
                "Kubernetes API; list narrower CIDRs (e.g. 203.0.113.7/32), or set "
                "cluster.allowPublicEndpointFromAnywhere: true if you really mean it"
            )
        return self


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


def ami_alias(family: str, version: str | None) -> str:
    return f"{versions.KARPENTER_AMI_ALIAS_FAMILY[family]}@{version or versions.KARPENTER_AMI_VERSION[family]}"


class CpuNodePoolConfig(_Model):
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
    def _ami(self) -> "CpuNodePoolConfig":
        check_ami_version("AL2023", self.ami_version)
        return self

    @property
    def ami_alias(self) -> str:
        return ami_alias("AL2023", self.ami_version)


class NodePoolConfig(_Model):
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
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = Field(
        "WhenEmpty", description="When Karpenter may remove nodes"
    )
    consolidate_after: str = Field("5m", pattern=DURATION, description="Idle time before consolidation")
    expire_after: str = Field("720h", pattern=DURATION, description="Maximum node lifetime")
    weight: int = Field(10, ge=1, le=100, description="Priority among NodePools")
    zones: list[str] = Field(
        [], description="Availability zones (e.g. [us-west-2a]) the pool may use; default every zone of the VPC. "
        "A pool serving a multiNode model needs exactly one"
    )

    @field_validator("instance_families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in gpu_catalog.FAMILIES]
        if unknown:
            raise ValueError(f"unknown GPU instance families {unknown}; known: {sorted(gpu_catalog.FAMILIES)}")
        return value

    @field_validator("instance_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in gpu_catalog.INSTANCE_TYPES]
        if unknown:
            raise ValueError(
                f"unknown GPU instance types {unknown}; use types from components/gpu_catalog.py, e.g. g6e.2xlarge"
            )
        return value

    @model_validator(mode="after")
    def _some_types(self) -> "NodePoolConfig":
        if not self.instance_families and not self.instance_types:
            raise ValueError("@instanceFamilies: set instanceFamilies (e.g. [g6e]) or instanceTypes (e.g. [g6e.2xlarge])")
        check_ami_version(self.ami_family, self.ami_version)
        return self

    @property
    def ami_alias(self) -> str:
        """Karpenter amiSelectorTerms alias, e.g. al2023@v20260714."""
        return ami_alias(self.ami_family, self.ami_version)

    @property
    def catalog_types(self) -> list[gpu_catalog.GpuInstanceType]:
        return gpu_catalog.instance_types_for(self.instance_families, self.instance_types)

    @property
    def max_gpus_per_node(self) -> int:
        return max(t.gpus for t in self.catalog_types)

    @property
    def gpu_models(self) -> list[gpu_catalog.GpuModel]:
        return sorted({t.gpu for t in self.catalog_types}, key=lambda g: g.name)


class MultiNodeConfig(_Model):
    """One model replica across several GPU nodes (TensorRT-LLM, LeaderWorkerSet, mpirun over SSH)."""

    nodes: int = Field(..., ge=2, le=64, description="Nodes per replica (required): the LeaderWorkerSet group size")
    efa: bool = Field(True, description="Request every EFA interface of the node and run NCCL over EFA")
    placement_group: bool = Field(
        True, description="Launch the pool's nodes in a cluster placement group (lowest inter-node latency)"
    )


class EfsConfig(_Model):
    """Shared EFS file system for engines and the Hugging Face cache."""

    enabled: bool = Field(True, description="Create EFS, its StorageClass and the shared RWX claim")
    throughput_mode: Literal["elastic", "bursting"] = Field("elastic", description="EFS throughput mode")
    claim_size: str = Field("200Gi", pattern=QUANTITY, description="Requested size of the shared claim")


class MonitoringConfig(_Model):
    """kube-prometheus-stack, Grafana, DCGM exporter, prometheus-adapter."""

    enabled: bool = Field(True, description="Install the monitoring stack and the HPA metrics adapter")
    retention: str = Field("15d", pattern=r"^[0-9]+(h|d|w|y)$", description="Prometheus retention")
    storage_size: str = Field("50Gi", pattern=QUANTITY, description="Prometheus volume size")
    retention_size: str = Field(
        "40GB", pattern=r"^[0-9]+(B|KB|MB|GB|TB)$",
        description="Prometheus retentionSize: oldest blocks are deleted past it, so a full volume never stops "
        "Prometheus; keep it below storageSize",
    )
    scrape_interval: str = Field(
        "15s", pattern=r"^[0-9]+(s|m)$",
        description="Prometheus scrape and rule interval, 5s-60s; the autoscaling rules average over 4 intervals",
    )
    dcgm_exporter: bool = Field(True, description="Run the DCGM exporter on GPU nodes")

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, value: str) -> str:
        metrics.check_scrape_interval(value)
        return value

    @model_validator(mode="after")
    def _retention_fits(self) -> "MonitoringConfig":
        size = _bytes(self.storage_size)
        if size is not None and _bytes(self.retention_size) >= size:
            raise ValueError(
                f"@retentionSize: {self.retention_size} does not fit the {self.storage_size} volume (storageSize); "
                "keep it about 20% below so the WAL and compaction have room"
            )
        return self


_BYTE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(quantity: str) -> int | None:
    """Bytes of a size like 40GB (Prometheus) or 50Gi (Kubernetes); None if not of that form."""
    import re as _re

    found = _re.fullmatch(r"([0-9]+)([A-Za-z]*)", quantity)
    if not found or found.group(2) not in _BYTE_UNITS:
        return None
    return int(found.group(1)) * _BYTE_UNITS[found.group(2)]


ACM_ARN = r"^arn:aws[a-z-]*:acm:(?P<region>[a-z]{2}(-gov)?-[a-z]+-[0-9]):[0-9]{12}:certificate/[-0-9a-f]+$"
# The NLB's TLS listeners keep idle connections for 350 s and that cannot be changed
# (Elastic Load Balancing, Network Load Balancers, "Update the TCP idle timeout":
# "The connection idle timeout for TLS listeners is 350 seconds and can't be modified").
NLB_TLS_IDLE_TIMEOUT_SECONDS = 350
NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS = 6000  # tcp.idle_timeout.seconds: 60-6000
IDLE_TIMEOUT_MARGIN_SECONDS = 10  # NGINX times out (and answers 504) before the NLB drops the flow


class GatewayTlsConfig(_Model):
    """TLS on the endpoint, terminated at the NLB with an ACM certificate."""

    certificate_arn: str | None = Field(
        None, description="ACM certificate ARN (same region) for the NLB's TLS listener; or set domain + hostedZoneId"
    )
    domain: str | None = Field(
        None, pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="DNS name of the endpoint, e.g. llm.example.com; with hostedZoneId and no certificateArn "
                    "the program creates and DNS-validates the certificate",
    )
    hosted_zone_id: str | None = Field(
        None, pattern=r"^Z[A-Z0-9]{4,32}$",
        description="Route 53 hosted zone of domain: certificate validation records and the alias record",
    )
    ssl_policy: str = Field(
        "ELBSecurityPolicy-TLS13-1-2-2021-06", pattern=r"^ELBSecurityPolicy-[-A-Za-z0-9]+$",
        description="NLB TLS security policy (TLS 1.3/1.2)",
    )
    plaintext_inside_vpc: bool = Field(
        False, description="Opt out of TLS (HTTP/h2c on 8000/8001); only allowed for an internal gateway"
    )

    @property
    def enabled(self) -> bool:
        return not self.plaintext_inside_vpc

    @model_validator(mode="after")
    def _choice(self) -> "GatewayTlsConfig":
        if self.plaintext_inside_vpc and (self.certificate_arn or self.domain):
            raise ValueError(
                "@plaintextInsideVpc: true while a certificate or domain is set; drop plaintextInsideVpc to serve TLS"
            )
        if self.hosted_zone_id and not self.domain:
            raise ValueError("@domain: hostedZoneId is set without domain; set domain (e.g. llm.example.com)")
        return self


class GatewayAuthConfig(_Model):
    """API keys checked at the gateway (HTTP Basic authentication, NGINX Gateway Fabric AuthenticationFilter)."""

    enabled: bool = Field(
        True, description="Require an API key (secret apiKeys) on every inference route; 401 without one"
    )
    realm: str = Field("tritonllm", pattern=r"^[A-Za-z0-9 ._-]{1,64}$", description="Basic auth realm")


class GatewayConfig(_Model):
    """The NLB + NGINX Gateway Fabric entry point."""

    scheme: Literal["internal", "internet-facing"] = Field("internal", description="NLB scheme")
    allowed_cidrs: list[str] = Field(
        [], description="Client CIDRs allowed through the NLB; required when internet-facing; "
                        "internal default: the VPC's CIDRs (network.vpcCidr, network.podCidr)"
    )
    dangerously_allow_any_source: bool = Field(
        False, description="Accept 0.0.0.0/0 (or ::/0) in allowedCidrs: anyone who reaches the NLB may connect"
    )
    tls: GatewayTlsConfig = Field(default_factory=GatewayTlsConfig, description="See gateway.tls.*")
    auth: GatewayAuthConfig = Field(default_factory=GatewayAuthConfig, description="See gateway.auth.*")
    request_timeout_seconds: int = Field(
        300, ge=10, le=NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS - IDLE_TIMEOUT_MARGIN_SECONDS,
        description="Longest silence NGINX waits for Triton (HTTP and gRPC read/send timeouts); the NLB's idle "
                    "timeout follows it. At most 340 with TLS (the NLB's TLS idle timeout is fixed at 350 s)",
    )

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(v) for v in value]

    @model_validator(mode="after")
    def _exposure(self) -> "GatewayConfig":
        problems = []
        if self.scheme == "internet-facing" and not self.allowed_cidrs:
            problems.append(
                "@allowedCidrs: empty while scheme is internet-facing; list the client CIDRs "
                "(e.g. [203.0.113.0/24]) or use scheme internal"
            )
        open_cidrs = [c for c in self.allowed_cidrs if ipaddress.ip_network(c).prefixlen == 0]
        if open_cidrs and not self.dangerously_allow_any_source:
            problems.append(
                f"@allowedCidrs: {open_cidrs} admits every address; list the client CIDRs instead "
                "(or set gateway.dangerouslyAllowAnySource: true if the endpoint really is for anyone)"
            )
        if self.scheme == "internet-facing" and not self.tls.enabled:
            problems.append(
                "@tls.plaintextInsideVpc: an internet-facing gateway must serve TLS; set gateway.tls.certificateArn "
                "or gateway.tls.domain + gateway.tls.hostedZoneId, and drop plaintextInsideVpc"
            )
        limit = NLB_TLS_IDLE_TIMEOUT_SECONDS - IDLE_TIMEOUT_MARGIN_SECONDS
        if self.tls.enabled and self.request_timeout_seconds > limit:
            problems.append(
                f"@requestTimeoutSeconds: {self.request_timeout_seconds} exceeds {limit}: the NLB closes TLS "
                f"connections idle for {NLB_TLS_IDLE_TIMEOUT_SECONDS} s (fixed by AWS); lower it to {limit} or "
                "less and stream long generations (streamed tokens keep the connection busy)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def source_cidrs(self, network: "NetworkConfig") -> list[str]:
        """What the NLB admits: allowedCidrs, or for an internal gateway the VPC's CIDRs."""
        if self.allowed_cidrs:
            return list(self.allowed_cidrs)
        if self.scheme == "internal":
            return [network.vpc_cidr, network.pod_cidr]
        raise ValueError("an internet-facing gateway needs gateway.allowedCidrs")

    @property
    def nlb_idle_timeout_seconds(self) -> int:
        """The NLB's idle timeout: above NGINX's, so NGINX answers first (TLS listeners: fixed by AWS)."""
        if self.tls.enabled:
            return NLB_TLS_IDLE_TIMEOUT_SECONDS
        return max(60, min(NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS, self.request_timeout_seconds + IDLE_TIMEOUT_MARGIN_SECONDS))


class AutoscalingConfig(_Model):
    """HPA on a Triton metric served by prometheus-adapter."""

    metric: str | None = Field(None, description="Per-pod metric name; default depends on the backend")
    target: float | None = Field(None, gt=0, description="Per-pod target value of the metric")
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600, description="HPA scale-up window")
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600, description="HPA scale-down window")


class VllmOptions(_Model):
    """Engine arguments of Triton's vLLM backend (model.json)."""

    max_model_len: int | None = Field(None, ge=128, description="Context length; default the model's")
    gpu_memory_utilization: float = Field(0.9, gt=0.1, le=0.98, description="Share of GPU memory vLLM uses")
    dtype: Literal["auto", "float16", "bfloat16"] = Field("auto", description="Weights/activations dtype")
    max_num_seqs: int = Field(256, ge=1, description="Maximum concurrent sequences")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs")
    extra_engine_args: dict[str, Any] = Field({}, description="Further vLLM engine arguments, verbatim")
    report_custom_metrics: bool | None = Field(
        None,
        description="REPORT_CUSTOM_METRICS (vllm:* metrics on Triton's /metrics); default: on only when the "
        "autoscaling metric needs it (the default vllm_requests_in_flight does)",
    )


class EngineBuildOptions(_Model):
    """TensorRT-LLM engine build (convert_checkpoint + trtllm-build)."""

    dtype: Literal["float16", "bfloat16", "fp8"] = Field("bfloat16", description="Engine precision")
    max_batch_size: int = Field(64, ge=1, le=2048, description="trtllm-build --max_batch_size")
    max_input_len: int = Field(2048, ge=16, description="trtllm-build --max_input_len")
    max_seq_len: int = Field(4096, ge=32, description="trtllm-build --max_seq_len (input + output)")
    max_num_tokens: int = Field(8192, ge=64, description="trtllm-build --max_num_tokens")
    paged_kv_cache: bool = Field(True, description="Paged KV cache (needed for in-flight batching)")
    multiple_profiles: bool = Field(True, description="Build several TensorRT optimization profiles")
    kv_cache_free_gpu_mem_fraction: float = Field(0.9, gt=0, le=0.98, description="KV cache share of free GPU memory")
    # Serving settings filled into the tensorrt_llm model's config.pbtxt. Set explicitly because the
    # backend's own defaults changed across releases (TensorRT-LLM triton_backend docs/model_config.md).
    batch_scheduler_policy: Literal["max_utilization", "guaranteed_no_evict"] = Field(
        "max_utilization",
        description="tensorrt_llm batch_scheduler_policy: max_utilization packs more requests (may pause some "
                    "when the KV cache is full); guaranteed_no_evict admits only what is sure to finish")
    enable_kv_cache_reuse: bool = Field(
        True, description="tensorrt_llm enable_kv_cache_reuse: reuse KV blocks of shared prompt prefixes (needs pagedKvCache)")
    enable_chunked_context: bool = Field(
        True, description="tensorrt_llm enable_chunked_context: split long prompts across iterations (needs pagedKvCache)")
    max_queue_delay_microseconds: int = Field(
        0, ge=0, le=1_000_000, description="tensorrt_llm dynamic_batching max_queue_delay_microseconds")
    bls_instance_count: int = Field(
        0, ge=0, le=2048,
        description="Instances of the served BLS model; each streams one request at a time (a Python process "
                    "each, CPU memory). 0: maxBatchSize, as upstream advises")
    timeout_minutes: int = Field(90, ge=5, le=600, description="Deadline for the build Job")

    @model_validator(mode="after")
    def _lengths(self) -> "EngineBuildOptions":
        if self.max_input_len >= self.max_seq_len:
            raise ValueError(f"@maxInputLen: {self.max_input_len} must be below maxSeqLen ({self.max_seq_len})")
        for key, on in (("enableKvCacheReuse", self.enable_kv_cache_reuse),
                        ("enableChunkedContext", self.enable_chunked_context)):
            if on and not self.paged_kv_cache:
                raise ValueError(f"@{key}: needs pagedKvCache true; set {key}: false or pagedKvCache: true")
        return self


class ResourcesConfig(_Model):
    """Triton container resources besides GPUs."""

    cpu: str = Field("4", pattern=QUANTITY, description="CPU request")
    memory: str = Field("24Gi", pattern=QUANTITY, description="Memory request and limit")
    shm_size: str = Field("8Gi", pattern=QUANTITY, description="/dev/shm size (Python backend, NCCL)")


class ModelConfig(_Model):
    """One served model: a TritonLLM deployment of its own."""

    name: str = Field(..., pattern=DNS_LABEL, description="Served model name (required)")
    backend: Literal["vllm", "trtllm"] = Field(..., description="Triton backend (required): vllm or trtllm")
    hf_model_id: str = Field(
        ..., pattern=r"^[A-Za-z0-9][-\w.]*/[-\w.]+$", description="Hugging Face repo id (required)"
    )
    hf_revision: str = Field(
        "main", description="Hugging Face branch, tag or commit; TRT-LLM engines are keyed on the commit it "
                            "resolves to when the program runs (a moved branch rebuilds)")
    gated: bool | None = Field(None, description="Needs a Hugging Face token; guessed from the org when unset")
    tensor_parallel: int = Field(1, ge=1, le=64, description="Tensor-parallel degree")
    pipeline_parallel: int = Field(1, ge=1, le=16, description="Pipeline-parallel degree")
    gpus: int | None = Field(None, ge=1, description="GPUs per replica; default tensorParallel x pipelineParallel")
    node_pool: str = Field(..., description="Name of the nodePools entry that serves it (required)")
    min_replicas: int = Field(1, ge=1, description="HPA minimum replicas")
    max_replicas: int = Field(5, ge=1, description="HPA maximum replicas")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="See models[].autoscaling.*")
    vllm: VllmOptions = Field(default_factory=VllmOptions, description="vLLM engine arguments (backend vllm)")
    engine: EngineBuildOptions = Field(
        default_factory=EngineBuildOptions, description="TensorRT-LLM build options (backend trtllm)"
    )
    engine_storage: Literal["efs", "local"] = Field(
        "local", description="Where TRT-LLM engines are staged before Triton starts"
    )
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="See models[].resources.*")
    multi_node: MultiNodeConfig | None = Field(
        None, description="Serve one replica across several nodes (TRT-LLM: tensorParallel within a node, "
        "pipelineParallel across nodes); see models[].multiNode.*"
    )

    @model_validator(mode="after")
    def _replicas(self) -> "ModelConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"@minReplicas: {self.min_replicas} exceeds maxReplicas ({self.max_replicas})")
        try:
            metrics.hpa_metric_for(self.backend, self.autoscaling.metric)
        except ValueError as exc:
            raise ValueError(f"@autoscaling.metric: {exc}") from None
        chosen = metrics.hpa_metric_for(self.backend, self.autoscaling.metric)
        if chosen.needs_vllm_custom_metrics and self.vllm.report_custom_metrics is False:
            raise ValueError(
                f"@vllm.reportCustomMetrics: false, but the autoscaling metric {chosen.name!r} is computed from "
                "the vLLM backend's custom metrics; remove the key or pick autoscaling.metric "
                "triton_request_rate"
            )
        if self.name in metrics.COMPOSING_MODELS:
            raise ValueError(
                f"@name: {self.name!r} is the name of a TensorRT-LLM ensemble's composing model, which the "
                "request-rate rules do not count; choose another name"
            )
        if self.gpus is not None and self.gpus < self.parallel_gpus:
            raise ValueError(
                f"@gpus: {self.gpus} is below tensorParallel x pipelineParallel ({self.parallel_gpus}); "
                "raise gpus or drop the key"
            )
        return self

    @property
    def parallel_gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def nodes_per_replica(self) -> int:
        return self.multi_node.nodes if self.multi_node else 1

    @property
    def gpus_per_pod(self) -> int:
        """GPUs each pod requests: the whole replica, or one node's share of a multi-node replica."""
        return self.gpus_per_replica // self.nodes_per_replica

    @property
    def gpus_per_replica(self) -> int:
        return self.gpus or self.parallel_gpus

    @property
    def is_gated(self) -> bool:
        if self.gated is not None:
            return self.gated
        return self.hf_model_id.split("/")[0] in GATED_ORGS


class ModelStoreConfig(_Model):
    """The S3 bucket that holds model repositories and engines."""

    force_destroy: bool = Field(
        False, description="Let `pulumi destroy` delete a non-empty bucket (its uploaded objects)"
    )
    noncurrent_version_days: int = Field(30, ge=1, description="Days to keep overwritten object versions")


class StackConfig(_Model):
    """Everything under the `tritonllm:` namespace."""

    region: str = Field(..., pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region (required)")
    name: str = Field(
        "tritonllm", pattern=DNS_LABEL, max_length=24,
        description="Prefix of every resource name and the EKS cluster name (max 24: AWS name limits)",
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="See network.*")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="See cluster.*")
    node_pools: list[NodePoolConfig] = Field(..., min_length=1, description="GPU NodePools (required)")
    cpu_node_pool: CpuNodePoolConfig = Field(
        default_factory=CpuNodePoolConfig, description="See cpuNodePool.*"
    )
    efs: EfsConfig = Field(default_factory=EfsConfig, description="See efs.*")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="See monitoring.*")
    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="See gateway.*")
    model_store: ModelStoreConfig = Field(default_factory=ModelStoreConfig, description="See modelStore.*")
    models: list[ModelConfig] = Field(..., min_length=1, description="Served models (required)")
    tags: dict[str, str] = Field({}, description="Tags added to every AWS resource")
    # Secrets: only whether they are set. Read them with pulumi.Config().require_secret.
    hf_token_set: bool = Field(False, exclude=True)
    ngc_api_key_set: bool = Field(False, exclude=True)
    api_key_count: int = Field(0, exclude=True)  # how many valid apiKeys entries; never the keys themselves

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, value: dict[str, str]) -> dict[str, str]:
        # AWS reserves aws:*; Karpenter rejects EC2NodeClass tags it manages itself.
        reserved = ("aws:", "kubernetes.io/cluster/", "karpenter.sh/", "karpenter.k8s.aws/", "eks:")
        bad = [k for k in value if not k or k.startswith(reserved)]
        if bad:
            raise ValueError(f"tag keys {bad} are reserved (prefixes {list(reserved)}); rename them")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> "StackConfig":
        problems: list[str] = self._gateway_checks()
        pools = {p.name: (i, p) for i, p in enumerate(self.node_pools)}
        if len(pools) != len(self.node_pools):
            problems.append("@nodePools: names must be unique")
        for j, pool in enumerate(self.node_pools):
            bad_zones = [z for z in pool.zones if not re.match(rf"^{re.escape(self.region)}[a-z]$", z)]
            if bad_zones:
                problems.append(f"@nodePools[{j}].zones: {bad_zones} are not zones of region {self.region}; "
                                f"write them like {self.region}a")
        if self.cpu_node_pool.enabled and CPU_NODE_POOL_NAME in pools:
            problems.append(
                f"@nodePools[{pools[CPU_NODE_POOL_NAME][0]}].name: {CPU_NODE_POOL_NAME!r} is the CPU NodePool's "
                "name; rename the GPU pool or set cpuNodePool.enabled: false"
            )
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            problems.append(f"@models: names must be unique, got {names}")
        for i, m in enumerate(self.models):
            if m.node_pool not in pools:
                problems.append(
                    f"@models[{i}].nodePool: {m.node_pool!r} is not a nodePools entry; "
                    f"use one of {sorted(pools)} or add it to nodePools"
                )
                continue
            pool = pools[m.node_pool][1]
            if m.multi_node is not None:
                from components.multinode_config import multi_node_problems

                problems += multi_node_problems(i, m, pool, self.region)
            elif m.gpus_per_replica > pool.max_gpus_per_node:
                problems.append(
                    f"@models[{i}]: needs {m.gpus_per_replica} GPUs per replica (tensorParallel x pipelineParallel "
                    f"= {m.parallel_gpus}) but the largest type in nodePool {pool.name!r} has "
                    f"{pool.max_gpus_per_node}; lower the parallelism or add larger instance types to the pool"
                )
            if m.backend == "trtllm" and len(pool.gpu_models) > 1:
                problems.append(
                    f"@models[{i}].nodePool: TensorRT-LLM engines are built per GPU architecture but nodePool "
                    f"{pool.name!r} mixes {[g.name for g in pool.gpu_models]}; give it one GPU family"
                )
            if m.is_gated and not self.hf_token_set:
                problems.append(
                    f"@models[{i}].hfModelId: {m.hf_model_id} is gated on Hugging Face but hfToken is not set; "
                    "run `pulumi config set --secret tritonllm:hfToken hf_...` (or set gated: false)"
                )
            if m.backend == "trtllm" and m.engine.dtype == "fp8":
                if any(g.compute_capability < "8.9" for g in pool.gpu_models):
                    problems.append(
                        f"@models[{i}].engine.dtype: fp8 needs Ada or Hopper GPUs (compute 8.9+), "
                        f"nodePool {pool.name!r} has {[g.name for g in pool.gpu_models]}; use bfloat16"
                    )
            if m.backend == "trtllm" and m.engine_storage == "efs" and not self.efs.enabled:
                problems.append(
                    f"@models[{i}].engineStorage: efs needs the shared file system but efs.enabled is false; "
                    "use engineStorage: local or set efs.enabled: true"
                )
            if m.max_replicas * m.gpus_per_replica > pool.max_gpus:
                problems.append(
                    f"@models[{i}].maxReplicas: {m.max_replicas} replicas x {m.gpus_per_replica} GPUs exceeds "
                    f"nodePool {pool.name!r} maxGpus ({pool.max_gpus}); raise maxGpus or lower maxReplicas"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _gateway_checks(self) -> list[str]:
        problems = []
        tls = self.gateway.tls
        if tls.enabled and not tls.certificate_arn and not (tls.domain and tls.hosted_zone_id):
            problems.append(
                "@gateway.tls.certificateArn: no TLS certificate for the endpoint; set gateway.tls.certificateArn to "
                "an ACM certificate ARN, or gateway.tls.domain and gateway.tls.hostedZoneId to have one created "
                "(an internal gateway may opt out with gateway.tls.plaintextInsideVpc: true)"
            )
        arn = tls.certificate_arn
        if arn:
            match = re.match(ACM_ARN, arn)
            if match is None:
                problems.append(
                    "@gateway.tls.certificateArn: not an ACM certificate ARN; "
                    "use arn:aws:acm:<region>:<account>:certificate/<id>"
                )
            elif match["region"] != self.region:
                problems.append(
                    f"@gateway.tls.certificateArn: the certificate is in {match['region']} but the stack's NLB is "
                    f"in {self.region} (an NLB can only use ACM certificates of its own region); request or "
                    f"import the certificate in {self.region}, or set gateway.tls.domain + hostedZoneId instead"
                )
        if self.gateway.auth.enabled and self.api_key_count == 0:
            problems.append(
                "@apiKeys: no API key while gateway.auth.enabled is true; run "
                "`pulumi config set --secret tritonllm:apiKeys '[\"ci:'$(openssl rand -hex 24)'\"]'` "
                "(or set gateway.auth.enabled: false)"
            )
        return problems

    def node_pool(self, name: str) -> NodePoolConfig:
        return next(p for p in self.node_pools if p.name == name)


# Top-level keys as they appear in stack files (camelCase).
TOP_LEVEL_KEYS = tuple(
    (f.alias or n) for n, f in StackConfig.model_fields.items() if not f.exclude
) + SECRET_KEYS


def _loc_to_key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += ("." if key else "") + str(part)
    return key or "(root)"


_FIXES = {
    "missing": "this key is required; add it to the stack file",
    "extra_forbidden": "unknown key; check the spelling against README's config table",
}


API_KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
API_KEY_MIN_SECRET = 20


def parse_api_keys(value: Any) -> list[tuple[str, str]]:
    """The secret `apiKeys` as (name, secret) pairs; ValueError messages never contain a secret.

    Each entry is `name:secret`, exactly what a client sends as HTTP Basic credentials
    (`curl -u "$TRITONLLM_API_KEY"`). Names tell keys apart for rotation: add a new key,
    move clients over, remove the old one.
    """
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("is not a JSON list of \"name:secret\" strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a JSON list of \"name:secret\" strings")
    pairs, names = [], set()
    for i, entry in enumerate(value):
        name, sep, secret = entry.partition(":")
        if not sep or not re.match(API_KEY_NAME, name):
            raise ValueError(
                f"entry {i} must look like name:secret with a name of letters, digits, '.', '_' or '-' "
                "(e.g. ci:<48 random hex characters>)"
            )
        if len(secret) < API_KEY_MIN_SECRET or any(c.isspace() for c in secret):
            raise ValueError(
                f"entry {i} ({name}): the secret part needs at least {API_KEY_MIN_SECRET} characters and no "
                "spaces; generate one with `openssl rand -hex 24`"
            )
        if name in names:
            raise ValueError(f"entry {i}: the name {name!r} is used twice; give every key its own name")
        names.add(name)
        pairs.append((name, secret))
    return pairs


def _check_api_keys(value: Any) -> tuple[int, list[tuple[str, str]]]:
    try:
        return len(parse_api_keys(value)), []
    except ValueError as exc:
        return 0, [("apiKeys", str(exc))]


def parse_stack_config(
    raw: Mapping[str, Any], secret_keys_set: set[str] | frozenset[str] = frozenset(), *,
    secrets_complete: bool = False,
) -> StackConfig:
    """Validate the `tritonllm:` config values (without namespace) into a StackConfig.

    `raw` values may be JSON strings (as Pulumi passes structured config) or
    already-decoded objects. `secret_keys_set` names the secret keys that are set;
    `secrets_complete` says it names all of them (the program, `tritonllm deploy`), so a
    missing apiKeys secret is an error.
    """
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECRET_KEYS:
            continue
        if key not in TOP_LEVEL_KEYS:
            problems.append((key, f"unknown key; valid keys are {', '.join(TOP_LEVEL_KEYS)}"))
            continue
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append((key, f"is not valid JSON/YAML structure ({exc.msg})"))
                continue
        values[key] = value
    if problems:
        raise ConfigError(problems)
    values["hf_token_set"] = "hfToken" in secret_keys_set
    values["ngc_api_key_set"] = "ngcApiKey" in secret_keys_set
    if raw.get("apiKeys") in (None, "") and ("apiKeys" in secret_keys_set or not secrets_complete):
        # Set but encrypted (a stack file read outside Pulumi), or a caller that does not say which
        # secrets are set (unit tests of other parts): the program checks them at `up`.
        count, key_problems = 1, []
    else:
        count, key_problems = _check_api_keys(raw.get("apiKeys"))
    values["api_key_count"] = count
    problems += key_problems
    try:
        if problems:
            raise ConfigError(problems)
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            key = _loc_to_key(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] in _FIXES:
                message = _FIXES[err["type"]]
            elif "input" in err and not isinstance(err["input"], (dict, list)):
                message += f" (got {err['input']!r})"
            for line in message.split("\n"):
                # Cross-field checks name their own key as "@sub.key: message".
                if line.startswith("@"):
                    sub_key, _, line = line[1:].partition(": ")
                    joined = sub_key if key == "(root)" else f"{key}.{sub_key}"
                    problems.append((joined.replace(".[", "["), line))
                else:
                    problems.append((key, line))
        raise ConfigError(problems) from None


def config_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key: the README's config table."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            key = prefix + (field.alias or name)
            annotation = field.annotation
            nested = _nested_model(annotation)
            type_name = _type_name(annotation)
            default = "required" if field.is_required() else _default_text(field)
            rows.append((key, type_name, default, field.description or ""))
            if nested is not None:
                walk(nested, key + ("[]." if type_name.startswith("list") else "."))

    walk(StackConfig, "")
    rows.append(("hfToken", "secret string", "required for gated models", "Hugging Face token (Pulumi secret)"))
    rows.append(("ngcApiKey", "secret string", "unset", "NGC API key; becomes an image pull secret for nvcr.io"))
    rows.append(("apiKeys", "secret list of string", "required while gateway.auth.enabled",
                 "API keys `name:secret` the gateway accepts (HTTP Basic credentials); several for rotation"))
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    args = getattr(annotation, "__args__", ())
    for candidate in (annotation, *args):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    """Readable type for the README table: `int`, `"a" | "b"`, `list of object`, `map`."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin is list:
        return "list of " + _type_name(args[0])
    if origin is dict:
        return "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "see below" if isinstance(value, BaseModel) else json.dumps(value)
    return json.dumps(field.default)


def reference_markdown() -> str:
    lines = ["| key (`tritonllm:`) | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, type_name, default, description in config_reference():
        lines.append(f"| `{key}` | {type_name} | {default} | {description} |".replace("`|", "`\\|"))
    return "\n".join(lines)


def read_pulumi_config() -> StackConfig:
    """Parse the running stack's `tritonllm:` config (as the Pulumi engine or mocks set it)."""
    from pulumi.runtime import config as runtime_config

    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix):]: v for k, v in everything.items() if k.startswith(prefix)}
    return parse_stack_config(raw, {k for k in SECRET_KEYS if raw.get(k) not in (None, "")}, secrets_complete=True)


TABLE_START, TABLE_END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def with_reference_table(readme: str) -> str:
    """README text with the generated config table between its markers."""
    head, _, rest = readme.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{reference_markdown()}\n{TABLE_END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write-readme"]:
        path = sys.argv[2] if len(sys.argv) > 2 else "README.md"
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if TABLE_START not in text:
            sys.exit(f"{path} has no {TABLE_START} marker")
        with open(path, "w", encoding="utf-8") as f:
            f.write(with_reference_table(text))
    else:
        print(reference_markdown())
