"""Pure builders for a model that scales to zero (models[].minReplicas: 0; docs/autoscaling.md "Scale to zero").

    client ─> NLB ─> NGINX (API key, path checks as for every model) ─┐ sets x-tritonllm-route: <model>-<kind>
        ┌────────────────────────────────────────────────────────────┘
        └─> keda-add-ons-http-interceptor-proxy:8080 (namespace keda)
              InterceptorRoute <model>-<kind> (matched on that header): waits up to the cold-start bound
              for a ready endpoint of triton.<model>, then proxies (HTTP/1.1, or h2c where the Service
              port says appProtocol kubernetes.io/h2c: gRPC) ─> triton.<model> :8000 / :8001 / :9000

* Waking: every request the interceptor holds or proxies counts in its queue (interceptor/middleware/
  counting.go); the add-on's external scaler streams "active" to KEDA while a route's count is above zero
  (scaler/handlers.go StreamIsActive), and KEDA scales the Deployment 0 -> 1 at once (push scaler,
  keda v2.20.2 pkg/scaling/scale_handler.go).
* Above zero the HPA KEDA creates scales on the model's own Triton metric only: a `prometheus` trigger
  sums the same recorded series prometheus-adapter serves the plain HPA (components/catalog/
  serving_metrics.py), and `advanced.scalingModifiers` makes that the one metric the HPA sees (the
  interceptor's counts only keep the model awake while requests wait). The HPA keeps the name, bounds
  and behaviour of the plain one (horizontalPodAutoscalerConfig), so alerts, dashboard and `loadtest`
  read it as before.
* Idle: when neither trigger is active for autoscaling.idleSeconds (cooldownPeriod) KEDA scales to zero.

InterceptorRoute + our own ScaledObject is what add-on 0.15.0 asks for: its operator logs "HTTPScaledObject
is deprecated ... migrate to InterceptorRoute + ScaledObject" (operator/controllers/http/
httpscaledobject_controller.go), and its routing table turns HTTPScaledObjects into InterceptorRoutes
anyway (pkg/routing/table.go); the scaler reads the `interceptorRoute` trigger metadata (scaler/handlers.go).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.config import ModelConfig, ModelSite
from components.config.gateway import IDLE_TIMEOUT_MARGIN_SECONDS
from components.gateway.builders import manifests as gm
from components.observability.builders import metrics, monitoring_values
from components.platform.builders import keda
from components.serving.builders import openai as openai_frontend
from components.serving.builders import triton_manifests as tm

# Set by NGINX on every held route (RequestHeaderModifier `set`: replaces whatever a client sent), matched
# by the model's InterceptorRoutes: the gateway has already picked the model, the interceptor only follows.
ROUTE_HEADER = "x-tritonllm-route"
KEDA_API = "keda.sh/v1alpha1"
HTTP_ADD_ON_API = "http.keda.sh/v1beta1"
SCALED_OBJECT_NAME = tm.DEPLOYMENT_NAME
# The prometheus trigger's name in the scalingModifiers formula (expr-lang identifiers: no dashes).
METRIC_TRIGGER = "triton_metric"
# KEDA's own polling of the triggers (the push scaler wakes the model in between, at once).
POLLING_INTERVAL_SECONDS = 15
# keda v2.20.2 apis/keda/v1alpha1/scaledobject_types.go ScaledObjectTransferHpaOwnershipAnnotation
TRANSFER_HPA_OWNERSHIP = "scaledobject.keda.sh/transfer-hpa-ownership"
# Unused by the HPA (scalingModifiers hides the interceptor's metric from it); the CRD requires one.
INTERCEPTOR_CONCURRENCY_TARGET = 1


@dataclass(frozen=True)
class HeldBackend:
    """One Triton Service port that the gateway reaches through the interceptor."""

    kind: str  # http, grpc or openai: the trigger's name and the route name's suffix
    port: int

    def route_name(self, model: ModelConfig) -> str:
        return f"{model.name}-{self.kind}"


def held_backends(model: ModelConfig) -> list[HeldBackend]:
    backends = [HeldBackend("http", HTTP_PORT), HeldBackend("grpc", GRPC_PORT)]
    if model.openai.enabled:
        backends.append(HeldBackend("openai", openai_frontend.OPENAI_PORT))
    return backends


def _seconds(value: int) -> str:
    return f"{value}s"


def interceptor_route_manifest(model: ModelConfig, site: ModelSite, backend: HeldBackend) -> dict[str, Any]:
    """InterceptorRoute (http.keda.sh/v1beta1, add-on 0.15.0) for one Triton port.

    timeouts.readiness bounds the hold (then 504 Gateway Timeout: interceptor/middleware/
    endpoint_resolver.go); timeouts.responseHeader is the gateway's request timeout, the same bound
    NGINX puts on a request to a running replica. No total request timeout: a stream lasts as long
    as it streams. The gRPC port's appProtocol kubernetes.io/h2c (tm.service_manifest) makes the
    interceptor speak h2c to Triton (interceptor/handler/upstream.go requiresHTTP2).
    """
    name = backend.route_name(model)
    return {
        "apiVersion": HTTP_ADD_ON_API,
        "kind": "InterceptorRoute",
        "metadata": tm._meta(name, model.name, model),
        "spec": {
            "target": {"service": tm.SERVICE_NAME, "port": backend.port},
            "rules": [{"headers": [{"name": ROUTE_HEADER, "value": name}]}],
            "timeouts": {
                "readiness": _seconds(model.autoscaling.cold_start_timeout),
                "responseHeader": _seconds(site.request_timeout_seconds),
            },
            "scalingMetric": {"concurrency": {"targetValue": INTERCEPTOR_CONCURRENCY_TARGET}},
        },
    }


def metric_query(model: ModelConfig) -> str:
    """PromQL for the prometheus trigger: the sum over the model's pods of the per-pod record the plain
    HPA reads through prometheus-adapter (one namespace per model). With an AverageValue target KEDA's
    HPA computes ceil(sum / target), which is what the Pods metric's ceil(n x average / target) is."""
    record = metrics.hpa_metric_for(model.backend, model.autoscaling.metric).record
    return f'sum({record}{{namespace="{model.name}"}}) or vector(0)'


