"""`network`: the VPC layout."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.config.base import (
    ConfigModel,
    cidr,
)


class NetworkConfig(ConfigModel):
    """VPC layout."""

    az_count: int = Field(3, ge=2, le=6, description="Availability zones to spread subnets over")
    vpc_cidr: str = Field("10.0.0.0/16", description="Primary VPC CIDR (nodes, load balancers)")
    pod_cidr: str = Field("100.64.0.0/16", description="Secondary VPC CIDR for pod IPs (VPC CNI custom networking)")
    nat_gateways: Literal["single", "perAz"] = Field(
        "single", description="One NAT gateway for the VPC, or one per AZ for zone-independent egress"
    )

    _check_cidrs = field_validator("vpc_cidr", "pod_cidr")(classmethod(lambda cls, v: cidr(v)))

    @model_validator(mode="after")
    def _no_overlap(self) -> "NetworkConfig":
        if ipaddress.ip_network(self.vpc_cidr).overlaps(ipaddress.ip_network(self.pod_cidr)):
            raise ValueError(
                f"@podCidr: {self.pod_cidr} overlaps vpcCidr {self.vpc_cidr}; "
                "choose disjoint blocks (e.g. vpcCidr 10.0.0.0/16, podCidr 100.64.0.0/16)"
            )
        for name, block in (("vpcCidr", self.vpc_cidr), ("podCidr", self.pod_cidr)):
            prefix = ipaddress.ip_network(block).prefixlen
            if not 16 <= prefix <= 20:
                raise ValueError(f"@{name}: {block} must be between /16 and /20 to fit subnets for every AZ")
        return self
