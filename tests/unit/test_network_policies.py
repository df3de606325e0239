"""Pod-to-pod isolation (issue 18): the NetworkPolicies every stack renders, judged flow by flow.

For every committed stack the program runs under mocks; its NetworkPolicies are validated against
the Kubernetes schema (kubernetes-validate) and evaluated with networking/v1 semantics
(tests/network_policy.py) from each class of pod to each port of every model's pods:

    gateway data plane (NGF pods in nginx-gateway)   -> inference ports only
    Prometheus (kube-prometheus-stack, monitoring)   -> the metrics port only
    Grafana, a random pod elsewhere, a random pod in the model's own namespace, pods that copy the
    gateway's or Prometheus's labels outside their namespaces, another model's Triton and its ranks
                                                     -> nothing
    `tritonllm loadtest` Job pods (the model's namespace) -> HTTP only
    a multi-node model's ranks                       -> each other, any port (ssh, mpirun, NCCL)
    `tritonllm nccl-test` pods                       -> each other, any port; not Triton

and every flow the system needs: kubelet probes, DNS, S3/Hugging Face over HTTPS from Triton and
from the engine build Job, the NLB to the gateway, Prometheus to the gateway-less pods it scrapes.

The expectations below are written from the design (who may talk to whom), not read back from the
policies. Nothing on this machine can enforce NetworkPolicy (no cluster, no CNI): this evaluation is
the test of record.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from components.catalog import versions
from components.config import ModelConfig, MonitoringConfig
from components.observability.builders import monitoring_values
from components.serving.builders import engine_build, multinode
from components.serving.builders import network_policies as netpol
from components.serving.builders import triton_manifests as tm
from tests.helm_values import reference_values
from tests.k8s_schema import validate_k8s_object
from tests.network_policy import Cluster, Peer
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, stack_files
from tests.unit.test_network import _cfg as _config
from tests.weights_helpers import mirror_of
from tritonllm import loadtest

LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_LABEL = multinode.WORKER_INDEX_LABEL

# Labels as the upstream controllers put them on their pods, written out here rather than taken
# from the program's own constants:
# NGINX Gateway Fabric 2.6.7 provisions the NGINX data plane of Gateway `tritonllm` (class `nginx`)
# with these (internal/controller/provisioner/objects.go buildLabelsAndAnnotations).
GATEWAY_POD = {
    "app.kubernetes.io/name": "tritonllm-nginx",
    "app.kubernetes.io/instance": "nginx-gateway",
    "gateway.networking.k8s.io/gateway-name": "tritonllm",
}
# The Prometheus Operator runs the Prometheus resource `kps-prometheus` (kube-prometheus-stack with
# fullnameOverride kps) in pods labelled so (the chart's Service selects the first two).
PROMETHEUS_POD = {
    "app.kubernetes.io/name": "prometheus",
    "operator.prometheus.io/name": "kps-prometheus",
    "app.kubernetes.io/instance": "kps-prometheus",
    "app.kubernetes.io/managed-by": "prometheus-operator",
    "prometheus": "kps-prometheus",
    "operator.prometheus.io/shard": "0",
}
# The KEDA HTTP add-on's pods (kedacore/charts http-add-on 0.15.0, release keda-add-ons-http in namespace keda:
# templates/interceptor/deployment.yaml and templates/scaler/deployment.yaml, _helpers.tpl labels), and KEDA's
# operator (keda 2.20.2 templates/manager/deployment.yaml).
_ADD_ON = {
    "app.kubernetes.io/name": "http-add-on",
    "app.kubernetes.io/part-of": "keda-add-ons-http",
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": "keda-add-ons-http",
    "app.kubernetes.io/version": "0.15.0",
    "helm.sh/chart": "keda-add-ons-http-0.15.0",
}
INTERCEPTOR_POD = {**_ADD_ON, "app.kubernetes.io/component": "interceptor"}
SCALER_POD = {**_ADD_ON, "app.kubernetes.io/component": "scaler"}
KEDA_OPERATOR_POD = {"app": "keda-operator", "app.kubernetes.io/name": "keda-operator", "name": "keda-operator"}
INTERCEPTOR_PORTS = {"admin": 9090, "proxy": 8080}
GRAFANA_POD = {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "kps"}
KUBE_DNS_POD = {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"}

S3 = Peer.external("S3 (regional endpoint)", "52.218.0.10")
HUGGING_FACE = Peer.external("huggingface.co", "18.239.50.80")
NLB = Peer.external("the NLB (client IP preserved)", "10.1.0.20")
OTHER_PORTS = (22, 2222, 8080, 9090, 12345, 40000)  # nothing Triton serves to the outside


@dataclass
class ModelPods:
    model: ModelConfig
    serving: list[Peer]  # pods behind the model's Service (multi-node: the leader)
    workers: list[Peer]  # multi-node ranks > 0's pods
    probe_ports: list[int]

    @property
    def all(self) -> list[Peer]:
        return self.serving + self.workers

    def ports(self) -> set[int]:
        return {p for pod in self.all for p in pod.ports.values()}


def _container_ports(pod_spec: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in pod_spec["containers"] for p in c.get("ports", [])}


def _probe_ports(pod_spec: dict) -> list[int]:
    named = _container_ports(pod_spec)
    found = []
    for container in pod_spec["containers"]:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe and "exec" in probe:
                continue  # runs inside the container (the multi-node leader's ready.sh curls 127.0.0.1)
            if probe:
                port = (probe.get("httpGet") or probe.get("tcpSocket"))["port"]
                found.append(named[port] if isinstance(port, str) else port)
    return found


def model_pods(run: ProgramRun, model: ModelConfig) -> ModelPods:
    """The model's pods as the cluster would run them, from the manifests the program registered."""
    if model.multi_node is None:
        (deployment,) = [d for d in run.manifests("Deployment") if d["metadata"]["namespace"] == model.name]
        template = deployment["spec"]["template"]
        pod = Peer.pod(
            f"{model.name} triton", model.name, template["metadata"]["labels"], _container_ports(template["spec"])
        )
        return ModelPods(model, [pod], [], _probe_ports(template["spec"]))
    (lws,) = [m for m in run.manifests("LeaderWorkerSet") if m["metadata"]["namespace"] == model.name]
    templates = lws["spec"]["leaderWorkerTemplate"]
    lws_labels = {LWS_NAME_LABEL: lws["metadata"]["name"], LWS_GROUP_LABEL: "0"}  # LWS's pod webhook adds these
    leader_spec, worker_spec = templates["leaderTemplate"]["spec"], templates["workerTemplate"]["spec"]
    leader = Peer.pod(
        f"{model.name} leader",
        model.name,
        {**templates["leaderTemplate"]["metadata"]["labels"], **lws_labels, LWS_WORKER_LABEL: "0"},
        _container_ports(leader_spec),
        ip="100.64.1.1",
    )
    workers = [
        Peer.pod(
            f"{model.name} worker {i}",
            model.name,
            {**templates["workerTemplate"]["metadata"]["labels"], **lws_labels, LWS_WORKER_LABEL: str(i)},
            _container_ports(worker_spec),
            ip=f"100.64.1.{i + 1}",
        )
        for i in range(1, model.multi_node.nodes)
    ]
    return ModelPods(model, [leader], workers, _probe_ports(leader_spec) + _probe_ports(worker_spec))


