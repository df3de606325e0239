"""Bad multi-node configs fail before any resource, naming the key and the fix (the real program, mocked)."""

from __future__ import annotations

import pytest

from components.config import ConfigError
from tests.unit.harness import run_program
from tests.unit.test_config_errors import BadConfig

CASES = [
    BadConfig(
        "tp-x-pp-not-nodes-x-gpus",
        "multinode",
        {"models[0].pipelineParallel": 3},
        "models[0].multiNode.nodes",
        "make them equal (e.g. tensorParallel 4, pipelineParallel 2)",
    ),
    BadConfig(
        "tp-spans-nodes",
        "multinode",
        {"models[0].tensorParallel": 8, "models[0].pipelineParallel": 1},
        "models[0].tensorParallel",
        "keep tensorParallel within a node",
    ),
    BadConfig(
        "efa-on-type-without-efa",
        "multinode",
        {"nodePools[0].instanceTypes": ["g5.4xlarge"], "models[0].tensorParallel": 1, "models[0].pipelineParallel": 2},
        "models[0].multiNode.efa",
        "set efa: false",
    ),
    BadConfig(
        "multi-az-pool",
        "multinode",
        {"nodePools[0].zones": ["us-west-2a", "us-west-2b"]},
        "models[0].nodePool",
        "set zones: [us-west-2a] on that pool",
    ),
    BadConfig(
        "pool-without-zone",
        "multinode",
        {"nodePools[0].zones": None},
        "models[0].nodePool",
        "must stay in one availability zone",
    ),
    BadConfig(
        "zone-of-another-region",
        "multinode",
        {"nodePools[0].zones": ["eu-west-1a"]},
        "nodePools[0].zones",
        "write them like us-west-2a",
    ),
    BadConfig(
        "several-instance-types",
        "multinode",
        {"nodePools[0].instanceTypes": ["g5.12xlarge", "g5.24xlarge"]},
        "models[0].nodePool",
        "set instanceTypes: [<one type>]",
    ),
    BadConfig(
        "family-pool",
        "multinode",
        {"nodePools[0].instanceTypes": None, "nodePools[0].instanceFamilies": ["g5"]},
        "models[0].nodePool",
        "multi-node needs a pool of exactly one instance type",
    ),
    BadConfig(
        "vllm-multi-node", "multinode", {"models[0].backend": "vllm"}, "models[0].multiNode", "Use backend: trtllm"
    ),
    BadConfig(
        "one-node-is-not-multi-node",
        "multinode",
        {"models[0].multiNode.nodes": 1},
        "models[0].multiNode.nodes",
        "greater than or equal to 2",
    ),
    BadConfig("gpus-key-disagrees", "multinode", {"models[0].gpus": 16}, "models[0].gpus", "drop the gpus key"),
    # An update surges one whole group (LeaderWorkerSet maxSurge 1): at maxReplicas 2 the pool needs
    # 3 groups x 8 GPUs, not the 16 that hold the groups the HPA may run.
    BadConfig(
        "surge-group-exceeds-max-gpus",
        "multinode",
        {"nodePools[0].maxGpus": 16},
        "models[0].maxReplicas",
        "raise maxGpus to 24 or lower maxReplicas",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_multi_node_config_fails_before_any_resource(case: BadConfig):
    run = run_program(case.stack, overrides=case.overrides, secrets=case.secrets, check=False)
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    assert run.resources == [], f"registered before failing: {[r.type for r in run.resources]}"
    problems = dict(run.error.problems)
    assert case.key in problems, f"{case.key!r} not named; problems: {run.error.problems}"
    assert case.fix in problems[case.key], f"fix {case.fix!r} not in {problems[case.key]!r}"
    assert f"tritonllm:{case.key}: " in str(run.error)


def test_the_seed_shape_is_valid_and_efa_off_is_too():
    assert run_program("multinode").error is None
    run = run_program(
        "multinode", overrides={"models[0].multiNode.efa": False, "models[0].multiNode.placementGroup": False}
    )
    assert not [m for m in run.manifests("LeaderWorkerSet") if "vpc.amazonaws.com/efa" in str(m)], (
        "efa: false must not request EFA interfaces"
    )
    assert not run.of_type("aws:ec2/placementGroup:PlacementGroup")
    assert not [r for r in run.helm_releases() if "efa" in r.inputs["chart"]]
