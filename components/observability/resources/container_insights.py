"""ContainerInsights: the amazon-cloudwatch-observability EKS add-on and its agent's Pod Identity role
(`monitoring.cloudwatch.enabled`). What it installs and why it runs beside our DCGM exporter:
components/observability/builders/container_insights.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.catalog import versions
from components.config import MonitoringConfig
from components.observability.builders import container_insights as ci
from components.platform.builders.iam import managed_policy_arn
from components.platform.resources import iam_roles
from components.platform.resources.cluster import ClusterRef
from components.tokens import component_type


@dataclass(frozen=True)
class ContainerInsightsArgs:
    monitoring: MonitoringConfig
    cluster: ClusterRef  # its name (add-on, role trust), account, and what the add-on waits for


class ContainerInsights(pulumi.ComponentResource):
    """The CloudWatch observability add-on, its agent's role (CloudWatchAgentServerPolicy, trusted by
    amazon-cloudwatch/cloudwatch-agent of this cluster only) and the add-on's Pod Identity association.

    AWS resources use the provider passed in `opts` (providers={"aws": ...}).
    """

    addon: aws.eks.Addon
    agent_role: aws.iam.Role

    def __init__(self, name: str, args: ContainerInsightsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("observability", "ContainerInsights"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = args.cluster
        self.agent_role, _ = iam_roles.pod_identity_role(
            f"{name}-cloudwatch-agent",
            cluster_name=cluster.cluster_name,
            namespace=ci.NAMESPACE,
            service_account=ci.AGENT_SERVICE_ACCOUNT,
            account_id=cluster.account_id,
            managed_policy_arns=[cluster.partition.apply(lambda p: managed_policy_arn(p, ci.AGENT_POLICY))],
            associate=False,  # the add-on makes the association (podIdentityAssociations)
            opts=child,
        )
        self.addon = aws.eks.Addon(
            f"{name}-{ci.ADDON_NAME}",
            cluster_name=cluster.cluster_name,
            addon_name=ci.ADDON_NAME,
            addon_version=versions.OPTIONAL_EKS_ADDONS[ci.ADDON_NAME],
            configuration_values=json.dumps(ci.addon_configuration(args.monitoring), sort_keys=True),
            pod_identity_associations=[{"role_arn": self.agent_role.arn, "service_account": ci.AGENT_SERVICE_ACCOUNT}],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # Its agent and operator need nodes, and the Pod Identity agent to hand out the role.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[cluster.system_node_group, cluster.addons["eks-pod-identity-agent"]],
            ),
        )
        self.register_outputs({"addon_version": self.addon.addon_version, "agent_role_arn": self.agent_role.arn})
