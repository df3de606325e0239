"""The GPU capacity check at preview: AWS facts read through Pulumi invokes, judged by the pure
components/platform/builders/capacity.py, before any resource of the stack is registered.

The invokes go through the stack's own AWS provider (its region and credentials) and, like the
Network component's zone lookup, run at preview as at `up`:

    aws:index/getAvailabilityZones            the zones the VPC will use (same filter, first azCount)
    aws:ec2/getInstanceTypeOfferings          LocationType availability-zone, every catalog GPU type
    aws:servicequotas/getServiceQuota         service code ec2, the pools' vCPU quota codes

`capacityCheck: error` turns blocking findings into a ConfigError (the preview fails, nothing is
created); the rest, and anything that could not be read, are Pulumi warnings.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.catalog import ec2_quotas
from components.config import ConfigError, StackConfig
from components.platform.builders import capacity
from components.platform.builders.network import pick_zones


class PulumiCapacityReader:
    def __init__(self, provider: pulumi.ProviderResource | None = None) -> None:
        self.opts = pulumi.InvokeOptions(provider=provider) if provider is not None else None

    @staticmethod
    def _fail(what: str, exc: Exception) -> capacity.CapacityReadError:
        return capacity.CapacityReadError(f"{what} failed: {str(exc).strip().splitlines()[-1] if str(exc) else exc!r}")

    def zones(self, count: int) -> list[str]:
        try:
            result = aws.get_availability_zones(
                state="available",
                filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
                opts=self.opts,
            )
        except Exception as exc:  # noqa: BLE001 - reported as a finding, never a crash of the program
            raise self._fail("ec2:DescribeAvailabilityZones", exc) from exc
        try:
            return pick_zones(list(result.names or []), count)
        except ValueError as exc:
            raise capacity.CapacityReadError(str(exc)) from exc

    def offerings(self, instance_types: list[str]) -> dict[str, set[str]]:
        try:
            result = aws.ec2.get_instance_type_offerings(
                filters=[{"name": "instance-type", "values": instance_types}],
                location_type="availability-zone",
                opts=self.opts,
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail("ec2:DescribeInstanceTypeOfferings", exc) from exc
        found: dict[str, set[str]] = {}
        for itype, zone in zip(result.instance_types or [], result.locations or [], strict=True):
            found.setdefault(itype, set()).add(zone)
        return found

    def quota(self, code: str) -> float:
        try:
            result = aws.servicequotas.get_service_quota(
                service_code=ec2_quotas.SERVICE_CODE, quota_code=code, opts=self.opts
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"servicequotas:GetServiceQuota {code}", exc) from exc
        return float(result.value)


def check_capacity(cfg: StackConfig, provider: pulumi.ProviderResource | None = None) -> capacity.CapacityReport | None:
    """Run the check for the stack (nothing with capacityCheck: off): raise ConfigError on blocking
    findings under `error`, log the others as warnings; return the report."""
    if cfg.capacity_check == "off":
        return None
    report = capacity.evaluate(cfg, capacity.collect(cfg, PulumiCapacityReader(provider)))
    for warning in report.warnings(cfg.capacity_check):
        pulumi.log.warn(f"capacity: {warning}")
    errors = report.errors(cfg.capacity_check)
    if errors:
        raise ConfigError(
            [(key, f"{message} (capacity check at preview; capacityCheck: warn only warns)") for key, message in errors]
        )
    return report
