"""Scale to zero with the request held (issue 21 item 1; docs/autoscaling.md "Scale to zero").

The vllm stack scales mistral-7b-instruct to zero. Under Pulumi mocks the program's KEDA objects are checked
against the reference CRDs (schema, and every CEL rule with cel-python), the two charts' values against their
reference defaults, and the routing chain gateway -> interceptor -> Triton against the upstream behaviour it
relies on, written out here from the sources at the pinned versions (kedacore/http-add-on v0.15.0,
kedacore/charts keda v2.20.2 and http-add-on 0.15.0, nginx-gateway-fabric v2.6.7), not read back from
the builders:

* the interceptor routes a request to the InterceptorRoute whose rule headers all match
  (pkg/routing/tablememory.go headersMatch; a rule without hosts/paths is a catch-all key);
* it speaks h2c to the target only where the Service port says appProtocol kubernetes.io/h2c
  (interceptor/handler/upstream.go requiresHTTP2), and accepts HTTP/1.1 and h2c prior knowledge on its
  proxy port (pkg/http/server.go: Protocols HTTP1 + UnencryptedHTTP2), which NGINX's proxy_pass and
  grpc_pass speak;
* the chart names its Services "<Chart.Name>-<values service>" (templates/interceptor/service-proxy.yaml,
  templates/scaler/service.yaml).
"""

from __future__ import annotations

import copy

import pytest

from components.catalog import versions
from components.config import ModelConfig, parse_stack_config
from components.observability.builders import alerts, metrics
from components.platform.builders import keda
from components.serving.builders import scale_to_zero as stz
from components.serving.builders import triton_manifests as tm
from tests.helm_values import assert_values_keys_exist, reference_values
from tests.k8s_cel import assert_cel_rules_hold, cel_rules
from tests.k8s_schema import require_reference_dir, validate_custom_resource, validate_k8s_object
from tests.unit.conftest import stack_run_for
from tests.unit.test_config_checks import _raw_config
from tests.unit.test_config_errors import BadConfig

MODEL = "mistral-7b-instruct"  # the vllm stack's model with minReplicas 0
CHART_NAME = "keda-add-ons-http"  # http-add-on Chart.yaml name at 0.15.0
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
KEDA_KINDS = ("ScaledObject", "InterceptorRoute", "ReferenceGrant", "ProxySettingsPolicy", "SnippetsFilter")


@pytest.fixture(scope="module")
def run():
    return stack_run_for("vllm")


@pytest.fixture(scope="module")
def cfg():
    return parse_stack_config(_raw_config(BadConfig("ok", "vllm", {}, "", "")), {"hfToken", "apiKeys"})


def _in(manifests, namespace):
    return [m for m in manifests if m["metadata"].get("namespace") == namespace]


def _model(cfg, name=MODEL) -> ModelConfig:
    return next(m for m in cfg.models if m.name == name)


# --------------------------------------------------------------------------- the shipped stack uses it


def test_vllm_stack_scales_one_model_to_zero_and_keeps_the_other(run, cfg):
    assert [m.name for m in cfg.scale_to_zero_models] == [MODEL]
    assert [d["spec"]["replicas"] for d in _in(run.manifests("Deployment"), MODEL)] == [0]
    # KEDA owns the HPA of the model at zero; the other keeps the plain HPA and gets no KEDA object.
    assert _in(run.manifests("HorizontalPodAutoscaler"), MODEL) == []
    assert len(_in(run.manifests("HorizontalPodAutoscaler"), "llama-2-7b-chat")) == 1
    assert _in(run.manifests("ScaledObject"), "llama-2-7b-chat") == []
    assert len(_in(run.manifests("ScaledObject"), MODEL)) == 1
    assert {r.inputs["chart"] for r in run.helm_releases()} >= {versions.KEDA.name, versions.KEDA_HTTP_ADD_ON.name}


def test_keda_is_installed_only_when_a_model_scales_to_zero():
    dev = stack_run_for("dev")
    charts = {r.inputs["chart"] for r in dev.helm_releases()}
    assert not charts & {versions.KEDA.name, versions.KEDA_HTTP_ADD_ON.name}
    assert not dev.manifests("ScaledObject") and not dev.manifests("InterceptorRoute")


