"""Pure builders for KEDA and its HTTP add-on: Helm values, the ReferenceGrant, the keda namespace's
NetworkPolicies. Installed only when a model scales to zero (models[].minReplicas: 0,
docs/autoscaling.md "Scale to zero").

    NGINX (gateway) ──> keda-add-ons-http-interceptor-proxy :8080 (namespace keda) ──> triton.<model> :8000/:8001/:9000
                            │  holds the request while the model has no ready endpoint
                            └─ admin :9090 <── external scaler :9090 <── keda-operator (ScaledObject, external-push)

Upstream read at the pinned versions: kedacore/http-add-on v0.15.0 (interceptor/, pkg/, scaler/),
kedacore/charts keda v2.20.2 and http-add-on at its 0.15.0 release commit c4b92e9 (templates/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.catalog import versions
from components.platform.builders import pod_security

NAMESPACE = "keda"
KEDA_RELEASE = "keda"
HTTP_ADD_ON_RELEASE = "keda-add-ons-http"

# Service names the http-add-on chart renders: "<Chart.Name>-<values service>" (templates/interceptor/
# service-proxy.yaml, templates/scaler/service.yaml); Chart.Name is keda-add-ons-http whatever the release name.
_CHART_NAME = versions.KEDA_HTTP_ADD_ON.name
INTERCEPTOR_PROXY_SERVICE = f"{_CHART_NAME}-interceptor-proxy"
INTERCEPTOR_PROXY_PORT = 8080  # values interceptor.proxy.port
INTERCEPTOR_ADMIN_PORT = 9090  # values interceptor.admin.port: the queue counts the scaler reads
EXTERNAL_SCALER_SERVICE = f"{_CHART_NAME}-external-scaler"
EXTERNAL_SCALER_PORT = 9090  # values scaler.grpcPort
EXTERNAL_SCALER_ADDRESS = f"{EXTERNAL_SCALER_SERVICE}.{NAMESPACE}:{EXTERNAL_SCALER_PORT}"

# Pod labels of the add-on's Deployments (templates/*/deployment.yaml) and KEDA's operator (keda
# templates/manager/deployment.yaml: `app: {{ .Values.operator.name }}`, default keda-operator).
INTERCEPTOR_POD_LABELS = {"app.kubernetes.io/component": "interceptor", "app.kubernetes.io/name": "http-add-on"}
SCALER_POD_LABELS = {"app.kubernetes.io/component": "scaler", "app.kubernetes.io/name": "http-add-on"}
KEDA_OPERATOR_POD_LABELS = {"app": "keda-operator"}

# The add-on images (ko, base wolfi static: .ko.yaml at v0.15.0) carry no user of their own we rely on:
# the pods run as ko's conventional nonroot uid, explicitly.
HTTP_ADD_ON_UID = 65532
# The interceptor's shutdown (interceptor/main.go v0.15.0): readiness 503, shutdownDelay, then the proxy
# listener closes and in-flight requests get drainTimeout (KEDA_HTTP_DRAIN_TIMEOUT) before the exit.
INTERCEPTOR_SHUTDOWN_DELAY_SECONDS = 5  # the chart's default
INTERCEPTOR_EXIT_MARGIN_SECONDS = 10
INTERCEPTOR_REPLICAS_MIN = (
    2  # one per zone pair is enough for a handful of models; the chart's own ScaledObject adds more
)

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def namespace_manifest() -> dict[str, Any]:
    """The keda namespace: restricted Pod Security enforced (every KEDA and add-on pod meets it)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": pod_security.restricted_namespace_labels()},
    }


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def keda_helm_values(node_selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Values for the keda chart (versions.KEDA).

    Its pods already meet "restricted" (values securityContext/podSecurityContext). Least privilege on top:
    the operator scales Deployments only (rbac.enabledCustomScaledRefKinds false drops the `*/*/scale`
    rule; templates/manager/clusterrole.yaml keeps apps deployments/scale), and neither the operator nor
    the metrics server may read Secrets outside the keda namespace (our triggers use no
    TriggerAuthentication).
    """
    values: dict[str, Any] = {
        "image": {"pullPolicy": "IfNotPresent"},  # a pinned chart version, so a pinned image tag
        "rbac": {"enabledCustomScaledRefKinds": False},
        "permissions": {
            "metricServer": {"restrict": {"secret": True}},
            "operator": {"restrict": {"secret": True}},
        },
    }
    if node_selector:
        values["nodeSelector"] = dict(node_selector)
    return values


def interceptor_drain_seconds(drain_seconds: Sequence[int]) -> int:
    """How long an interceptor pod that is going away lets the streams through it finish: the longest
    models[].drainSeconds of the models it fronts (a replica of theirs drains that long too)."""
    return max(drain_seconds)


def http_add_on_helm_values(
    *, drain_seconds: Sequence[int], node_selector: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Values for the keda-add-ons-http chart (versions.KEDA_HTTP_ADD_ON).

    * Timeouts of held requests are per route (InterceptorRoute spec.timeouts: readiness = the model's
      cold-start bound, responseHeader = gateway.requestTimeoutSeconds), so the global ones stay unset.
    * The interceptor drains like a Triton replica: drainTimeout = the longest drainSeconds, and the
      kubelet's grace period covers shutdownDelay + drainTimeout (the chart says it must).
    * Pods: restricted Pod Security (the chart's defaults lack runAsNonRoot and seccomp); the
      templates pass securityContext/podSecurityContext through toYaml.
    """
    drain = interceptor_drain_seconds(drain_seconds)
    pod: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": HTTP_ADD_ON_UID,
        "runAsGroup": HTTP_ADD_ON_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    values: dict[str, Any] = {
        "operator": {"pullPolicy": "IfNotPresent"},
        "scaler": {"pullPolicy": "IfNotPresent"},
        "interceptor": {
            "pullPolicy": "IfNotPresent",
            "replicas": {"min": INTERCEPTOR_REPLICAS_MIN},
            "shutdownDelay": f"{INTERCEPTOR_SHUTDOWN_DELAY_SECONDS}s",
            "drainTimeout": f"{drain}s",
            "terminationGracePeriodSeconds": INTERCEPTOR_SHUTDOWN_DELAY_SECONDS
            + drain
            + INTERCEPTOR_EXIT_MARGIN_SECONDS,
        },
        "securityContext": _restricted_container(),
        "podSecurityContext": {"operator": dict(pod), "scaler": dict(pod), "interceptor": dict(pod)},
    }
    if node_selector:
        for component in ("operator", "scaler", "interceptor"):
            values[component]["nodeSelector"] = dict(node_selector)
    return values


def reference_grant_manifest(route_namespaces: Sequence[str]) -> dict[str, Any]:
    """ReferenceGrant in the keda namespace: HTTPRoutes and GRPCRoutes of the scale-to-zero models'
    namespaces may send to the interceptor's proxy Service, and to nothing else in the namespace."""
    if not route_namespaces:
        raise ValueError("a ReferenceGrant needs at least one route namespace")
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "routes-to-interceptor", "namespace": NAMESPACE},
        "spec": {
            "from": [
                {"group": GATEWAY_API_GROUP, "kind": kind, "namespace": ns}
                for ns in sorted(route_namespaces)
                for kind in ("HTTPRoute", "GRPCRoute")
            ],
            "to": [{"group": "", "kind": "Service", "name": INTERCEPTOR_PROXY_SERVICE}],
        },
    }


