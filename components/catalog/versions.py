"""Every pinned chart, image and addon version, in one place.

Chart versions match the upstream default values and CRDs kept in
`../shared/reference/`, so tests validate against exactly what deploys.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Kubernetes / EKS -------------------------------------------------------
EKS_VERSION = "1.34"

# EKS managed addons, each pinned to a build published for EKS_VERSION. Where AWS's user guide
# lists a build for 1.34 we use it (coredns: managing-coredns.html "CoreDNS versions";
# kube-proxy: managing-kube-proxy.html "kube-proxy versions"); the others are not listed per
# Kubernetes version there: check with `aws eks describe-addon-versions --kubernetes-version 1.34
# --addon-name <name>` before moving them.
EKS_ADDONS: dict[str, str] = {
    "vpc-cni": "v1.20.4-eksbuild.1",
    "coredns": "v1.12.4-eksbuild.1",
    "kube-proxy": "v1.34.1-eksbuild.2",
    "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
    "aws-ebs-csi-driver": "v1.51.1-eksbuild.1",
    "aws-efs-csi-driver": "v2.1.13-eksbuild.1",
}

# Karpenter's alias for the EKS-optimized AMIs (`<family>@<version>`); for GPU instance types
# the AL2023 alias resolves to the NVIDIA variant (drivers + container toolkit preinstalled).
KARPENTER_AMI_ALIAS_FAMILY = {"AL2023": "al2023", "Bottlerocket": "bottlerocket"}
# Default AMI release per family (`nodePools[].amiVersion` overrides it). `@latest` drifts every
# node on each AMI release (Karpenter v1.14 docs, concepts/nodeclasses.md "not recommended for
# production"), so the default is a dated release: awslabs/amazon-eks-ami release v20260714
# (CHANGELOG.md: amazon-eks-node-al2023-x86_64-nvidia-1.34-v20260714, Kubernetes 1.34.9).
# Bottlerocket has no default here: we could not verify a Bottlerocket release for 1.34, so a
# Bottlerocket pool must name its version (config validation says so).
KARPENTER_AMI_VERSION: dict[str, str | None] = {"AL2023": "v20260714", "Bottlerocket": None}


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repo: str  # Helm repository URL, or an oci:// registry prefix

    @property
    def reference_values_file(self) -> str:
        """File name of this chart's default values in ../shared/reference/helm-values/."""
        return f"{self.name}-{self.version}.yaml"


KARPENTER = Chart("karpenter", "1.14.1", "oci://public.ecr.aws/karpenter")
# Karpenter's CRDs as their own chart, same version as the controller: Helm never upgrades CRDs
# from a chart's crds/ directory (Karpenter v1.14 docs, upgrading/upgrade-guide.md "CRD Upgrades").
# No reference values file exists for it in ../shared/reference; its only value upstream
# (charts/karpenter-crd/values.yaml at v1.14.1) is `additionalAnnotations`, which we do not set.
KARPENTER_CRD = Chart("karpenter-crd", "1.14.1", "oci://public.ecr.aws/karpenter")
NVIDIA_DEVICE_PLUGIN = Chart("nvidia-device-plugin", "0.20.0", "https://nvidia.github.io/k8s-device-plugin")
DCGM_EXPORTER = Chart("dcgm-exporter", "4.8.2", "https://nvidia.github.io/dcgm-exporter/helm-charts")
KUBE_PROMETHEUS_STACK = Chart("kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts")
PROMETHEUS_ADAPTER = Chart("prometheus-adapter", "5.3.0", "https://prometheus-community.github.io/helm-charts")
AWS_LOAD_BALANCER_CONTROLLER = Chart("aws-load-balancer-controller", "3.5.0", "https://aws.github.io/eks-charts")
NGINX_GATEWAY_FABRIC = Chart("nginx-gateway-fabric", "2.6.7", "oci://ghcr.io/nginx/charts")
LEADER_WORKER_SET = Chart("lws", "0.10.0", "oci://registry.k8s.io/lws/charts")
# The lws chart's default image tag is `main` with pullPolicy Always: pin the release's image instead.
LEADER_WORKER_SET_IMAGE_TAG = "v0.10.0"
AWS_EFA_DEVICE_PLUGIN = Chart("aws-efa-k8s-device-plugin", "v0.5.30", "https://aws.github.io/eks-charts")

