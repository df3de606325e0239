"""`python -m tritonllm doctor`'s EKS add-on section: every pinned add-on build against the whole list
EKS publishes for the cluster's Kubernetes version (eks:DescribeAddonVersions).

The answers come from a botocore Stubber on a real EKS client, so botocore's service model validates
the request parameters and the response shape (moto has no DescribeAddonVersions). The preview's
newest-build judgement is tested under the Pulumi mocks in tests/unit/test_addon_check.py.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import Stubber

from components.catalog import versions
from components.config import parse_stack_config
from tests.unit.harness import load_stack_config
from tritonllm import doctor


def stack(name: str, **overrides: Any):
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(name).items() if k.startswith("tritonllm:")}
    raw.update(overrides)
    return parse_stack_config(raw, {"hfToken"})


def eks_client(answers: dict[str, list[list[str]] | Exception]) -> tuple[Any, Stubber]:
    """An EKS client answering DescribeAddonVersions per add-on (sorted, as doctor asks), page by page."""
    client = boto3.client("eks", region_name="us-west-2")
    stubber = Stubber(client)
    for name in sorted(answers):
        answer = answers[name]
        params = {"addonName": name, "kubernetesVersion": versions.EKS_VERSION}
        if isinstance(answer, Exception):
            stubber.add_client_error("describe_addon_versions", "AccessDeniedException", str(answer), 403, params)
            continue
        for index, page in enumerate(answer):
            last = index == len(answer) - 1
            response: dict[str, Any] = {
                "addons": [
                    {
                        "addonName": name,
                        "type": "networking",
                        "addonVersions": [
                            {
                                "addonVersion": build,
                                "architecture": ["amd64", "arm64"],
                                "compatibilities": [
                                    {
                                        "clusterVersion": versions.EKS_VERSION,
                                        "platformVersions": ["*"],
                                        "defaultVersion": i == 0,
                                    }
                                ],
                                "requiresConfiguration": False,
                            }
                            for i, build in enumerate(page)
                        ],
                    }
                ]
                if page
                else []
            }
            if not last:
                response["nextToken"] = f"{name}-page-{index + 1}"
            expected = dict(params, nextToken=f"{name}-page-{index}") if index else params
            stubber.add_response("describe_addon_versions", response, expected)
    stubber.activate()
    return client, stubber


def all_published(
    extra: dict[str, list[list[str]] | Exception] | None = None,
) -> dict[str, list[list[str]] | Exception]:
    answers: dict[str, list[list[str]] | Exception] = {name: [[build]] for name, build in versions.EKS_ADDONS.items()}
    answers.update(extra or {})
    return answers


def test_every_pinned_build_published_is_all_ticks():
    client, stubber = eks_client(all_published())
    problems, text = doctor.diagnose_addons(stack("dev"), client)
    stubber.assert_no_pending_responses()
    assert problems == []
    assert text.splitlines()[0] == "EKS managed add-ons for Kubernetes 1.34:"
    for name, build in versions.EKS_ADDONS.items():
        assert f"  ✓ {name} {build} is published" in text


def test_a_pin_missing_from_the_list_is_found_even_below_the_newest_build_across_pages():
    pinned = versions.EKS_ADDONS["vpc-cni"]
    client, stubber = eks_client(
        all_published({"vpc-cni": [["v1.21.0-eksbuild.2", "v1.20.5-eksbuild.1"], ["v1.20.3-eksbuild.1"]]})
    )
    problems, text = doctor.diagnose_addons(stack("dev"), client)
    stubber.assert_no_pending_responses()
    assert [p.addon for p in problems] == ["vpc-cni"]
    assert (
        f"✗ vpc-cni {pinned} is not published for Kubernetes 1.34 "
        "(published: v1.21.0-eksbuild.2, v1.20.5-eksbuild.1, v1.20.3-eksbuild.1)"
    ) in text
    assert "fix: pin a build published for Kubernetes 1.34 in components/catalog/versions.py" in text


def test_no_build_at_all_and_an_unreadable_list_are_told_apart():
    client, _ = eks_client(all_published({"coredns": [[]], "kube-proxy": RuntimeError("not authorized")}))
    problems, text = doctor.diagnose_addons(stack("dev"), client)
    assert [p.addon for p in problems] == ["coredns"]
    assert "coredns v1.12.4-eksbuild.1 is not published for Kubernetes 1.34 (published: none)" in text
    assert "? kube-proxy v1.34.1-eksbuild.2: could not read (eks:DescribeAddonVersions: AccessDeniedException" in text


def test_the_cloudwatch_addon_is_checked_when_the_stack_turns_it_on():
    on = stack("dev", monitoring={"cloudwatch": {"enabled": True}})
    client, stubber = eks_client(all_published({"amazon-cloudwatch-observability": [["v5.3.0-eksbuild.1"]]}))
    problems, _ = doctor.diagnose_addons(on, client)
    stubber.assert_no_pending_responses()
    assert [p.addon for p in problems] == ["amazon-cloudwatch-observability"]
