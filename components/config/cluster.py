"""`cluster` and `systemNodeGroup`: EKS control plane access and the system node group."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.catalog import versions
from components.config.addresses import internet_problem
from components.config.base import (
    ConfigModel,
    cidr,
)


class SystemNodeGroupConfig(ConfigModel):
    """The managed node group that runs controllers (Karpenter, CoreDNS, monitoring)."""

    instance_types: list[str] = Field(["m6i.xlarge"], min_length=1, description="EC2 instance types")
    min_size: int = Field(2, ge=1, description="Minimum nodes")
    desired_size: int = Field(2, ge=1, description="Initial nodes")
    max_size: int = Field(4, ge=1, description="Maximum nodes")
    disk_size_gib: int = Field(100, ge=20, description="Root volume size (GiB, encrypted gp3)")

    @model_validator(mode="after")
    def _sizes(self) -> SystemNodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"@desiredSize: need minSize <= desiredSize <= maxSize, got {self.min_size}/{self.desired_size}/{self.max_size}"
            )
        return self


SECURITY_GROUP_ID = r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$"


class ClusterConfig(ConfigModel):
    """The EKS control plane."""

    version: str = Field(versions.EKS_VERSION, pattern=r"^1\.[0-9]{2}$", description="Kubernetes version")
    endpoint_public_access: bool = Field(
        False,
        description="Also expose the API server endpoint publicly (to endpointPublicAccessCidrs only); "
        "the private endpoint is always on",
    )
    endpoint_public_access_cidrs: list[str] = Field(
        [], description="CIDRs allowed to reach the public API endpoint (required when endpointPublicAccess is true)"
    )
    allow_public_endpoint_from_anywhere: bool = Field(
        False,
        description="DANGER: accept endpointPublicAccessCidrs that admit the internet (0.0.0.0/0, or ranges that "
        "together cover more public addresses than one /8)",
    )
    endpoint_private_access_cidrs: list[str] = Field(
        [],
        description="CIDRs allowed to reach the private API endpoint on 443 (ingress rules on the EKS cluster "
        "security group), e.g. a CI runner's subnet, a VPN's client range, a peered VPC; without any, only "
        "the cluster's own nodes and pods reach it",
    )
    endpoint_private_access_security_group_ids: list[str] = Field(
        [],
        description="Security groups (sg-..., in the stack's VPC or a peered one) whose members may reach the "
        "private API endpoint on 443, e.g. a CI runner's or a bastion's",
    )
    admin_principal_arns: list[str] = Field(
        [],
        description="IAM role/user ARNs given cluster-admin through EKS access entries "
        "(the identity that created the cluster is left out: EKS made it admin, and the stack "
        "recorded it then, whoever runs later updates)",
    )
    system_node_group: SystemNodeGroupConfig = Field(
        default_factory=SystemNodeGroupConfig, description="See cluster.systemNodeGroup.*"
    )
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = Field(
        ["api", "audit", "authenticator"], description="Control-plane log types sent to CloudWatch"
    )

    @field_validator("endpoint_public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [cidr(v) for v in value]

    @field_validator("endpoint_private_access_cidrs")
    @classmethod
    def _private_cidrs(cls, value: list[str]) -> list[str]:
        value = [cidr(v) for v in value]
        too_wide = internet_problem(value)
        if too_wide:
            # Only networks routed to the VPC reach a private endpoint: a range this wide is a mistake.
            raise ValueError(
                f"{too_wide}; a private endpoint is reached only through the VPC, so list the networks that "
                "reach the VPC (a runner's subnet, a VPN client range, a peered VPC's CIDR)"
            )
        return value

    @field_validator("endpoint_private_access_security_group_ids")
    @classmethod
    def _security_groups(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(SECURITY_GROUP_ID, v)]
        if bad:
            raise ValueError(f"{bad} are not security group ids; write it like sg-0123456789abcdef0")
        return value

    @field_validator("admin_principal_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.match(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/Name)")
        return value

    @model_validator(mode="after")
    def _public(self) -> ClusterConfig:
        if not self.endpoint_public_access:
            return self
        if not self.endpoint_public_access_cidrs:
            raise ValueError(
                "@endpointPublicAccessCidrs: empty while endpointPublicAccess is true; "
                "list the CIDRs that may reach the API (e.g. your egress IP as 203.0.113.7/32) "
                "or set endpointPublicAccess false (private endpoint only)"
            )
        too_wide = internet_problem(self.endpoint_public_access_cidrs)
        if too_wide and not self.allow_public_endpoint_from_anywhere:
            raise ValueError(
                f"@endpointPublicAccessCidrs: {too_wide} to the Kubernetes API; list narrower CIDRs "
                "(e.g. 203.0.113.7/32), or set cluster.allowPublicEndpointFromAnywhere: true if you really mean it"
            )
        return self