ALL_CHARTS = (
    KARPENTER,
    NVIDIA_DEVICE_PLUGIN,
    DCGM_EXPORTER,
    KUBE_PROMETHEUS_STACK,
    PROMETHEUS_ADAPTER,
    AWS_LOAD_BALANCER_CONTROLLER,
    NGINX_GATEWAY_FABRIC,
    LEADER_WORKER_SET,
    AWS_EFA_DEVICE_PLUGIN,
)

# Gateway API CRDs (standard channel) that NGINX Gateway Fabric 2.6.7 builds against.
GATEWAY_API_VERSION = "v1.5.1"

# --- Container images -------------------------------------------------------
DIGEST = r"^sha256:[0-9a-f]{64}$"


@dataclass(frozen=True)
class Image:
    """A container image pinned by tag and, once confirmed from its registry, by digest.

    `ref` is what manifests use: `repository:tag@sha256:...` when a digest is pinned (the
    runtime pulls by digest, the tag stays for people reading it), else `repository:tag`.
    Find a digest with `crane digest <repository>:<tag>` or `docker buildx imagetools inspect`
    (the manifest list's digest, so every platform resolves); never copy one from elsewhere.
    """

    repository: str
    tag: str
    digest: str | None = None

    def __post_init__(self) -> None:
        import re

        if self.digest is not None and not re.match(DIGEST, self.digest):
            raise ValueError(f"{self.repository}:{self.tag}: digest must be sha256:<64 hex>, got {self.digest!r}")

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


TRITON_RELEASE = "25.12"
# No digest pinned yet for these: NGC (nvcr.io), ECR Public and Docker Hub registries cannot be
# reached from where this was written, and a digest copied from a third party is not a pin
# (docs/security.md "Images"). Set `digest=` here after reading it from the registry.
TRITON_TRTLLM = Image("nvcr.io/nvidia/tritonserver", f"{TRITON_RELEASE}-trtllm-python-py3")
TRITON_VLLM = Image("nvcr.io/nvidia/tritonserver", f"{TRITON_RELEASE}-vllm-python-py3")
TRITON_TRTLLM_IMAGE = TRITON_TRTLLM.ref
TRITON_VLLM_IMAGE = TRITON_VLLM.ref
# TensorRT-LLM version inside TRITON_TRTLLM_IMAGE (Triton compatibility matrix).
TENSORRT_LLM_VERSION = "1.1.0"
# Small image with the AWS CLI, used by init containers that stage from S3.
AWS_CLI = Image("public.ecr.aws/aws-cli/aws-cli", "2.31.39")
AWS_CLI_IMAGE = AWS_CLI.ref
# Plain Python for `tritonllm loadtest`'s in-cluster Job: the load generator is the project's own
# standard-library client code (tritonllm/loadtest_worker.py + _llm_io.py), mounted from a ConfigMap.
# ECR Public's mirror of the Docker official image (no Docker Hub pull limits from EKS nodes).
PYTHON = Image("public.ecr.aws/docker/library/python", "3.12.12-slim")
PYTHON_IMAGE = PYTHON.ref
# AWS's NCCL test image (CUDA, NCCL, EFA installer: libfabric + Open MPI, aws-ofi-nccl, nccl-tests),
# published from aws-samples/awsome-distributed-training micro-benchmarks/nccl-tests; used only by
# `python -m tritonllm nccl-test`.
NCCL_TESTS = Image("public.ecr.aws/hpc-cloud/nccl-tests", "cuda12.8.1-efa1.42.0-ofiv1.16.0-ncclv2.27.5-1-testsv2.16.4")
NCCL_TESTS_IMAGE = NCCL_TESTS.ref

# Every image a pod of ours runs; the checkov test (tests/unit/test_pod_security.py) accepts an
# image without a digest only while it is listed here without one.
IMAGES = (TRITON_TRTLLM, TRITON_VLLM, AWS_CLI, PYTHON, NCCL_TESTS)
