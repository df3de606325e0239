"""`models[].multiNode`: one replica over several nodes (checked against its pool in multinode_checks.py)."""

from __future__ import annotations

from pydantic import Field

from components.config.base import (
    ConfigModel,
)


class MultiNodeConfig(ConfigModel):
    """One model replica across several GPU nodes (TensorRT-LLM, LeaderWorkerSet, mpirun over SSH)."""

    nodes: int = Field(..., ge=2, le=64, description="Nodes per replica (required): the LeaderWorkerSet group size")
    efa: bool = Field(True, description="Request every EFA interface of the node and run NCCL over EFA")
    placement_group: bool = Field(
        True, description="Launch the pool's nodes in a cluster placement group (lowest inter-node latency)"
    )
