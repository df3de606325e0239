"""`models[].weights`: how a vLLM or llmapi model's pods get its Hugging Face snapshot from the mirror
(docs/weights.md "Per node: the Mountpoint volume")."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from components.config.base import QUANTITY, ConfigModel

# One safetensors shard is at most 5 GB (huggingface_hub/transformers save_pretrained max_shard_size
# default "5GB"): a smaller Mountpoint cache would evict a shard while it is being read.
MIN_NODE_CACHE_BYTES = 10 * 1024**3
_UNITS: dict[str, float] = {"": 1, "m": 0.001, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


class WeightsOptions(ConfigModel):
    """Where the serving pods read the model's mirror (hf-mirror/<repo>/<commit>/) from."""

    delivery: Literal["stage", "mountpoint"] = Field(
        "stage",
        description="stage: each pod copies the mirror to its own emptyDir; mountpoint: one Mountpoint for "
        "Amazon S3 volume per node, shared by the model's pods there, cached on the node's disk "
        "(installs the aws-mountpoint-s3-csi-driver add-on)",
    )
    node_cache_size: str = Field(
        "64Gi",
        pattern=QUANTITY,
        description="delivery mountpoint: the size limit of the Mountpoint cache on each node (an emptyDir on "
        "the node's disk); at least the model's weights, so a second pod reads them from the node",
    )


def quantity_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes quantity of the QUANTITY pattern (binary suffixes or none)."""
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti)?$", quantity)
    assert match, quantity  # the field's QUANTITY pattern admitted it
    return int(float(match[1]) * _UNITS[match[2] or ""])


def config_problems(model: Any) -> list[str]:
    """Cross-checks of models[].weights against the model's backend and runtime (`model`: a ModelConfig,
    typed Any as the other sections' checks are: components.config.models imports this module)."""
    weights = model.weights
    problems: list[str] = []
    if weights.delivery == "stage":
        if "node_cache_size" in weights.model_fields_set:
            problems.append(
                "@weights.nodeCacheSize: only applies to weights.delivery: mountpoint; drop the key or set "
                "delivery: mountpoint"
            )
        return problems
    if model.backend != "vllm" and not model.uses_llmapi:
        problems.append(
            "@weights.delivery: mountpoint applies to models whose server reads the Hugging Face weights (backend "
            "vllm, or trtllm with trtllm.runtime: llmapi); a TensorRT-LLM engine model reads its engine: use "
            "delivery: stage or drop the key"
        )
    if model.multi_node is not None:
        problems.append(
            "@weights.delivery: mountpoint is not available for multiNode models (their pods stage the mirror "
            "themselves); use delivery: stage or drop the key"
        )
    if quantity_bytes(weights.node_cache_size) < MIN_NODE_CACHE_BYTES:
        problems.append(
            f"@weights.nodeCacheSize: {weights.node_cache_size} is below 10Gi, smaller than one 5 GB safetensors "
            "shard with room to spare; set it to at least the model's weights (e.g. 64Gi for an 8B model in bf16)"
        )
    return problems
