"""`python -m tritonllm doctor --stack NAME`: will the stack's GPU node pools get their GPUs?

The same report the program's capacity check makes at preview (components/platform/builders/capacity.py),
read here with boto3 and the caller's AWS credentials, without Pulumi: per node pool, which instance
types EC2 offers in the zones the VPC will use, the account's EC2 vCPU quotas for them (on-demand and
spot) against what the models' minReplicas and the pool's maxGpus need, the on-demand price per hour
where the AWS Price List API answers, and for every problem the fix (the
`aws service-quotas request-service-quota-increase ...` command to send).

It also lists every EKS managed add-on build the stack pins (components/catalog/versions.py) and
whether EKS publishes it for the cluster's Kubernetes version (eks:DescribeAddonVersions, the whole
list; the preview can only compare with the newest build).

IAM: ec2:DescribeAvailabilityZones, ec2:DescribeInstanceTypeOfferings, servicequotas:GetServiceQuota,
eks:DescribeAddonVersions, pricing:GetProducts (optional: `--no-prices`). Exit codes: 0 no blocking
finding (warnings are printed), 1 a pool cannot launch, the quotas do not cover minReplicas or a
pinned add-on build is not published, 2 the stack file is invalid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from components.catalog import ec2_quotas, versions
from components.platform.builders import addon_versions, capacity

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The Price List API answers in these Regions only (AWS Price List API: "Endpoints").
PRICING_REGION = "us-east-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True, help="stack name, e.g. dev (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--cwd", type=Path, default=PROJECT_DIR, help="project directory (default: this repository)")
    parser.add_argument("--no-prices", action="store_true", help="skip the on-demand prices (pricing:GetProducts)")


# --------------------------------------------------------------------------- reading AWS with boto3


class Boto3CapacityReader:
    """capacity.CapacityReader over boto3 clients (EC2 and Service Quotas of the stack's region)."""

    def __init__(self, ec2: Any, service_quotas: Any) -> None:
        self.ec2, self.service_quotas = ec2, service_quotas

    @staticmethod
    def _fail(operation: str, exc: Exception) -> capacity.CapacityReadError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return capacity.CapacityReadError(f"{operation}: no AWS credentials (aws configure, or AWS_PROFILE)")
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return capacity.CapacityReadError(f"{operation}: {error.get('Code')}: {error.get('Message')}")
        return capacity.CapacityReadError(f"{operation}: {exc}")

    def zones(self, count: int) -> list[str]:
        from components.platform.builders.network import pick_zones

        try:
            answer = self.ec2.describe_availability_zones(
                Filters=[
                    {"Name": "state", "Values": ["available"]},
                    {"Name": "opt-in-status", "Values": ["opt-in-not-required"]},
                ]
            )
        except Exception as exc:  # noqa: BLE001 - becomes a finding
            raise self._fail("ec2:DescribeAvailabilityZones", exc) from exc
        names = sorted(z["ZoneName"] for z in answer["AvailabilityZones"])
        try:
            return pick_zones(names, count)
        except ValueError as exc:
            raise capacity.CapacityReadError(str(exc)) from exc

    def offerings(self, instance_types: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        try:
            pages = self.ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": instance_types}]
            )
            for page in pages:
                for offering in page["InstanceTypeOfferings"]:
                    found.setdefault(offering["InstanceType"], set()).add(offering["Location"])
        except Exception as exc:  # noqa: BLE001
            raise self._fail("ec2:DescribeInstanceTypeOfferings", exc) from exc
        return found

    def quota(self, code: str) -> float:
        try:
            answer = self.service_quotas.get_service_quota(ServiceCode=ec2_quotas.SERVICE_CODE, QuotaCode=code)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"servicequotas:GetServiceQuota {code}", exc) from exc
        return float(answer["Quota"]["Value"])


