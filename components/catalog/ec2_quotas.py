"""EC2 vCPU quotas (Service Quotas, service code `ec2`) that bound the GPU instances a NodePool launches.

EC2 limits running On-Demand instances and Spot requests per Region by vCPUs per instance class,
each its own quota (Amazon EC2 User Guide, "On-Demand Instance quotas" and "Spot Instance quotas":
"Running On-Demand G and VT instances", "All G and VT Spot Instance Requests", "Running On-Demand P
instances", "All P Spot Instance Requests"; On-Demand and Spot are separate quotas, so approval of one
says nothing about the other). The quota codes are what `aws service-quotas get-service-quota
--service-code ec2 --quota-code ...` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SERVICE_CODE = "ec2"
CapacityType = Literal["on-demand", "spot"]


@dataclass(frozen=True)
class VcpuQuota:
    code: str
    name: str
    instance_class: str  # "G" (g4dn, g5, g6, g6e) or "P" (p4d, p4de, p5, p5e, p5en)
    capacity_type: CapacityType


QUOTAS = (
    VcpuQuota("L-DB2E81BA", "Running On-Demand G and VT instances", "G", "on-demand"),
    VcpuQuota("L-3819A6DF", "All G and VT Spot Instance Requests", "G", "spot"),
    VcpuQuota("L-417A185B", "Running On-Demand P instances", "P", "on-demand"),
    VcpuQuota("L-7212CCBC", "All P Spot Instance Requests", "P", "spot"),
)
BY_CODE = {q.code: q for q in QUOTAS}


def instance_class(family: str) -> str:
    """The quota class of an instance family: its leading letters, upper-cased (g6e -> G, p5en -> P)."""
    head = ""
    for char in family:
        if not char.isalpha():
            break
        head += char
    return head.upper()


def quota_for(family: str, capacity_type: str) -> VcpuQuota | None:
    """The vCPU quota that instances of `family` bought as `capacity_type` count against (None: not
    a class this project serves on, or a capacity type without a vCPU quota such as `reserved`)."""
    cls = instance_class(family)
    return next((q for q in QUOTAS if q.instance_class == cls and q.capacity_type == capacity_type), None)


def increase_command(quota: VcpuQuota, desired: int, region: str) -> str:
    return (
        f"aws service-quotas request-service-quota-increase --service-code {SERVICE_CODE} "
        f"--quota-code {quota.code} --desired-value {desired} --region {region}"
    )
