"""A multi-node model's objects and the platform under it, checked against upstream CRDs and chart defaults."""

from __future__ import annotations

import re

import pytest
import yaml

from components.catalog import gpus as gpu_catalog
from components.catalog import versions
from components.serving.builders import multinode
from tests.helm_values import assert_values_keys_exist, reference_values
from tests.k8s_schema import validate_manifest
from tests.multinode.test_launch import _config
from tests.unit.conftest import stack_run_for
from tests.unit.harness import plain_occurrences
from tests.weights_helpers import deployment_manifest

NS = "llama-3-8b"


@pytest.fixture(scope="module")
def run():
    return stack_run_for("multinode")


@pytest.fixture(scope="module")
def lws(run):
    (manifest,) = run.manifests("LeaderWorkerSet")
    return manifest


def test_every_object_of_the_model_and_platform_validates(run):
    kinds = set()
    for manifest in run.manifests():
        if manifest.get("metadata", {}).get("namespace") == NS or manifest["kind"] in ("EC2NodeClass", "NodePool"):
            validate_manifest(manifest)  # custom resources against the reference CRDs (v0.10.0, v1.14.1)
            kinds.add(manifest["kind"])
    assert {
        "LeaderWorkerSet",
        "EC2NodeClass",
        "NodePool",
        "PodMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "Secret",
        "ConfigMap",
    } <= kinds
    cfg_model = _config()
    for manifest in multinode.nccl_test_manifests(cfg_model[1], cfg_model[0].site_of(cfg_model[1])):
        validate_manifest(manifest)


def test_group_shape_restart_and_startup_policy(lws):
    spec = lws["spec"]
    template = spec["leaderWorkerTemplate"]
    assert template["size"] == 2
    assert template["restartPolicy"] == "RecreateGroupOnPodRestart"
    # LeaderReady would start workers only once the leader is Ready, and the leader is Ready only
    # once every worker's ranks run: a deadlock. LeaderCreated starts them together.
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["replicas"] == 1


