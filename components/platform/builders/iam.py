"""Pure IAM helpers: trust policies, managed-policy ARNs, Pod Identity roles.

Every function returns plain dicts/strings so tests can assert on them and
components can `json.dumps` them (inside an `apply` when an argument is an Output).
"""

from __future__ import annotations

from typing import Any, Sequence

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


def pod_identity_trust_policy(
    account_id: str, cluster_arn: str, namespace: str, service_account: str
) -> dict[str, Any]:
    """Trust policy for an EKS Pod Identity role, usable by one service account of one cluster.

    Pod Identity needs both sts:AssumeRole and sts:TagSession: it tags the session with the
    cluster ARN, namespace and service account, and the conditions match those tags, so no other
    association in the account (another namespace, another cluster) can use the role.
    aws:SourceAccount keeps other accounts' clusters out as well.
    """
    return policy_document(
        [
            {
                "Sid": "AllowEksPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": account_id,
                        POD_IDENTITY_CLUSTER_TAG: cluster_arn,
                        POD_IDENTITY_NAMESPACE_TAG: namespace,
                        POD_IDENTITY_SERVICE_ACCOUNT_TAG: service_account,
                    }
                },
            }
        ]
    )


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str) -> dict[str, Any]:
    """Trust policy for IAM Roles for Service Accounts (IRSA), for workloads that cannot use Pod Identity."""
    issuer = oidc_issuer.removeprefix("https://")
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ]
    )