def _loadtest_pod(model: ModelConfig) -> Peer:
    profile = loadtest.Profile((1,), 10)
    _, job = loadtest.manifests(
        name="loadtest-x", namespace=model.name, model=model.name, url="http://triton:8000", profile=profile,
        max_tokens=8, image="python", sources={f: "" for f in loadtest.WORKER_FILES},
    )  # fmt: skip
    return Peer.pod(f"{model.name} loadtest", model.name, job["spec"]["template"]["metadata"]["labels"])


def _nccl_test_pods(cfg, model: ModelConfig) -> list[Peer]:
    _, lws = multinode.nccl_test_manifests(model, cfg.site_of(model))
    labels = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["labels"]
    return [Peer.pod(f"{model.name} nccl-test {i}", model.name, {**labels, LWS_WORKER_LABEL: str(i)}) for i in range(2)]


def _engine_build_pod(cfg, model: ModelConfig) -> Peer:
    job = engine_build.engine_build_job_manifest(
        model, cfg.site_of(model), key="k" * 64, namespace=model.name, bucket="b", weights=mirror_of(model)
    )
    return Peer.pod(f"{model.name} engine build", model.name, job["spec"]["template"]["metadata"]["labels"])


def _another_model(cfg, model: ModelConfig) -> list[Peer]:
    """Another model's Triton pods (a real one of the stack if it has two, else one like it in its own namespace)."""
    other = next((m for m in cfg.models if m.name != model.name), None)
    name = other.name if other else "other-model"
    labels = tm.pod_labels(other or model.model_copy(update={"name": name}))
    return [
        Peer.pod(f"{name} triton", name, labels, {"http": 8000, "grpc": 8001, "metrics": 8002}),
        Peer.pod(f"{name} rank", name, {**labels, LWS_WORKER_LABEL: "1"}, {"ssh": 2222}),
    ]


