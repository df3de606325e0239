"""Every pinned chart, image and addon version, in one place.

Chart versions match the upstream default values and CRDs kept in
`../shared/reference/`, so tests validate against exactly what deploys.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Pulumi ------------------------------------------------------------------
# The oldest Pulumi CLI that can run this program: pulumi.Stash (the cluster creator's record,
# components/platform/resources/cluster.py) is a resource of the engine's builtin provider, which
# knows it from pulumi/pulumi v3.208.0 (pkg/resource/deploy/builtins.go). `tritonllm deploy` holds the
# CLI to it through the Automation API's own check (pulumi/automation/_cmd.py PulumiCommand(version=...),
# which raises InvalidVersionError below it), before anything runs; README.md and docs/deploy.md say it.
PULUMI_CLI_MIN_VERSION = "3.208.0"

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
# EKS managed add-ons installed only when a config key asks for them (the loop over EKS_ADDONS in
# components/platform/resources/cluster.py installs every one above unconditionally).
# amazon-cloudwatch-observability (monitoring.cloudwatch.enabled): v4.10.3-eksbuild.1 packages the
# aws-observability/helm-charts release amazon-cloudwatch-observability-4.10.3 (tag of that name; its
# values.yaml is what components/observability/builders/container_insights.py configures), the newest 4.x
# build and one in use in April 2026 (aws-observability/application-signals-demo#334 pins it, after the
# 5.3.0 agent ClusterRole change there). AWS lists the add-on's builds per Kubernetes version only through
# the API (not reachable from where this was written): the preview's add-on check and `tritonllm doctor`
# compare every pin here with what EKS publishes for EKS_VERSION (docs/capacity.md "EKS add-on builds").
# aws-mountpoint-s3-csi-driver (models[].weights.delivery: mountpoint): the Mountpoint for Amazon S3 CSI
# driver v2.7.0 (awslabs/mountpoint-s3-csi-driver tag v2.7.0, June 2026: Mountpoint 1.22.3, chart kubeVersion
# >=1.30), the v2 line whose Mountpoint Pods are shared per node (docs/MOUNTPOINT_POD_SHARING.md) and take
# pod-level EKS Pod Identity. The eksbuild number is AWS's and could not be read from here: the preview's
# add-on check and `tritonllm doctor` compare it with what EKS publishes for EKS_VERSION, as for the others.
OPTIONAL_EKS_ADDONS: dict[str, str] = {
    "amazon-cloudwatch-observability": "v4.10.3-eksbuild.1",
    "aws-mountpoint-s3-csi-driver": "v2.7.0-eksbuild.1",
}

# Karpenter's alias for the EKS-optimized AMIs (`<family>@<version>`); for GPU instance types
# the AL2023 alias resolves to the NVIDIA variant (drivers + container toolkit preinstalled).
KARPENTER_AMI_ALIAS_FAMILY = {"AL2023": "al2023", "Bottlerocket": "bottlerocket"}
# Default AMI release per family (`nodePools[].amiVersion` overrides it). `@latest` drifts every
# node on each AMI release (Karpenter v1.14 docs, concepts/nodeclasses.md "not recommended for
# production"), so the default is a dated release: awslabs/amazon-eks-ami release v20260714
# (CHANGELOG.md: amazon-eks-node-al2023-x86_64-nvidia-1.34-v20260714, Kubernetes 1.34.9).
# Bottlerocket has no default here: its Kubernetes 1.34 variants ship from v1.47.0 (release notes,
# "Add new kubernetes 1.34 variants (#4631)"; components/config/node_pools.py IMAGE_CACHE_SINCE), but
# which later release to pin (its fixes, its presence in every region's SSM parameters) was not checked,
# so a Bottlerocket pool must name its version (config validation says so).
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
# Scale to zero (models[].minReplicas: 0): KEDA and its HTTP add-on (interceptor 0.15.0: HTTP/2 and h2c,
# so gRPC streams pass). Installed only when a model scales to zero.
KEDA = Chart("keda", "2.20.2", "https://kedacore.github.io/charts")
KEDA_HTTP_ADD_ON = Chart("keda-add-ons-http", "0.15.0", "https://kedacore.github.io/charts")

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
    KEDA,
    KEDA_HTTP_ADD_ON,
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


# One Triton image per serving runtime, each the newest NGC release whose sources we could read
# for that runtime (docs/versions.md has the table and the sources; tests/unit/test_versions.py
# holds every user to its runtime's pin). NVIDIA/TensorRT-LLM removed the TensorRT-engine backend
# and Triton's inflight_batcher_llm backend on main in July 2026 (PRs 15907, 15918; migration
# guide docs/source/legacy/tensorrt-backend-removal.md), so the `engine` runtime cannot follow
# TensorRT-LLM past its last release that ships them, while `llmapi` and vLLM move on.
@dataclass(frozen=True)
class TritonImage:
    release: str  # NGC tritonserver release, YY.MM
    flavour: str  # the image tag's suffix
    framework: str  # what the image serves with
    framework_version: str  # its version in that release (server docs/introduction/compatibility.md)
    # No digest pinned yet: NGC (nvcr.io) cannot be reached from where this was written, and a digest
    # copied from a third party is not a pin (docs/security.md "Images"). Set it after reading it.
    digest: str | None = None

    @property
    def image(self) -> str:
        return Image("nvcr.io/nvidia/tritonserver", f"{self.release}-{self.flavour}", self.digest).ref

    @property
    def ref(self) -> str:  # as Image's: what manifests use
        return self.image


# vLLM runtime: Triton 26.01 (server r26.01 build.py `vllm_version` 0.13.0, vllm_backend r26.01).
# vllm_backend has no readable release branch after r26.01 here, so newer vLLM images are not used.
TRITON_VLLM = TritonImage("26.01", "vllm-python-py3", "vLLM", "0.13.0")
# trtllm.runtime llmapi: Triton 26.02, TensorRT-LLM 1.1.0 (tensorrtllm_backend r26.02 Dockerfile:
# release/1.1, tensorrt_llm==1.1.0). 26.03+ carry TensorRT-LLM 1.2.x, whose sources we could not read.
TRITON_TRTLLM_LLMAPI = TritonImage("26.02", "trtllm-python-py3", "TensorRT-LLM", "1.1.0")
# trtllm.runtime engine: Triton 25.12, TensorRT-LLM 1.1.0. Every trtllm image up to 26.07
# (TensorRT-LLM 1.2.1) still ships the engine backend, but from 26.01 on its C++ backend is built
# from triton-inference-server/TensorRT-LLM fork commits we could not read (docs/versions.md).
TRITON_TRTLLM_ENGINE = TritonImage("25.12", "trtllm-python-py3", "TensorRT-LLM", "1.1.0")

TRITON_VLLM_IMAGE = TRITON_VLLM.image
VLLM_VERSION = TRITON_VLLM.framework_version
TRITON_TRTLLM_LLMAPI_IMAGE = TRITON_TRTLLM_LLMAPI.image
TENSORRT_LLM_LLMAPI_VERSION = TRITON_TRTLLM_LLMAPI.framework_version
TRITON_TRTLLM_ENGINE_IMAGE = TRITON_TRTLLM_ENGINE.image
TENSORRT_LLM_ENGINE_VERSION = TRITON_TRTLLM_ENGINE.framework_version

# The serving runtimes: backend vllm, and backend trtllm with trtllm.runtime llmapi or engine.
RUNTIMES = ("vllm", "llmapi", "engine")


def triton_image(runtime: str) -> str:
    """The Triton image a serving runtime runs in (read at call time, so tests can patch a pin)."""
    images = {"vllm": TRITON_VLLM_IMAGE, "llmapi": TRITON_TRTLLM_LLMAPI_IMAGE, "engine": TRITON_TRTLLM_ENGINE_IMAGE}
    return images[runtime]


# Small image with the AWS CLI, used by init containers that stage from S3.
AWS_CLI = Image("public.ecr.aws/aws-cli/aws-cli", "2.31.39")
AWS_CLI_IMAGE = AWS_CLI.ref
# Plain Python for `tritonllm loadtest`'s in-cluster Job: the load generator is the project's own
# standard-library client code (tritonllm/loadtest_worker.py + _llm_io.py), mounted from a ConfigMap.
# ECR Public's mirror of the Docker official image (no Docker Hub pull limits from EKS nodes).
PYTHON = Image("public.ecr.aws/docker/library/python", "3.12.12-slim")
PYTHON_IMAGE = PYTHON.ref

# Every image a pod of ours runs; the checkov test (tests/unit/test_pod_security.py) accepts an
# image without a digest only while it is listed here without one.
# (The multi-node image and `tritonllm nccl-test`'s run the image the program builds, pinned by digest.)
IMAGES = (TRITON_VLLM, TRITON_TRTLLM_LLMAPI, TRITON_TRTLLM_ENGINE, AWS_CLI, PYTHON)

# --- The serving images the program builds (components/serving/builders/serving_image.py) -------------
# Multi-node TensorRT-LLM needs NCCL over EFA between the nodes, and the stock Triton image has neither
# libfabric nor the aws-ofi-nccl plugin (server r25.12 build.py installs neither). The program builds
# images/multinode/Dockerfile on the model's Triton image in AWS CodeBuild and pushes it to its own ECR
# repository, tagged by the content key of everything below.
#
# AWS EFA installer: 1.51.0 (2026-10-22), the newest in AWS's release notes
# (docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-changelog.html). It ships libfabric 2.7.0amzn2.0, Open
# MPI 4.1 (/opt/amazon/openmpi) and the Amazon OFI NCCL plugin 1.22.0 (aws-ofi-nccl, /opt/amazon/ofi-nccl;
# the EC2 user guide's efa-start.html: "The aws-ofi-nccl plugin is installed in the /opt/amazon/ofi-nccl
# directory"), so the image does not build aws-ofi-nccl from source as the seed's 2024 containerfile did.
EFA_INSTALLER_VERSION = "1.51.0"
EFA_INSTALLER_LIBFABRIC = "2.7.0amzn2.0"  # what 1.51.0 ships (release notes); for the docs and the image label
EFA_INSTALLER_OFI_NCCL = "1.22.0"  # aws-ofi-nccl release the installer ships; v1.21.1's notes: NCCL >= 2.17.1
# CUDA/NCCL compatibility with the base: Triton 25.12's trtllm image is CUDA 13 (server r25.12 build.py copies
# libcudart.so.13) and keeps its own NCCL (not read here: NGC releases since 2023 ship NCCL >= 2.17.1, the
# plugin's floor). aws-ofi-nccl 1.21.1+ has no hard libcudart
# dependency (release notes: "CUDA Runtime API calls in the GIN path now use their CUDA Driver API
# equivalents"), so the installer's plugin does not tie the image to a CUDA major; images/multinode/
# verify-image.sh fails the build if the plugin's or libfabric's libraries do not resolve in the image.
# Only Open MPI 4.1 from the installer (`--mpi=openmpi4`, efa-start.html): its libmpi.so.40 replaces the
# HPC-X Open MPI 4.1 the Triton image's TensorRT-LLM (mpi4py) runs on, as the seed's containerfile does.
EFA_INSTALLER_MPI = "openmpi4"
# NVIDIA/nccl-tests, built in the image against its own NCCL and the installer's Open MPI, so
# `tritonllm nccl-test` measures the very libraries serving uses (the tag AWS's nccl-tests image carries).
NCCL_TESTS_VERSION = "v2.16.4"
# GPU architectures nccl-tests is compiled for: every compute capability in components/catalog/gpus.py
# at or above 8.0 (multi-node pools are p4d/p4de/p5/p5e/g5/g6/g6e; 7.5 = g4dn has no EFA).
NCCL_TESTS_GENCODE = ("80", "86", "89", "90")
# OpenSSH from the base image's Ubuntu 24.04 (noble) archive: the 9.6p1 series with noble's security
# updates (packages.ubuntu.com/noble/openssh-server). An exact Debian revision would vanish from the
# mirror at the next security update and break the build, so the Dockerfile checks the series instead.
OPENSSH_VERSION_PREFIX = "1:9.6p1-3ubuntu13"

# AWS CodeBuild runs the docker build (privileged mode: docker-in-docker; docs.aws.amazon.com/codebuild/
# latest/userguide/sample-docker.html). The curated Amazon Linux 2023 standard image 5.0 has Docker 26
# (userguide/ec2-compute-images.html); BUILD_GENERAL1_LARGE: 8 vCPUs, 16 GB memory, 128 GB disk
# (userguide/build-env-ref-compute-types.html), room for a ~30 GB uncompressed base image and its layers.
CODEBUILD_IMAGE = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
CODEBUILD_COMPUTE_TYPE = "BUILD_GENERAL1_LARGE"
