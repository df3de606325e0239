"""MultiNodePlatform's pure builders: LWS and EFA device plugin values, the EFA EC2NodeClass and
NodePool (the component, and why, is components/platform/resources/multinode.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from components.catalog import versions
from components.config import NodePoolConfig
from components.platform.builders import karpenter as kp
from components.platform.builders.cluster import SYSTEM_NODE_SELECTOR

LWS_NAMESPACE = "lws-system"
EFA_LABEL = "tritonllm.io/efa"


# --------------------------------------------------------------------------- Helm values (pure)


def lws_values() -> dict[str, Any]:
    """lws chart values: the release's own image (the chart defaults to tag `main`, pull Always), system nodes."""
    return {
        "image": {"manager": {"tag": versions.LEADER_WORKER_SET_IMAGE_TAG, "pullPolicy": "IfNotPresent"}},
        "nodeSelector": dict(SYSTEM_NODE_SELECTOR),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }


def efa_device_plugin_values() -> dict[str, Any]:
    """EFA device plugin values: runs on our EFA nodes only and tolerates their GPU taint."""
    return {
        "nodeSelector": {EFA_LABEL: "true"},
        "tolerations": [*kp.gpu_tolerations(), {"key": "CriticalAddonsOnly", "operator": "Exists"}],
    }


# --------------------------------------------------------------------------- Karpenter objects (pure)


def efa_node_class_manifest(
    pool: NodePoolConfig,
    cluster_name: str,
    node_role_name: str,
    tags: dict[str, str],
    subnet_id: str,
    placement_group_name: str | None,
    snapshot_id: str | None = None,
) -> dict[str, Any]:
    """The pool's EC2NodeClass, pinned to one subnet (one AZ) and, optionally, a cluster placement group;
    `snapshot_id`: the pool's imageCache snapshot (kp.ec2_node_class_manifest)."""
    manifest = kp.ec2_node_class_manifest(pool, cluster_name, node_role_name, tags, snapshot_id)
    spec = manifest["spec"]
    spec["subnetSelectorTerms"] = [{"id": subnet_id}]
    if placement_group_name:
        spec["placementGroupSelector"] = {"name": placement_group_name}
    return manifest


def efa_node_pool_manifest(pool: NodePoolConfig, efa: bool) -> dict[str, Any]:
    """The pool's NodePool: its one instance type in its one zone; EFA nodes labelled for the device plugin."""
    manifest = copy.deepcopy(kp.node_pool_manifest(pool))
    template = manifest["spec"]["template"]
    if efa:
        template["metadata"]["labels"][EFA_LABEL] = "true"
    return manifest


def subnet_in_zone(zone: str, zones: Sequence[str], subnet_ids: Sequence[str]) -> str:
    if zone not in zones:
        raise ValueError(
            f"nodePools zone {zone} is not one of the VPC's zones {list(zones)}; "
            f"use one of them in nodePools[].zones (or raise network.azCount)"
        )
    return subnet_ids[list(zones).index(zone)]


# --------------------------------------------------------------------------- component
