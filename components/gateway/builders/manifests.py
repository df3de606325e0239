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

Security (README "Security"):

* TLS terminates at the NLB (ACM certificate, TLS listener on 443 with ALPN `HTTP2Preferred`,
  so gRPC keeps HTTP/2): HTTPS and gRPC share `<domain>:443`, because the Gateway's 8000
  listener takes GRPCRoutes as well. Behind the NLB NGINX accepts HTTP/1.1 and HTTP/2
  prior-knowledge on the same plaintext port: with `http2 on` (NGF's default) NGINX >= 1.25.1
  sniffs the connection preface on plain listeners (nginx src/http/ngx_http_request.c,
  ngx_http_wait_request_handler); older `listen ... http2` made a plain port HTTP/2-only.
* Every rule of every route carries an ExtensionRef to an NGF AuthenticationFilter of type
  Basic (`with_authentication`), so requests without a valid API key get 401 (gRPC:
  UNAUTHENTICATED, NGF's grpc-error-pages) and never reach Triton. JWT/OIDC are NGINX Plus
  only in NGF 2.6.7 (internal/controller/state/graph/authentication_filter.go), Basic is not.
  Only NGINX's own readiness endpoint (:8081/readyz, the NLB health check) stays open.
Every HTTP rule also rewrites the path to the exact path it matched, so Triton only ever
receives one of the allowed paths, whatever dot-segments or encodings the client sent.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from components.catalog import versions
from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.config.addresses import internet_problem

# --- Names shared by the component, Triton's routes and the client ------------------------
HTTPS_PORT = 443  # the NLB's TLS listener (HTTP and gRPC), forwarding to NGINX's HTTP_PORT
HTTP_LISTENER = "http"
GRPC_LISTENER = "grpc"
HTTPS_SERVICE_PORT = "https"

# NGINX's own readiness endpoint in every NGF data-plane pod: `server { listen 8081;
# location = /readyz { return 200; } }` (NGF v2.6.7 internal/controller/nginx/config/
# base_http_config_template.go, DefaultNginxReadinessProbePort/Path in state/dataplane/configuration.go).
NGINX_READINESS_PORT = 8081
NGINX_READINESS_PATH = "/readyz"

# API keys: an NGF AuthenticationFilter (type Basic) and its Secret, in every route's namespace
# (the filter is a LocalObjectReference; NGF resolves its Secret in the filter's namespace and
# reads the htpasswd file from the key `auth`: v2.6.7 graph/authentication_filter.go, secrets.AuthKey).
AUTH_FILTER_NAME = "tritonllm-api-keys"
AUTH_SECRET_NAME = "tritonllm-api-keys"
AUTH_SECRET_KEY = "auth"
NGF_API_GROUP = "gateway.nginx.org"
MODEL_HEADER = "x-triton-model"  # lower case: gRPC metadata keys must be
TRITON_GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ModelMetadata",
    "ModelConfig",
    "ModelInfer",
    "ModelStreamInfer",
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
DEFAULT_REQUEST_TIMEOUT_SECONDS = 300  # config: gateway.requestTimeoutSeconds
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


def nginx_dataplane_selector(
    gateway_name: str = GATEWAY_NAME, gateway_class: str = GATEWAY_CLASS_NAME
) -> dict[str, str]:
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
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {NGF_GATEWAY_LABEL: gateway_name}},
            }
        ],
    }
    values: dict[str, Any] = {
        "nginxGateway": {
            "gatewayClassName": GATEWAY_CLASS_NAME,
            "productTelemetry": {"enable": False},
            # SnippetsPolicy carries grpc_read_timeout/grpc_send_timeout (grpc_timeouts_policy_manifest):
            # NGF 2.6.7 has no API for them (ProxySettingsPolicy writes proxy_* only).
            "snippets": {"enable": True},
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
    """The Gateway: HTTP (and gRPC) on 8000, HTTP/2 cleartext gRPC on 8001.

    NGF serves GRPCRoutes on HTTP listeners (`http2 on` is its default). The 8000 listener
    takes GRPCRoutes too, so that behind the NLB's one TLS port (443 -> 8000) HTTP and gRPC
    share `<domain>:443`; their paths never overlap (`/v2/...` vs `/inference.GRPCInferenceService/...`).
    Routes attach only from namespaces labelled route_namespace_labels().
    """

    def listener(listener_name: str, port: int, *kinds: str) -> dict[str, Any]:
        return {
            "name": listener_name,
            "port": port,
            "protocol": "HTTP",
            "allowedRoutes": {
                "namespaces": {"from": "Selector", "selector": {"matchLabels": route_namespace_labels()}},
                "kinds": [{"group": GATEWAY_API_GROUP, "kind": kind} for kind in kinds],
            },
        }

    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": [
                listener(HTTP_LISTENER, HTTP_PORT, "HTTPRoute", "GRPCRoute"),
                listener(GRPC_LISTENER, GRPC_PORT, "GRPCRoute"),
            ],
        },
    }


