"""IAM roles as resources: a service role with AWS managed policies, and a Pod Identity role
scoped to one cluster, namespace and service account (documents from platform/builders/iam.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Literal, overload

import pulumi
import pulumi_aws as aws

from components.platform.builders.iam import (
    eks_cluster_arn,
    managed_policy_arn,
    pod_identity_trust_policy,
    service_trust_policy,
)


def service_role(
    name: str,
    *,
    service: str,
    description: str,
    managed_policies: Sequence[str],
    partition: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    """A role an AWS service (EKS, EC2) assumes, with AWS managed policies attached by name.

    Attachments are named "<name>-<policy>" and parented to the role.
    """
    role = aws.iam.Role(
        name,
        assume_role_policy=json.dumps(service_trust_policy(service)),
        description=description,
        opts=opts,
    )
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}",
            role=role.name,
            policy_arn=pulumi.Output.from_input(partition).apply(partial(managed_policy_arn, name=policy)),
            opts=pulumi.ResourceOptions(parent=role),
        )
        for policy in managed_policies
    ]
    return role, attachments


@overload
def pod_identity_role(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    account_id: pulumi.Input[str],
    managed_policy_arns: Sequence[pulumi.Input[str]] = (),
    inline_policy: pulumi.Input[str] | None = None,
    associate: Literal[True] = True,
    opts: pulumi.ResourceOptions | None = None,
) -> tuple[aws.iam.Role, aws.eks.PodIdentityAssociation]: ...


@overload
def pod_identity_role(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    account_id: pulumi.Input[str],
    managed_policy_arns: Sequence[pulumi.Input[str]] = (),
    inline_policy: pulumi.Input[str] | None = None,
    associate: Literal[False],
    opts: pulumi.ResourceOptions | None = None,
) -> tuple[aws.iam.Role, None]: ...


def pod_identity_role(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    account_id: pulumi.Input[str],
    managed_policy_arns: Sequence[pulumi.Input[str]] = (),
    inline_policy: pulumi.Input[str] | None = None,
    associate: bool = True,
    opts: pulumi.ResourceOptions | None = None,
) -> tuple[aws.iam.Role, aws.eks.PodIdentityAssociation | None]:
    """A role for one Kubernetes service account through EKS Pod Identity (and, optionally, its association).

    Shared by components that give a workload AWS access (Karpenter, Triton's S3 reader, ...).
    `inline_policy` is a JSON string (or Output of one). Set `associate=False` when the
    association is made elsewhere (e.g. by an EKS add-on's podIdentityAssociations).
    """
    # The cluster's ARN from the role's own provider (same partition and region as the cluster).
    invoke = pulumi.InvokeOptions(parent=opts.parent if opts else None, provider=opts.provider if opts else None)
    partition = aws.get_partition_output(opts=invoke).partition
    region = aws.get_region_output(opts=invoke).region
    role = aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.all(partition, region, account_id, cluster_name).apply(
            lambda a: json.dumps(
                pod_identity_trust_policy(a[2], eks_cluster_arn(a[0], a[1], a[2], a[3]), namespace, service_account)
            )
        ),
        description=f"EKS Pod Identity role for {namespace}/{service_account}",
        opts=opts,
    )
    child = pulumi.ResourceOptions(parent=role)  # providers are inherited through the parent chain
    grants: list[pulumi.Resource] = []
    for i, arn in enumerate(managed_policy_arns):
        grants.append(aws.iam.RolePolicyAttachment(f"{name}-managed-{i}", role=role.name, policy_arn=arn, opts=child))
    if inline_policy is not None:
        grants.append(aws.iam.RolePolicy(f"{name}-inline", role=role.id, policy=inline_policy, opts=child))
    association = None
    if associate:
        # Depending on the grants means a workload that depends on the association keeps
        # its permissions until it is gone: on destroy, policies go after the association.
        association = aws.eks.PodIdentityAssociation(
            f"{name}-association",
            cluster_name=cluster_name,
            namespace=namespace,
            service_account=service_account,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=role, depends_on=grants),
        )
    return role, association