def test_releases_pin_the_charts(run):
    for chart in (versions.KEDA, versions.KEDA_HTTP_ADD_ON):
        release = run.helm_release(chart.name)
        assert release.inputs["version"] == chart.version
        assert release.inputs["repositoryOpts"]["repo"] == chart.repo
        assert release.inputs["namespace"] == keda.NAMESPACE


# --------------------------------------------------------------------------- against the CRDs: schema and CEL


def test_every_keda_and_route_object_is_valid_against_its_crd_and_its_cel_rules(run):
    require_reference_dir()
    checked = {}
    for kind in (*KEDA_KINDS, *ROUTE_KINDS):
        for manifest in run.manifests(kind):
            validate_custom_resource(manifest)
            checked[kind] = checked.get(kind, 0) + assert_cel_rules_hold(manifest)
    # The rules ran: the CRDs of these kinds carry CEL rules on nodes our objects have.
    assert checked["InterceptorRoute"] >= 2 * 2  # target port/portName and scalingMetric, per route
    assert checked["ScaledObject"] >= 1  # minReplicaCount <= maxReplicaCount
    assert checked["ProxySettingsPolicy"] >= 3 and checked["SnippetsFilter"] >= 1


def test_the_cel_evaluator_refuses_what_the_api_server_would():
    """Break the objects the way the CRDs' rules forbid: each must fail (the evaluator is not a no-op)."""
    require_reference_dir()
    cfg = parse_stack_config(_raw_config(BadConfig("ok", "vllm", {}, "", "")), {"hfToken", "apiKeys"})
    model = _model(cfg)
    site = cfg.site_of(model)
    route = stz.interceptor_route_manifest(model, site, stz.held_backends(model)[0])
    both = copy.deepcopy(route)
    both["spec"]["target"]["portName"] = "http"  # exactly one of port or portName
    no_metric = copy.deepcopy(route)
    no_metric["spec"]["scalingMetric"] = {}  # at least one of concurrency or requestRate
    scaled = stz.scaled_object_manifest(model, site)
    inverted = copy.deepcopy(scaled)
    inverted["spec"]["minReplicaCount"] = 9  # above maxReplicaCount 4
    for broken, message in (
        (both, "exactly one of 'port' or 'portName'"),
        (no_metric, "at least one of 'concurrency' or 'requestRate'"),
        (inverted, "minReplicaCount must be less than or equal to maxReplicaCount"),
    ):
        validate_custom_resource(broken)  # the schema alone accepts each of them
        with pytest.raises(AssertionError, match=message):
            assert_cel_rules_hold(broken)
    assert any("oldSelf" not in r["rule"] for _, r, _ in cel_rules(route))


# --------------------------------------------------------------------------- chart values


FREE_FORM = frozenset({"*.nodeSelector", "nodeSelector", "securityContext", "podSecurityContext"})


def test_chart_values_exist_in_the_reference_defaults(run):
    # securityContext/podSecurityContext: both charts pass them through toYaml (http-add-on templates/*/
    # deployment.yaml, keda templates/manager/deployment.yaml), their per-component keys are commented out.
    assert_values_keys_exist(run.helm_release("keda").inputs["values"], versions.KEDA.reference_values_file, FREE_FORM)
    assert_values_keys_exist(
        run.helm_release(CHART_NAME).inputs["values"], versions.KEDA_HTTP_ADD_ON.reference_values_file, FREE_FORM
    )