def _decimal(value: float) -> str:
    """A float as an expr-lang number literal without an exponent (0.8, 32, 1000)."""
    return f"{value:f}".rstrip("0").rstrip(".")


def scaling_formula(model: ModelConfig) -> str:
    """The composite metric the HPA sees: the Triton metric; while requests wait at the interceptor and
    no replica reports load yet, the per-pod target (one replica's worth: at most one replica asked for).

    The HPA sizes an AverageValue external metric as ceil(value / target) replicas (kubernetes v1.34
    pkg/controller/podautoscaler/replica_calculator.go GetExternalPerPodMetricReplicas), so the waiting
    branch is the target itself, not 1: with a target below 1 (trtllm_kv_cache_utilization's 0.8) a
    constant 1 would ask for two GPU replicas while the first one is still starting.

    expr-lang (keda v2.20.2 pkg/scaling/modifiers/formula.go): the ternary binds loosest, trigger values are
    float64, and the webhook wraps the formula in float(...) so an integer branch is a float too
    (apis/keda/v1alpha1/scaledobject_webhook.go castToFloatIfNecessary). Activation (0 -> 1) is the
    composite value above activationTarget 0, and the push triggers' "active" events (at once).
    """
    waiting = " + ".join(b.kind for b in held_backends(model))
    target = metrics.metric_target(metrics.hpa_metric_for(model.backend, model.autoscaling.metric), model)
    return f"({waiting}) > 0 && {METRIC_TRIGGER} == 0 ? {_decimal(target)} : {METRIC_TRIGGER}"


def scaled_object_manifest(model: ModelConfig, site: ModelSite) -> dict[str, Any]:
    """KEDA ScaledObject for the model's Deployment: minReplicaCount 0, the HPA it owns named and shaped
    like the plain one (tm.hpa_manifest)."""
    if not model.scales_to_zero:
        raise ValueError(f"model {model.name!r} does not scale to zero (minReplicas {model.min_replicas})")
    metric = metrics.hpa_metric_for(model.backend, model.autoscaling.metric)
    target = metrics.metric_target(metric, model)
    plain_hpa = tm.hpa_manifest(model)["spec"]
    triggers: list[dict[str, Any]] = [
        {
            "type": "external-push",
            "name": b.kind,
            "metadata": {"scalerAddress": keda.EXTERNAL_SCALER_ADDRESS, "interceptorRoute": b.route_name(model)},
        }
        for b in held_backends(model)
    ]
    triggers.append(
        {
            "type": "prometheus",
            "name": METRIC_TRIGGER,
            "metadata": {
                "serverAddress": monitoring_values.prometheus_url(),
                "query": metric_query(model),
                "threshold": f"{target:g}",
                "activationThreshold": "0",
                "ignoreNullValues": "true",
            },
        }
    )
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        # A model switched to minReplicas 0 still has the plain HPA of the same name until `pulumi up` deletes
        # it, after creating this: KEDA's webhook refuses a ScaledObject whose workload another HPA scales,
        # unless it takes that HPA over (keda v2.20.2 apis/keda/v1alpha1/scaledobject_webhook.go verifyHpas).
        "metadata": {
            **tm._meta(SCALED_OBJECT_NAME, model.name, model),
            "annotations": {TRANSFER_HPA_OWNERSHIP: "true"},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": tm.DEPLOYMENT_NAME},
            "minReplicaCount": 0,
            "maxReplicaCount": model.max_replicas,
            "cooldownPeriod": model.autoscaling.idle,
            "pollingInterval": POLLING_INTERVAL_SECONDS,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"name": tm.DEPLOYMENT_NAME, "behavior": plain_hpa["behavior"]},
                "scalingModifiers": {
                    "formula": scaling_formula(model),
                    "target": f"{target:g}",
                    "activationTarget": "0",
                    "metricType": "AverageValue",
                },
            },
            "triggers": triggers,
        },
    }


