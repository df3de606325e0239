"""What the IAM permission policies allow, as properties of the documents the program registers.

Not golden files (tests/golden/ holds those) and not trust policies: these say which actions
may touch which resources, so a policy widened by mistake (a wildcard action, a mutating action
on "*", a launch or delete without the cluster's tag condition) fails here whatever else changes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.conftest import VARIANTS, stack_run_for
from tests.unit.harness import ACCOUNT_ID, ProgramRun, stack_files

READ_ONLY_PREFIXES = ("Describe", "Get", "List")
# Resources Karpenter launches into but cannot require tags on (AMIs, snapshots, shared network).
UNTAGGABLE_LAUNCH_INPUTS = (
    "image/",
    "snapshot/",
    "security-group/",
    "subnet/",
    "capacity-reservation/",
    "placement-group/",
)


def _listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def controller_policy(run: ProgramRun) -> dict[str, Any]:
    (policy,) = [
        r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-karpenter-controller-inline")
    ]
    return json.loads(policy.inputs["policy"])


@pytest.fixture(scope="module", params=stack_files() + sorted(VARIANTS))
def run(request) -> ProgramRun:
    return stack_run_for(request.param)


def test_no_wildcard_actions_and_only_reads_on_any_resource(run):
    for statement in controller_policy(run)["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = _listify(statement["Action"])
        assert not [a for a in actions if "*" in a], statement
        if "*" in _listify(statement["Resource"]):
            assert all(a.split(":", 1)[1].startswith(READ_ONLY_PREFIXES) for a in actions), statement


def test_launching_tagging_and_deleting_is_scoped_to_this_cluster(run):
    cluster = run.config["tritonllm:name"]
    mutating = {
        "ec2:RunInstances",
        "ec2:CreateFleet",
        "ec2:CreateLaunchTemplate",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "ec2:DeleteLaunchTemplate",
        "iam:CreateInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteInstanceProfile",
    }
    seen = set()
    for statement in controller_policy(run)["Statement"]:
        actions = set(_listify(statement["Action"])) & mutating
        if not actions:
            continue
        seen |= actions
        resources = _listify(statement["Resource"])
        if all(any(kind in r for kind in UNTAGGABLE_LAUNCH_INPUTS) for r in resources):
            assert actions <= {"ec2:RunInstances", "ec2:CreateFleet"}, statement
            continue
        # a condition on this cluster's tag (kubernetes.io/cluster/<name> or eks:eks-cluster-name)
        conditions = json.dumps(statement.get("Condition", {}))
        assert f"kubernetes.io/cluster/{cluster}" in conditions or f'"{cluster}"' in conditions, statement
        assert "karpenter.sh/nodepool" in conditions or "karpenter.k8s.aws/ec2nodeclass" in conditions, statement
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "iam:CreateInstanceProfile"} <= seen


def test_pass_role_only_the_node_role_only_to_ec2(run):
    statements = [s for s in controller_policy(run)["Statement"] if "iam:PassRole" in _listify(s["Action"])]
    assert len(statements) == 1
    (statement,) = statements
    (role_arn,) = _listify(statement["Resource"])
    assert role_arn.startswith(f"arn:aws:iam::{ACCOUNT_ID}:role/") and "*" not in role_arn
    node_roles = [r for r in run.of_type("aws:iam/role:Role") if r.outputs.get("arn") == role_arn]
    assert len(node_roles) == 1 and "karpenter-node" in node_roles[0].name, role_arn
    # EC2 only (upstream's policy names the China partition's principal too)
    services = set(_listify(statement["Condition"]["StringEquals"]["iam:PassedToService"]))
    assert services and services <= {"ec2.amazonaws.com", "ec2.amazonaws.com.cn"}, services


def test_queue_and_cluster_actions_name_their_own_resources(run):
    cluster = run.config["tritonllm:name"]
    (queue,) = run.of_type("aws:sqs/queue:Queue")
    for statement in controller_policy(run)["Statement"]:
        actions = _listify(statement["Action"])
        if any(a.startswith("sqs:") for a in actions):
            assert _listify(statement["Resource"]) == [queue.outputs["arn"]]
        if "eks:DescribeCluster" in actions:
            assert _listify(statement["Resource"]) == [f"arn:aws:eks:us-west-2:{ACCOUNT_ID}:cluster/{cluster}"]
