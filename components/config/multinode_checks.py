"""`models[].multiNode` against the node pool that serves it, before any resource exists.

The shape rules follow TensorRT-LLM's mapping (tensorrt_llm/mapping.py: rank = pp_rank * tp_size +
tp_rank): ranks are placed node by node, so a tensor-parallel group stays inside one node when
tensorParallel divides the GPUs of a node, and pipeline stages span the nodes.
"""

from __future__ import annotations

from components.catalog import gpus
from components.config.models import ModelConfig
from components.config.node_pools import NodePoolConfig

SUPPORTED_BACKENDS = ("trtllm",)


def multi_node_problems(index: int, model: ModelConfig, pool: NodePoolConfig, region: str) -> list[str]:
    """One "@key: message and fix" line per problem with a multi-node model and the pool that serves it."""
    key = f"@models[{index}]"
    mn = model.multi_node
    assert mn is not None
    problems: list[str] = []
    if model.backend not in SUPPORTED_BACKENDS:
        problems.append(
            f"{key}.multiNode: backend {model.backend} is not supported across nodes (supported: "
            f"{', '.join(SUPPORTED_BACKENDS)}); Triton's vLLM backend has no multi-node launcher here "
            "(vLLM needs a Ray cluster over the group). Use backend: trtllm, or drop multiNode and fit the "
            "model on one node (a larger instance type, tensorParallel up to its GPU count)"
        )
    types = pool.catalog_types
    if len(types) != 1:
        problems.append(
            f"{key}.nodePool: multi-node needs a pool of exactly one instance type, but nodePool {pool.name!r} "
            f"allows {[t.name for t in types][:6]}{'...' if len(types) > 6 else ''}; set "
            f"instanceTypes: [<one type>] (and no instanceFamilies) on that pool"
        )
        return problems
    itype = types[0]
    if len(pool.zones) != 1:
        problems.append(
            f"{key}.nodePool: nodePool {pool.name!r} must stay in one availability zone for a multi-node group "
            f"(placement group, EFA), but it has zones {pool.zones or 'unset (every zone)'}; set "
            f"zones: [{region}a] on that pool"
        )
    gpn = itype.gpus
    world = model.parallel_gpus
    if world != mn.nodes * gpn:
        problems.append(
            f"{key}.multiNode.nodes: tensorParallel x pipelineParallel = {model.tensor_parallel} x "
            f"{model.pipeline_parallel} = {world} GPUs, but {mn.nodes} nodes x {gpn} GPUs of {itype.name} = "
            f"{mn.nodes * gpn}; make them equal (e.g. tensorParallel {gpn}, pipelineParallel {mn.nodes})"
        )
    elif gpn % model.tensor_parallel:
        problems.append(
            f"{key}.tensorParallel: {model.tensor_parallel} does not divide the {gpn} GPUs of a {itype.name} node, "
            "so a tensor-parallel group would span nodes; keep tensorParallel within a node (a divisor of "
            f"{gpn}) and spread pipelineParallel across nodes"
        )
    if model.gpus is not None and model.gpus != world:
        problems.append(
            f"{key}.gpus: multi-node replicas use exactly tensorParallel x pipelineParallel "
            f"({world}) GPUs; drop the gpus key"
        )
    if mn.efa and itype.efa_interfaces == 0:
        efa_types = sorted(t for t in _efa_types() if t.startswith(itype.family + "."))
        problems.append(
            f"{key}.multiNode.efa: {itype.name} has no EFA interface; use an EFA type "
            f"({', '.join(efa_types) or 'e.g. g6e.12xlarge, p4d.24xlarge'}) or set efa: false (NCCL over TCP)"
        )
    if model.min_replicas * mn.nodes * gpn > pool.max_gpus:
        problems.append(
            f"{key}.minReplicas: {model.min_replicas} groups x {mn.nodes * gpn} GPUs exceeds nodePool "
            f"{pool.name!r} maxGpus ({pool.max_gpus}); raise maxGpus"
        )
    return problems


def _efa_types() -> list[str]:
    return [t.name for t in gpus.INSTANCE_TYPES.values() if t.efa_interfaces]
