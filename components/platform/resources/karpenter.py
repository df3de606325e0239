"""Karpenter (v1 APIs) and the NVIDIA device plugin: GPU nodes on demand.

IAM follows Karpenter's published getting-started CloudFormation for v1.14
(controller policy scoped by the cluster's tags, node role with the four AWS
managed policies, SQS interruption queue fed by EventBridge). The controller gets
its role through EKS Pod Identity and runs on the system node group. Each
`nodePools` entry becomes an EC2NodeClass + NodePool of the same name: NVIDIA AMI
(Karpenter's alias picks the GPU variant with drivers), IMDSv2 only, encrypted gp3
root volume, all private subnets, and the `nvidia.com/gpu` taint so only pods that
ask for GPUs land there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.catalog import versions
from components.config import CPU_NODE_POOL_NAME, CpuNodePoolConfig, NodePoolConfig, StackIdentity
from components.platform.builders.karpenter import (
    INTERRUPTION_QUEUE_TARGET_ID,
    NAMESPACE,
    NODE_ROLE_POLICIES,
    NODECLASS_GROUP,
    RELEASE_NAME,
    SERVICE_ACCOUNT,
    chart_source,
    controller_policy_document,
    cpu_node_class_manifest,
    cpu_node_pool_manifest,
    device_plugin_values,
    ec2_node_class_manifest,
    interruption_event_patterns,
    interruption_queue_policy,
    karpenter_values,
    node_pool_manifest,
)
from components.platform.resources import iam_roles
from components.platform.resources.cluster import ClusterRef
from components.platform.resources.k8s_objects import k8s_object
from components.tokens import component_type


def _node_class(pool: NodePoolConfig, cluster_name: str, tags: dict[str, str], role_snapshot: list[Any]) -> dict:
    """`ec2_node_class_manifest` over the resolved [node role name, imageCache snapshot id or None]."""
    node_role_name, snapshot_id = role_snapshot
    return ec2_node_class_manifest(pool, cluster_name, node_role_name, tags, snapshot_id)


@dataclass(frozen=True)
class KarpenterArgs:
    stack: StackIdentity
    node_pools: Sequence[NodePoolConfig]  # GPU pools with a standard NodePool (not the multi-node ones)
    cpu_node_pool: CpuNodePoolConfig
    cluster: ClusterRef
    # pool name -> the snapshot id its data volumes start from (nodePools[].imageCache; NodeImageCache)
    image_snapshots: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Taints new GPU nodes start with until an add-on's node agent removes them (node_startup_taints)
    startup_taints: Sequence[Mapping[str, str]] = ()


class Karpenter(pulumi.ComponentResource):
    """Karpenter controller + interruption handling + GPU NodePools + NVIDIA device plugin.

    Attributes: node_pools (pool name -> NodePool CustomResource), node_classes
    (pool name -> EC2NodeClass CustomResource), release (Helm release),
    device_plugin (Helm release), node_role, controller_role, queue.
    Node classes find the private subnets by the discovery tag Network puts on them.
    """

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "Karpenter"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.k8s_provider)
        cluster_name = args.stack.name

        # --- Node role (Karpenter makes the instance profile from it) + access entry
        self.node_role, node_policies = iam_roles.service_role(
            f"{name}-karpenter-node",
            service="ec2.amazonaws.com",
            description=f"Nodes Karpenter launches in {cluster_name}",
            managed_policies=NODE_ROLE_POLICIES,
            partition=args.cluster.partition,
            opts=child,
        )
        node_access = aws.eks.AccessEntry(
            f"{name}-karpenter-node",
            cluster_name=args.cluster.cluster_name,
            principal_arn=self.node_role.arn,
            type="EC2_LINUX",
            opts=child,
        )

        # --- Interruption queue and the EventBridge rules that feed it
        self.queue = aws.sqs.Queue(
            f"{name}-karpenter-interruption",
            message_retention_seconds=300,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue_policy = aws.sqs.QueuePolicy(
            f"{name}-karpenter-interruption",
            queue_url=self.queue.url,
            policy=self.queue.arn.apply(lambda arn: json.dumps(interruption_queue_policy(arn))),
            opts=child,
        )
        for suffix, pattern in interruption_event_patterns().items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-interruption-{suffix}",
                description=f"Karpenter interruption handling ({suffix}) for {cluster_name}",
                event_pattern=json.dumps(pattern),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-interruption-{suffix}",
                rule=rule.name,
                arn=self.queue.arn,
                target_id=INTERRUPTION_QUEUE_TARGET_ID,
                opts=pulumi.ResourceOptions(parent=rule, depends_on=[queue_policy]),
            )

        # --- Controller role through Pod Identity
        controller_policy = pulumi.Output.all(
            args.cluster.partition, args.cluster.account_id, self.node_role.arn, self.queue.arn
        ).apply(
            lambda a: json.dumps(controller_policy_document(a[0], args.stack.region, a[1], cluster_name, a[2], a[3]))
        )
        self.controller_role, association = iam_roles.pod_identity_role(
            f"{name}-karpenter-controller",
            cluster_name=args.cluster.cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            account_id=args.cluster.account_id,
            inline_policy=controller_policy,
            opts=child,
        )

        # --- CRDs from their own chart (Helm upgrades them; it never upgrades a chart's crds/), then
        # the controller with skip_crds. The controller waits for CoreDNS: it resolves the STS, EC2
        # and EKS endpoints at start and crash-loops without DNS.
        self.crd_release = k8s.helm.v3.Release(
            f"{name}-karpenter-crd",
            name="karpenter-crd",
            namespace=NAMESPACE,
            **chart_source(versions.KARPENTER_CRD),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.cluster.k8s_provider, depends_on=[args.cluster.system_node_group]
            ),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-karpenter",
            name=RELEASE_NAME,
            namespace=NAMESPACE,
            skip_crds=True,  # karpenter-crd owns them
            **chart_source(versions.KARPENTER),
            values=self.queue.name.apply(lambda queue: karpenter_values(cluster_name, queue, args.stack.region)),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.cluster.k8s_provider,
                depends_on=[
                    self.crd_release,
                    association,
                    node_access,
                    *node_policies,
                    args.cluster.system_node_group,
                    args.cluster.addons["eks-pod-identity-agent"],
                    args.cluster.addons["coredns"],
                ],
            ),
        )

        # --- One EC2NodeClass + NodePool per nodePools entry (+ the CPU pool)
        # After the controller (its webhooks and CRDs) and the tag that lets node classes find their security group.
        after_crds = pulumi.ResourceOptions.merge(
            k8s_opts,
            pulumi.ResourceOptions(
                depends_on=[self.crd_release, self.release, args.cluster.node_security_group_discovery_tag]
            ),
        )
        self.node_classes: dict[str, k8s.apiextensions.CustomResource] = {}
        self.node_pools: dict[str, pulumi.CustomResource] = {}
        # Karpenter tags what it launches itself; the provider's default tags do not reach those instances.
        instance_tags = {"tritonllm:stack": pulumi.get_stack(), **args.stack.tags}

        pools: list[tuple[str, pulumi.Output[dict[str, Any]], dict[str, Any]]] = [
            (
                pool.name,
                pulumi.Output.all(self.node_role.name, args.image_snapshots.get(pool.name)).apply(
                    partial(_node_class, pool, cluster_name, instance_tags)
                ),
                node_pool_manifest(pool, args.startup_taints),
            )
            for pool in args.node_pools
        ]
        if args.cpu_node_pool.enabled:
            pools.append(
                (
                    CPU_NODE_POOL_NAME,
                    self.node_role.name.apply(
                        lambda role: cpu_node_class_manifest(args.cpu_node_pool, cluster_name, role, instance_tags)
                    ),
                    cpu_node_pool_manifest(args.cpu_node_pool),
                )
            )
        for pool_name, node_class, manifest in pools:
            self.node_classes[pool_name] = k8s.apiextensions.CustomResource(
                f"{name}-nodeclass-{pool_name}",
                api_version=f"{NODECLASS_GROUP}/v1",
                kind="EC2NodeClass",
                metadata={"name": pool_name},
                spec=node_class["spec"],
                opts=after_crds,
            )
            self.node_pools[pool_name] = k8s_object(
                f"{name}-nodepool-{pool_name}",
                manifest,
                pulumi.ResourceOptions.merge(
                    after_crds, pulumi.ResourceOptions(depends_on=[self.node_classes[pool_name]])
                ),
            )

        # --- NVIDIA device plugin on GPU nodes
        self.device_plugin = k8s.helm.v3.Release(
            f"{name}-nvidia-device-plugin",
            name="nvidia-device-plugin",
            namespace=NAMESPACE,
            **chart_source(versions.NVIDIA_DEVICE_PLUGIN),
            values=device_plugin_values(),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.cluster.k8s_provider, depends_on=[args.cluster.system_node_group]
            ),
        )

        self.register_outputs(
            {
                "node_pools": list(self.node_pools),
                "queue_name": self.queue.name,
                "node_role_name": self.node_role.name,
            }
        )
