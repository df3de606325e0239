"""Pure builders for the gateway: IAM policy, Helm values, Gateway API objects, the NLB Service.

Traffic path:

    client ──> NLB (AWS Load Balancer Controller, from the `type: LoadBalancer` Service below)
           ──> NGINX data-plane pods (NGINX Gateway Fabric, provisioned per Gateway)
           ──> Triton Service in the model's namespace (HTTPRoute :8000, GRPCRoute :8001)

Routing scheme (what a client must send):

* HTTP (:8000) routes by path: `/v2/models/<model>/{generate,generate_stream,infer}` (POST),
  `/v2/models/<model>`, `/v2/models/<model>/{ready,config}` (GET). The server-wide health
  endpoints `/v2/health/{ready,live}` (GET) exist once per Triton server, so they need the
  header `x-triton-model: <model>` to pick one.
* gRPC (:8001, HTTP/2 cleartext) carries the model name inside the protobuf message, which
  a proxy cannot read, so every gRPC call must carry the metadata `x-triton-model: <model>`.
  Only the `inference.GRPCInferenceService` methods in `GRPC_METHODS` are routed.

Anything else (model repository load/unload/index, logging, trace settings, statistics,
shared-memory registration, versioned paths) matches no route and gets NGINX's 404.
Every HTTP rule also rewrites the path to the exact path it matched, so Triton only ever
receives one of the allowed paths, whatever dot-segments or encodings the client sent.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from components import versions

# --- Names shared by the component, Triton's routes and the client ------------------------
HTTP_PORT = 8000
GRPC_PORT = 8001
HTTP_LISTENER = "http"
GRPC_LISTENER = "grpc"
MODEL_HEADER = "x-triton-model"  # lower case: gRPC metadata keys must be
TRITON_GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_METHODS = (
    "ServerLive", "ServerReady", "ModelReady", "ModelMetadata", "ModelConfig", "ModelInfer", "ModelStreamInfer",
)

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_CRDS_URL = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/"
    f"{versions.GATEWAY_API_VERSION}/standard-install.yaml"
)

LBC_NAMESPACE = "kube-system"
LBC_RELEASE_NAME = "aws-load-balancer-controller"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
LBC_LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"

NGF_NAMESPACE = "nginx-gateway"
NGF_RELEASE_NAME = "nginx-gateway"
GATEWAY_CLASS_NAME = "nginx"  # created by the NGF chart (templates/gatewayclass.yaml)
GATEWAY_NAME = "tritonllm"

# Namespaces carrying this label may attach routes to the Gateway (Triton labels its namespaces).
ROUTE_NAMESPACE_LABEL = "tritonllm.io/gateway-routes"
ROUTE_NAMESPACE_LABEL_VALUE = "allowed"

# Labels NGF 2.6 puts on the NGINX pods it provisions for a Gateway
# (internal/controller/provisioner/objects.go buildLabelsAndAnnotations).
NGF_APP_NAME_LABEL = "app.kubernetes.io/name"
NGF_GATEWAY_LABEL = "gateway.networking.k8s.io/gateway-name"

# LLM responses can take minutes and stream token by token (SSE on generate_stream).
UPSTREAM_READ_TIMEOUT = "600s"
MAX_REQUEST_BODY = "32m"

LBC_POLICY_FILE = Path(__file__).parent / "policies" / "lbc_iam_policy.json"
LBC_POLICY_SOURCE = (
    "https://github.com/kubernetes-sigs/aws-load-balancer-controller/blob/v3.5.0/docs/install/iam_policy.json"
)

Scheme = Literal["internal", "internet-facing"]


def route_namespace_labels() -> dict[str, str]:
    """Labels a model namespace needs so its routes may attach to the Gateway."""
    return {ROUTE_NAMESPACE_LABEL: ROUTE_NAMESPACE_LABEL_VALUE}


# --- AWS Load Balancer Controller ---------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _lbc_policy_text() -> str:
    return LBC_POLICY_FILE.read_text()


def lbc_controller_policy_document() -> dict[str, Any]:
    """The controller's published IAM policy for v3.5.0, verbatim (LBC_POLICY_SOURCE).

    Upstream writes it; we keep it as data rather than re-typing it, so an upgrade is a file
    swap. Its mutating and deleting statements are already scoped to resources tagged
    `elbv2.k8s.aws/cluster`, i.e. to what the controller itself created.
    """
    return json.loads(_lbc_policy_text())


def _tags_csv_safe(tags: Mapping[str, str]) -> dict[str, str]:
    # The chart renders defaultTags as `--default-tags=k=v,k=v`.
    for key, value in tags.items():
        if any(c in f"{key}{value}" for c in ",="):
            raise ValueError(f"tag {key}={value!r}: the load balancer controller cannot take ',' or '=' in tags")
    return dict(tags)


def lbc_helm_values(
    *,
    cluster_name: Any,
    region: str,
    vpc_id: Any,
    node_selector: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Values for the aws-load-balancer-controller chart (versions.AWS_LOAD_BALANCER_CONTROLLER).

    cluster_name and vpc_id may be Pulumi Outputs. Region and VPC are given explicitly because
    pods cannot reach IMDS on IMDSv2 nodes with a hop limit of 1.
    """
    values: dict[str, Any] = {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        # Pod Identity needs a fixed service account name to associate the role with.
        "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        # The Service mutator webhook intercepts every Service CREATE in the cluster with
        # failurePolicy Fail; while the controller is (re)starting that blocks unrelated
        # Services. We set loadBalancerClass on our one LoadBalancer Service instead.
        "enableServiceMutatorWebhook": False,
        # No Ingress and no ALB/NLB Gateway API use: keep the controller to Services.
        "createIngressClassResource": False,
        "ingressClassParams": {"create": False},
        "controllerConfig": {"featureGates": {"ALBGatewayAPI": False, "NLBGatewayAPI": False}},
    }
    if node_selector:
        values["nodeSelector"] = dict(node_selector)
    if tags:
        values["defaultTags"] = _tags_csv_safe(tags)  # on the NLB, target groups and SGs it creates
    return values


