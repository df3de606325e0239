"""Updating a multi-node model (new engine key, image, any template change) through LWS v0.10.0's rollout.

The rendered LeaderWorkerSet goes through a port of LWS's own defaulting and rolling-update logic
(tests/multinode/lws_rollout.py, kubernetes-sigs/lws v0.10.0): with no rolloutStrategy LWS defaults to
maxSurge 0 / maxUnavailable 1, and the only group of a one-replica model is deleted before its
replacement runs. The program surges one whole group instead; the pool must hold it.
"""

from __future__ import annotations

import pytest

from components.serving.builders import multinode
from tests.multinode import lws_rollout
from tests.unit.conftest import stack_run_for

NS = "llama-3-8b"


@pytest.fixture(scope="module")
def run():
    return stack_run_for("multinode")


@pytest.fixture(scope="module")
def lws(run):
    (manifest,) = run.manifests("LeaderWorkerSet")
    return manifest


@pytest.fixture(scope="module")
def hpa(run):
    (manifest,) = [m for m in run.manifests("HorizontalPodAutoscaler") if m["metadata"]["namespace"] == NS]
    return manifest


def test_the_lws_defaults_alone_take_the_only_group_down():
    """The reason for the strategy: what LWS does to one group without one (webhook defaults)."""
    rollout = lws_rollout.roll_out_a_template_change({}, replicas=1)
    assert rollout.finished and min(rollout.serving) == 0


def test_a_template_change_never_leaves_the_model_without_a_serving_group(lws, hpa):
    spec = lws["spec"]
    lws_rollout.rolling_update_configuration(spec)  # what LWS's webhook accepts
    for replicas in sorted({spec["replicas"], hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]}):
        rollout = lws_rollout.roll_out_a_template_change(spec, replicas)
        assert rollout.finished, (replicas, rollout)
        assert min(rollout.serving) >= replicas, f"{replicas} group(s): serving {rollout.serving} during the update"


def test_the_pool_holds_the_surge_group_at_the_hpa_maximum(run, lws, hpa):
    """The surge group needs whole nodes too: at the HPA's maximum the pool's GPU limit must hold one more
    group, or the update waits for capacity that Karpenter may not create (NodePool limits)."""
    template = lws["spec"]["leaderWorkerTemplate"]
    group_gpus = sum(
        int(template[role]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"]) * count
        for role, count in (("leaderTemplate", 1), ("workerTemplate", template["size"] - 1))
    )
    rollout = lws_rollout.roll_out_a_template_change(lws["spec"], hpa["spec"]["maxReplicas"])
    pool_name = template["leaderTemplate"]["spec"]["nodeSelector"]["karpenter.sh/nodepool"]
    (pool,) = [m for m in run.manifests("NodePool") if m["metadata"]["name"] == pool_name]
    limit = int(pool["spec"]["limits"]["nvidia.com/gpu"])
    assert max(rollout.groups) * group_gpus <= limit, (max(rollout.groups), group_gpus, limit)


def test_the_port_follows_the_lws_webhook_rules():
    with pytest.raises(lws_rollout.InvalidRollout):
        lws_rollout.rolling_update_configuration(
            {
                "replicas": 1,
                "rolloutStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdateConfiguration": {"maxSurge": 0, "maxUnavailable": 0},
                },
            }
        )
    assert lws_rollout.rolling_update_configuration({}) == {"maxUnavailable": 1, "maxSurge": 0, "partition": 0}
    # Upstream's own example (types.go): 30% surge of 10 rounds up to 3, 30% unavailable down to 3.
    assert lws_rollout.scaled("30%", 10, True) == 3 and lws_rollout.scaled("25%", 10, False) == 2
    assert multinode.LWS_API_VERSION == "leaderworkerset.x-k8s.io/v1"