def test_the_names_and_ports_we_use_are_the_charts_defaults():
    """We set no service name or port: the constants must be what the charts render by default."""
    add_on = reference_values(versions.KEDA_HTTP_ADD_ON.reference_values_file)
    assert keda.INTERCEPTOR_PROXY_SERVICE == f"{CHART_NAME}-{add_on['interceptor']['proxy']['service']}"
    assert keda.INTERCEPTOR_PROXY_PORT == add_on["interceptor"]["proxy"]["port"]
    assert add_on["interceptor"]["proxy"]["appProtocol"] == ""  # NGF: no appProtocol, HTTPRoute and GRPCRoute alike
    assert keda.INTERCEPTOR_ADMIN_PORT == add_on["interceptor"]["admin"]["port"]
    assert keda.EXTERNAL_SCALER_SERVICE == f"{CHART_NAME}-{add_on['scaler']['service']}"
    assert keda.EXTERNAL_SCALER_PORT == add_on["scaler"]["grpcPort"]
    keda_defaults = reference_values(versions.KEDA.reference_values_file)
    assert keda.KEDA_OPERATOR_POD_LABELS == {"app": keda_defaults["operator"]["name"]}
    # KEDA's own pods already run restricted by default; we keep its securityContext untouched.
    for component in ("operator", "metricServer", "webhooks"):
        container = keda_defaults["securityContext"][component]
        assert container["seccompProfile"] == {"type": "RuntimeDefault"} and container["capabilities"]["drop"] == [
            "ALL"
        ]
        assert container["allowPrivilegeEscalation"] is False
        assert keda_defaults["podSecurityContext"][component]["runAsNonRoot"] is True


