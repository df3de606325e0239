"""GPU capacity before `pulumi up` (pure): are the node pools' instance types offered where the stack runs,
and do the account's EC2 vCPU quotas let Karpenter launch them?

What a NodePool can never launch surfaces otherwise only after `up`, as Triton pods Pending and
Karpenter logging InsufficientInstanceCapacity / VcpuLimitExceeded / MaxSpotInstanceCountExceeded.
This module turns plain facts (the VPC's zones, EC2 instance type offerings per zone, Service Quotas
values) into findings; the facts come from a reader: Pulumi invokes in the program
(components/providers/capacity.py), boto3 in `python -m tritonllm doctor`.

    blocking  nothing of the pool can be launched (no type offered in its zones, a model's GPUs per
              pod fit no offered type), or the quotas do not even cover the models' minReplicas:
              their pods would stay Pending right after `up`.
    limiting  the pool launches, but less than configured: some types or zones missing (Karpenter
              falls back across the pool's other types and zones), quotas below the pool's maxGpus.
    unknown   a fact could not be read (permissions, API errors): said so, never guessed.

`capacityCheck: error` (the default) fails the preview on blocking findings and warns about the
others; `warn` only warns; `off` reads nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from components.catalog import ec2_quotas, gpus
from components.config import NodePoolConfig, StackConfig

Severity = Literal["blocking", "limiting", "unknown"]


class CapacityReader(Protocol):
    """Where the facts come from (the program: Pulumi invokes; doctor: boto3). Each method raises
    CapacityReadError with a reason a user can act on when AWS does not answer."""

    def zones(self, count: int) -> list[str]: ...
    def offerings(self, instance_types: list[str]) -> dict[str, set[str]]: ...
    def quota(self, code: str) -> float: ...


class CapacityReadError(RuntimeError):
    pass


@dataclass(frozen=True)
class CapacityFacts:
    region: str
    zones: list[str]  # the VPC's zones: the first network.azCount available ones
    offerings: Mapping[str, frozenset[str]]  # catalog GPU instance type -> zones offering it
    quotas: Mapping[str, float | None]  # quota code -> vCPUs (None: not read, see errors)
    errors: Mapping[str, str] = field(default_factory=dict)  # what could not be read -> why


@dataclass(frozen=True)
class Finding:
    severity: Severity
    key: str  # the config key it is about, as config errors name them (nodePools[0].instanceFamilies)
    message: str


@dataclass(frozen=True)
class PoolSummary:
    name: str
    zones: list[str]
    offered: dict[str, list[str]]  # instance type -> zones of the pool offering it
    quotas: dict[str, float | None]  # quota code -> vCPUs, for the pool's classes and capacity types
    min_vcpus: int  # what the models' minReplicas need at least
    max_vcpus: int  # what reaching the pool's maxGpus needs at least (capped by maxCpu)


@dataclass
class CapacityReport:
    region: str
    findings: list[Finding]
    pools: list[PoolSummary]

    def errors(self, mode: str) -> list[tuple[str, str]]:
        """(key, message) pairs that fail the preview under `mode`."""
        if mode != "error":
            return []
        return [(f.key, f.message) for f in self.findings if f.severity == "blocking"]

    def warnings(self, mode: str) -> list[str]:
        if mode == "off":
            return []
        return [f"{f.key}: {f.message}" for f in self.findings if mode == "warn" or f.severity != "blocking"]


# --------------------------------------------------------------------------- what to read


def instance_types_to_read() -> list[str]:
    """Every GPU type of the catalog: the pools' own, and the others as alternatives to suggest."""
    return sorted(gpus.INSTANCE_TYPES)


def quota_codes(cfg: StackConfig) -> list[str]:
    codes = set()
    for pool in cfg.node_pools:
        for itype in pool.catalog_types:
            for capacity_type in pool.capacity_types:
                quota = ec2_quotas.quota_for(itype.family, capacity_type)
                if quota is not None:
                    codes.add(quota.code)
    return sorted(codes)


def collect(cfg: StackConfig, reader: CapacityReader) -> CapacityFacts:
    """Read the facts through `reader`; a failed read is recorded (CapacityFacts.errors), not raised."""
    errors: dict[str, str] = {}
    zones: list[str] = []
    try:
        zones = reader.zones(cfg.network.az_count)
    except CapacityReadError as exc:
        errors["zones"] = str(exc)
    offerings: dict[str, frozenset[str]] = {}
    try:
        offerings = {t: frozenset(z) for t, z in reader.offerings(instance_types_to_read()).items()}
    except CapacityReadError as exc:
        errors["offerings"] = str(exc)
    quotas: dict[str, float | None] = {}
    for code in quota_codes(cfg):
        try:
            quotas[code] = reader.quota(code)
        except CapacityReadError as exc:
            quotas[code] = None
            errors[code] = str(exc)
    return CapacityFacts(cfg.region, zones, offerings, quotas, errors)


# --------------------------------------------------------------------------- evaluation