def _gateway_policy_target(gateway_name: str) -> dict[str, str]:
    return {"group": GATEWAY_API_GROUP, "kind": "Gateway", "name": gateway_name}


def _seconds(timeout_seconds: int) -> str:
    if not isinstance(timeout_seconds, int) or timeout_seconds <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout_seconds!r}")
    return f"{timeout_seconds}s"


def proxy_settings_policy_manifest(
    gateway_name: str = GATEWAY_NAME,
    namespace: str = NGF_NAMESPACE,
    timeout_seconds: int = DEFAULT_REQUEST_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """NGF ProxySettingsPolicy on the Gateway: long upstream reads, no response buffering.

    NGINX's defaults (60 s read timeout, buffered responses) cut off long generations and
    hold back the token stream of generate_stream (server-sent events). This policy only
    writes proxy_* directives (HTTPRoutes); gRPC gets the same timeouts from
    grpc_timeouts_policy_manifest.
    """
    return {
        "apiVersion": "gateway.nginx.org/v1alpha1",
        "kind": "ProxySettingsPolicy",
        "metadata": {"name": f"{gateway_name}-llm-proxy", "namespace": namespace},
        "spec": {
            "targetRefs": [_gateway_policy_target(gateway_name)],
            "buffering": {"disable": True},
            "timeout": {"read": _seconds(timeout_seconds), "send": _seconds(timeout_seconds)},
        },
    }


def grpc_timeouts_policy_manifest(
    gateway_name: str = GATEWAY_NAME,
    namespace: str = NGF_NAMESPACE,
    timeout_seconds: int = DEFAULT_REQUEST_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """NGF SnippetsPolicy on the Gateway: grpc_read_timeout/grpc_send_timeout for GRPCRoutes.

    NGF 2.6.7 renders GRPCRoute rules as `grpc_pass` locations and no policy API sets the
    grpc_* timeouts (ProxySettingsPolicy's generator writes proxy_* only:
    internal/controller/nginx/config/policies/proxysettings/generator.go), so NGINX's 60 s
    default would cut every gRPC call (each one a stream to Triton's decoupled models) that
    is silent longer. The snippet goes into this Gateway's `http` block, which every
    location inherits (NGF's location template sets no grpc_*_timeout of its own:
    servers_template.go). Needs `nginxGateway.snippets.enable` (ngf_helm_values).
    """
    value = _seconds(timeout_seconds)
    return {
        "apiVersion": f"{NGF_API_GROUP}/v1alpha1",
        "kind": "SnippetsPolicy",
        "metadata": {"name": f"{gateway_name}-grpc-timeouts", "namespace": namespace},
        "spec": {
            "targetRefs": [_gateway_policy_target(gateway_name)],
            "snippets": [{"context": "http", "value": f"grpc_read_timeout {value};\ngrpc_send_timeout {value};"}],
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
    source_cidrs: Sequence[str] = (),
    allow_any_source: bool = False,
    certificate_arn: Any = None,
    ssl_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06",
    idle_timeout_seconds: int | None = None,
    gateway_name: str = GATEWAY_NAME,
    namespace: str = NGF_NAMESPACE,
    gateway_class: str = GATEWAY_CLASS_NAME,
) -> dict[str, Any]:
    """The `type: LoadBalancer` Service in front of the NGINX pods, which the LBC turns into an NLB.

    IP targets (pod IPs straight from the NLB, no NodePorts).

    * source_cidrs become loadBalancerSourceRanges, the inbound rules of the NLB's security
      group. They are never left empty: with none the LBC admits 0.0.0.0/0, internal NLBs
      included (LBC v3.5.0 pkg/service/model_build_managed_sg.go buildCIDRsFromSourceRanges).
      Ranges that admit the internet (components/config/addresses.py) need allow_any_source.
    * certificate_arn (ACM) makes one TLS listener on 443 -> NGINX :8000 with ALPN
      HTTP2Preferred (h2 for gRPC, HTTP/1.1 for the rest). Without it (plaintext opt-out) the
      listeners are TCP 8000 and 8001, and their idle timeout is idle_timeout_seconds
      (TLS listeners: fixed at 350 s by AWS, not configurable).
    * The health check is HTTP GET :8081/readyz, NGINX's readiness endpoint, not a TCP
      connect to the traffic port (which passes whenever NGINX listens).
    """
    if scheme not in ("internal", "internet-facing"):
        raise ValueError(f"scheme must be internal or internet-facing, got {scheme!r}")
    if not source_cidrs:
        raise ValueError(
            "the NLB needs source CIDRs (gateway.allowedCidrs; internal default: the VPC's CIDRs): "
            "without them the load balancer controller admits 0.0.0.0/0"
        )
    too_wide = internet_problem(source_cidrs)
    if too_wide and not allow_any_source:
        raise ValueError(f"{too_wide}; set gateway.dangerouslyAllowAnySource to allow it")
    if scheme == "internet-facing" and certificate_arn is None:
        raise ValueError("an internet-facing NLB must serve TLS (gateway.tls)")
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    annotations = {
        f"{prefix}type": "external",
        f"{prefix}nlb-target-type": "ip",
        f"{prefix}scheme": scheme,
        # NGINX may run in fewer AZs than the NLB has nodes.
        f"{prefix}attributes": "load_balancing.cross_zone.enabled=true",
        f"{prefix}healthcheck-protocol": "HTTP",
        f"{prefix}healthcheck-port": str(NGINX_READINESS_PORT),
        f"{prefix}healthcheck-path": NGINX_READINESS_PATH,
        f"{prefix}healthcheck-success-codes": "200",
        f"{prefix}healthcheck-interval": "10",
        f"{prefix}healthcheck-timeout": "5",
        f"{prefix}healthcheck-healthy-threshold": "2",
        f"{prefix}healthcheck-unhealthy-threshold": "2",
    }
    if certificate_arn is not None:
        ports = [{"name": HTTPS_SERVICE_PORT, "port": HTTPS_PORT, "targetPort": HTTP_PORT, "protocol": "TCP"}]
        annotations.update(
            {
                f"{prefix}ssl-cert": certificate_arn,
                f"{prefix}ssl-ports": HTTPS_SERVICE_PORT,
                f"{prefix}ssl-negotiation-policy": ssl_policy,
                # NLB TLS listeners negotiate ALPN; gRPC clients need h2 (LBC docs/guide/service/annotations.md).
                f"{prefix}alpn-policy": "HTTP2Preferred",
            }
        )
    else:
        ports = [
            {"name": HTTP_LISTENER, "port": HTTP_PORT, "targetPort": HTTP_PORT, "protocol": "TCP"},
            {"name": GRPC_LISTENER, "port": GRPC_PORT, "targetPort": GRPC_PORT, "protocol": "TCP"},
        ]
        if idle_timeout_seconds is not None:
            if not 60 <= idle_timeout_seconds <= 6000:
                raise ValueError(f"NLB TCP idle timeout must be 60-6000 s, got {idle_timeout_seconds}")
            for port in ports:  # LBC annotation ...listener-attributes.${Protocol}-${Port}
                annotations[f"{prefix}listener-attributes.TCP-{port['port']}"] = (
                    f"tcp.idle_timeout.seconds={idle_timeout_seconds}"
                )
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "loadBalancerClass": LBC_LOAD_BALANCER_CLASS,
        "allocateLoadBalancerNodePorts": False,
        "selector": nginx_dataplane_selector(gateway_name, gateway_class),
        "ports": ports,
        "loadBalancerSourceRanges": list(source_cidrs),
    }
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


def endpoints(hostname: str, tls: bool = False) -> dict[str, str]:
    """Client endpoints: HTTP as a URL, gRPC as host:port (what tritonclient takes).

    With TLS both go to 443 (`https://<host>`, `<host>:443` with a secure channel); hostname is
    then the certificate's domain (or the NLB's name when the user brings a certificate and DNS).
    """
    if tls:
        return {"http": f"https://{hostname}", "grpc": f"{hostname}:{HTTPS_PORT}"}
    return {"http": f"http://{hostname}:{HTTP_PORT}", "grpc": f"{hostname}:{GRPC_PORT}"}


# --- API keys -------------------------------------------------------------------------------


def _ssha(secret: str, name: str) -> str:
    """`{SSHA}` hash as NGINX's auth_basic_user_file reads it (ngx_crypt.c ngx_crypt_ssha:
    base64(sha1(password + salt) + salt)). NGINX implements it itself, whatever the image's libc.

    The salt comes from the key (HMAC), so the Secret stays the same from one `up` to the next;
    keys are long random strings, so a per-key salt is all a salt has to do here.
    """
    salt = hmac.new(secret.encode(), f"tritonllm-htpasswd:{name}".encode(), hashlib.sha256).digest()[:8]
    digest = hashlib.sha1(secret.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def htpasswd(keys: Sequence[tuple[str, str]]) -> str:
    """The htpasswd file for (name, secret) API keys: `name:{SSHA}...` per line.

    NGINX stops at the first line whose name matches (ngx_http_auth_basic_module.c), so every
    key needs its own name; a client sends `name:secret` as its Basic credentials.
    """
    names = [name for name, _ in keys]
    if not keys:
        raise ValueError("no API keys")
    if len(set(names)) != len(names):
        raise ValueError("API key names must be unique")
    for name, secret in keys:
        if not name or ":" in name or any(c.isspace() for c in name + secret):
            raise ValueError("API key names may not contain ':' or spaces, secrets no spaces")
    return "".join(f"{name}:{_ssha(secret, name)}\n" for name, secret in keys)


def check_htpasswd(file_text: str, name: str, secret: str) -> bool:
    """What NGINX does with Basic credentials and the file above (for tests and the local proxy)."""
    for line in file_text.splitlines():
        user, _, stored = line.partition(":")
        if user != name:
            continue
        if not stored.startswith("{SSHA}"):
            return False
        raw = base64.b64decode(stored[len("{SSHA}") :])
        digest, salt = raw[:20], raw[20:]
        return hmac.compare_digest(hashlib.sha1(secret.encode() + salt).digest(), digest)
    return False


def basic_authorization(api_key: str) -> str:
    """The Authorization header value for an API key `name:secret` (what `curl -u` sends)."""
    if ":" not in api_key:
        raise ValueError("an API key looks like name:secret")
    return "Basic " + base64.b64encode(api_key.encode()).decode()


def api_key_secret_manifest(namespace: str) -> dict[str, Any]:
    """The Secret the AuthenticationFilter reads (data set by the component, from Pulumi secrets).

    Type Opaque: NGF 2.6.7 deprecates `nginx.org/htpasswd` (graph/authentication_filter.go).
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": AUTH_SECRET_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tritonllm"},
        },
        "type": "Opaque",
    }


def authentication_filter_manifest(namespace: str, realm: str = "tritonllm") -> dict[str, Any]:
    """NGF AuthenticationFilter (Basic) over the Secret above, in a route's namespace."""
    return {
        "apiVersion": f"{NGF_API_GROUP}/v1alpha1",
        "kind": "AuthenticationFilter",
        "metadata": {"name": AUTH_FILTER_NAME, "namespace": namespace},
        "spec": {"type": "Basic", "basic": {"realm": realm, "secretRef": {"name": AUTH_SECRET_NAME}}},
    }


def authentication_filter_ref(filter_name: str = AUTH_FILTER_NAME) -> dict[str, Any]:
    return {
        "type": "ExtensionRef",
        "extensionRef": {"group": NGF_API_GROUP, "kind": "AuthenticationFilter", "name": filter_name},
    }


def with_authentication(route: dict[str, Any], filter_name: str = AUTH_FILTER_NAME) -> dict[str, Any]:
    """A copy of an HTTPRoute/GRPCRoute with the API-key filter on every rule, whatever the rule.

    Applied to whole routes after they are built, so rules added later to any route builder
    (e.g. the OpenAI `/v1` rules) are covered without code of their own.
    """
    out = copy.deepcopy(route)
    ref = authentication_filter_ref(filter_name)
    for rule in out["spec"]["rules"]:
        filters = rule.setdefault("filters", [])
        if ref not in filters:
            filters.insert(0, ref)
    return out


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
        "group": GATEWAY_API_GROUP,
        "kind": "Gateway",
        "name": gateway_name,
        "namespace": gateway_namespace,
        "sectionName": listener,
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
    `extra_rules` are appended as given (the OpenAI API's `/v1` rules, components/serving/builders/openai.py).
    """
    rules = []
    for method, path, needs_header in exposed_http_requests(model_name):
        match: dict[str, Any] = {"path": {"type": "Exact", "value": path}, "method": method}
        if needs_header:
            match["headers"] = [_model_header(model_name)]
        rules.append(
            {
                "matches": [match],
                "filters": [
                    {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": path}}}
                ],
                "backendRefs": [{"name": service_name, "port": port}],
            }
        )
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
        {
            "method": {"type": "Exact", "service": TRITON_GRPC_SERVICE, "method": method},
            "headers": [_model_header(model_name)],
        }
        for method in GRPC_METHODS
    ]
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": f"{model_name}-grpc", "namespace": namespace},
        "spec": {
            # 8001 (h2c, plaintext stacks) and 8000 (behind the NLB's TLS port 443).
            "parentRefs": [
                _parent_ref(gateway_name, gateway_namespace, GRPC_LISTENER),
                _parent_ref(gateway_name, gateway_namespace, HTTP_LISTENER),
            ],
            "rules": [{"matches": matches, "backendRefs": [{"name": service_name, "port": port}]}],
        },
    }