def stack_cluster(run: ProgramRun) -> tuple[Cluster, dict[str, ModelPods]]:
    cfg = _config(run)
    namespaces = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in run.manifests("Namespace")}
    for name in ("nginx-gateway", "monitoring", "kube-system", "default", "other-model", "intruders", "keda"):
        namespaces.setdefault(name, {})
    for m in cfg.models:
        namespaces.setdefault(m.name, {})
    return Cluster(namespaces, run.manifests("NetworkPolicy")), {m.name: model_pods(run, m) for m in cfg.models}


STACKS = stack_files()


@pytest.fixture(scope="module", params=STACKS)
def rendered(request):
    run = stack_run_for(request.param)
    return run, *stack_cluster(run)


# --------------------------------------------------------------------------- the objects themselves


def test_every_network_policy_is_a_valid_object(rendered):
    run, _, models = rendered
    policies = run.manifests("NetworkPolicy")
    assert policies, "no NetworkPolicy rendered"
    for policy in policies:
        validate_k8s_object(policy)
    for name in models:  # every model namespace starts from deny
        (deny,) = [
            p
            for p in policies
            if p["metadata"]["namespace"] == name and p["metadata"]["name"] == "default-deny-ingress"
        ]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}


def test_policies_restrict_ingress_only(rendered):
    """Egress stays open by design (DNS, S3, STS, Hugging Face, the Pod Identity agent, apt mirrors)."""
    run, _, _ = rendered
    for policy in run.manifests("NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"], policy["metadata"]


# --------------------------------------------------------------------------- who reaches a model's pods


def _outsiders(model: ModelConfig, cfg) -> list[Peer]:
    """Pods that must reach nothing of `model`."""
    return [
        Peer.pod("grafana", "monitoring", GRAFANA_POD),
        Peer.pod("a random pod in default", "default", {"app": "debug"}),
        Peer.pod("a random pod in the model's namespace", model.name, {"app": "debug"}),
        Peer.pod("a pod with the gateway's labels in another namespace", "intruders", GATEWAY_POD),
        Peer.pod("a pod with Prometheus's labels in another namespace", "intruders", PROMETHEUS_POD),
        Peer.pod("a pod with the gateway's labels in the model's namespace", model.name, GATEWAY_POD),
        Peer.pod("a pod in nginx-gateway without the data plane's labels", "nginx-gateway", {"app": "debug"}),
        Peer.pod("the engine build Job", model.name, _engine_build_pod(cfg, model).labels),
        *_another_model(cfg, model),
        *(_nccl_test_pods(cfg, model) if model.multi_node else []),
    ]


def test_the_gateway_reaches_inference_ports_only(rendered):
    """The gateway, or for a model that scales to zero the interceptor in front of it (and then not the gateway)."""
    run, cluster, models = rendered
    gateway = Peer.pod("NGINX (gateway data plane)", "nginx-gateway", GATEWAY_POD)
    interceptor = Peer.pod("KEDA HTTP add-on interceptor", "keda", INTERCEPTOR_POD, INTERCEPTOR_PORTS)
    for pods in models.values():
        # KServe HTTP and gRPC; the OpenAI frontend's port when it is on (written out, not read from the builder)
        inference = {8000, 8001} | ({9000} if pods.model.openai.enabled else set())
        front, bypassed = (interceptor, gateway) if pods.model.min_replicas == 0 else (gateway, interceptor)
        for pod in pods.serving:
            for port in sorted(pods.ports() | set(OTHER_PORTS) | {8002}):
                expected = port in inference
                assert cluster.allowed(front, pod, port) == expected, cluster.why(front, pod, port)
                assert not cluster.allowed(bypassed, pod, port), cluster.why(bypassed, pod, port)
        for worker in pods.workers:  # ranks > 0 serve nothing; the Service selects leaders only
            assert not cluster.allowed(gateway, worker, 8000)