def _vcpus_per_gpu(types: Iterable[gpus.GpuInstanceType], gpus_per_pod: int) -> float | None:
    """Fewest vCPUs per GPU among the types that fit a pod of `gpus_per_pod` GPUs."""
    fitting = [t.vcpus / t.gpus for t in types if t.gpus >= gpus_per_pod]
    return min(fitting) if fitting else None


def _families(types: Iterable[gpus.GpuInstanceType]) -> list[str]:
    return sorted({t.family for t in types})


def _pool_key(index: int, pool: NodePoolConfig) -> str:
    return f"nodePools[{index}].{'instanceTypes' if pool.instance_types else 'instanceFamilies'}"


def evaluate(cfg: StackConfig, facts: CapacityFacts) -> CapacityReport:
    findings: list[Finding] = []
    summaries: list[PoolSummary] = []
    region = facts.region
    for what, reason in facts.errors.items():
        if what in ("zones", "offerings"):
            findings.append(
                Finding(
                    "unknown",
                    "capacityCheck",
                    f"could not read the {'availability zones' if what == 'zones' else 'EC2 instance type offerings'} "
                    f"of {region}: {reason}",
                )
            )
    offerings_known = "offerings" not in facts.errors
    for i, pool in enumerate(cfg.node_pools):
        zones = list(pool.zones) or list(facts.zones)
        types = pool.catalog_types
        offered = {t.name: sorted(facts.offerings.get(t.name, frozenset()) & set(zones)) for t in types}
        usable = [t for t in types if offered[t.name]] if offerings_known else list(types)
        models = [(j, m) for j, m in enumerate(cfg.models) if m.node_pool == pool.name]
        if offerings_known and zones:
            findings += _offering_findings(i, pool, zones, types, usable, offered, facts)
        min_vcpus = max_vcpus = 0
        for j, model in models:
            per_gpu = _vcpus_per_gpu(usable, model.gpus_per_pod)
            if per_gpu is None:
                if usable:  # no type at all is reported above
                    largest = max(t.gpus for t in usable)
                    findings.append(
                        Finding(
                            "blocking",
                            f"models[{j}].nodePool",
                            f"{model.name} needs {model.gpus_per_pod} GPUs per pod but the largest type of nodePool "
                            f"{pool.name!r} offered in {', '.join(zones)} has {largest}; add a larger type that is "
                            "offered there, or lower the model's parallelism",
                        )
                    )
                continue
            pod_vcpus = math.ceil(per_gpu * model.gpus_per_pod)
            pods = model.nodes_per_replica
            min_vcpus += model.min_replicas * pods * pod_vcpus
            max_vcpus += model.max_replicas * pods * pod_vcpus
        per_gpu_any = _vcpus_per_gpu(usable, 1)
        if per_gpu_any is not None:
            max_vcpus = max(max_vcpus, math.ceil(pool.max_gpus * per_gpu_any))
        max_vcpus = min(max_vcpus, pool.max_cpu)
        quotas, quota_findings = _quota_findings(i, pool, usable, min_vcpus, max_vcpus, facts)
        findings += quota_findings
        summaries.append(PoolSummary(pool.name, zones, offered, quotas, min_vcpus, max_vcpus))
    findings += _shared_quota_findings(cfg, summaries, facts)
    return CapacityReport(region, findings, summaries)


def _offering_findings(
    i: int,
    pool: NodePoolConfig,
    zones: list[str],
    types: list[gpus.GpuInstanceType],
    usable: list[gpus.GpuInstanceType],
    offered: dict[str, list[str]],
    facts: CapacityFacts,
) -> list[Finding]:
    key = _pool_key(i, pool)
    where = f"{', '.join(zones)} ({facts.region})"
    if not usable:
        elsewhere = [t for t in gpus.INSTANCE_TYPES.values() if facts.offerings.get(t.name, frozenset()) & set(zones)]
        hint = (
            f"families offered there: {', '.join(_families(elsewhere))}"
            if elsewhere
            else "no GPU family of the catalog is offered there"
        )
        return [
            Finding(
                "blocking",
                key,
                f"nodePool {pool.name!r}: none of its instance types ({', '.join(t.name for t in types)}) is offered in "
                f"{where}, so Karpenter can never launch a node for it; {hint}; change the pool's families "
                "(instanceFamilies / instanceTypes), its zones, or the stack's region",
            )
        ]
    found = []
    empty_zones = [z for z in zones if not any(z in offered[t.name] for t in types)]
    if empty_zones:
        found.append(
            Finding(
                "limiting",
                key,
                f"nodePool {pool.name!r}: none of its instance types is offered in {', '.join(empty_zones)}; Karpenter "
                f"launches its nodes in the other zones only ({', '.join(z for z in zones if z not in empty_zones)})",
            )
        )
    missing = [t.name for t in types if not offered[t.name]]
    if missing:
        found.append(
            Finding(
                "limiting",
                key,
                f"nodePool {pool.name!r}: {', '.join(missing)} not offered in {where}; Karpenter falls back to the "
                f"pool's other types ({', '.join(t.name for t in usable)})",
            )
        )
    return found


