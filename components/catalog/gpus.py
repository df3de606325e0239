"""NVIDIA GPU EC2 instance types: GPUs per instance, GPU model and architecture.

Config validation uses it (does TP x PP fit on one node of a NodePool?) and the
TRT-LLM engine build keys its cache on the GPU architecture (engines are
compiled per architecture).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    name: str  # as AWS names it, e.g. "L40S"
    memory_gib: int
    compute_capability: str  # e.g. "8.9": what a TensorRT engine is built for


A10G = GpuModel("A10G", 24, "8.6")
L4 = GpuModel("L4", 24, "8.9")
L40S = GpuModel("L40S", 48, "8.9")
T4 = GpuModel("T4", 16, "7.5")
A100_40 = GpuModel("A100", 40, "8.0")
A100_80 = GpuModel("A100-80GB", 80, "8.0")
H100 = GpuModel("H100", 80, "9.0")
H200 = GpuModel("H200", 141, "9.0")


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    family: str
    gpus: int
    gpu: GpuModel
    vcpus: int
    memory_gib: int
    # EFA interfaces the type supports (one per network card); 0 = no EFA. Counts from the
    # EC2 User Guide "Network cards" / "EFA supported instance types" tables; which types
    # support EFA at all is checked against the EFA device plugin chart's
    # supportedInstanceLabels (tests/multinode/test_platform.py).
    efa_interfaces: int = 0
    # GPUDirect RDMA over EFA (FI_EFA_USE_DEVICE_RDMA=1): p4d/p4de/p5 family only.
    efa_rdma: bool = False


def _g_family(family: str, gpu: GpuModel) -> list[GpuInstanceType]:
    # g5 / g6 / g6e share one size ladder: (size, gpus, vCPU, memory GiB).
    sizes = [
        ("xlarge", 1, 4, 16),
        ("2xlarge", 1, 8, 32),
        ("4xlarge", 1, 16, 64),
        ("8xlarge", 1, 32, 128),
        ("12xlarge", 4, 48, 192),
        ("16xlarge", 1, 64, 256),
        ("24xlarge", 4, 96, 384),
        ("48xlarge", 8, 192, 768),
    ]
    if family == "g6e":  # g6e doubles host memory
        sizes = [(s, g, c, m * 2) for s, g, c, m in sizes]
    # 8xlarge and up have EFA (one network card each), except g6e.24xlarge (2) and g6e.48xlarge (4).
    efa = {"8xlarge": 1, "12xlarge": 1, "16xlarge": 1, "24xlarge": 1, "48xlarge": 1}
    if family == "g6e":
        efa.update({"24xlarge": 2, "48xlarge": 4})
    return [GpuInstanceType(f"{family}.{s}", family, g, gpu, c, m, efa.get(s, 0)) for s, g, c, m in sizes]


INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    t.name: t
    for t in [
        *_g_family("g5", A10G),
        *_g_family("g6", L4),
        *_g_family("g6e", L40S),
        GpuInstanceType("g4dn.xlarge", "g4dn", 1, T4, 4, 16),
        GpuInstanceType("g4dn.2xlarge", "g4dn", 1, T4, 8, 32),
        GpuInstanceType("g4dn.4xlarge", "g4dn", 1, T4, 16, 64),
        GpuInstanceType("g4dn.8xlarge", "g4dn", 1, T4, 32, 128, 1),
        GpuInstanceType("g4dn.12xlarge", "g4dn", 4, T4, 48, 192, 1),
        GpuInstanceType("g4dn.16xlarge", "g4dn", 1, T4, 64, 256, 1),
        GpuInstanceType("p4d.24xlarge", "p4d", 8, A100_40, 96, 1152, 4, True),
        GpuInstanceType("p4de.24xlarge", "p4de", 8, A100_80, 96, 1152, 4, True),
        GpuInstanceType("p5.48xlarge", "p5", 8, H100, 192, 2048, 32, True),
        GpuInstanceType("p5e.48xlarge", "p5e", 8, H200, 192, 2048, 32, True),
        GpuInstanceType("p5en.48xlarge", "p5en", 8, H200, 192, 2048, 16, True),
    ]
}

FAMILIES: dict[str, list[GpuInstanceType]] = {}
for _t in INSTANCE_TYPES.values():
    FAMILIES.setdefault(_t.family, []).append(_t)


def instance_types_for(families: list[str], types: list[str]) -> list[GpuInstanceType]:
    """The catalog entries a NodePool may launch: explicit types, else every size of its families."""
    if types:
        return [INSTANCE_TYPES[t] for t in types]
    return [t for f in families for t in FAMILIES[f]]