def test_the_interceptor_is_reached_by_nginx_and_its_scaler_only(rendered):
    """gateway -> interceptor proxy port; the add-on's scaler -> interceptor admin port; KEDA's operator ->
    the scaler's gRPC port; nothing else (stacks with a model at minReplicas 0)."""
    run, cluster, models = rendered
    if not any(p.model.min_replicas == 0 for p in models.values()):
        assert not [p for p in run.manifests("NetworkPolicy") if p["metadata"]["namespace"] == "keda"]
        return
    interceptor = Peer.pod("interceptor", "keda", INTERCEPTOR_POD, INTERCEPTOR_PORTS, ip="100.64.3.1")
    scaler = Peer.pod("external scaler", "keda", SCALER_POD, {"grpc": 9090}, ip="100.64.3.2")
    operator = Peer.pod("keda-operator", "keda", KEDA_OPERATOR_POD, ip="100.64.3.3")
    gateway = Peer.pod("NGINX (gateway data plane)", "nginx-gateway", GATEWAY_POD)
    cfg = _config(run)
    some_model = next(iter(models.values()))
    for port in (8080, 9090, *OTHER_PORTS):
        assert cluster.allowed(gateway, interceptor, port) == (port == 8080), cluster.why(gateway, interceptor, port)
        assert cluster.allowed(scaler, interceptor, port) == (port == 9090), cluster.why(scaler, interceptor, port)
        assert cluster.allowed(operator, scaler, port) == (port == 9090), cluster.why(operator, scaler, port)
        for outsider in [*_outsiders(some_model.model, cfg), Peer.pod("a random pod in keda", "keda", {"app": "x"})]:
            for target in (interceptor, scaler):
                assert not cluster.allowed(outsider, target, port), cluster.why(outsider, target, port)
    assert cluster.allowed(Peer.node(), interceptor, 9090)  # its probes (admin /livez, /readyz)


def test_only_prometheus_reaches_the_metrics_port(rendered):
    run, cluster, models = rendered
    cfg = _config(run)
    prometheus = Peer.pod("Prometheus", "monitoring", PROMETHEUS_POD)
    for pods in models.values():
        metrics = pods.serving[0].ports["metrics"]
        assert metrics == (9000 if pods.model.openai.enabled else 8002)
        for pod in pods.serving:
            for port in sorted(pods.ports() | set(OTHER_PORTS)):
                expected = cfg.monitoring.enabled and port == metrics
                assert cluster.allowed(prometheus, pod, port) == expected, cluster.why(prometheus, pod, port)
            for outsider in _outsiders(pods.model, cfg):
                assert not cluster.allowed(outsider, pod, metrics), cluster.why(outsider, pod, metrics)


def test_nothing_else_reaches_any_port(rendered):
    """Model control (the repository API on HTTP/gRPC) included: no other pod gets to any port."""
    run, cluster, models = rendered
    cfg = _config(run)
    for pods in models.values():
        for outsider in _outsiders(pods.model, cfg):
            for pod in pods.all:
                for port in sorted(pods.ports() | set(OTHER_PORTS)):
                    assert not cluster.allowed(outsider, pod, port), cluster.why(outsider, pod, port)


def test_loadtest_jobs_reach_http_only(rendered):
    run, cluster, models = rendered
    for pods in models.values():
        job = _loadtest_pod(pods.model)
        for pod in pods.serving:
            for port in sorted(pods.ports() | set(OTHER_PORTS)):
                assert cluster.allowed(job, pod, port) == (port == 8000), cluster.why(job, pod, port)
        # the same labels in another model's namespace reach nothing here
        elsewhere = Peer.pod("a loadtest of another model", "other-model", job.labels)
        assert not cluster.allowed(elsewhere, pods.serving[0], 8000)


def test_multinode_ranks_reach_each_other_on_any_port(rendered):
    run, cluster, models = rendered
    cfg = _config(run)
    for pods in models.values():
        if pods.model.multi_node is None:
            continue
        assert pods.workers, "a multi-node model without workers"
        group = pods.all
        for a in group:
            for b in group:
                for port in (multinode.SSH_PORT, 8000, 8001, 8002, 12345, 40000, 65000):
                    assert cluster.allowed(a, b, port), cluster.why(a, b, port)
        # NCCL test pods: among themselves, any port; never into Triton's ranks
        nccl = _nccl_test_pods(cfg, pods.model)
        assert cluster.allowed(nccl[0], nccl[1], multinode.SSH_PORT) and cluster.allowed(nccl[1], nccl[0], 45000)
        assert not cluster.allowed(nccl[0], pods.workers[0], multinode.SSH_PORT)
        assert not cluster.allowed(pods.workers[0], nccl[0], multinode.SSH_PORT)