# --- NGINX Gateway Fabric -----------------------------------------------------------------

def nginx_dataplane_selector(gateway_name: str = GATEWAY_NAME, gateway_class: str = GATEWAY_CLASS_NAME) -> dict[str, str]:
    """Labels of the NGINX pods NGF provisions for a Gateway (resource name `<gateway>-<class>`)."""
    if len(gateway_name) > 63 or len(f"{gateway_name}-{gateway_class}") > 63:
        # Beyond 63 characters NGF hashes the name and moves the gateway label to an annotation.
        raise ValueError(f"gateway name {gateway_name!r} too long for NGF's pod labels")
    return {NGF_APP_NAME_LABEL: f"{gateway_name}-{gateway_class}", NGF_GATEWAY_LABEL: gateway_name}


def ngf_helm_values(
    *,
    gateway_name: str = GATEWAY_NAME,
    node_selector: Mapping[str, str] | None = None,
    dataplane_replicas: int = 2,
) -> dict[str, Any]:
    """Values for the nginx-gateway-fabric chart (versions.NGINX_GATEWAY_FABRIC).

    The NGINX Service NGF provisions is ClusterIP: the NLB's LoadBalancer Service is ours
    (load_balancer_service_manifest), so Pulumi owns it and awaits its deletion on destroy.
    """
    pod: dict[str, Any] = {
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {NGF_GATEWAY_LABEL: gateway_name}},
        }],
    }
    values: dict[str, Any] = {
        "nginxGateway": {
            "gatewayClassName": GATEWAY_CLASS_NAME,
            "productTelemetry": {"enable": False},
        },
        "nginx": {
            "replicas": dataplane_replicas,
            "service": {"type": "ClusterIP"},
            "pod": pod,
        },
    }
    if node_selector:
        values["nginxGateway"]["nodeSelector"] = dict(node_selector)
        pod["nodeSelector"] = dict(node_selector)
        values["certGenerator"] = {"nodeSelector": dict(node_selector)}
    return values


