"""The EKS add-on build check at preview (__main__.py -> components/providers/addon_check.py) and its pure
judgement (components/platform/builders/addon_versions.py).

The Pulumi mocks answer `aws:eks/getAddonVersion` (tests/unit/harness.py MockCapacity.addon_newest) the
way terraform-provider-aws's data source does: the first build DescribeAddonVersions lists when
mostRecent is set, an "empty result" error when EKS lists none. doctor's whole-list judgement runs on a
Stubber-backed boto3 client in tests/providers/test_addon_versions_doctor.py.
"""

from __future__ import annotations

import logging

import pytest

from components.catalog import versions
from components.config import ConfigError, parse_stack_config
from components.platform.builders import addon_versions
from tests.unit.harness import MockCapacity, load_stack_config, run_program

ADDON_VERSION = "aws:eks/getAddonVersion:getAddonVersion"


def stack_config(name: str, **top_level):
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(name).items() if k.startswith("tritonllm:")}
    raw.update(top_level)
    return parse_stack_config(raw, {"hfToken"})


def test_every_pinned_addon_is_asked_for_the_clusters_kubernetes_version_newest_first():
    run = run_program("dev", overrides={"monitoring.cloudwatch.enabled": True})
    asked = {c.args["addonName"]: c.args for c in run.calls if c.token == ADDON_VERSION}
    assert set(asked) == set(versions.EKS_ADDONS) | {"amazon-cloudwatch-observability"}
    assert all(a["kubernetesVersion"] == versions.EKS_VERSION and a["mostRecent"] is True for a in asked.values())


def test_without_cloudwatch_its_addon_is_not_asked_for():
    run = run_program("dev")
    asked = {c.args["addonName"] for c in run.calls if c.token == ADDON_VERSION}
    assert asked == set(versions.EKS_ADDONS)


def test_a_pin_newer_than_the_newest_published_build_fails_the_preview_before_any_cloud_resource():
    run = run_program("dev", check=False, capacity=MockCapacity(addon_newest={"coredns": "v1.12.3-eksbuild.9"}))
    assert isinstance(run.error, ConfigError), run.error
    assert [r.type for r in run.resources] == ["pulumi:providers:aws"]
    ((key, message),) = run.error.problems
    assert key == "capacityCheck"
    pinned = versions.EKS_ADDONS["coredns"]
    assert (
        f"coredns {pinned} is newer than the newest build EKS publishes for Kubernetes 1.34 (v1.12.3-eksbuild.9)"
        in (message)
    )
    assert "aws eks describe-addon-versions --addon-name coredns --kubernetes-version 1.34" in message


def test_an_addon_with_no_build_for_the_version_fails_the_preview():
    run = run_program(
        "dev",
        check=False,
        overrides={"monitoring.cloudwatch.enabled": True},
        capacity=MockCapacity(addon_newest={"amazon-cloudwatch-observability": None}),
    )
    assert isinstance(run.error, ConfigError), run.error
    ((_, message),) = run.error.problems
    assert "EKS publishes no amazon-cloudwatch-observability build for Kubernetes 1.34" in message


def test_an_older_pin_passes_and_the_eks_build_number_counts():
    # v1.3.9-eksbuild.3 pinned: eksbuild.4 newer is fine, eksbuild.2 is older than the pin
    name = "eks-pod-identity-agent"
    assert versions.EKS_ADDONS[name] == "v1.3.9-eksbuild.3"
    assert run_program("dev", capacity=MockCapacity(addon_newest={name: "v1.3.9-eksbuild.4"})).error is None
    run = run_program("dev", check=False, capacity=MockCapacity(addon_newest={name: "v1.3.9-eksbuild.2"}))
    assert isinstance(run.error, ConfigError)


def test_warn_mode_warns_and_deploys(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program(
            "dev", overrides={"capacityCheck": "warn"}, capacity=MockCapacity(addon_newest={"coredns": None})
        )
    assert run.error is None and len(run.resources) > 100
    assert any("add-ons: EKS publishes no coredns build" in r.getMessage() for r in caplog.records), caplog.text


def test_a_build_list_that_cannot_be_read_is_a_warning_not_a_failure(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program("dev", capacity=MockCapacity(failing={ADDON_VERSION}))
    assert run.error is None
    assert any("add-ons: could not read the builds of coredns" in r.getMessage() for r in caplog.records)


def test_off_reads_nothing():
    run = run_program("dev", overrides={"capacityCheck": "off"}, capacity=MockCapacity(addon_newest={"coredns": None}))
    assert run.error is None
    assert not [c for c in run.calls if c.token == ADDON_VERSION]


# --------------------------------------------------------------------------- the pure judgement


@pytest.mark.parametrize(
    ("build", "parsed"),
    [("v1.20.4-eksbuild.1", (1, 20, 4, 1)), ("v1.34.1-eksbuild.12", (1, 34, 1, 12)), ("v2.0.0", (2, 0, 0, 0))],
)
def test_parse_build(build, parsed):
    assert addon_versions.parse_build(build) == parsed


@pytest.mark.parametrize("bad", ["1.20.4-eksbuild.1", "v1.20-eksbuild.1", "latest", "v1.2.3-build.1"])
def test_parse_build_rejects_what_is_not_a_build(bad):
    with pytest.raises(ValueError, match="is not an EKS add-on build"):
        addon_versions.parse_build(bad)


def test_build_numbers_compare_numerically_not_as_text():
    newest = {"kube-proxy": "v1.34.1-eksbuild.10"}
    assert addon_versions.judge_newest({"kube-proxy": "v1.34.1-eksbuild.9"}, newest, "1.34") == []
    (problem,) = addon_versions.judge_newest({"kube-proxy": "v1.34.10-eksbuild.1"}, newest, "1.34")
    assert problem.addon == "kube-proxy"


def test_whole_list_judgement_catches_a_pin_below_the_newest_that_is_not_listed():
    pinned = {"vpc-cni": "v1.20.4-eksbuild.1", "coredns": "v1.12.4-eksbuild.1"}
    published = {
        "vpc-cni": ["v1.20.5-eksbuild.1", "v1.20.3-eksbuild.1"],
        "coredns": ["v1.12.4-eksbuild.1", "v1.12.3-eksbuild.1"],
    }
    assert addon_versions.judge_newest(pinned, {k: v[0] for k, v in published.items()}, "1.34") == []
    (problem,) = addon_versions.judge_published(pinned, published, "1.34")
    assert problem.message == (
        "vpc-cni v1.20.4-eksbuild.1 is not published for Kubernetes 1.34 "
        "(published: v1.20.5-eksbuild.1, v1.20.3-eksbuild.1)"
    )


def test_stack_addons_follow_the_cloudwatch_key():
    assert addon_versions.stack_addons(stack_config("dev")) == versions.EKS_ADDONS
    on = stack_config("dev", monitoring={"cloudwatch": {"enabled": True}})
    assert addon_versions.stack_addons(on)["amazon-cloudwatch-observability"] == "v4.10.3-eksbuild.1"