def _quota_findings(
    i: int,
    pool: NodePoolConfig,
    usable: list[gpus.GpuInstanceType],
    min_vcpus: int,
    max_vcpus: int,
    facts: CapacityFacts,
) -> tuple[dict[str, float | None], list[Finding]]:
    found: list[Finding] = []
    quotas: dict[str, float | None] = {}
    classes = sorted({ec2_quotas.instance_class(t.family) for t in usable})
    for cls in classes:
        applicable = [
            q
            for capacity_type in pool.capacity_types
            if (q := ec2_quotas.quota_for(cls.lower(), capacity_type)) is not None
        ]
        if not applicable:
            continue
        values = {q.code: facts.quotas.get(q.code) for q in applicable}
        quotas.update(values)
        unknown = [q for q in applicable if values[q.code] is None]
        known = sum(v for v in values.values() if v is not None)
        names = " + ".join(f"{q.code} ({q.name}, {q.capacity_type})" for q in applicable)
        if len(classes) > 1:  # a pool mixing G and P types: each class is checked with the pool's whole need
            names = f"{cls} instances: {names}"
        if unknown:
            if known >= max_vcpus:
                continue
            reasons = "; ".join(f"{q.code}: {facts.errors.get(q.code, 'no answer')}" for q in unknown)
            found.append(
                Finding(
                    "unknown",
                    f"nodePools[{i}]",
                    f"nodePool {pool.name!r}: could not read the vCPU quota {reasons}; check it with `aws "
                    f"service-quotas get-service-quota --service-code ec2 --quota-code {unknown[0].code} "
                    f"--region {facts.region}` (the check needs servicequotas:GetServiceQuota)",
                )
            )
            continue
        commands = "; or ".join(
            ec2_quotas.increase_command(q, max(max_vcpus, min_vcpus), facts.region) for q in applicable
        )
        if known < min_vcpus:
            found.append(
                Finding(
                    "blocking",
                    f"nodePools[{i}]",
                    f"nodePool {pool.name!r}: its models' minReplicas need at least {min_vcpus} vCPUs of "
                    f"{cls} instances but the account's quota {names} allows {known:g} in {facts.region}: their pods "
                    f"would stay Pending after `pulumi up`; request more: {commands}",
                )
            )
        elif known < max_vcpus:
            per_gpu = _vcpus_per_gpu(usable, 1) or 1.0
            found.append(
                Finding(
                    "limiting",
                    f"nodePools[{i}]",
                    f"nodePool {pool.name!r}: maxGpus {pool.max_gpus} needs at least {max_vcpus} vCPUs of {cls} "
                    f"instances but the quota {names} allows {known:g} in {facts.region} (about "
                    f"{int(known // (per_gpu or 1))} GPUs): the pool stops growing there; request more: {commands}",
                )
            )
    return quotas, found


def _shared_quota_findings(cfg: StackConfig, summaries: list[PoolSummary], facts: CapacityFacts) -> list[Finding]:
    """Pools drawing on one quota: each may fit alone while together they do not."""
    found = []
    for code, value in facts.quotas.items():
        if value is None:
            continue
        sharing = [s for s in summaries if code in s.quotas]
        if len(sharing) < 2:
            continue
        total = sum(s.max_vcpus for s in sharing)
        if total > value:
            quota = ec2_quotas.BY_CODE[code]
            found.append(
                Finding(
                    "limiting",
                    "nodePools",
                    f"nodePools {', '.join(repr(s.name) for s in sharing)} together need up to {total} vCPUs of the "
                    f"quota {code} ({quota.name}), which allows {value:g} in {facts.region}; request more: "
                    f"{ec2_quotas.increase_command(quota, total, facts.region)}",
                )
            )
    return found


# --------------------------------------------------------------------------- the report as text


def render(report: CapacityReport, prices: Mapping[str, float] | None = None) -> str:
    """The report `doctor` prints: one block per pool, then the findings."""
    lines = [f"GPU capacity in {report.region}"]
    for pool in report.pools:
        lines.append(f"\nnodePool {pool.name} (zones {', '.join(pool.zones) or '?'})")
        for itype, zones in sorted(pool.offered.items()):
            price = f"  ${prices[itype]:.2f}/h on-demand" if prices and itype in prices else ""
            lines.append(f"  {itype:<16} {'offered in ' + ', '.join(zones) if zones else 'NOT OFFERED'}{price}")
        for code, value in pool.quotas.items():
            quota = ec2_quotas.BY_CODE[code]
            shown = "unknown" if value is None else f"{value:g} vCPUs"
            lines.append(f"  quota {code} {quota.name} ({quota.capacity_type}): {shown}")
        lines.append(f"  needs: {pool.min_vcpus} vCPUs at minReplicas, {pool.max_vcpus} vCPUs at maxGpus")
    if report.findings:
        lines.append("")
        for f in report.findings:
            lines.append(f"{f.severity.upper()}: {f.key}: {f.message}")
    else:
        lines.append("\nOK: every pool's types are offered in its zones and the quotas cover maxGpus")
    return "\n".join(lines)
