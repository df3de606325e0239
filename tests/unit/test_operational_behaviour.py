"""Replica, rollout, disruption and storage behaviour users rely on, checked on the whole program.

Each test names the behaviour and what breaks for a user without it. Values are written out
here (not taken from the builders that produce them), so a change to a builder fails a test.
Assertions are on properties, so other fields can be added to the same objects.
"""

from __future__ import annotations

import pytest

from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, RecordedResource, run_program, stack_files

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LEADER_WORKER_SET = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
TRITON_TYPE = "tritonllm:serving:TritonLLM"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def triton_deployments(run: ProgramRun) -> dict[str, RecordedResource]:
    """Model name -> the workload its TritonLLM component registers: a Deployment, or for a
    multi-node model a LeaderWorkerSet (the HPA scales either)."""
    found = {}
    for server in run.of_type(TRITON_TYPE):
        (workload,) = [
            r for r in run.of_type(DEPLOYMENT) + run.of_type(LEADER_WORKER_SET) if server in run.ancestors(r)
        ]
        found[server.name] = workload
    assert found, "no TritonLLM workload in the program"
    return found


def hpas_by_namespace(run: ProgramRun) -> dict[str, dict]:
    """Each model's HPA: the plain one, or for a model at minReplicas 0 the one KEDA makes from its ScaledObject
    (advanced.horizontalPodAutoscalerConfig, bounds from minReplicaCount/maxReplicaCount)."""
    found = {m["metadata"]["namespace"]: m for m in run.manifests("HorizontalPodAutoscaler")}
    for so in run.manifests("ScaledObject"):
        spec = so["spec"]
        found[so["metadata"]["namespace"]] = {
            "metadata": {"name": spec["advanced"]["horizontalPodAutoscalerConfig"]["name"]},
            "spec": {
                "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
                "minReplicas": spec["minReplicaCount"],
                "maxReplicas": spec["maxReplicaCount"],
            },
        }
    return found


@pytest.fixture(scope="module", params=stack_files())
def run(request) -> ProgramRun:
    return stack_run_for(request.param)


# --------------------------------------------------------------------------- Deployment


def test_pulumi_up_leaves_the_replica_count_to_the_hpa(run):
    # Without ignoreChanges on spec.replicas, every `pulumi up` writes minReplicas back over
    # whatever the HPA scaled to (a scaled-out model drops to one replica under load).
    for model, deployment in triton_deployments(run).items():
        assert "spec.replicas" in deployment.ignore_changes, (model, deployment.ignore_changes)


def test_rollouts_wait_an_hour_for_a_cold_start(run):
    # Pulling a 15-20 GB image, staging an engine or downloading weights, then loading, takes
    # longer than Pulumi's default 10 minutes: create and update wait 60 minutes. A multi-node group's
    # leader may first wait for its workers, then load: no less than its startup probe allows.
    from components.serving.builders.multinode import LEADER_STARTUP_BUDGET_SECONDS

    for model, deployment in triton_deployments(run).items():
        timeouts = deployment.custom_timeouts
        if deployment.type == LEADER_WORKER_SET:
            minutes = int(timeouts["create"].removesuffix("m"))
            assert minutes * 60 >= LEADER_STARTUP_BUDGET_SECONDS and timeouts["update"] == timeouts["create"], timeouts
            continue
        assert timeouts.get("create") == "60m" and timeouts.get("update") == "60m", (model, timeouts)


# --------------------------------------------------------------------------- HPA


def test_hpa_scales_up_fast_and_down_one_replica_at_a_time(run):
    models = {m["name"]: m for m in run.config["tritonllm:models"]}
    hpas = hpas_by_namespace(run)
    for model, workload in triton_deployments(run).items():
        multi_node = workload.type == LEADER_WORKER_SET
        behavior = hpas[model]["spec"]["behavior"]
        up, down = behavior["scaleUp"], behavior["scaleDown"]
        autoscaling = models[model].get("autoscaling", {})
        # Windows: the config's, defaulting to react at once upwards and wait 5 minutes downwards.
        assert up["stabilizationWindowSeconds"] == autoscaling.get("scaleUpStabilizationSeconds", 0)
        assert down["stabilizationWindowSeconds"] == autoscaling.get("scaleDownStabilizationSeconds", 300)
        # Up: the larger of +2 pods or +100 % per minute (a new replica waits minutes for a GPU node);
        # a multi-node group needs `nodes` GPU nodes: one group per 5 minutes.
        assert up["selectPolicy"] == "Max"
        expected_up = {("Pods", 1, 300)} if multi_node else {("Pods", 2, 60), ("Percent", 100, 60)}
        assert {(p["type"], p["value"], p["periodSeconds"]) for p in up["policies"]} == expected_up
        # Down: at most one pod per two minutes (a cold start is expensive to redo).
        assert down["selectPolicy"] == "Min"
        assert {(p["type"], p["value"], p["periodSeconds"]) for p in down["policies"]} == {("Pods", 1, 120)}