def _backend_kind(model: ModelConfig, port: int) -> HeldBackend:
    for backend in held_backends(model):
        if backend.port == port:
            return backend
    raise ValueError(f"model {model.name!r}: no held backend for Triton port {port}")


def interceptor_backend_ref() -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": keda.INTERCEPTOR_PROXY_SERVICE,
        "namespace": keda.NAMESPACE,
        "port": keda.INTERCEPTOR_PROXY_PORT,
    }


def hold_route(model: ModelConfig, route: dict[str, Any]) -> dict[str, Any]:
    """A copy of one of the model's routes (gm.http_route_manifest, gm.grpc_route_manifest) that sends
    every rule to the interceptor, tagged with the InterceptorRoute of the Triton port it went to.
    Matches, path rewrites and (added later by with_authentication) the API-key filter stay as they are."""
    out = {**route, "spec": {**route["spec"], "rules": []}}
    for rule in route["spec"]["rules"]:
        ports = {ref["port"] for ref in rule["backendRefs"]}
        if len(ports) != 1 or any(ref["name"] != tm.SERVICE_NAME for ref in rule["backendRefs"]):
            raise ValueError(f"rule {rule} does not send to one port of the {tm.SERVICE_NAME} Service")
        backend = _backend_kind(model, ports.pop())
        header = {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": ROUTE_HEADER, "value": backend.route_name(model)}]},
        }
        out["spec"]["rules"].append(
            {**rule, "filters": [*rule.get("filters", []), header], "backendRefs": [interceptor_backend_ref()]}
        )
    return out


def grpc_timeouts_filter_name(model: ModelConfig) -> str:
    return f"{model.name}-held-grpc-timeouts"


def held_silence_seconds(model: ModelConfig, site: ModelSite) -> int:
    """NGINX's read/send timeout on held routes: the hold, then the response-header wait, then a margin
    so the interceptor's 504 reaches the client before NGINX gives up (StackConfig.held_request_seconds)."""
    return model.autoscaling.cold_start_timeout + site.request_timeout_seconds + IDLE_TIMEOUT_MARGIN_SECONDS


def with_held_grpc_timeouts(model: ModelConfig, route: dict[str, Any]) -> dict[str, Any]:
    """The held GRPCRoute with an ExtensionRef to its SnippetsFilter on every rule (grpc_* timeouts are
    not in ProxySettingsPolicy: gm.grpc_timeouts_policy_manifest)."""
    ref = {
        "type": "ExtensionRef",
        "extensionRef": {"group": gm.NGF_API_GROUP, "kind": "SnippetsFilter", "name": grpc_timeouts_filter_name(model)},
    }
    rules = [{**rule, "filters": [*rule.get("filters", []), ref]} for rule in route["spec"]["rules"]]
    return {**route, "spec": {**route["spec"], "rules": rules}}


def held_route_policies(model: ModelConfig, site: ModelSite, http_route_name: str) -> list[dict[str, Any]]:
    """NGINX settings of the held routes, in the model's namespace (more specific than the Gateway's:
    NGF writes route policies into the route's locations, which override the http block).

    * ProxySettingsPolicy on the HTTPRoute: proxy_read/send_timeout = held_silence_seconds, no buffering.
    * SnippetsFilter for the GRPCRoute's rules (context http.server.location): grpc_read/send_timeout.
    """
    value = _seconds(held_silence_seconds(model, site))
    return [
        {
            "apiVersion": f"{gm.NGF_API_GROUP}/v1alpha1",
            "kind": "ProxySettingsPolicy",
            "metadata": {"name": f"{model.name}-held-proxy", "namespace": model.name},
            "spec": {
                "targetRefs": [{"group": gm.GATEWAY_API_GROUP, "kind": "HTTPRoute", "name": http_route_name}],
                "buffering": {"disable": True},
                "timeout": {"read": value, "send": value},
            },
        },
        {
            "apiVersion": f"{gm.NGF_API_GROUP}/v1alpha1",
            "kind": "SnippetsFilter",
            "metadata": {"name": grpc_timeouts_filter_name(model), "namespace": model.name},
            "spec": {
                "snippets": [
                    {
                        "context": "http.server.location",
                        "value": f"grpc_read_timeout {value};\ngrpc_send_timeout {value};",
                    }
                ]
            },
        },
    ]


def held_route_manifests(model: ModelConfig, site: ModelSite, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's routes sent through the interceptor, the gRPC one with its timeout filter."""
    out = []
    for route in routes:
        held = hold_route(model, route)
        if held["kind"] == "GRPCRoute":
            held = with_held_grpc_timeouts(model, held)
        out.append(held)
    return out


def interceptor_peer() -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {keda.NAMESPACE_NAME_LABEL: keda.NAMESPACE}},
        "podSelector": {"matchLabels": dict(keda.INTERCEPTOR_POD_LABELS)},
    }
