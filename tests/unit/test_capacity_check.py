"""The GPU capacity check at preview, in the program (__main__.py -> components/providers/capacity.py).

The Pulumi mocks answer its invokes (tests/unit/harness.py MockCapacity): EC2 instance type offerings
per zone and EC2 vCPU quotas. A pool that can never launch, or quotas below the models' minReplicas,
fail the preview with a ConfigError naming the pool and the fix before any cloud resource exists
(only the AWS provider is registered, to ask through it); capacityCheck: warn turns that into
warnings, off reads nothing. tests/providers/test_capacity_moto.py runs the same evaluation on moto's
EC2 answers and stubbed Service Quotas answers.
"""

from __future__ import annotations

import logging

import pytest

from components.catalog import gpus
from components.config import ConfigError, parse_stack_config
from components.platform.builders import capacity
from tests.unit.harness import MockCapacity, load_stack_config, run_program
from tests.unit.test_triton_manifests import stack_config

OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"
QUOTA = "aws:servicequotas/getServiceQuota:getServiceQuota"
G6E = [t for t in gpus.INSTANCE_TYPES if t.startswith("g6e.")]


def test_committed_stacks_ask_for_offerings_per_zone_and_their_pools_quotas(stack_run):
    offerings = [c for c in stack_run.calls if c.token == OFFERINGS]
    assert len(offerings) == 1
    assert offerings[0].args["locationType"] == "availability-zone"
    (type_filter,) = offerings[0].args["filters"]
    assert type_filter["name"] == "instance-type" and set(type_filter["values"]) == set(gpus.INSTANCE_TYPES)
    codes = {c.args["quotaCode"] for c in stack_run.calls if c.token == QUOTA}
    assert all(c.args["serviceCode"] == "ec2" for c in stack_run.calls if c.token == QUOTA)
    expected = {"dev": {"L-DB2E81BA"}, "vllm": {"L-DB2E81BA", "L-3819A6DF"}}
    assert codes == expected.get(stack_run.stack, {"L-DB2E81BA"}), codes


def test_a_region_without_the_pools_type_fails_the_preview_before_any_cloud_resource():
    run = run_program("dev", check=False, capacity=MockCapacity(not_offered=dict.fromkeys(G6E)))
    assert isinstance(run.error, ConfigError), run.error
    assert [r.type for r in run.resources] == ["pulumi:providers:aws"]
    (key, message), *_ = run.error.problems
    assert key == "nodePools[0].instanceFamilies"
    assert "none of its instance types (g6e.xlarge" in message and "families offered there: g4dn, g5" in message
    assert "capacityCheck: warn only warns" in message


def test_a_quota_below_min_replicas_fails_the_preview_with_the_increase_command():
    run = run_program("dev", check=False, capacity=MockCapacity(quotas={"L-DB2E81BA": 0}))
    assert isinstance(run.error, ConfigError), run.error
    (key, message), *_ = run.error.problems
    assert key == "nodePools[0]"
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 32 --region us-west-2"
    ) in message


def test_warn_mode_warns_and_deploys(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program("dev", overrides={"capacityCheck": "warn"}, capacity=MockCapacity(quotas={"L-DB2E81BA": 0}))
    assert run.error is None and len(run.resources) > 100
    assert any("capacity: nodePools[0]: nodePool 'g6e'" in r.getMessage() for r in caplog.records), caplog.text


def test_a_quota_below_max_gpus_only_warns(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program("dev", capacity=MockCapacity(quotas={"L-DB2E81BA": 8}))
    assert run.error is None
    assert any("maxGpus 8 needs at least 32 vCPUs" in r.getMessage() for r in caplog.records), caplog.text


def test_quotas_that_cannot_be_read_are_a_warning_not_a_failure(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program("vllm", capacity=MockCapacity(failing={QUOTA}))
    assert run.error is None
    assert any("could not read the vCPU quota" in r.getMessage() for r in caplog.records), caplog.text


def test_off_reads_nothing():
    run = run_program("dev", overrides={"capacityCheck": "off"}, capacity=MockCapacity(not_offered=dict.fromkeys(G6E)))
    assert run.error is None
    assert not [c for c in run.calls if c.token in (OFFERINGS, QUOTA)]


# --------------------------------------------------------------------------- the pure evaluation


def facts(cfg, offered: dict[str, list[str]] | None = None, quotas: dict[str, float] | None = None):
    zones = [f"{cfg.region}{c}" for c in "abc"]
    offerings = {t: frozenset(zones) for t in gpus.INSTANCE_TYPES}
    offerings.update({t: frozenset(z) for t, z in (offered or {}).items()})
    codes = capacity.quota_codes(cfg)
    return capacity.CapacityFacts(cfg.region, zones, offerings, {c: (quotas or {}).get(c, 4096.0) for c in codes})


def test_a_multi_node_pools_single_zone_without_its_type_is_blocking():
    cfg = stack_config("multinode")
    report = capacity.evaluate(cfg, facts(cfg, offered={"g5.12xlarge": ["us-west-2b", "us-west-2c"]}))
    (finding,) = report.findings
    assert finding.severity == "blocking" and finding.key == "nodePools[0].instanceTypes"
    assert "us-west-2a (us-west-2)" in finding.message


def test_missing_large_sizes_block_the_model_that_needs_them_and_warn_for_the_pool():
    cfg = stack_config("dev", tensorParallel=4, maxReplicas=2)  # 4 GPUs per pod: g6e.12xlarge and up
    big = {t: [] for t in G6E if gpus.INSTANCE_TYPES[t].gpus >= 4}
    report = capacity.evaluate(cfg, facts(cfg, offered=big))
    by_severity = {f.severity: f for f in report.findings}
    assert by_severity["blocking"].key == "models[0].nodePool"
    assert "needs 4 GPUs per pod but the largest type of nodePool 'g6e'" in by_severity["blocking"].message
    assert "Karpenter falls back to the pool's other types" in by_severity["limiting"].message


def test_pools_sharing_a_quota_are_checked_together():
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("dev").items() if k.startswith("tritonllm:")}
    raw["nodePools"] = [raw["nodePools"][0], {**raw["nodePools"][0], "name": "g6e-b"}]
    cfg = parse_stack_config(raw, {"hfToken"})
    report = capacity.evaluate(cfg, facts(cfg, quotas={"L-DB2E81BA": 48}))  # 32 each: fits alone, not together
    (shared,) = [f for f in report.findings if f.key == "nodePools"]
    assert "'g6e', 'g6e-b' together need up to 64 vCPUs" in shared.message and "--desired-value 64" in shared.message


@pytest.mark.parametrize("mode, errors, warnings", [("error", 1, 0), ("warn", 0, 1), ("off", 0, 0)])
def test_modes(mode, errors, warnings):
    cfg = stack_config("dev")
    report = capacity.evaluate(cfg, facts(cfg, quotas={"L-DB2E81BA": 0}))
    assert (len(report.errors(mode)), len(report.warnings(mode))) == (errors, warnings)