def gateway_manifest(
    name: str = GATEWAY_NAME, namespace: str = NGF_NAMESPACE, gateway_class: str = GATEWAY_CLASS_NAME
) -> dict[str, Any]:
    """The Gateway: HTTP on 8000 for HTTPRoutes, HTTP/2 cleartext on 8001 for GRPCRoutes.

    NGF serves GRPCRoutes on HTTP listeners (`http2 on` is its default), so gRPC needs no TLS.
    Each listener accepts one route kind, from namespaces labelled route_namespace_labels().
    """
    def listener(listener_name: str, port: int, kind: str) -> dict[str, Any]:
        return {
            "name": listener_name,
            "port": port,
            "protocol": "HTTP",
            "allowedRoutes": {
                "namespaces": {"from": "Selector", "selector": {"matchLabels": route_namespace_labels()}},
                "kinds": [{"group": GATEWAY_API_GROUP, "kind": kind}],
            },
        }

    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": [
                listener(HTTP_LISTENER, HTTP_PORT, "HTTPRoute"),
                listener(GRPC_LISTENER, GRPC_PORT, "GRPCRoute"),
            ],
        },
    }


def _gateway_policy_target(gateway_name: str) -> dict[str, str]:
    return {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": gateway_name}


def proxy_settings_policy_manifest(gateway_name: str = GATEWAY_NAME, namespace: str = NGF_NAMESPACE) -> dict[str, Any]:
    """NGF ProxySettingsPolicy on the Gateway: long upstream reads, no response buffering.

    NGINX's defaults (60 s read timeout, buffered responses) cut off long generations and
    hold back the token stream of generate_stream (server-sent events).
    """
    return {
        "apiVersion": "gateway.nginx.org/v1alpha1",
        "kind": "ProxySettingsPolicy",
        "metadata": {"name": f"{gateway_name}-llm-proxy", "namespace": namespace},
        "spec": {
            "targetRefs": [_gateway_policy_target(gateway_name)],
            "buffering": {"disable": True},
            "timeout": {"read": UPSTREAM_READ_TIMEOUT, "send": UPSTREAM_READ_TIMEOUT},
        },
    }


def client_settings_policy_manifest(gateway_name: str = GATEWAY_NAME, namespace: str = NGF_NAMESPACE) -> dict[str, Any]:
    """NGF ClientSettingsPolicy on the Gateway: request bodies up to MAX_REQUEST_BODY (NGINX: 1 MiB)."""
    return {
        "apiVersion": "gateway.nginx.org/v1alpha1",
        "kind": "ClientSettingsPolicy",
        "metadata": {"name": f"{gateway_name}-llm-client", "namespace": namespace},
        "spec": {
            "targetRef": _gateway_policy_target(gateway_name),
            "body": {"maxSize": MAX_REQUEST_BODY},
        },
    }


# --- The NLB ------------------------------------------------------------------------------

def load_balancer_service_manifest(
    *,
    scheme: Scheme = "internal",
    allowed_cidrs: Sequence[str] = (),
    gateway_name: str = GATEWAY_NAME,
    namespace: str = NGF_NAMESPACE,
    gateway_class: str = GATEWAY_CLASS_NAME,
) -> dict[str, Any]:
    """The `type: LoadBalancer` Service in front of the NGINX pods, which the LBC turns into an NLB.

    IP targets (pod IPs straight from the NLB, no NodePorts). `allowed_cidrs` become
    loadBalancerSourceRanges, which the LBC writes as the inbound rules of the NLB's
    security group; without them an internal NLB admits the VPC's CIDRs. An internet-facing
    NLB without allowed CIDRs would be open to the world, so it is refused.
    """
    if scheme not in ("internal", "internet-facing"):
        raise ValueError(f"scheme must be internal or internet-facing, got {scheme!r}")
    if scheme == "internet-facing" and not allowed_cidrs:
        raise ValueError("an internet-facing NLB needs allowed CIDRs (gateway.allowedCidrs)")
    annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": scheme,
        # NGINX may run in fewer AZs than the NLB has nodes.
        "service.beta.kubernetes.io/aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=true",
    }
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "loadBalancerClass": LBC_LOAD_BALANCER_CLASS,
        "allocateLoadBalancerNodePorts": False,
        "selector": nginx_dataplane_selector(gateway_name, gateway_class),
        "ports": [
            {"name": HTTP_LISTENER, "port": HTTP_PORT, "targetPort": HTTP_PORT, "protocol": "TCP"},
            {"name": GRPC_LISTENER, "port": GRPC_PORT, "targetPort": GRPC_PORT, "protocol": "TCP"},
        ],
    }
    if allowed_cidrs:
        spec["loadBalancerSourceRanges"] = list(allowed_cidrs)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{gateway_name}-nlb", "namespace": namespace, "annotations": annotations},
        "spec": spec,
    }