def on_demand_prices(pricing: Any, region: str, instance_types: list[str]) -> dict[str, float]:
    """USD per hour, Linux, shared tenancy, on-demand; types the API does not answer for are left out."""
    prices: dict[str, float] = {}
    for itype in instance_types:
        try:
            answer = pricing.get_products(
                ServiceCode="AmazonEC2",
                Filters=[
                    {"Type": "TERM_MATCH", "Field": field, "Value": value}
                    for field, value in (
                        ("instanceType", itype),
                        ("regionCode", region),
                        ("operatingSystem", "Linux"),
                        ("tenancy", "Shared"),
                        ("preInstalledSw", "NA"),
                        ("capacitystatus", "Used"),
                    )
                ],
                MaxResults=1,
            )
        except Exception:  # noqa: BLE001 - prices are extra: no price is no finding
            return prices
        for product in answer.get("PriceList", []):
            item = json.loads(product) if isinstance(product, str) else product
            for term in item.get("terms", {}).get("OnDemand", {}).values():
                for dimension in term.get("priceDimensions", {}).values():
                    usd = dimension.get("pricePerUnit", {}).get("USD")
                    if usd not in (None, "") and float(usd) > 0:
                        prices[itype] = float(usd)
    return prices


def published_addon_builds(eks: Any, names: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Every build EKS lists for EKS_VERSION, per add-on (eks:DescribeAddonVersions, paginated), and
    the add-ons that could not be read with why. An add-on with no build for the version answers an
    empty list."""
    published: dict[str, list[str]] = {}
    unread: dict[str, str] = {}
    for name in names:
        try:
            builds: list[str] = []
            pages = eks.get_paginator("describe_addon_versions").paginate(
                addonName=name, kubernetesVersion=versions.EKS_VERSION
            )
            for page in pages:
                for addon in page.get("addons", []):
                    builds.extend(v["addonVersion"] for v in addon.get("addonVersions", []))
            published[name] = builds
        except Exception as exc:  # noqa: BLE001 - reported, never a crash
            unread[name] = str(Boto3CapacityReader._fail("eks:DescribeAddonVersions", exc))
    return published, unread


def diagnose_addons(cfg: Any, eks: Any) -> tuple[list[addon_versions.AddonProblem], str]:
    pinned = addon_versions.stack_addons(cfg)
    published, unread = published_addon_builds(eks, sorted(pinned))
    problems = addon_versions.judge_published(pinned, published, versions.EKS_VERSION)
    return problems, addon_versions.render(pinned, problems, unread, versions.EKS_VERSION)


# --------------------------------------------------------------------------- the command


def load_config(stack: str, project_dir: Path = PROJECT_DIR):
    import yaml

    from components.config import SECRET_KEYS, parse_stack_config

    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise FileNotFoundError(f"no stack file {path.name}; known stacks: {', '.join(known) or 'none'}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    values = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("tritonllm:")}
    return parse_stack_config(values, set(SECRET_KEYS))  # secrets play no part in capacity


def diagnose(
    cfg: Any, ec2: Any, service_quotas: Any, pricing: Any | None = None
) -> tuple[capacity.CapacityReport, str]:
    """The report and its text, from boto3 clients (tests pass moto- or Stubber-backed ones)."""
    report = capacity.evaluate(cfg, capacity.collect(cfg, Boto3CapacityReader(ec2, service_quotas)))
    prices: dict[str, float] = {}
    if pricing is not None:
        types = sorted({t for pool in report.pools for t, zones in pool.offered.items() if zones})
        prices = on_demand_prices(pricing, cfg.region, types)
    text = capacity.render(report, prices)
    if pricing is not None and not prices:
        text += "\n(no prices: the AWS Price List API did not answer; pricing:GetProducts, or pass --no-prices)"
    return report, text


def main(args: argparse.Namespace) -> int:
    from components.config import ConfigError

    try:
        cfg = load_config(args.stack, Path(args.cwd))
    except (FileNotFoundError, ConfigError) as exc:
        print(f"error: {exc}")
        return 2
    import boto3

    session = boto3.Session(region_name=cfg.region)
    pricing = None if args.no_prices else session.client("pricing", region_name=PRICING_REGION)
    report, text = diagnose(cfg, session.client("ec2"), session.client("service-quotas"), pricing)
    print(text)
    addon_problems, addon_text = diagnose_addons(cfg, session.client("eks"))
    print()
    print(addon_text)
    blocking = [f for f in report.findings if f.severity == "blocking"]
    return 1 if blocking or addon_problems else 0