def test_a_model_without_multinode_gets_no_group_policy(rendered):
    run, _, models = rendered
    for name, pods in models.items():
        names = {p["metadata"]["name"] for p in run.manifests("NetworkPolicy") if p["metadata"]["namespace"] == name}
        assert ("triton-group" in names) == (pods.model.multi_node is not None), names


# --------------------------------------------------------------------------- flows the system needs


def test_kubelet_probes_still_reach_every_pod(rendered):
    _, cluster, models = rendered
    for pods in models.values():
        assert pods.probe_ports, "no probe found"
        for pod in pods.all:
            for port in pods.probe_ports:
                assert cluster.allowed(Peer.node(), pod, port)
        # and they are not merely allowed because nothing is isolated: the pods are isolated
        assert all(cluster.selecting(pod, "Ingress") for pod in pods.all)


def test_egress_the_pods_need_is_still_allowed(rendered):
    run, cluster, models = rendered
    cfg = _config(run)
    dns = Peer.pod("CoreDNS", "kube-system", KUBE_DNS_POD)
    for pods in models.values():
        senders = [*pods.all, _engine_build_pod(cfg, pods.model), _loadtest_pod(pods.model)]
        for pod in senders:
            assert cluster.allowed(pod, dns, 53, "UDP") and cluster.allowed(pod, dns, 53, "TCP"), pod.name
            assert cluster.allowed(pod, S3, 443), pod.name  # S3 (vLLM repository, engine staging and upload)
            assert cluster.allowed(pod, HUGGING_FACE, 443), pod.name  # weights, tokenizer
    # The OpenAI frontend runs Triton in its own process (components/serving/builders/openai.py): no
    # network between them, and loopback never leaves the pod, so no policy can cut it.


def test_the_gateway_and_prometheus_themselves_stay_reachable(rendered):
    """No policy selects the gateway or monitoring pods: the NLB keeps reaching NGINX, Grafana Prometheus."""
    _, cluster, _ = rendered
    gateway = Peer.pod("NGINX", "nginx-gateway", GATEWAY_POD, {"http": 8000})
    prometheus = Peer.pod("Prometheus", "monitoring", PROMETHEUS_POD, {"web": 9090})
    assert cluster.allowed(NLB, gateway, 8000) and cluster.allowed(NLB, gateway, 8081)
    assert cluster.allowed(Peer.pod("grafana", "monitoring", GRAFANA_POD), prometheus, 9090)


# --------------------------------------------------------------------------- the labels the policies rely on


def test_the_policies_select_what_the_controllers_label():
    """The selectors equal the labels written out above from the upstream controllers, and the
    loadtest and NCCL test pods the toolbox creates carry the labels the policies admit."""
    assert netpol.gateway_peer()["podSelector"]["matchLabels"].items() <= GATEWAY_POD.items()
    assert netpol.prometheus_peer()["podSelector"]["matchLabels"].items() <= PROMETHEUS_POD.items()
    cfg = _config(stack_run_for("multinode"))
    model = cfg.models[0]
    assert netpol.LOADTEST_POD_LABELS.items() <= _loadtest_pod(model).labels.items()
    assert netpol.NCCL_TEST_POD_LABELS.items() <= _nccl_test_pods(cfg, model)[0].labels.items()


def test_prometheus_pod_name_follows_the_chart_default():
    """operator.prometheus.io/name is `<fullname>-prometheus` only while cleanPrometheusOperatorObjectNames
    is false (kube-prometheus-stack _helpers.tpl): the chart's default, which the program does not set."""
    values = monitoring_values.kube_prometheus_stack_values(MonitoringConfig(), "grafana-admin", "gp3")
    assert "cleanPrometheusOperatorObjectNames" not in values
    assert values["fullnameOverride"] == monitoring_values.KPS_RELEASE == "kps"
    defaults = reference_values(versions.KUBE_PROMETHEUS_STACK.reference_values_file)
    assert defaults["cleanPrometheusOperatorObjectNames"] is False
