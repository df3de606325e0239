"""The GPU capacity check against AWS answers: EC2 from a moto server, Service Quotas from a botocore Stubber.

moto (5.2) answers DescribeAvailabilityZones and DescribeInstanceTypeOfferings from its snapshot of the
real offerings per Region (eu-west-1 has no g6e; sa-east-1 has g5 in two of its three zones), but its
Service Quotas backend knows only VPC quotas (GetServiceQuota for service ec2 is NoSuchResourceException,
checked below): the EC2 vCPU quotas come from a Stubber on a real botocore client, with the response
shape botocore's service model validates.

The same pure evaluation runs at preview (tests/unit/test_capacity_check.py, through Pulumi invokes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from components.catalog import gpus
from components.config import StackConfig, parse_stack_config
from tests.providers.conftest import REPO_ROOT, MotoServer
from tests.unit.harness import load_stack_config
from tritonllm import doctor

G_ON_DEMAND, G_SPOT = "L-DB2E81BA", "L-3819A6DF"


def stack(name: str, **overrides: Any) -> StackConfig:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(name).items() if k.startswith("tritonllm:")}
    raw.update(overrides)
    return parse_stack_config(raw, {"hfToken"})


def ec2_client(moto_server: MotoServer, region: str) -> Any:
    return boto3.client("ec2", region_name=region, endpoint_url=moto_server.url)


def quotas_client(region: str, values: dict[str, float | Exception]) -> tuple[Any, Stubber]:
    """A Service Quotas client answering GetServiceQuota for these codes, in the order the check asks."""
    client = boto3.client("service-quotas", region_name=region)
    stubber = Stubber(client)
    for code in sorted(values):
        value = values[code]
        params = {"ServiceCode": "ec2", "QuotaCode": code}
        if isinstance(value, Exception):
            stubber.add_client_error(
                "get_service_quota", "AccessDeniedException", str(value), 400, expected_params=params
            )
        else:
            stubber.add_response(
                "get_service_quota",
                {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value, "Unit": "None"}},
                params,
            )
    stubber.activate()
    return client, stubber


def test_moto_has_no_ec2_quotas_so_they_are_stubbed(moto_server: MotoServer):
    client = boto3.client("service-quotas", region_name="us-west-2", endpoint_url=moto_server.url)
    with pytest.raises(client.exceptions.NoSuchResourceException):
        client.get_service_quota(ServiceCode="ec2", QuotaCode=G_ON_DEMAND)


def test_a_region_without_the_pools_type_is_blocking_and_names_what_is_offered(moto_server: MotoServer):
    cfg = stack("dev", region="eu-west-1")  # g6e pool; moto's eu-west-1 offers no g6e
    quotas, stubber = quotas_client("eu-west-1", {G_ON_DEMAND: 512})
    report, text = doctor.diagnose(cfg, ec2_client(moto_server, "eu-west-1"), quotas)
    stubber.assert_no_pending_responses()
    blocking = [f for f in report.findings if f.severity == "blocking"]
    assert [f.key for f in blocking] == ["nodePools[0].instanceFamilies"], report.findings
    message = blocking[0].message
    assert "nodePool 'g6e'" in message and "eu-west-1a, eu-west-1b, eu-west-1c" in message
    assert "families offered there: g4dn, g5, p4d" in message, message
    assert "change the pool's families" in message
    assert "NOT OFFERED" in text and report.errors("error") and not report.errors("warn")


def test_a_type_missing_in_one_zone_is_a_warning_karpenter_routes_around(moto_server: MotoServer):
    cfg = stack("vllm", region="sa-east-1")  # g5 pool, spot + on-demand; g5 only in sa-east-1a/b
    quotas, _ = quotas_client("sa-east-1", {G_ON_DEMAND: 512, G_SPOT: 512})
    report, _ = doctor.diagnose(cfg, ec2_client(moto_server, "sa-east-1"), quotas)
    assert [f.severity for f in report.findings] == ["limiting"], report.findings
    (finding,) = report.findings
    assert "none of its instance types is offered in sa-east-1c" in finding.message
    assert "other zones only (sa-east-1a, sa-east-1b)" in finding.message
    assert report.pools[0].offered["g5.xlarge"] == ["sa-east-1a", "sa-east-1b"]


def test_a_quota_too_small_for_min_replicas_is_blocking_with_the_increase_command(moto_server: MotoServer):
    cfg = stack("dev")  # us-west-2: g6e offered; 1 replica of a 1-GPU model needs a 4-vCPU g6e.xlarge
    quotas, _ = quotas_client("us-west-2", {G_ON_DEMAND: 0})
    report, text = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas)
    (finding,) = report.findings
    assert finding.severity == "blocking" and finding.key == "nodePools[0]"
    assert "minReplicas need at least 4 vCPUs" in finding.message
    assert "L-DB2E81BA (Running On-Demand G and VT instances, on-demand) allows 0" in finding.message
    # enough for maxGpus (8 GPUs x 4 vCPUs on g6e.xlarge)
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 32 --region us-west-2"
    ) in finding.message
    assert "quota L-DB2E81BA Running On-Demand G and VT instances (on-demand): 0 vCPUs" in text


def test_a_quota_below_max_gpus_is_a_warning_naming_how_far_the_pool_grows(moto_server: MotoServer):
    cfg = stack("dev")
    quotas, _ = quotas_client("us-west-2", {G_ON_DEMAND: 16})
    report, _ = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas)
    (finding,) = report.findings
    assert finding.severity == "limiting"
    assert "maxGpus 8 needs at least 32 vCPUs" in finding.message and "about 4 GPUs" in finding.message
    assert "--quota-code L-DB2E81BA --desired-value 32" in finding.message


def test_spot_and_on_demand_quotas_both_count_for_a_pool_that_may_use_both(moto_server: MotoServer):
    cfg = stack("vllm")  # g5, [spot, on-demand], maxGpus 16: 64 vCPUs on g5.xlarge
    quotas, stubber = quotas_client("us-west-2", {G_ON_DEMAND: 32, G_SPOT: 32})
    report, _ = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas)
    stubber.assert_no_pending_responses()
    assert report.findings == [], report.findings
    quotas, _ = quotas_client("us-west-2", {G_ON_DEMAND: 0, G_SPOT: 0})
    report, _ = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas)
    (finding,) = report.findings
    assert finding.severity == "blocking"
    assert "--quota-code L-3819A6DF --desired-value 64" in finding.message
    assert "--quota-code L-DB2E81BA --desired-value 64" in finding.message


def test_a_quota_that_cannot_be_read_is_said_not_guessed(moto_server: MotoServer):
    cfg = stack("dev")
    quotas, _ = quotas_client("us-west-2", {G_ON_DEMAND: RuntimeError("not authorized to GetServiceQuota")})
    report, text = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas)
    (finding,) = report.findings
    assert finding.severity == "unknown"
    assert "AccessDeniedException" in finding.message and "servicequotas:GetServiceQuota" in finding.message
    assert "quota L-DB2E81BA" in text and "unknown" in text
    assert report.errors("error") == []


def test_prices_per_hour_where_the_price_list_answers(moto_server: MotoServer):
    cfg = stack("dev")
    quotas, _ = quotas_client("us-west-2", {G_ON_DEMAND: 512})
    pricing = boto3.client("pricing", region_name="us-east-1")
    stubber = Stubber(pricing)
    product = {
        "product": {"attributes": {"instanceType": "g6e.xlarge", "regionCode": "us-west-2"}},
        "terms": {"OnDemand": {"X": {"priceDimensions": {"X.Y": {"unit": "Hrs", "pricePerUnit": {"USD": "1.8610"}}}}}},
    }
    for itype in sorted(t for t in gpus.INSTANCE_TYPES if t.startswith("g6e.")):  # asked in this order
        found = [json.dumps(product)] if itype == "g6e.xlarge" else []  # the other sizes: no answer
        stubber.add_response("get_products", {"PriceList": found, "FormatVersion": "aws_v1"})
    stubber.activate()
    _, text = doctor.diagnose(cfg, ec2_client(moto_server, "us-west-2"), quotas, pricing)
    assert "g6e.xlarge       offered in us-west-2a, us-west-2b, us-west-2c  $1.86/h on-demand" in text, text


def test_doctor_command_exits_1_naming_the_pool_and_the_fix(moto_server: MotoServer, tmp_path):
    cfg = load_stack_config("dev")
    cfg["tritonllm:region"] = "eu-west-1"
    (tmp_path / "Pulumi.eu.yaml").write_text(json.dumps({"config": cfg}))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_EC2": moto_server.url,
        "AWS_ENDPOINT_URL_SERVICE_QUOTAS": moto_server.url,  # moto: NoSuchResource -> reported as unknown
        "AWS_ENDPOINT_URL_EKS": moto_server.url,  # moto: DescribeAddonVersions "Not yet implemented" -> unread
    }
    done = subprocess.run(
        [sys.executable, "-m", "tritonllm", "doctor", "--stack", "eu", "--cwd", str(tmp_path), "--no-prices"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BLOCKING: nodePools[0].instanceFamilies: nodePool 'g6e': none of its instance types" in done.stdout
    assert "families offered there: g4dn, g5, p4d" in done.stdout
    # the add-on section follows; an answer it cannot read is said, not judged
    assert "EKS managed add-ons for Kubernetes 1.34:" in done.stdout
    assert "? coredns v1.12.4-eksbuild.1: could not read (eks:DescribeAddonVersions" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "tritonllm", "doctor", "--stack", "nope", "--cwd", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no stack file Pulumi.nope.yaml; known stacks: eu" in missing.stdout
