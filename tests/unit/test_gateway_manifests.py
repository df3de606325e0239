"""Pure gateway builders: IAM policy, Helm values, Gateway API objects, the NLB Service.

The route tests push requests through a small matcher that implements the Gateway API's
Exact/PathPrefix, method and header semantics after NGINX-style URI normalisation, so
"never exposes the repository API" is checked against requests, not against our own lists.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
import yaml

from components.catalog import versions
from components.gateway.builders import manifests as gm
from tests.helm_values import assert_values_keys_exist as shared_assert_values_keys_exist
from tests.k8s_schema import require_reference_dir, validate_custom_resource, validate_k8s_object

# --------------------------------------------------------------------------- helpers


def _reference_values(chart: versions.Chart) -> tuple[dict[str, Any], str]:
    path = require_reference_dir() / "helm-values" / chart.reference_values_file
    text = path.read_text()
    return yaml.safe_load(text), text


def assert_values_keys_exist(values: dict, chart: versions.Chart, free_form: set[str]) -> None:
    shared_assert_values_keys_exist(values, chart.reference_values_file, free_form)


def _documented_in_comments(reference_text: str, key: str) -> bool:
    """Keys of free-form maps that the chart documents only in commented examples."""
    return re.search(rf"^\s*#\s*{re.escape(key)}:", reference_text, re.MULTILINE) is not None


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- A Gateway API route matcher (the semantics NGF implements) -----------------------------


def normalize_uri(raw: str) -> str | None:
    """What NGINX matches locations against: percent-decoded, slashes merged, dot segments
    resolved. None when the path climbs above the root (NGINX answers 400)."""
    path = unquote(raw.split("?", 1)[0])
    if not path.startswith("/"):
        return None
    path = re.sub(r"/+", "/", path)
    segments: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if not segments:
                return None
            segments.pop()
        elif segment != ".":
            segments.append(segment)
    normalized = "/" + "/".join(segments)
    if path.endswith(("/", "/.", "/..")) and normalized != "/":
        normalized += "/"
    return normalized


def _path_matches(match: dict, path: str) -> bool:
    rule = match.get("path", {"type": "PathPrefix", "value": "/"})
    value = rule["value"]
    if rule["type"] == "Exact":
        return path == value
    if rule["type"] == "PathPrefix":  # element-wise prefix; a trailing slash is ignored
        prefix = value.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")
    if rule["type"] == "RegularExpression":
        return re.fullmatch(value, path) is not None
    raise AssertionError(f"unknown path match type {rule['type']}")


def _headers_match(match: dict, headers: dict[str, str]) -> bool:
    lower = {k.lower(): v for k, v in headers.items()}
    for header in match.get("headers", []):
        if header.get("type", "Exact") != "Exact":
            raise AssertionError("matcher only implements Exact header matches")
        if lower.get(header["name"].lower()) != header["value"]:
            return False
    return True


def route_http(route: dict, method: str, raw_path: str, headers: dict[str, str] | None = None):
    """(backend service, path Triton receives) for a request, or None when no rule matches."""
    path = normalize_uri(raw_path)
    if path is None:
        return None
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", [{}]):
            if (
                _path_matches(match, path)
                and match.get("method", method) == method
                and _headers_match(match, headers or {})
            ):
                upstream = raw_path  # NGINX passes the client's URI unless a rewrite replaces it
                for f in rule.get("filters", []):
                    if f["type"] == "URLRewrite" and "path" in f["urlRewrite"]:
                        rewrite = f["urlRewrite"]["path"]
                        assert rewrite["type"] == "ReplaceFullPath", "matcher implements ReplaceFullPath only"
                        upstream = rewrite["replaceFullPath"]
                backend = rule["backendRefs"][0]
                return backend["name"], upstream
    return None


def route_grpc(route: dict, service: str, method: str, metadata: dict[str, str] | None = None):
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches", [{}]):
            m = match.get("method", {})
            if m.get("type", "Exact") != "Exact":
                raise AssertionError("matcher only implements Exact method matches")
            if (
                m.get("service", service) == service
                and m.get("method", method) == method
                and _headers_match(match, metadata or {})
            ):
                return rule["backendRefs"][0]["name"]
    return None


# Triton's HTTP/REST endpoints that must never be reachable through the gateway.
FORBIDDEN_HTTP_PATHS = [
    "/v2/repository/index",
    "/v2/repository/models/{m}/load",
    "/v2/repository/models/{m}/unload",
    "/v2/logging",
    "/v2/trace/setting",
    "/v2/models/{m}/trace/setting",
    "/v2/models/{m}/versions/1/trace/setting",
    "/v2/models/{m}/stats",
    "/v2/models/stats",
    "/v2/systemsharedmemory/status",
    "/v2/systemsharedmemory/region/r0/status",
    "/v2/systemsharedmemory/region/r0/register",
    "/v2/systemsharedmemory/region/r0/unregister",
    "/v2/systemsharedmemory/unregister",
    "/v2/cudasharedmemory/status",
    "/v2/cudasharedmemory/region/r0/register",
    "/v2/cudasharedmemory/region/r0/unregister",
    "/v2/cudasharedmemory/unregister",
    "/v2",
    "/metrics",
    "/",
    # Disguised: dot segments, encoded slashes, doubled slashes, suffixes and prefixes.
    "/v2/models/{m}/infer/../../../repository/index",
    "/v2/models/{m}/%2e%2e/%2e%2e/repository/index",
    "/v2/models/{m}/config%2F..%2F..%2F..%2Flogging",
    "//v2//repository//index",
    "/v2/models/{m}/infer/extra",
    "/v2/models/{m}/inferx",
    "/v2/models/{m}/",
    "/v2/models/{m}/config/",
    "/v2/repository/models/{m}/load/../../../../models/{m}/infer/../load",
]
FORBIDDEN_GRPC_METHODS = [
    "ServerMetadata",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

# --------------------------------------------------------------------------- IAM


def test_lbc_policy_is_the_published_v3_5_0_document():
    doc = gm.lbc_controller_policy_document()
    assert doc["Version"] == "2012-10-17"
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # What the controller needs to create *and clean up* an NLB with its target groups and SGs.
    for action in [
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupIngress",
        "iam:CreateServiceLinkedRole",
    ]:
        assert action in actions, action
    # Deletes are limited to what the controller tagged as its own.
    deleting = [s for s in doc["Statement"] if "elasticloadbalancing:DeleteLoadBalancer" in s["Action"]]
    assert all("aws:ResourceTag/elbv2.k8s.aws/cluster" in json.dumps(s.get("Condition", {})) for s in deleting)
    assert "v3.5.0" in gm.LBC_POLICY_SOURCE
    assert versions.AWS_LOAD_BALANCER_CONTROLLER.version == "3.5.0"


def test_lbc_policy_fits_an_inline_role_policy():
    compact = json.dumps(gm.lbc_controller_policy_document(), separators=(",", ":"))
    assert len(compact) < 10240  # IAM's limit on a role's inline policies


# --------------------------------------------------------------------------- Helm values

LBC_FREE_FORM = {"nodeSelector", "defaultTags", "podDisruptionBudget", "controllerConfig.featureGates"}


def _lbc_values(**kw):
    args = dict(
        cluster_name="tritonllm-dev",
        region="us-west-2",
        vpc_id="vpc-0123",
        node_selector={"tritonllm.io/node-group": "system"},
        tags={"project": "tritonllm"},
    )
    args.update(kw)
    return gm.lbc_helm_values(**args)


def test_lbc_values_keys_exist_in_chart_defaults():
    values = _lbc_values()
    assert_values_keys_exist(values, versions.AWS_LOAD_BALANCER_CONTROLLER, LBC_FREE_FORM)
    _, text = _reference_values(versions.AWS_LOAD_BALANCER_CONTROLLER)
    for gate in values["controllerConfig"]["featureGates"]:
        assert _documented_in_comments(text, gate), f"unknown feature gate {gate}"
    for key in values["podDisruptionBudget"]:
        assert _documented_in_comments(text, key)


def test_lbc_values_identify_the_cluster_and_run_on_system_nodes():
    values = _lbc_values()
    assert values["clusterName"] == "tritonllm-dev"
    assert values["region"] == "us-west-2" and values["vpcId"] == "vpc-0123"
    assert values["serviceAccount"] == {"create": True, "name": gm.LBC_SERVICE_ACCOUNT}
    assert values["nodeSelector"] == {"tritonllm.io/node-group": "system"}
    assert values["defaultTags"] == {"project": "tritonllm"}
    # No cluster-wide Service webhook with failurePolicy Fail; nothing beyond Services.
    assert values["enableServiceMutatorWebhook"] is False
    assert values["createIngressClassResource"] is False
    assert values["controllerConfig"]["featureGates"] == {"ALBGatewayAPI": False, "NLBGatewayAPI": False}


def test_lbc_values_refuse_tags_the_controller_cannot_parse():
    with pytest.raises(ValueError, match="cannot take"):
        _lbc_values(tags={"team": "a,b"})


NGF_FREE_FORM = {"nginxGateway.nodeSelector", "nginx.pod", "certGenerator.nodeSelector"}


def test_ngf_values_keys_exist_and_match_the_chart_schema():
    values = gm.ngf_helm_values(node_selector={"tritonllm.io/node-group": "system"})
    assert_values_keys_exist(values, versions.NGINX_GATEWAY_FABRIC, NGF_FREE_FORM)
    defaults, text = _reference_values(versions.NGINX_GATEWAY_FABRIC)
    for key in values["nginx"]["pod"]:  # nginx.pod is documented in comments only
        assert _documented_in_comments(text, key), f"nginx.pod.{key}"
    schema_path = require_reference_dir() / "helm-values" / "nginx-gateway-fabric-2.6.7.schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft7Validator(schema).validate(_deep_merge(defaults, values))


def test_ngf_does_not_create_a_load_balancer_of_its_own():
    values = gm.ngf_helm_values()
    assert values["nginx"]["service"]["type"] == "ClusterIP"
    assert values["nginxGateway"]["gatewayClassName"] == gm.GATEWAY_CLASS_NAME
    assert values["nginxGateway"]["productTelemetry"]["enable"] is False
    assert "gateways" not in values  # the Gateway is a Pulumi resource, not part of the release


def test_versions_are_the_pinned_charts():
    assert versions.NGINX_GATEWAY_FABRIC.version == "2.6.7"
    assert versions.GATEWAY_API_VERSION in gm.GATEWAY_API_CRDS_URL
    assert gm.GATEWAY_API_CRDS_URL.endswith("/standard-install.yaml")


# --------------------------------------------------------------------------- Gateway


def test_gateway_validates_and_listens_http_8000_and_h2c_8001():
    gateway = gm.gateway_manifest()
    validate_custom_resource(gateway)
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    assert listeners["http"]["port"] == 8000 and listeners["grpc"]["port"] == 8001
    # NGF serves GRPCRoute over an HTTP listener (HTTP/2 cleartext); TLS ends at the NLB.
    assert {listener["protocol"] for listener in listeners.values()} == {"HTTP"}
    kinds = {name: {k["kind"] for k in listener["allowedRoutes"]["kinds"]} for name, listener in listeners.items()}
    # 8000 takes gRPC too: behind the NLB's single TLS port (443 -> 8000) HTTP and gRPC share a port.
    assert kinds == {"http": {"HTTPRoute", "GRPCRoute"}, "grpc": {"GRPCRoute"}}
    for listener in listeners.values():
        assert listener["allowedRoutes"]["namespaces"] == {
            "from": "Selector",
            "selector": {"matchLabels": gm.route_namespace_labels()},
        }
    assert gateway["spec"]["gatewayClassName"] == gm.GATEWAY_CLASS_NAME


def test_ngf_policy_objects_validate_against_the_upstream_crds():
    target = {"group": gm.GATEWAY_API_GROUP, "kind": "Gateway", "name": gm.GATEWAY_NAME}
    proxy = gm.proxy_settings_policy_manifest(timeout_seconds=300)
    client = gm.client_settings_policy_manifest()
    grpc = gm.grpc_timeouts_policy_manifest(timeout_seconds=300)
    auth = gm.authentication_filter_manifest("llama-ns", "tritonllm")
    for manifest in (proxy, client, grpc, auth):
        validate_custom_resource(manifest)  # reference crds/gateway.nginx.org_*.yaml (NGF 2.6.7)
    assert proxy["spec"]["targetRefs"] == [target] and client["spec"]["targetRef"] == target
    assert grpc["spec"]["targetRefs"] == [target]
    assert proxy["spec"]["buffering"] == {"disable": True}  # token streams reach the client as produced


def test_ngf_crd_check_catches_a_typo():
    require_reference_dir()  # the check reads NGF's CRDs
    bad = gm.grpc_timeouts_policy_manifest()
    bad["spec"]["snippets"][0]["context"] = "server"  # NGF knows main, http, http.server, http.server.location
    with pytest.raises(AssertionError, match="context"):
        validate_custom_resource(bad)
    bad = gm.authentication_filter_manifest("ns")
    bad["spec"]["basic"]["secretref"] = bad["spec"]["basic"].pop("secretRef")
    with pytest.raises(AssertionError):
        validate_custom_resource(bad)


@pytest.mark.parametrize("timeout", [45, 300, 1800])
def test_http_and_grpc_timeouts_follow_the_request_timeout(timeout):
    proxy = gm.proxy_settings_policy_manifest(timeout_seconds=timeout)
    assert proxy["spec"]["timeout"] == {"read": f"{timeout}s", "send": f"{timeout}s"}
    # NGF 2.6.7's ProxySettingsPolicy writes proxy_* only; gRPC (grpc_pass) needs its own directives.
    (snippet,) = gm.grpc_timeouts_policy_manifest(timeout_seconds=timeout)["spec"]["snippets"]
    assert snippet["context"] == "http"  # inherited by every location of this Gateway's NGINX
    directives = dict(line.rstrip(";").split(" ", 1) for line in snippet["value"].splitlines())
    assert directives == {"grpc_read_timeout": f"{timeout}s", "grpc_send_timeout": f"{timeout}s"}
    with pytest.raises(ValueError):
        gm.proxy_settings_policy_manifest(timeout_seconds=0)


def test_ngf_chart_enables_snippets_for_the_grpc_timeouts():
    values = gm.ngf_helm_values()
    # Without it NGF ignores SnippetsPolicy and gRPC keeps NGINX's 60 s timeouts.
    assert values["nginxGateway"]["snippets"] == {"enable": True}
    defaults, _ = _reference_values(versions.NGINX_GATEWAY_FABRIC)
    assert "enable" in defaults["nginxGateway"]["snippets"]


# --------------------------------------------------------------------------- the NLB Service

VPC = ["10.1.0.0/16", "100.64.0.0/16"]
ARN = "arn:aws:acm:us-west-2:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
P = "service.beta.kubernetes.io/aws-load-balancer-"


def test_service_is_an_internal_ip_target_nlb_admitting_only_its_source_cidrs():
    svc = gm.load_balancer_service_manifest(source_cidrs=VPC, idle_timeout_seconds=310)
    validate_k8s_object(svc)
    ann = svc["metadata"]["annotations"]
    assert ann[f"{P}type"] == "external"
    assert ann[f"{P}nlb-target-type"] == "ip"
    assert ann[f"{P}scheme"] == "internal"
    spec = svc["spec"]
    assert spec["type"] == "LoadBalancer" and spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["loadBalancerSourceRanges"] == VPC
    assert {(p["port"], p["targetPort"]) for p in spec["ports"]} == {(8000, 8000), (8001, 8001)}
    # Plaintext (TCP) listeners: idle timeout from the request timeout (LBC listener-attributes.TCP-<port>).
    assert ann[f"{P}listener-attributes.TCP-8000"] == "tcp.idle_timeout.seconds=310"
    assert ann[f"{P}listener-attributes.TCP-8001"] == "tcp.idle_timeout.seconds=310"


def test_service_never_leaves_source_ranges_empty():
    # No loadBalancerSourceRanges = 0.0.0.0/0 for the LBC, internal NLBs included
    # (LBC v3.5.0 pkg/service/model_build_managed_sg.go buildCIDRsFromSourceRanges).
    with pytest.raises(ValueError, match="0.0.0.0/0"):
        gm.load_balancer_service_manifest()
    with pytest.raises(ValueError, match="dangerouslyAllowAnySource"):
        gm.load_balancer_service_manifest(source_cidrs=["0.0.0.0/0"], certificate_arn=ARN)
    with pytest.raises(ValueError, match="dangerouslyAllowAnySource"):  # the internet in two halves
        gm.load_balancer_service_manifest(source_cidrs=["0.0.0.0/1", "128.0.0.0/1"], certificate_arn=ARN)
    svc = gm.load_balancer_service_manifest(
        source_cidrs=["0.0.0.0/0"], allow_any_source=True, certificate_arn=ARN, scheme="internet-facing"
    )
    assert svc["spec"]["loadBalancerSourceRanges"] == ["0.0.0.0/0"]


def test_tls_listener_on_443_with_alpn_for_grpc():
    svc = gm.load_balancer_service_manifest(
        scheme="internet-facing",
        source_cidrs=["203.0.113.0/24"],
        certificate_arn=ARN,
        ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
    )
    validate_k8s_object(svc)
    ann = svc["metadata"]["annotations"]
    assert ann[f"{P}scheme"] == "internet-facing"
    (port,) = svc["spec"]["ports"]  # one port: every listener of the NLB is TLS
    assert (port["name"], port["port"], port["targetPort"]) == ("https", 443, 8000)
    assert ann[f"{P}ssl-cert"] == ARN and ann[f"{P}ssl-ports"] == "https"
    assert ann[f"{P}ssl-negotiation-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert ann[f"{P}alpn-policy"] == "HTTP2Preferred"  # h2 for gRPC clients, HTTP/1.1 for the rest
    # TLS listeners have a fixed 350 s idle timeout; no TCP listener attributes.
    assert not [k for k in ann if "listener-attributes" in k]
    with pytest.raises(ValueError, match="TLS"):
        gm.load_balancer_service_manifest(scheme="internet-facing", source_cidrs=["203.0.113.0/24"])
    not_a_scheme: Any = "public"  # a value outside the Scheme Literal, as untyped callers could pass
    with pytest.raises(ValueError):
        gm.load_balancer_service_manifest(scheme=not_a_scheme, source_cidrs=VPC)


@pytest.mark.parametrize("tls", [False, True])
def test_health_check_is_nginx_http_readiness_not_a_tcp_connect(tls):
    svc = gm.load_balancer_service_manifest(source_cidrs=VPC, certificate_arn=ARN if tls else None)
    ann = svc["metadata"]["annotations"]
    assert ann[f"{P}healthcheck-protocol"] == "HTTP"
    # NGF 2.6.7 base_http_config_template.go: `listen 8081; location = /readyz { return 200; }`
    assert ann[f"{P}healthcheck-port"] == "8081" and ann[f"{P}healthcheck-path"] == "/readyz"
    assert ann[f"{P}healthcheck-success-codes"] == "200"


def test_service_selects_the_nginx_pods_ngf_provisions():
    # NGF names a Gateway's NGINX resources `<gateway>-<gatewayclass>` and labels the pods with it.
    selector = gm.load_balancer_service_manifest(source_cidrs=VPC)["spec"]["selector"]
    assert selector == {
        "app.kubernetes.io/name": "tritonllm-nginx",
        "gateway.networking.k8s.io/gateway-name": "tritonllm",
    }
    with pytest.raises(ValueError):
        gm.nginx_dataplane_selector("g" * 60)


def test_hostname_and_endpoints_from_service_status():
    status = {"loadBalancer": {"ingress": [{"hostname": "k8s-x.elb.us-west-2.amazonaws.com"}]}}
    host = gm.load_balancer_hostname(status)
    assert host == "k8s-x.elb.us-west-2.amazonaws.com"
    assert gm.endpoints(host) == {"http": f"http://{host}:8000", "grpc": f"{host}:8001"}
    assert gm.endpoints("llm.example.com", tls=True) == {
        "http": "https://llm.example.com",
        "grpc": "llm.example.com:443",
    }
    assert gm.load_balancer_hostname({"loadBalancer": {}}) is None
    assert gm.load_balancer_hostname(None) is None


# --------------------------------------------------------------------------- API keys

KEYS = [("ci", "0123456789abcdef0123456789abcdef"), ("ci-next", "fedcba9876543210fedcba9876543210")]


def test_htpasswd_checks_every_key_and_nothing_else():
    text = gm.htpasswd(KEYS)
    assert [line.split(":", 1)[0] for line in text.splitlines()] == ["ci", "ci-next"]
    assert all(line.split(":", 1)[1].startswith("{SSHA}") for line in text.splitlines())
    for name, secret in KEYS:
        assert secret not in text  # salted hashes only
        assert gm.check_htpasswd(text, name, secret)
        assert not gm.check_htpasswd(text, name, secret + "x")
    assert not gm.check_htpasswd(text, "ci", KEYS[1][1])  # another key's secret under this name
    assert not gm.check_htpasswd(text, "nobody", KEYS[0][1])
    assert gm.htpasswd(KEYS) == text  # stable: the Secret does not change on every `up`
    with pytest.raises(ValueError):
        gm.htpasswd([("ci", "a" * 24), ("ci", "b" * 24)])  # NGINX would only ever check the first
    with pytest.raises(ValueError):
        gm.htpasswd([])


def test_basic_authorization_is_what_curl_sends():
    import base64

    header = gm.basic_authorization("ci:secret-part")
    assert header == "Basic " + base64.b64encode(b"ci:secret-part").decode()
    from tritonllm.client_core import auth_headers

    assert auth_headers("ci:secret-part") == {"authorization": header}  # the client sends the same


def test_every_rule_of_every_route_requires_the_api_key(http_route, grpc_route):
    for route in (http_route, grpc_route):
        secured = gm.with_authentication(route)
        validate_custom_resource(secured)
        for rule in secured["spec"]["rules"]:
            assert rule["filters"][0] == {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": "gateway.nginx.org",
                    "kind": "AuthenticationFilter",
                    "name": gm.AUTH_FILTER_NAME,
                },
            }
        assert gm.with_authentication(secured) == secured  # idempotent
        # Rules added later (e.g. OpenAI /v1 rules) get the filter too, with no code of their own.
        extra = copy.deepcopy(route)
        extra["spec"]["rules"].append(
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1/"}}],
                "backendRefs": [{"name": "x", "port": 9000}],
            }
        )
        assert all(r["filters"][0]["type"] == "ExtensionRef" for r in gm.with_authentication(extra)["spec"]["rules"])
    # The URL rewrite of each HTTP rule is kept.
    rewrites = [
        f
        for r in gm.with_authentication(http_route)["spec"]["rules"]
        for f in r["filters"]
        if f["type"] == "URLRewrite"
    ]
    assert len(rewrites) == len(http_route["spec"]["rules"])


def test_authentication_filter_reads_the_secret_ngf_expects():
    f = gm.authentication_filter_manifest("llama-ns", "tritonllm")
    secret = gm.api_key_secret_manifest("llama-ns")
    validate_k8s_object({**secret, "stringData": {gm.AUTH_SECRET_KEY: gm.htpasswd(KEYS)}})
    assert f["spec"] == {
        "type": "Basic",
        "basic": {"realm": "tritonllm", "secretRef": {"name": secret["metadata"]["name"]}},
    }
    assert f["metadata"]["namespace"] == secret["metadata"]["namespace"] == "llama-ns"  # same namespace
    assert gm.AUTH_SECRET_KEY == "auth" and secret["type"] == "Opaque"  # NGF secrets.AuthKey; htpasswd type deprecated


# --------------------------------------------------------------------------- routes


@pytest.fixture
def http_route():
    return gm.http_route_manifest("llama", "llama-ns", "llama-triton")


@pytest.fixture
def grpc_route():
    return gm.grpc_route_manifest("llama", "llama-ns", "llama-triton")


def test_routes_validate_against_gateway_api_crds(http_route, grpc_route):
    validate_custom_resource(http_route)
    validate_custom_resource(grpc_route)
    # CEL rules jsonschema does not evaluate: at most 16 rules, 64 matches each, 128 in total.
    for route in (http_route, grpc_route):
        rules = route["spec"]["rules"]
        assert len(rules) <= 16 and sum(len(r["matches"]) for r in rules) <= 128
        assert all(len(r["matches"]) <= 64 for r in rules)


def test_routes_attach_to_their_own_listener(http_route, grpc_route):
    assert http_route["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert grpc_route["spec"]["parentRefs"][0]["sectionName"] == "grpc"
    for route in (http_route, grpc_route):
        ref = route["spec"]["parentRefs"][0]
        assert (ref["name"], ref["namespace"]) == (gm.GATEWAY_NAME, gm.NGF_NAMESPACE)
        assert route["metadata"]["namespace"] == "llama-ns"
    assert http_route["spec"]["rules"][0]["backendRefs"] == [{"name": "llama-triton", "port": 8000}]
    assert grpc_route["spec"]["rules"][0]["backendRefs"] == [{"name": "llama-triton", "port": 8001}]


@pytest.mark.parametrize(
    "method,path,header",
    [
        ("POST", "/v2/models/llama/generate", False),
        ("POST", "/v2/models/llama/generate_stream", False),
        ("POST", "/v2/models/llama/infer", False),
        ("GET", "/v2/models/llama/ready", False),
        ("GET", "/v2/models/llama", False),
        ("GET", "/v2/models/llama/config", False),
        ("GET", "/v2/health/ready", True),
        ("GET", "/v2/health/live", True),
    ],
)
def test_inference_and_health_requests_reach_the_model(http_route, method, path, header):
    headers = {"X-Triton-Model": "llama"} if header else {}
    assert route_http(http_route, method, path, headers) == ("llama-triton", path)
    if header:  # server-wide health needs the model header to pick a Triton
        assert route_http(http_route, method, path) is None
        assert route_http(http_route, method, path, {"x-triton-model": "other"}) is None


@pytest.mark.parametrize("template", FORBIDDEN_HTTP_PATHS)
def test_repository_and_control_paths_are_never_routed(http_route, template):
    path = template.format(m="llama")
    for method in METHODS:
        for headers in ({}, {"x-triton-model": "llama"}):
            assert route_http(http_route, method, path, headers) is None, (method, path)


def test_wrong_methods_are_not_routed(http_route):
    assert route_http(http_route, "GET", "/v2/models/llama/infer") is None
    assert route_http(http_route, "DELETE", "/v2/models/llama") is None
    assert route_http(http_route, "POST", "/v2/models/llama/config") is None


def test_triton_only_ever_receives_an_allowed_path(http_route):
    allowed = {path for _, path, _ in gm.exposed_http_requests("llama")}
    # Requests that normalise onto an allowed path still reach Triton as that exact path.
    for raw in [
        "/v2/repository/../models/llama/infer",
        "/v2/models/llama/./infer",
        "//v2/models//llama/infer",
        "/v2/models/x/../llama/infer",
        "/v2/models/llama/infer?x=1",
        "/v2/%6dodels/llama/infer",
    ]:
        hit = route_http(http_route, "POST", raw)
        assert hit is not None and hit[1] in allowed, raw
    for rule in http_route["spec"]["rules"]:
        (match,) = rule["matches"]
        assert match["path"]["type"] == "Exact"
        assert rule["filters"][0]["urlRewrite"]["path"]["replaceFullPath"] == match["path"]["value"]


@pytest.mark.parametrize("method", gm.GRPC_METHODS)
def test_grpc_inference_methods_need_the_model_header(grpc_route, method):
    assert route_grpc(grpc_route, gm.TRITON_GRPC_SERVICE, method, {"x-triton-model": "llama"}) == "llama-triton"
    assert route_grpc(grpc_route, gm.TRITON_GRPC_SERVICE, method) is None
    assert route_grpc(grpc_route, gm.TRITON_GRPC_SERVICE, method, {"x-triton-model": "mistral"}) is None
    assert route_grpc(grpc_route, "other.Service", method, {"x-triton-model": "llama"}) is None


@pytest.mark.parametrize("method", FORBIDDEN_GRPC_METHODS)
def test_grpc_control_methods_are_never_routed(grpc_route, method):
    assert route_grpc(grpc_route, gm.TRITON_GRPC_SERVICE, method, {"x-triton-model": "llama"}) is None
    assert route_grpc(grpc_route, gm.TRITON_GRPC_SERVICE, method) is None


def test_grpc_route_names_exactly_the_allowed_methods(grpc_route):
    methods = {m["method"]["method"] for r in grpc_route["spec"]["rules"] for m in r["matches"]}
    services = {m["method"]["service"] for r in grpc_route["spec"]["rules"] for m in r["matches"]}
    assert methods == set(gm.GRPC_METHODS) and services == {"inference.GRPCInferenceService"}
    assert not methods & set(FORBIDDEN_GRPC_METHODS)


def test_two_models_behind_one_gateway_never_share_a_request():
    models = {"llama-2-7b-chat": "ns-a", "mistral-7b-instruct": "ns-b"}
    http = {m: gm.http_route_manifest(m, ns, f"{m}-svc") for m, ns in models.items()}
    grpc = {m: gm.grpc_route_manifest(m, ns, f"{m}-svc") for m, ns in models.items()}
    for model in models:
        for method, path, _ in gm.exposed_http_requests(model):
            hits = {m for m, r in http.items() if route_http(r, method, path, {"x-triton-model": model})}
            assert hits == {model}, (method, path)
        for method in gm.GRPC_METHODS:
            hits = {
                m for m, r in grpc.items() if route_grpc(r, gm.TRITON_GRPC_SERVICE, method, {"x-triton-model": model})
            }
            assert hits == {model}


def test_matcher_implements_gateway_api_prefix_semantics():
    # The matcher itself: PathPrefix is element-wise, so /v2/models/a does not cover /v2/models/ab.
    route = {
        "spec": {
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v2/models/a/"}}],
                    "backendRefs": [{"name": "s"}],
                }
            ]
        }
    }
    assert route_http(route, "GET", "/v2/models/a") is not None
    assert route_http(route, "GET", "/v2/models/a/x") is not None
    assert route_http(route, "GET", "/v2/models/ab") is None
    assert normalize_uri("/a/../../b") is None
    assert normalize_uri("/a/%2e%2e/b") == "/b"


def test_values_key_check_catches_a_typo():
    require_reference_dir()  # the check reads the chart's defaults
    with pytest.raises(AssertionError, match="clusterNmae"):
        assert_values_keys_exist({"clusterNmae": "x"}, versions.AWS_LOAD_BALANCER_CONTROLLER, LBC_FREE_FORM)
    with pytest.raises(AssertionError, match="nginx.servce"):
        assert_values_keys_exist(
            {"nginx": {"servce": {"type": "ClusterIP"}}}, versions.NGINX_GATEWAY_FABRIC, NGF_FREE_FORM
        )
