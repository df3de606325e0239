"""Cluster: the EKS control plane (pulumi-eks), its system node group and managed add-ons.

- API authentication mode; admins from `cluster.adminPrincipalArns` get access entries.
- Secrets envelope-encrypted with a customer-managed KMS key (rotation on).
- OIDC provider (for IRSA) and the EKS Pod Identity agent (preferred for workload roles).
- No pulumi-eks default node group and no pulumi-eks security groups: every node
  (system node group and Karpenter's) carries the EKS-created cluster security group,
  which is what `node_security_group_id` names and what Karpenter discovers by tag.
- EKS managed add-ons pinned in versions.EKS_ADDONS. The VPC CNI runs in custom
  networking mode: its ENIConfigs (one per AZ, created by the add-on) put pod IPs in
  the pod subnets of the secondary CIDR. Add-ons that run as DaemonSets are installed
  before the node group (nodes need a CNI to become Ready); the ones that run as
  Deployments after it (they need nodes to become ACTIVE).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s
from pulumi.runtime.sync_await import _sync_await

from components.catalog import versions
from components.config import ClusterConfig, StackIdentity
from components.platform.builders import iam
from components.platform.builders.cluster import (
    ADDON_ROLES,
    ADDONS_BEFORE_NODES,
    BLOCK_STORAGE_CLASS,
    CLUSTER_ADMIN_POLICY,
    NODE_ROLE_POLICIES,
    SYSTEM_NODE_SELECTOR,
    admin_entry_key,
    admins_without_creator,
    caller_role_arn,
    cluster_kms_policy,
    endpoint_ingress_rules,
    gp3_storage_class_manifest,
    kms_key_policy,
    system_launch_template_args,
    vpc_cni_configuration,
)
from components.platform.builders.network import DISCOVERY_TAG
from components.platform.resources import iam_roles
from components.tokens import component_type


def admin_access_entries(principal_arns: Sequence[str]) -> dict[str, eks.AccessEntryArgs]:
    """Cluster-admin access entries, one per principal, keyed by the principal's name.

    Keys come from the ARN (not the list position) so dropping or reordering a principal
    never renames the others' entries.
    """
    return {
        admin_entry_key(arn): eks.AccessEntryArgs(
            principal_arn=arn,
            access_policies={
                "cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn=CLUSTER_ADMIN_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                )
            },
        )
        for arn in principal_arns
    }


def _recorded_value(stash: pulumi.Stash, otherwise: Callable[[], str]) -> str:
    """The Stash's recorded value as a plain string, waited for like a blocking invoke (Pulumi's own
    `_sync_await`, which `aws.get_caller_identity()` uses). `otherwise()` when the engine does not
    know it yet: the preview of a stack that has never been deployed, where the creator is whoever
    runs the first `pulumi up`."""
    value = _sync_await(stash.output.future())
    return str(value) if value else otherwise()


@dataclass(frozen=True)
class ClusterRef:
    """What other components use of the cluster: names, credentials, the Kubernetes provider, and the
    resources in-cluster workloads must wait for (the system node group, the managed add-ons)."""

    cluster_name: pulumi.Output[str]
    partition: pulumi.Output[str]
    account_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[Any]  # secret
    oidc_provider_arn: pulumi.Output[str]
    oidc_provider_url: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    node_security_group_discovery_tag: aws.ec2.Tag
    system_node_group: aws.eks.NodeGroup
    addons: Mapping[str, aws.eks.Addon]
    k8s_provider: k8s.Provider


@dataclass(frozen=True)
class ClusterArgs:
    stack: StackIdentity  # the cluster is named after the stack
    cluster: ClusterConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]  # control plane ENIs and the system node group
    public_subnet_ids: pulumi.Input[Sequence[str]]
    pod_subnet_ids: pulumi.Input[Sequence[str]]  # VPC CNI custom networking, one per zone
    availability_zones: pulumi.Input[Sequence[str]]
    # Add-ons of versions.OPTIONAL_EKS_ADDONS this stack installs through the loop below
    # (addon_versions.cluster_optional_addons): the Mountpoint CSI driver, which needs no role of its own.
    optional_addons: Sequence[str] = ()


class Cluster(pulumi.ComponentResource):
    """EKS cluster, system node group, add-ons, Kubernetes provider.

    Attributes: k8s_provider, cluster_name, kubeconfig (secret Output of a kubeconfig
    dict), kubeconfig_json (secret), oidc_provider_arn, oidc_provider_url,
    node_security_group_id, cluster_security_group_id, eks_cluster (Output of the
    aws.eks.Cluster), eks (the pulumi-eks component), system_node_group,
    addons (name -> aws.eks.Addon), partition, account_id, region,
    block_storage_class_name, kms_key, node_security_group_discovery_tag, cluster_creator
    (pulumi.Stash: the identity that created the cluster, recorded by the `pulumi up` that did).
    """

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "Cluster"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        cc = args.cluster
        self.partition = aws.get_partition_output(opts=invoke).partition
        self.account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self.region = args.stack.region

        # --- KMS key for secrets envelope encryption
        self.kms_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"EKS secrets envelope encryption for {args.stack.name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(self.partition, self.account_id).apply(
                lambda a: json.dumps(kms_key_policy(a[0], a[1]))
            ),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{args.stack.name}-eks-secrets",
            target_key_id=self.kms_key.key_id,
            opts=child,
        )

        # --- Control-plane role: EKS's managed policies plus use of the secrets key
        cluster_role, control_plane_policies = iam_roles.service_role(
            f"{name}-control-plane",
            service="eks.amazonaws.com",
            description=f"EKS control plane of {args.stack.name}",
            managed_policies=("AmazonEKSClusterPolicy", "AmazonEKSVPCResourceController"),
            partition=self.partition,
            opts=child,
        )
        cluster_kms = aws.iam.RolePolicy(
            f"{name}-control-plane-kms",
            role=cluster_role.id,
            policy=self.kms_key.arn.apply(lambda arn: json.dumps(cluster_kms_policy(arn))),
            opts=pulumi.ResourceOptions(parent=cluster_role),
        )

        # --- Who creates the cluster, recorded once. EKS gives that identity a cluster-admin entry of its
        # own (pulumi-eks bootstrapClusterCreatorAdminPermissions: true); every later `pulumi up`, by
        # anyone, must leave it to EKS and keep everyone else's. pulumi.Stash saves its input on create
        # and keeps that `output` on updates (the engine's builtin provider, Pulumi >= 3.208). It is
        # created right before the cluster, in the same `pulumi up`.
        self.cluster_creator = pulumi.Stash(
            f"{name}-cluster-creator",
            input=aws.get_caller_identity_output(opts=invoke).arn.apply(caller_role_arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*control_plane_policies, cluster_kms]),
        )

        creator = _recorded_value(
            self.cluster_creator, lambda: caller_role_arn(aws.get_caller_identity(opts=invoke).arn)
        )

        # --- The cluster (pulumi-eks)
        self.eks = eks.Cluster(
            f"{name}-eks",
            name=args.stack.name,  # fixed name: subnet discovery tags and Karpenter's IAM conditions use it
            version=cc.version,
            vpc_id=args.vpc_id,
            private_subnet_ids=args.private_subnet_ids,
            public_subnet_ids=args.public_subnet_ids,
            endpoint_private_access=True,
            endpoint_public_access=cc.endpoint_public_access,
            public_access_cidrs=cc.endpoint_public_access_cidrs if cc.endpoint_public_access else None,
            authentication_mode=eks.AuthenticationMode.API,
            # The creator is already admin (EKS's bootstrap entry): every other admin gets an entry.
            # accessEntries is a plain input of pulumi-eks (its schema; the Python SDK types it as a
            # Mapping, never an Output): a multi-language component would receive an Output that carries
            # dependencies as an Output object, not the map it iterates. So the recorded creator is
            # read as a plain value.
            access_entries=admin_access_entries(admins_without_creator(cc.admin_principal_arns, creator)),
            encryption_config_key_arn=self.kms_key.arn,
            service_role=cluster_role,
            create_oidc_provider=True,
            skip_default_node_group=True,
            skip_default_security_groups=True,  # nodes use the EKS-created cluster security group
            bootstrap_self_managed_addons=False,  # every core add-on is an EKS managed add-on below
            use_default_vpc_cni=True,  # i.e. pulumi-eks does not manage the CNI; the add-on below does
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            enabled_cluster_log_types=list(cc.log_types),
            tags={"Name": args.stack.name},
            # pulumi-eks waits for roles it creates, not for ours: the policies must be attached first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*control_plane_policies, cluster_kms]),
        )
        self.eks_cluster = self.eks.eks_cluster
        self.cluster_name = self.eks_cluster.name
        self.kubeconfig = pulumi.Output.secret(self.eks.kubeconfig)
        self.kubeconfig_json: pulumi.Output[str] = pulumi.Output.secret(self.eks.kubeconfig_json)
        self.oidc_provider_arn = self.eks.oidc_provider_arn
        self.oidc_provider_url = self.eks.oidc_provider_url
        self.cluster_security_group_id = self.eks.cluster_security_group_id
        self.node_security_group_id = self.eks.node_security_group_id

        # Who else may reach the private API endpoint (deployers: CI runners, VPN, bastions).
        for key, rule in endpoint_ingress_rules(
            cc.endpoint_private_access_cidrs, cc.endpoint_private_access_security_group_ids
        ).items():
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{key}", security_group_id=self.cluster_security_group_id, **rule, opts=child
            )

        # Karpenter finds the security group for its nodes by this tag.
        self.node_security_group_discovery_tag = aws.ec2.Tag(
            f"{name}-node-sg-discovery",
            resource_id=self.node_security_group_id,
            key=DISCOVERY_TAG,
            value=args.stack.name,
            opts=child,
        )

        # --- Managed add-ons that must exist before nodes
        self.addons: dict[str, aws.eks.Addon] = {}
        cni_config = pulumi.Output.all(args.availability_zones, args.pod_subnet_ids, self.node_security_group_id).apply(
            lambda a: json.dumps(vpc_cni_configuration(args.stack.region, a[0], a[1], [a[2]]))
        )
        for addon in ADDONS_BEFORE_NODES:
            self.addons[addon] = self._addon(
                name, addon, configuration_values=cni_config if addon == "vpc-cni" else None
            )

        # --- System node group (private subnets only)
        node_role, node_policies = iam_roles.service_role(
            f"{name}-system-node",
            service="ec2.amazonaws.com",
            description=f"EKS system node group of {args.stack.name}",
            managed_policies=NODE_ROLE_POLICIES,
            partition=self.partition,
            opts=child,
        )
        node_tags = {"Name": f"{args.stack.name}-system", **args.stack.tags}
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-system",
            description=f"System node group of {args.stack.name}: encrypted gp3, IMDSv2",
            update_default_version=True,
            **system_launch_template_args(cc.system_node_group.disk_size_gib, node_tags),
            opts=child,
        )
        ng = cc.system_node_group
        self.system_node_group = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.cluster_name,
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            instance_types=list(ng.instance_types),
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            scaling_config={"min_size": ng.min_size, "desired_size": ng.desired_size, "max_size": ng.max_size},
            update_config={"max_unavailable": 1},
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            labels=SYSTEM_NODE_SELECTOR,
            tags={"Name": f"{args.stack.name}-system"},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*node_policies, *self.addons.values()],
                ignore_changes=["scalingConfig.desiredSize"],  # operators may scale it; no drift (engine path syntax)
            ),
        )

        # --- Managed add-ons that need nodes; EBS/EFS CSI get their own Pod Identity roles
        after_nodes = pulumi.ResourceOptions(depends_on=[self.system_node_group])
        for addon in [*versions.EKS_ADDONS, *args.optional_addons]:
            if addon in self.addons:
                continue
            associations: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None
            if addon in ADDON_ROLES:
                associations = []
                for service_account, policies in ADDON_ROLES[addon].items():
                    role_name = (
                        f"{name}-{addon}"
                        if service_account.endswith("-controller-sa")
                        else f"{name}-{addon}-{service_account.removesuffix('-sa').split('-')[-1]}"
                    )
                    role, _ = iam_roles.pod_identity_role(
                        role_name,
                        cluster_name=self.cluster_name,
                        namespace="kube-system",
                        service_account=service_account,
                        account_id=self.account_id,
                        managed_policy_arns=[
                            self.partition.apply(partial(iam.managed_policy_arn, name=pol)) for pol in policies
                        ],
                        associate=False,  # the add-on makes the association (podIdentityAssociations)
                        opts=child,
                    )
                    associations.append(
                        aws.eks.AddonPodIdentityAssociationArgs(role_arn=role.arn, service_account=service_account)
                    )
            self.addons[addon] = self._addon(name, addon, pod_identity_associations=associations, opts=after_nodes)

        # --- Kubernetes provider for everything in-cluster
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig_json,
            cluster_identifier=args.stack.name,  # replace the provider only if the cluster itself changes
            delete_unreachable=True,  # a destroyed cluster's objects are gone too; don't block destroy on them
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.block_storage_class_name = BLOCK_STORAGE_CLASS
        gp3 = gp3_storage_class_manifest()
        k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=gp3["metadata"],
            provisioner=gp3["provisioner"],
            parameters=gp3["parameters"],
            reclaim_policy=gp3["reclaimPolicy"],
            volume_binding_mode=gp3["volumeBindingMode"],
            allow_volume_expansion=gp3["allowVolumeExpansion"],
            opts=pulumi.ResourceOptions(
                parent=self, provider=self.k8s_provider, depends_on=[self.addons["aws-ebs-csi-driver"]]
            ),
        )

        self.ref = ClusterRef(
            cluster_name=self.cluster_name,
            partition=self.partition,
            account_id=self.account_id,
            kubeconfig=self.kubeconfig,
            oidc_provider_arn=self.oidc_provider_arn,
            oidc_provider_url=self.oidc_provider_url,
            node_security_group_id=self.node_security_group_id,
            node_security_group_discovery_tag=self.node_security_group_discovery_tag,
            system_node_group=self.system_node_group,
            addons=self.addons,
            k8s_provider=self.k8s_provider,
        )

        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_provider_url": self.oidc_provider_url,
                "node_security_group_id": self.node_security_group_id,
                "cluster_security_group_id": self.cluster_security_group_id,
            }
        )

    def _addon(
        self,
        name: str,
        addon: str,
        *,
        configuration_values: pulumi.Input[str] | None = None,
        pod_identity_associations: Sequence[aws.eks.AddonPodIdentityAssociationArgs] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.cluster_name,
            addon_name=addon,
            addon_version={**versions.EKS_ADDONS, **versions.OPTIONAL_EKS_ADDONS}[addon],
            configuration_values=configuration_values,
            pod_identity_associations=pod_identity_associations,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
