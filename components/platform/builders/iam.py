"""Pure IAM helpers: trust policies, managed-policy ARNs, Pod Identity roles.

Every function returns plain dicts/strings so tests can assert on them and
components can `json.dumps` them (inside an `apply` when an argument is an Output).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

POLICY_VERSION = "2012-10-17"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


def policy_document(statements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def managed_policy_arn(partition: str, name: str) -> str:
    """ARN of an AWS managed policy, e.g. ("aws", "AmazonEKSWorkerNodePolicy") or a "service-role/..." name."""
    return f"arn:{partition}:iam::aws:policy/{name}"


def service_trust_policy(service: str, *, tag_session: bool = False) -> dict[str, Any]:
    """Trust policy letting an AWS service (e.g. ec2.amazonaws.com) assume the role."""
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else ["sts:AssumeRole"]
    return policy_document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}])


# Session tags EKS Pod Identity adds to its AssumeRole call (EKS User Guide, "Grant Pods access to
# AWS resources based on tags", list of session tags; "Create IAM role with trust policy required
# by EKS Pod Identity", Setting conditions).
POD_IDENTITY_CLUSTER_TAG = "aws:RequestTag/eks-cluster-arn"
POD_IDENTITY_NAMESPACE_TAG = "aws:RequestTag/kubernetes-namespace"
POD_IDENTITY_SERVICE_ACCOUNT_TAG = "aws:RequestTag/kubernetes-service-account"


def eks_cluster_arn(partition: str, region: str, account_id: str, cluster_name: str) -> str:
    return f"arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}"


def pod_identity_trust_policy(account_id: str, cluster_arn: str, namespace: str, service_account: str) -> dict[str, Any]:
    """Trust policy for an EKS Pod Identity role, usable by one service account of one cluster.

    Pod Identity needs both sts:AssumeRole and sts:TagSession: it tags the session with the
    cluster ARN, namespace and service account, and the conditions match those tags, so no other
    association in the account (another namespace, another cluster) can use the role.
    aws:SourceAccount keeps other accounts' clusters out as well.
    """
    return policy_document([{
        "Sid": "AllowEksPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {
            "aws:SourceAccount": account_id,
            POD_IDENTITY_CLUSTER_TAG: cluster_arn,
            POD_IDENTITY_NAMESPACE_TAG: namespace,
            POD_IDENTITY_SERVICE_ACCOUNT_TAG: service_account,
        }},
    }])


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str) -> dict[str, Any]:
    """Trust policy for IAM Roles for Service Accounts (IRSA), for workloads that cannot use Pod Identity."""
    issuer = oidc_issuer.removeprefix("https://")
    return policy_document([{
        "Effect": "Allow",
        "Principal": {"Federated": oidc_provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
            f"{issuer}:aud": "sts.amazonaws.com",
        }},
    }])


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
            f"{name}-{policy}", role=role.name,
            policy_arn=pulumi.Output.from_input(partition).apply(lambda p, policy=policy: managed_policy_arn(p, policy)),
            opts=pulumi.ResourceOptions(parent=role),
        )
        for policy in managed_policies
    ]
    return role, attachments


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
    invoke = pulumi.InvokeOptions(parent=opts.parent if opts else None,
                                  provider=opts.provider if opts else None)
    partition = aws.get_partition_output(opts=invoke).partition
    region = aws.get_region_output(opts=invoke).region
    role = aws.iam.Role(
        name,
        assume_role_policy=pulumi.Output.all(partition, region, account_id, cluster_name).apply(
            lambda a: json.dumps(pod_identity_trust_policy(
                a[2], eks_cluster_arn(a[0], a[1], a[2], a[3]), namespace, service_account))
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
