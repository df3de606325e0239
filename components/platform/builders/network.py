"""Network's pure builders: the subnet layout, subnet tags and zone choice (the component is
components/platform/resources/network.py, whose docstring describes the layout).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

DISCOVERY_TAG = "karpenter.sh/discovery"
ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"
SUBNET_ROLE_TAG = "tritonllm/subnet-role"  # public | private | pods: what a subnet is for


def cluster_tag(cluster_name: str) -> str:
    return f"kubernetes.io/cluster/{cluster_name}"


@dataclass(frozen=True)
class SubnetLayout:
    private: list[str]  # node subnets, one per AZ
    public: list[str]  # load balancers and NAT gateways, one per AZ
    pods: list[str]  # VPC CNI custom-networking subnets (secondary CIDR), one per AZ


def subnet_layout(vpc_cidr: str, pod_cidr: str, az_count: int) -> SubnetLayout:
    """Carve per-AZ subnets out of the VPC and pod CIDRs (deterministic, non-overlapping)."""
    if not 1 <= az_count <= 7:
        raise ValueError(f"az_count must be 1..7, got {az_count}")
    vpc = ipaddress.IPv4Network(vpc_cidr)
    eighths = list(vpc.subnets(prefixlen_diff=3))
    private = [str(n) for n in eighths[:az_count]]
    public = [str(n) for n in list(eighths[-1].subnets(prefixlen_diff=3))[:az_count]]
    pod_net = ipaddress.IPv4Network(pod_cidr)
    pods = [
        str(n)
        for n in list(pod_net.subnets(prefixlen_diff=math.ceil(math.log2(az_count)) if az_count > 1 else 0))[:az_count]
    ]
    return SubnetLayout(private=private, public=public, pods=pods)


def subnet_tags(role: str, cluster_name: str, name: str) -> dict[str, str]:
    """Tags for a subnet of `role` (public | private | pods).

    public: internet-facing load balancers; private: internal load balancers and
    Karpenter-discovered nodes; pods: only the VPC CNI (through ENIConfig) uses them.
    """
    tags = {"Name": name, SUBNET_ROLE_TAG: role, cluster_tag(cluster_name): "shared"}
    if role == "public":
        tags[ELB_ROLE_TAG] = "1"
    elif role == "private":
        tags[INTERNAL_ELB_ROLE_TAG] = "1"
        tags[DISCOVERY_TAG] = cluster_name
    elif role != "pods":
        raise ValueError(f"unknown subnet role {role!r}")
    return tags


def pick_zones(names: Sequence[str], count: int) -> list[str]:
    """The first `count` available AZs, or a clear error when the region has fewer."""
    if len(names) < count:
        raise ValueError(
            f"network.azCount is {count} but the region offers only {len(names)} AZs ({list(names)}); lower azCount"
        )
    return list(names)[:count]


def nat_subnet_index(nat_gateways: str, az_index: int) -> int:
    """Which AZ's NAT gateway a private route table uses: its own (perAz) or the first (single)."""
    return az_index if nat_gateways == "perAz" else 0
