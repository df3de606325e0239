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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.catalog import versions
from components.config import NodePoolConfig, StackIdentity
from components.platform.builders import karpenter as kp
from components.platform.builders.multinode import (
    LWS_NAMESPACE,
    efa_device_plugin_values,
    efa_node_class_manifest,
    efa_node_pool_manifest,
    lws_values,
    subnet_in_zone,
)
from components.platform.resources.cluster import ClusterRef
from components.platform.resources.k8s_objects import k8s_object
from components.tokens import component_type


def _subnet_in_zone(zone: str, zones_and_subnet_ids: list[Any]) -> str:
    """`subnet_in_zone` over the resolved [availability zones, private subnet ids] of `Output.all`."""
    zones, subnet_ids = zones_and_subnet_ids
    return subnet_in_zone(zone, zones, subnet_ids)


def _efa_node_class(
    pool: NodePoolConfig, cluster_name: str, tags: dict[str, str], role_subnet_group: list[Any]
) -> dict[str, Any]:
    """`efa_node_class_manifest` over the resolved [node role name, subnet id, placement group name or None,
    imageCache snapshot id or None]."""
    node_role_name, subnet_id, placement_group_name, snapshot_id = role_subnet_group
    return efa_node_class_manifest(
        pool, cluster_name, node_role_name, tags, subnet_id, placement_group_name, snapshot_id
    )


@dataclass(frozen=True)
class MultiNodePlatformArgs:
    stack: StackIdentity
    pools: Sequence[NodePoolConfig]  # the pools that serve multi-node models (one zone, one type each)
    efa_pools: frozenset[str]  # of those, the ones whose models run NCCL over EFA
    placement_group_pools: frozenset[str]  # and the ones launched in a cluster placement group
    cluster: ClusterRef
    availability_zones: pulumi.Input[Sequence[str]]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    karpenter_node_role_name: pulumi.Input[str]
    karpenter_ready: Sequence[pulumi.Resource]  # Karpenter's CRDs and controller
    # pool name -> the snapshot id its data volumes start from (nodePools[].imageCache; NodeImageCache)
    image_snapshots: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class MultiNodePlatform(pulumi.ComponentResource):
    """LWS controller, EFA device plugin, per-pool placement group + EC2NodeClass + NodePool, EFA SG rule.

    Attributes: lws_release, efa_release (None without EFA), node_classes, node_pools, placement_groups.
    Karpenter provides the node role and the CRDs (its Helm release); it skips these pools itself.
    """

    def __init__(self, name: str, args: MultiNodePlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "MultiNodePlatform"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.k8s_provider)
        system = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[args.cluster.system_node_group])
        )

        self.lws_release = k8s.helm.v3.Release(
            f"{name}-lws",
            name="lws",
            namespace=LWS_NAMESPACE,
            create_namespace=True,
            **kp.chart_source(versions.LEADER_WORKER_SET),
            values=lws_values(),
            opts=system,
        )

        efa = args.efa_pools
        self.efa_release = None
        if efa:
            self.efa_release = k8s.helm.v3.Release(
                f"{name}-efa-device-plugin",
                name="aws-efa-k8s-device-plugin",
                namespace="kube-system",
                **kp.chart_source(versions.AWS_EFA_DEVICE_PLUGIN),
                values=efa_device_plugin_values(),
                opts=system,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-efa-self-egress",
                security_group_id=args.cluster.node_security_group_id,
                referenced_security_group_id=args.cluster.node_security_group_id,
                ip_protocol="-1",
                description="EFA: all traffic to the same security group",
                opts=child,
            )

        after_crds = pulumi.ResourceOptions.merge(
            k8s_opts,
            pulumi.ResourceOptions(depends_on=[*args.karpenter_ready, args.cluster.node_security_group_discovery_tag]),
        )
        instance_tags = {"tritonllm:stack": pulumi.get_stack(), **args.stack.tags}
        placement = args.placement_group_pools
        self.node_classes: dict[str, k8s.apiextensions.CustomResource] = {}
        self.node_pools: dict[str, pulumi.CustomResource] = {}
        self.placement_groups: dict[str, aws.ec2.PlacementGroup] = {}
        for pool in sorted(args.pools, key=lambda p: p.name):
            pool_name = pool.name
            (zone,) = pool.zones
            subnet_id = pulumi.Output.all(args.availability_zones, args.private_subnet_ids).apply(
                partial(_subnet_in_zone, zone)
            )
            pg_name: pulumi.Output[str | None] = pulumi.Output.from_input(None)
            if pool_name in placement:
                group = aws.ec2.PlacementGroup(
                    f"{name}-{pool_name}-pg", strategy="cluster", tags={"tritonllm/node-pool": pool_name}, opts=child
                )
                self.placement_groups[pool_name] = group
                pg_name = group.name
            snapshot_id = pulumi.Output.from_input(args.image_snapshots.get(pool_name))
            node_class = pulumi.Output.all(args.karpenter_node_role_name, subnet_id, pg_name, snapshot_id).apply(
                partial(_efa_node_class, pool, args.stack.name, instance_tags)
            )
            self.node_classes[pool_name] = k8s.apiextensions.CustomResource(
                f"{name}-nodeclass-{pool_name}",
                api_version=f"{kp.NODECLASS_GROUP}/v1",
                kind="EC2NodeClass",
                metadata={"name": pool_name},
                spec=node_class["spec"],
                opts=after_crds,
            )
            manifest = efa_node_pool_manifest(pool, pool_name in efa)
            self.node_pools[pool_name] = k8s_object(
                f"{name}-nodepool-{pool_name}",
                manifest,
                pulumi.ResourceOptions.merge(
                    after_crds, pulumi.ResourceOptions(depends_on=[self.node_classes[pool_name]])
                ),
            )

        self.register_outputs({"node_pools": sorted(self.node_pools)})