def test_hpa_windows_and_bounds_follow_the_stack_config():
    run = run_program(
        "vllm",
        overrides={
            "models[0].autoscaling.scaleUpStabilizationSeconds": 45,
            "models[0].autoscaling.scaleDownStabilizationSeconds": 900,
            "models[0].minReplicas": 2,
            "models[0].maxReplicas": 3,
        },
    )
    name = run.config["tritonllm:models"][0]["name"]
    spec = hpas_by_namespace(run)[name]["spec"]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 45
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 3)
    # the Deployment starts at minReplicas; the HPA owns the count afterwards
    assert triton_deployments(run)[name].get("spec.replicas") == 2


# --------------------------------------------------------------------------- Karpenter


def test_nodepools_disrupt_at_most_one_gpu_node_at_a_time(run):
    # Karpenter's default budget is 10 % of the nodes; consolidation or drift could then drain
    # several serving GPU nodes at once. The most restrictive budget wins, so one budget that
    # always applies (no schedule), to every reason, with nodes "1" is what caps it.
    gpu_pools = {p["name"] for p in run.config["tritonllm:nodePools"]}
    pools = [p for p in run.manifests("NodePool") if p["metadata"]["name"] in gpu_pools]
    assert {p["metadata"]["name"] for p in pools} == gpu_pools
    for pool in pools:
        budgets = pool["spec"]["disruption"].get("budgets", [])
        always = [b for b in budgets if "schedule" not in b and "reasons" not in b]
        assert any(b.get("nodes") == "1" for b in always), (pool["metadata"]["name"], budgets)


# --------------------------------------------------------------------------- storage


def _storage_classes(run: ProgramRun) -> list[dict]:
    return run.manifests("StorageClass")


def test_one_default_storage_class_bound_where_the_pod_lands_and_expandable(run):
    defaults = [
        sc
        for sc in _storage_classes(run)
        if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    assert len(defaults) == 1, [sc["metadata"]["name"] for sc in defaults]
    default = defaults[0]
    assert default["provisioner"] == "ebs.csi.aws.com"
    # EBS volumes are zonal: binding before the pod is scheduled can put the volume in a zone
    # the pod cannot run in (stuck Pending); and a full volume must be growable in place.
    assert default["volumeBindingMode"] == "WaitForFirstConsumer"
    assert default["allowVolumeExpansion"] is True
    assert default["parameters"]["encrypted"] == "true"


def test_every_ebs_storage_class_waits_for_the_pod_and_can_grow(run):
    ebs = [sc for sc in _storage_classes(run) if sc["provisioner"] == "ebs.csi.aws.com"]
    assert ebs
    for sc in ebs:
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer", sc["metadata"]["name"]
        assert sc.get("allowVolumeExpansion") is True, sc["metadata"]["name"]


# --------------------------------------------------------------------------- subnet discovery


def test_load_balancers_and_karpenter_find_the_right_subnets(run):
    # The AWS Load Balancer Controller picks subnets by kubernetes.io/role/(internal-)elb, Karpenter
    # by its discovery tag: a wrong or missing tag puts NLBs or GPU nodes in the wrong subnets
    # (or nowhere). Tag names as the controllers document them, written out here.
    cluster = run.config["tritonllm:name"]
    subnets = [r for r in run.of_type("aws:ec2/subnet:Subnet")]
    by_role: dict[str, list[dict]] = {}
    for subnet in subnets:
        by_role.setdefault(subnet.inputs["tags"]["tritonllm/subnet-role"], []).append(subnet.inputs["tags"])
    assert set(by_role) == {"public", "private", "pods"}
    for tags in by_role["public"]:
        assert tags.get("kubernetes.io/role/elb") == "1" and "kubernetes.io/role/internal-elb" not in tags
        assert "karpenter.sh/discovery" not in tags  # nodes never in public subnets
    for tags in by_role["private"]:
        assert tags.get("kubernetes.io/role/internal-elb") == "1" and "kubernetes.io/role/elb" not in tags
        assert tags.get("karpenter.sh/discovery") == cluster
    for tags in by_role["pods"]:
        assert not {"kubernetes.io/role/elb", "kubernetes.io/role/internal-elb", "karpenter.sh/discovery"} & set(tags)
    # Node classes select the private subnets: by the discovery tag, or (one-AZ EFA pools) by the
    # id of a private subnet.
    private_ids = {r.id for r in subnets if r.inputs["tags"]["tritonllm/subnet-role"] == "private"}
    for node_class in run.manifests("EC2NodeClass"):
        for term in node_class["spec"]["subnetSelectorTerms"]:
            assert term == {"tags": {"karpenter.sh/discovery": cluster}} or term.get("id") in private_ids, term