def load_balancer_hostname(status: Any) -> str | None:
    """`status.loadBalancer.ingress[0].hostname` of a Service (a manifest dict, or the
    Pulumi output object whose properties are snake_case attributes)."""
    def get(obj: Any, *names: str) -> Any:
        for name in names:
            if obj is None:
                return None
            if type(obj) is dict:
                obj = obj.get(name)
            else:
                snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
                obj = getattr(obj, snake, None)
        return obj

    ingress = get(status, "loadBalancer", "ingress")
    if not ingress:
        return None
    return get(ingress[0], "hostname") or get(ingress[0], "ip")


def endpoints(hostname: str) -> dict[str, str]:
    """Client endpoints for the NLB: HTTP as a URL, gRPC as host:port (what tritonclient takes)."""
    return {"http": f"http://{hostname}:{HTTP_PORT}", "grpc": f"{hostname}:{GRPC_PORT}"}


# --- Routes (built here, created by Triton in each model's namespace) -----------------------

def exposed_http_requests(model_name: str) -> list[tuple[str, str, bool]]:
    """(method, exact path, needs MODEL_HEADER) for every HTTP request routed to a model."""
    model = f"/v2/models/{model_name}"
    return [
        ("POST", f"{model}/generate", False),
        ("POST", f"{model}/generate_stream", False),
        ("POST", f"{model}/infer", False),
        ("GET", f"{model}/ready", False),
        ("GET", model, False),  # model metadata
        ("GET", f"{model}/config", False),
        ("GET", "/v2/health/ready", True),
        ("GET", "/v2/health/live", True),
    ]


def _parent_ref(gateway_name: str, gateway_namespace: str, listener: str) -> dict[str, str]:
    return {
        "group": GATEWAY_API_GROUP, "kind": "Gateway",
        "name": gateway_name, "namespace": gateway_namespace, "sectionName": listener,
    }


def _model_header(model_name: str) -> dict[str, str]:
    return {"type": "Exact", "name": MODEL_HEADER, "value": model_name}


def http_route_manifest(
    model_name: str,
    namespace: str,
    service_name: str,
    gateway_name: str = GATEWAY_NAME,
    gateway_namespace: str = NGF_NAMESPACE,
    port: int = HTTP_PORT,
    extra_rules: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """HTTPRoute for one model: inference and health only, each an Exact match on path and method.

    One rule per request so each can rewrite to exactly the path it matched (ReplaceFullPath).
    `extra_rules` are appended as given (the OpenAI API's `/v1` rules, components/openai_frontend.py).
    """
    rules = []
    for method, path, needs_header in exposed_http_requests(model_name):
        match: dict[str, Any] = {"path": {"type": "Exact", "value": path}, "method": method}
        if needs_header:
            match["headers"] = [_model_header(model_name)]
        rules.append({
            "matches": [match],
            "filters": [{"type": "URLRewrite",
                         "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": path}}}],
            "backendRefs": [{"name": service_name, "port": port}],
        })
    rules += [dict(rule) for rule in extra_rules]
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"{model_name}-http", "namespace": namespace},
        "spec": {"parentRefs": [_parent_ref(gateway_name, gateway_namespace, HTTP_LISTENER)], "rules": rules},
    }


def grpc_route_manifest(
    model_name: str,
    namespace: str,
    service_name: str,
    gateway_name: str = GATEWAY_NAME,
    gateway_namespace: str = NGF_NAMESPACE,
    port: int = GRPC_PORT,
) -> dict[str, Any]:
    """GRPCRoute for one model: the GRPC_METHODS of inference.GRPCInferenceService, each requiring
    the metadata `x-triton-model: <model>` (the model name is otherwise inside the message)."""
    matches = [
        {"method": {"type": "Exact", "service": TRITON_GRPC_SERVICE, "method": method},
         "headers": [_model_header(model_name)]}
        for method in GRPC_METHODS
    ]
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": f"{model_name}-grpc", "namespace": namespace},
        "spec": {
            "parentRefs": [_parent_ref(gateway_name, gateway_namespace, GRPC_LISTENER)],
            "rules": [{"matches": matches, "backendRefs": [{"name": service_name, "port": port}]}],
        },
    }