def test_http_add_on_pods_meet_restricted_pod_security():
    values = keda.http_add_on_helm_values(drain_seconds=[300])
    container = values["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"} and container["runAsNonRoot"] is True
    for component in ("operator", "scaler", "interceptor"):
        pod = values["podSecurityContext"][component]
        assert pod["runAsNonRoot"] is True and isinstance(pod["runAsUser"], int) and pod["runAsUser"] != 0
    assert keda.namespace_manifest()["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_least_privilege_values():
    values = keda.keda_helm_values()
    assert values["rbac"]["enabledCustomScaledRefKinds"] is False  # no `*/*/scale` rule
    assert values["permissions"]["operator"]["restrict"]["secret"] is True
    assert values["permissions"]["metricServer"]["restrict"]["secret"] is True


def test_the_interceptor_drains_as_long_as_the_models_it_fronts():
    values = keda.http_add_on_helm_values(drain_seconds=[300, 900])["interceptor"]
    assert values["drainTimeout"] == "900s"
    # the chart: terminationGracePeriodSeconds "must be at least shutdownDelay + drainTimeout"
    assert values["terminationGracePeriodSeconds"] >= int(values["shutdownDelay"][:-1]) + 900


# --------------------------------------------------------------------------- the routing chain


def interceptor_route(routes: list[dict], headers: dict[str, str]) -> dict | None:
    """What the v0.15.0 interceptor picks for a request: it watches every namespace, and our rules have no
    hosts or paths (one catch-all key), so the first route whose rule headers all match."""
    for ir in routes:
        for rule in ir["spec"]["rules"]:
            assert not rule.get("hosts") and not rule.get("paths")
            if all(headers.get(h["name"]) == h.get("value") for h in rule["headers"]):
                return ir
    return None


def _nginx_headers(rule: dict, client: dict[str, str]) -> dict[str, str]:
    """Request headers after NGF's RequestHeaderModifier `set` (replaces a client's value)."""
    out = dict(client)
    for f in rule.get("filters", []):
        if f["type"] == "RequestHeaderModifier":
            for h in f["requestHeaderModifier"].get("set", []):
                out[h["name"]] = h["value"]
    return out


def test_every_held_rule_goes_to_the_interceptor_and_lands_on_the_triton_port_it_had(run, cfg):
    model = _model(cfg)
    plain = {r["kind"]: r for r in tm.route_manifests(model, "tritonllm", "nginx-gateway")}
    held = {r["kind"]: r for r in _in(run.manifests(), MODEL) if r["kind"] in ROUTE_KINDS}
    routes = run.manifests("InterceptorRoute")
    service = next(s for s in _in(run.manifests("Service"), MODEL))
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    for kind in ROUTE_KINDS:
        assert len(held[kind]["spec"]["rules"]) == len(plain[kind]["spec"]["rules"])
        for held_rule, plain_rule in zip(held[kind]["spec"]["rules"], plain[kind]["spec"]["rules"], strict=True):
            # same matches, same rewrite, API key still checked first
            assert held_rule["matches"] == plain_rule["matches"]
            assert held_rule["filters"][0]["extensionRef"]["kind"] == "AuthenticationFilter"
            assert [f for f in held_rule["filters"] if f["type"] == "URLRewrite"] == [
                f for f in plain_rule.get("filters", []) if f["type"] == "URLRewrite"
            ]
            assert held_rule["backendRefs"] == [
                {
                    "group": "",
                    "kind": "Service",
                    "name": f"{CHART_NAME}-interceptor-proxy",
                    "namespace": "keda",
                    "port": 8080,
                }
            ]
            # a client trying to steer to another model's route is overridden by NGINX
            headers = _nginx_headers(held_rule, {stz.ROUTE_HEADER: "llama-2-7b-chat-http"})
            ir = interceptor_route(routes, headers)
            assert ir is not None and ir["metadata"]["namespace"] == MODEL
            (triton_port,) = {b["port"] for b in plain_rule["backendRefs"]}
            assert ir["spec"]["target"] == {"service": tm.SERVICE_NAME, "port": triton_port}
            # gRPC reaches Triton as h2c (appProtocol), HTTP/1.1 elsewhere
            h2c = ports[triton_port].get("appProtocol") == "kubernetes.io/h2c"
            assert h2c == (kind == "GRPCRoute"), (kind, triton_port)
    # a request that no NGINX rule tagged finds no route at the interceptor (404 there, never another model)
    assert interceptor_route(routes, {}) is None


def test_the_reference_grant_admits_exactly_the_held_routes(run):
    (grant,) = run.manifests("ReferenceGrant")
    assert grant["metadata"]["namespace"] == "keda"
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": f"{CHART_NAME}-interceptor-proxy"}]
    assert sorted((f["kind"], f["namespace"]) for f in grant["spec"]["from"]) == [
        ("GRPCRoute", MODEL),
        ("HTTPRoute", MODEL),
    ]
    for route in run.manifests():
        if route["kind"] in ROUTE_KINDS:
            for rule in route["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    if ref.get("namespace", route["metadata"]["namespace"]) != route["metadata"]["namespace"]:
                        assert route["metadata"]["namespace"] == MODEL


def test_openai_routes_are_held_too(cfg):
    model = _model(cfg).model_copy(update={"openai": _model(cfg).openai.model_copy(update={"enabled": True})})
    site = cfg.site_of(model)
    routes = stz.held_route_manifests(model, site, tm.route_manifests(model, "tritonllm", "nginx-gateway"))
    irs = [stz.interceptor_route_manifest(model, site, b) for b in stz.held_backends(model)]
    assert {ir["spec"]["target"]["port"] for ir in irs} == {8000, 8001, 9000}
    http = next(r for r in routes if r["kind"] == "HTTPRoute")
    openai_rules = [r for r in http["spec"]["rules"] if any("/v1" in m["path"]["value"] for m in r["matches"])]
    assert openai_rules
    for rule in openai_rules:
        assert interceptor_route(irs, _nginx_headers(rule, {}))["spec"]["target"]["port"] == 9000
    assert "openai" in stz.scaled_object_manifest(model, site)["spec"]["advanced"]["scalingModifiers"]["formula"]


# --------------------------------------------------------------------------- scaling: one metric above zero


def test_the_scaled_object_keeps_the_plain_hpas_metric_name_bounds_and_behaviour(run, cfg):
    model = _model(cfg)
    (so,) = run.manifests("ScaledObject")
    plain = tm.hpa_manifest(model)
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {**plain["spec"]["scaleTargetRef"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, model.max_replicas)
    assert spec["cooldownPeriod"] == model.autoscaling.idle == 900
    hpa = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa["name"] == plain["metadata"]["name"]  # alerts, dashboard and loadtest read the HPA by this name
    # a model switched to 0 still has the plain HPA of that name until `pulumi up` deletes it: KEDA takes it over
    # (keda v2.20.2 verifyHpas: the annotation, and horizontalPodAutoscalerConfig.name equal to the HPA's)
    assert so["metadata"]["annotations"] == {"scaledobject.keda.sh/transfer-hpa-ownership": "true"}
    assert hpa["behavior"] == plain["spec"]["behavior"]
    # The prometheus trigger reads the record prometheus-adapter serves the plain HPA, for this model only.
    rule = next(
        r for r in metrics.adapter_rules() if r["name"]["as"] == plain["spec"]["metrics"][0]["pods"]["metric"]["name"]
    )
    record = rule["seriesQuery"].split("{")[0]
    (prom,) = [t for t in spec["triggers"] if t["type"] == "prometheus"]
    assert prom["metadata"]["query"] == f'sum({record}{{namespace="{MODEL}"}}) or vector(0)'
    target = plain["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["target"] == prom["metadata"]["threshold"] == target
    assert modifiers["metricType"] == "AverageValue"
    # The formula names every trigger (expr-lang identifiers) and nothing else.
    names = {t["name"] for t in spec["triggers"]}
    assert names == {"http", "grpc", stz.METRIC_TRIGGER}
    words = {w for w in modifiers["formula"].replace("(", " ").replace(")", " ").split() if w.isidentifier()}
    assert words == names
    # Every push trigger points at the add-on's scaler and one of this model's InterceptorRoutes.
    irs = {ir["metadata"]["name"] for ir in _in(run.manifests("InterceptorRoute"), MODEL)}
    push = [t for t in spec["triggers"] if t["type"] == "external-push"]
    assert {t["metadata"]["interceptorRoute"] for t in push} == irs
    assert {t["metadata"]["scalerAddress"] for t in push} == {f"{CHART_NAME}-external-scaler.keda:9090"}


def _formula(formula: str, **values: float) -> float:
    """expr-lang's reading of our formula: `a && b ? x : y` is `(a && b) ? x : y` (ternary binds loosest)."""
    condition, _, branches = formula.partition("?")
    then, _, otherwise = branches.partition(":")
    expr = condition.replace("&&", " and ")
    env = dict(values)
    return float(eval(then, {}, env) if eval(expr, {}, env) else eval(otherwise, {}, env))


def _hpa_replicas(value: float, target: float) -> int:
    """An HPA's replicas for an AverageValue external metric: ceil(value / target) (kubernetes v1.34
    pkg/controller/podautoscaler/replica_calculator.go GetExternalPerPodMetricReplicas)."""
    import math

    return math.ceil(value / target)


@pytest.mark.parametrize("target", [None, 0.5, 0.8, 1000.0])
def test_the_formula_asks_for_one_replica_while_requests_wait_and_follows_the_metric_otherwise(cfg, target):
    model = _model(cfg)
    if target is not None:  # a per-pod target below 1 (a ratio) as well as the stack's own and a large one
        model = model.model_copy(update={"autoscaling": model.autoscaling.model_copy(update={"target": target})})
    per_pod = float(
        stz.scaled_object_manifest(model, cfg.site_of(model))["spec"]["advanced"]["scalingModifiers"]["target"]
    )
    formula = stz.scaling_formula(model)
    assert _formula(formula, http=0, grpc=0, triton_metric=0) == 0  # idle: inactive, scale to zero after cooldown
    held = _formula(formula, http=3, grpc=0, triton_metric=0)
    assert held > 0 and _hpa_replicas(held, per_pod) == 1  # held requests: one replica, whatever the target
    assert _formula(formula, http=3, grpc=1, triton_metric=17.5) == 17.5  # running: the Triton metric alone
    assert _formula(formula, http=0, grpc=0, triton_metric=4) == 4


# --------------------------------------------------------------------------- timeouts, end to end

PLAINTEXT = {"gateway.tls.plaintextInsideVpc": True}


def test_timeouts_agree_from_the_nlb_to_triton(run, cfg):
    model = _model(cfg)
    cold, request = model.autoscaling.cold_start_timeout, cfg.gateway.request_timeout_seconds
    (route,) = [ir for ir in run.manifests("InterceptorRoute") if ir["metadata"]["name"] == f"{MODEL}-http"]
    assert route["spec"]["timeouts"] == {"readiness": f"{cold}s", "responseHeader": f"{request}s"}
    assert "request" not in route["spec"]["timeouts"]  # a stream is never cut by a total deadline
    (proxy,) = _in(run.manifests("ProxySettingsPolicy"), MODEL)
    read = int(proxy["spec"]["timeout"]["read"][:-1])
    assert proxy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": f"{MODEL}-http"}
    ]
    assert read > cold + request  # NGINX waits longer than the interceptor: the client gets the interceptor's 504
    (snippets,) = _in(run.manifests("SnippetsFilter"), MODEL)
    text = snippets["spec"]["snippets"][0]["value"]
    assert (
        f"grpc_read_timeout {read}s;" in text and snippets["spec"]["snippets"][0]["context"] == "http.server.location"
    )
    grpc = next(r for r in _in(run.manifests("GRPCRoute"), MODEL))
    for rule in grpc["spec"]["rules"]:
        assert {"group": "gateway.nginx.org", "kind": "SnippetsFilter", "name": snippets["metadata"]["name"]} in [
            f.get("extensionRef") for f in rule["filters"]
        ]
    # Plaintext gateway: the NLB's TCP idle timeout covers the longest hold; TLS: fixed 350 s (docs say
    # clients keep the connection alive, see docs/autoscaling.md).
    raw = _raw_config(BadConfig("ok", "vllm", {"gateway.tls.plaintextInsideVpc": True}, "", ""))
    plaintext = parse_stack_config(raw, {"hfToken", "apiKeys"})
    assert plaintext.nlb_idle_timeout_seconds > read
    assert cfg.nlb_idle_timeout_seconds == 350


def test_the_plaintext_nlb_gets_the_held_idle_timeout():
    from tests.unit.harness import run_program

    run = run_program("vllm", overrides=PLAINTEXT)
    (svc,) = [s for s in run.manifests("Service") if s["metadata"]["name"] == "tritonllm-nlb"]
    values = {v for k, v in svc["metadata"]["annotations"].items() if "listener-attributes" in k}
    cfg = parse_stack_config(_raw_config(BadConfig("ok", "vllm", PLAINTEXT, "", "")), {"hfToken", "apiKeys"})
    assert values == {f"tcp.idle_timeout.seconds={cfg.nlb_idle_timeout_seconds}"}
    assert cfg.nlb_idle_timeout_seconds == 900 + 300 + 10 + 10


# --------------------------------------------------------------------------- alerts


def test_no_replica_alert_waits_for_the_cold_start_bound(cfg):
    rules = alerts.model_alerts(cfg.monitoring.alerts, cfg.models)
    (unavailable,) = [r for r in rules if r["alert"] == alerts.MODEL_UNAVAILABLE]
    expr = unavailable["expr"]
    # the model at zero: only when it has wanted a replica for the whole cold-start bound
    assert f'min_over_time(kube_deployment_spec_replicas{{namespace="{MODEL}", deployment="triton"}}[900s]) > 0' in expr
    # the always-on model as before
    assert 'namespace="llama-2-7b-chat", deployment="triton"' in expr
    (maxed,) = [r for r in rules if r["alert"] == alerts.MODEL_HPA_MAXED]
    assert MODEL in maxed["expr"] and 'horizontalpodautoscaler="triton"' in maxed["expr"]


# --------------------------------------------------------------------------- built-in objects


def test_keda_namespace_objects_are_valid(run):
    for kind in ("NetworkPolicy", "Namespace"):
        for manifest in _in(run.manifests(kind), "keda") + [
            m for m in run.manifests(kind) if m["metadata"].get("name") == "keda"
        ]:
            validate_k8s_object(manifest)


def test_config_keys_reach_the_objects():
    overrides = {"models[1].autoscaling.idleSeconds": 120, "models[1].autoscaling.coldStartTimeoutSeconds": 600}
    cfg = parse_stack_config(_raw_config(BadConfig("ok", "vllm", overrides, "", "")), {"hfToken", "apiKeys"})
    model = _model(cfg)
    site = cfg.site_of(model)
    assert stz.scaled_object_manifest(model, site)["spec"]["cooldownPeriod"] == 120
    route = stz.interceptor_route_manifest(model, site, stz.held_backends(model)[0])
    assert route["spec"]["timeouts"]["readiness"] == "600s"
