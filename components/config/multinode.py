"""`models[].multiNode`: one replica over several nodes (checked against its pool in multinode_checks.py)."""

from __future__ import annotations

from pydantic import Field

from components.config.base import (
    ConfigModel,
)

# Groups a multi-node model's update adds before it removes one: the LeaderWorkerSet's
# rolloutStrategy.rollingUpdateConfiguration maxSurge (maxUnavailable 0). LWS v0.10.0 defaults to
# maxSurge 0 / maxUnavailable 1 (pkg/webhooks/leaderworkerset_webhook.go), which deletes the only
# group of a one-replica model before its replacement runs. The pool's maxGpus must hold it.
ROLLOUT_SURGE_GROUPS = 1


class MultiNodeConfig(ConfigModel):
    """One model replica across several GPU nodes (TensorRT-LLM, LeaderWorkerSet, mpirun over SSH)."""

    nodes: int = Field(..., ge=2, le=64, description="Nodes per replica (required): the LeaderWorkerSet group size")
    efa: bool = Field(True, description="Request every EFA interface of the node and run NCCL over EFA")
    placement_group: bool = Field(
        True, description="Launch the pool's nodes in a cluster placement group (lowest inter-node latency)"
    )