@pytest.mark.parametrize("role", ["leaderTemplate", "workerTemplate"])
def test_every_pod_takes_a_whole_node_with_its_gpus_and_efa(lws, role):
    pod = lws["spec"]["leaderWorkerTemplate"][role]
    (container,) = pod["spec"]["containers"]
    itype = gpu_catalog.INSTANCE_TYPES["g5.12xlarge"]
    for part in ("requests", "limits"):
        assert container["resources"][part]["nvidia.com/gpu"] == str(itype.gpus)
        assert container["resources"][part]["vpc.amazonaws.com/efa"] == str(itype.efa_interfaces) == "1"
    assert pod["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert pod["spec"]["nodeSelector"] == {"karpenter.sh/nodepool": "g5-efa"}
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    # every rank's engine is staged on every node before its container starts
    (stage,) = pod["spec"]["initContainers"]
    assert "aws s3 sync" in stage["command"][-1] and "/staged" in stage["command"][-1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FI_PROVIDER"] == "efa" and env["NCCL_DEBUG"] == "INFO"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {multinode.SSH_DIR, multinode.LAUNCH_DIR, "/dev/shm", "/staged"} <= mounts
    assert container["command"] == [
        "/bin/sh",
        f"{multinode.LAUNCH_DIR}/{'leader' if role == 'leaderTemplate' else 'worker'}.sh",
    ]


def test_only_the_leader_is_probed_served_and_scraped(run, lws):
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert leader["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # readiness: ready.sh (NCCL on EFA, then the same HTTP check), tests/multinode/test_nccl_network_check.py
    assert leader["readinessProbe"]["exec"]["command"][-2:] == ["8000", "/v2/health/ready"]
    assert "httpGet" not in str(worker) and worker["readinessProbe"]["tcpSocket"]["port"] == "ssh"
    (service,) = [m for m in run.manifests("Service") if m["metadata"].get("namespace") == NS]
    assert service["metadata"]["name"] == "triton" and service["metadata"]["name"] != multinode.LWS_NAME
    assert service["spec"]["selector"][multinode.WORKER_INDEX_LABEL] == "0"
    (monitor,) = [m for m in run.manifests("PodMonitor") if m["metadata"].get("namespace") == NS]
    assert monitor["spec"]["selector"]["matchLabels"][multinode.WORKER_INDEX_LABEL] == "0"
    routes = [
        m for m in run.manifests() if m["kind"] in ("HTTPRoute", "GRPCRoute") and m["metadata"]["namespace"] == NS
    ]
    assert routes and all(
        ref["name"] == "triton" for r in routes for rule in r["spec"]["rules"] for ref in rule["backendRefs"]
    )


def test_hpa_scales_whole_groups_through_the_lws_scale_subresource(run):
    (hpa,) = [m for m in run.manifests("HorizontalPodAutoscaler") if m["metadata"].get("namespace") == NS]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": multinode.LWS_NAME,
    }
    crd = yaml.safe_load(open(_crd_path()))
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    # The HPA writes .spec.replicas (groups) and reads pods from .status.hpaPodSelector (the leaders).
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.hpaPodSelector",
    }
    (pdb,) = [m for m in run.manifests("PodDisruptionBudget") if m["metadata"].get("namespace") == NS]
    assert pdb["spec"]["maxUnavailable"] == 1
    lws_resource = next(r for r in run.k8s_objects("LeaderWorkerSet"))
    assert "spec.replicas" in str(lws_resource.ignore_changes)


def _crd_path():
    from tests.k8s_schema import require_reference_dir

    return require_reference_dir() / "crds" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"


def test_ssh_keys_are_generated_secrets_never_plain(run):
    # the SSH keys; the gateway's own TLS keys (its generated CA) are tests/unit/test_gateway_component.py's
    gateway = {r.urn for r in run.within("tritonllm:gateway:Gateway").resources}
    keys = [k for k in run.of_type("tls:index/privateKey:PrivateKey") if k.urn not in gateway]
    assert {k.inputs["algorithm"] for k in keys} == {"ED25519"} and len(keys) == 2
    (secret,) = [r for r in run.k8s_objects("Secret") if r.inputs["metadata"]["name"] == multinode.SSH_SECRET]
    assert secret.is_secret("stringData")
    assert set(secret.inputs["stringData"]) == {"id_ed25519", "authorized_keys", "ssh_host_ed25519_key", "known_hosts"}
    private = [k.outputs["privateKeyOpenssh"] for k in keys]
    for resource in run.resources:
        for value in private:
            for path in plain_occurrences(resource.inputs, value.strip()):
                assert resource.is_secret(path), f"private key in plain text at {resource.type} {resource.name} {path}"


def test_platform_releases_are_pinned_and_their_values_exist_in_the_chart_defaults(run):
    lws_release = run.helm_release(f"{versions.LEADER_WORKER_SET.repo}/{versions.LEADER_WORKER_SET.name}")
    assert lws_release.inputs["version"] == versions.LEADER_WORKER_SET.version
    assert_values_keys_exist(
        lws_release.inputs["values"],
        versions.LEADER_WORKER_SET.reference_values_file,
        free_form={"nodeSelector", "resources"},
    )
    assert lws_release.inputs["values"]["image"]["manager"]["tag"] == versions.LEADER_WORKER_SET_IMAGE_TAG
    assert reference_values(versions.LEADER_WORKER_SET.reference_values_file)["image"]["manager"]["tag"] == "main"
    efa = run.helm_release(versions.AWS_EFA_DEVICE_PLUGIN.name)
    assert efa.inputs["version"] == versions.AWS_EFA_DEVICE_PLUGIN.version
    values = efa.inputs["values"]
    assert_values_keys_exist(values, versions.AWS_EFA_DEVICE_PLUGIN.reference_values_file, free_form={"nodeSelector"})
    # The plugin must run on our EFA nodes, which carry the GPU taint.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    (pool,) = [m for m in run.manifests("NodePool") if m["metadata"]["name"] == "g5-efa"]
    labels = pool["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in values["nodeSelector"].items())
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in pool["spec"]["template"]["spec"][
        "taints"
    ]


def test_efa_catalog_matches_the_device_plugins_supported_types():
    supported = set(
        reference_values(versions.AWS_EFA_DEVICE_PLUGIN.reference_values_file)["supportedInstanceLabels"]["values"]
    )
    ours = {t.name for t in gpu_catalog.INSTANCE_TYPES.values() if t.efa_interfaces}
    assert ours == supported & set(gpu_catalog.INSTANCE_TYPES)


def test_placement_group_single_subnet_and_efa_security_group_rule(run):
    (group,) = run.of_type("aws:ec2/placementGroup:PlacementGroup")
    assert group.inputs["strategy"] == "cluster"
    (node_class,) = [m for m in run.manifests("EC2NodeClass") if m["metadata"]["name"] == "g5-efa"]
    assert node_class["spec"]["placementGroupSelector"] == {"name": group.outputs["name"]}
    (subnet_term,) = node_class["spec"]["subnetSelectorTerms"]
    subnet = run.by_id(subnet_term["id"])
    assert subnet.inputs["availabilityZone"] == "us-west-2a"
    (rule,) = run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert rule.inputs["ipProtocol"] == "-1"
    assert rule.inputs["securityGroupId"] == rule.inputs["referencedSecurityGroupId"]
    # ...on the security group the Karpenter nodes carry (the EKS cluster security group).
    cluster = run.one("eks:index:Cluster")
    assert rule.inputs["securityGroupId"] in str(cluster.outputs)


def test_engine_is_built_with_the_groups_world_size_on_one_node_of_the_pool(run):
    (engine,) = [r for r in run.resources if r.type.endswith("TrtllmEngine")]
    job_pod = engine.inputs["job"]["spec"]["template"]["spec"]
    build = job_pod["initContainers"][1]  # [0] stages the weights mirror
    args = build["command"]
    assert args[args.index("--tp-size") + 1] == "4" and args[args.index("--pp-size") + 1] == "2"
    assert build["resources"]["requests"]["nvidia.com/gpu"] == "4"  # fits one g5.12xlarge
    assert job_pod["nodeSelector"] == {"karpenter.sh/nodepool": "g5-efa"}


NCCL_TESTS_TAIL = """\
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
  2147483648     536870912     float     sum      -1  123456   17.39   30.44      0  123400   17.40   30.45      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 12.8731
#
"""


def test_bus_bandwidth_is_read_from_the_nccl_tests_summary():
    assert multinode.parse_bus_bandwidth(NCCL_TESTS_TAIL) == pytest.approx(12.8731)
    assert multinode.parse_bus_bandwidth("[1,0]<stdout>:# Avg bus bandwidth    : 3.5 \n") == pytest.approx(3.5)
    assert multinode.parse_bus_bandwidth("no summary") is None


def test_the_engine_build_never_runs_more_parallel_workers_than_its_gpus():
    """trtllm-build maps rank r to GPU r % workers: 8 ranks on a 4-GPU build pod need --workers 4."""
    import importlib.util

    from components.serving.builders import engine_build

    cfg, model = _config()
    spec = importlib.util.spec_from_file_location("build_engine", engine_build.BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(engine_build.build_script_args(model, "k" * 64))
    cmd = module.build_command(args)
    assert cmd[cmd.index("--workers") + 1] == "4"
    assert (args.tp_size, args.pp_size, args.gpus) == (4, 2, 4)


def _probe_budget(probe: dict) -> int:
    """Seconds a startup probe lets a container take before the kubelet kills it."""
    return probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]


def test_the_leaders_startup_probe_outlasts_the_worker_wait_by_a_whole_engine_load(run, lws):
    """The leader waits for its workers' sshd, then its ranks load the engine; the kubelet must allow both.

    Both budgets are read from what the program renders: the leader's startup probe, and how long
    leader.sh waits for workers (WORKER_WAIT_SECONDS in the leader's env, else the script's default).
    The load itself is given what a single-node pod of the same model gets (its startup probe).
    """
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    leader_budget = _probe_budget(leader["startupProbe"])
    env = {e["name"]: e.get("value") for e in leader["env"]}
    (launch,) = [m for m in run.manifests("ConfigMap") if m["metadata"]["name"] == multinode.LAUNCH_CONFIGMAP]
    default = re.search(r'WAIT_SECONDS="\$\{WORKER_WAIT_SECONDS:-(\d+)\}"', launch["data"]["leader.sh"])
    assert default, "leader.sh no longer reads WORKER_WAIT_SECONDS"
    worker_wait = int(env.get("WORKER_WAIT_SECONDS") or default.group(1))

    cfg, model = _config()
    single = deployment_manifest(model, cfg.site_of(model), bucket="bucket", engine_key="k" * 64)
    load_budget = _probe_budget(single["spec"]["template"]["spec"]["containers"][0]["startupProbe"])

    assert leader_budget - worker_wait >= load_budget, (
        f"leader startup probe {leader_budget}s - worker wait {worker_wait}s leaves "
        f"{leader_budget - worker_wait}s to load the engine; a single-node pod gets {load_budget}s"
    )
    # and the wait still fits a worker that pulls the image and stages the engine on a new node
    assert worker_wait >= 20 * 60
