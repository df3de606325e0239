"""MultiNodePlatform: what multi-node models need from the cluster (only built when a model sets multiNode).

- The LeaderWorkerSet controller (lws chart, pinned in versions.py; its chart brings the CRD that
  ../shared/reference/crds/leaderworkerset.x-k8s.io_leaderworkersets.yaml holds at v0.10.0).
- The AWS EFA device plugin (eks-charts aws-efa-k8s-device-plugin), advertising
  `vpc.amazonaws.com/efa` on our EFA nodes and tolerating the `nvidia.com/gpu` taint they carry.
- Per pool serving a multi-node model: an EC2NodeClass in ONE private subnet (the pool's single
  zone) with a cluster placement group (Karpenter 1.14's `placementGroupSelector`, which refers to an
  existing group, so the program creates it), and a NodePool of the pool's single instance type.
  Karpenter attaches EFA interfaces itself to instances it launches for pods that request
  `vpc.amazonaws.com/efa` (EKS user guide, "Manage EFA devices on Amazon EKS").
- EFA's security-group rule: EFA traffic must be allowed in and out within the security group
  (EC2 user guide, "Prepare an EFA-enabled security group"). Our nodes carry the EKS cluster security
  group, whose EKS-managed rules already allow all inbound traffic from itself and all outbound to
  0.0.0.0/0; the program adds the explicit all-traffic egress rule to itself that the EFA guide (and
  eksctl's EFA security group) use, rather than relying on the 0.0.0.0/0 rule someone may narrow.
  The ingress self rule is not duplicated (EC2 rejects duplicate rules).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

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
) -> dict[str, Any]:
    """The pool's EC2NodeClass, pinned to one subnet (one AZ) and, optionally, a cluster placement group."""
    manifest = kp.ec2_node_class_manifest(pool, cluster_name, node_role_name, tags)
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