def _policy(name: str, pod_labels: Mapping[str, str], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "tritonllm"}},
        "spec": {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def network_policies(gateway_namespace: str, gateway_pod_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Who reaches the add-on's pods: NGINX the interceptor's proxy port, the external scaler its admin
    port (queue counts), KEDA's operator the scaler's gRPC port. Nothing else (kubelet probes come from
    the node, which the VPC CNI always admits: components/serving/builders/network_policies.py).

    KEDA's own operator, metrics server and webhooks are left without a policy: the API server (EKS
    control plane ENIs, no pod selector can name them) calls the metrics server and the webhooks.
    """
    gateway = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: gateway_namespace}},
        "podSelector": {"matchLabels": dict(gateway_pod_labels)},
    }
    return [
        _policy(
            "interceptor-ingress",
            INTERCEPTOR_POD_LABELS,
            [
                {"from": [gateway], "ports": [{"protocol": "TCP", "port": INTERCEPTOR_PROXY_PORT}]},
                {
                    "from": [{"podSelector": {"matchLabels": dict(SCALER_POD_LABELS)}}],
                    "ports": [{"protocol": "TCP", "port": INTERCEPTOR_ADMIN_PORT}],
                },
            ],
        ),
        _policy(
            "scaler-ingress",
            SCALER_POD_LABELS,
            [
                {
                    "from": [{"podSelector": {"matchLabels": dict(KEDA_OPERATOR_POD_LABELS)}}],
                    "ports": [{"protocol": "TCP", "port": EXTERNAL_SCALER_PORT}],
                }
            ],
        ),
    ]
