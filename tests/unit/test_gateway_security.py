"""Security properties of the inference endpoint, on every stack file (and on TLS variants of them).

* No load balancer admits 0.0.0.0/0 (or an empty source list, which the LBC turns into
  0.0.0.0/0) unless the stack sets gateway.dangerouslyAllowAnySource.
* An internet-facing gateway serves TLS only (ACM certificate, every NLB listener TLS).
* Every rule of every route sits behind the API-key AuthenticationFilter; the only open
  request is the NLB's health check against NGINX's own readiness endpoint.
* The API keys reach the cluster only as a Kubernetes Secret's Pulumi-secret data, hashed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import parse_stack_config
from components.config.addresses import admits_internet
from components.gateway.builders import manifests as gm
from tests.k8s_schema import validate_manifest
from tests.unit.harness import DEFAULT_SECRETS, ProgramRun, run_program

SERVICE = "kubernetes:core/v1:Service"
P = "service.beta.kubernetes.io/aws-load-balancer-"
ARN = "arn:aws:acm:us-west-2:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
TLS_VARIANTS: dict[str, dict[str, Any]] = {
    "internet-facing-created-cert": {
        "gateway": {
            "scheme": "internet-facing",
            "allowedCidrs": ["203.0.113.0/24"],
            "tls": {"domain": "llm.example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"},
        }
    },
    "internal-brought-cert": {"gateway": {"tls": {"certificateArn": ARN}}},
    "open-to-anyone-explicitly": {
        "gateway": {
            "scheme": "internet-facing",
            "allowedCidrs": ["0.0.0.0/0"],
            "dangerouslyAllowAnySource": True,
            "tls": {"certificateArn": ARN},
        }
    },
}
_VARIANT_RUNS: dict[str, ProgramRun] = {}


@pytest.fixture(params=sorted(TLS_VARIANTS))
def variant_run(request) -> ProgramRun:
    if request.param not in _VARIANT_RUNS:
        _VARIANT_RUNS[request.param] = run_program("vllm", overrides=TLS_VARIANTS[request.param])
    return _VARIANT_RUNS[request.param]


def _config(run: ProgramRun):
    raw = {k.split(":", 1)[1]: v for k, v in run.config.items() if k.startswith("tritonllm:")}
    return parse_stack_config(raw, {"hfToken", "apiKeys"})


def load_balancers(run: ProgramRun):
    return [s for s in run.of_type(SERVICE) if s.get("spec.type") == "LoadBalancer"]


def check_source_ranges(run: ProgramRun) -> None:
    cfg = _config(run)
    lbs = load_balancers(run)
    assert lbs, "no load balancer"
    for svc in lbs:
        ranges = svc.get("spec.loadBalancerSourceRanges") or []
        assert ranges, f"{svc.name}: no source ranges = 0.0.0.0/0 for the load balancer controller"
        if not cfg.gateway.dangerously_allow_any_source:
            assert not admits_internet(ranges), f"{svc.name} admits everyone: {ranges}"
        if cfg.gateway.scheme == "internal" and not cfg.gateway.allowed_cidrs:
            assert ranges == [cfg.network.vpc_cidr, cfg.network.pod_cidr]


def check_tls(run: ProgramRun) -> None:
    cfg = _config(run)
    for svc in load_balancers(run):
        ann = svc.get("metadata.annotations")
        if ann[f"{P}scheme"] == "internet-facing" or cfg.gateway.tls.enabled:
            assert ann.get(f"{P}ssl-cert", "").startswith("arn:aws:acm:us-west-2:"), svc.name
            tls_ports = {p.strip() for p in ann[f"{P}ssl-ports"].split(",")}
            assert {p["name"] for p in svc.get("spec.ports")} <= tls_ports, "a plaintext listener next to TLS"
            assert ann[f"{P}alpn-policy"] == "HTTP2Preferred"
        else:
            assert cfg.gateway.tls.plaintext_inside_vpc and ann[f"{P}scheme"] == "internal"


def check_every_route_requires_an_api_key(run: ProgramRun) -> None:
    routes = [r for r in run.resources if r.inputs.get("kind") in ("HTTPRoute", "GRPCRoute")]
    assert routes, "no routes"
    filters = {
        (r.get("metadata.namespace"), r.get("metadata.name")): r
        for r in run.resources
        if r.inputs.get("kind") == "AuthenticationFilter"
    }
    secrets = {
        (r.get("metadata.namespace"), r.get("metadata.name")): r for r in run.of_type("kubernetes:core/v1:Secret")
    }
    api_keys = DEFAULT_SECRETS["apiKeys"]
    assert api_keys is not None  # the harness's default apiKeys secret is set
    for route in routes:
        ns = route.get("metadata.namespace")
        for i, rule in enumerate(route.get("spec.rules")):
            refs = [
                f["extensionRef"]
                for f in rule.get("filters", [])
                if f["type"] == "ExtensionRef" and f["extensionRef"]["kind"] == "AuthenticationFilter"
            ]
            assert refs, f"{route.get('kind')} {route.name} rule {i} is open"
            auth = filters.get((ns, refs[0]["name"]))
            assert auth is not None, f"{route.name}: filter {refs[0]['name']} missing in namespace {ns}"
            assert auth.get("spec.type") == "Basic"
            assert auth.urn in route.dependencies, f"{route.name} must be created after its filter"
            secret = secrets.get((ns, auth.get("spec.basic.secretRef.name")))
            assert secret is not None, f"filter {auth.name}: its Secret is missing"
            assert secret.is_secret(f"stringData.{gm.AUTH_SECRET_KEY}"), "htpasswd must be a Pulumi secret"
            htpasswd = secret.get(f"stringData.{gm.AUTH_SECRET_KEY}")
            for key in json.loads(api_keys):
                name, secret_part = key.split(":", 1)
                assert gm.check_htpasswd(htpasswd, name, secret_part) and secret_part not in htpasswd


def check_only_the_health_check_is_open(run: ProgramRun) -> None:
    for svc in load_balancers(run):
        ann = svc.get("metadata.annotations")
        assert (ann[f"{P}healthcheck-protocol"], ann[f"{P}healthcheck-port"], ann[f"{P}healthcheck-path"]) == (
            "HTTP",
            str(gm.NGINX_READINESS_PORT),
            gm.NGINX_READINESS_PATH,
        )
        # NGINX's readiness server is no route: no listener of the Gateway is on its port.
        gateways = [r for r in run.resources if r.inputs.get("kind") == "Gateway"]
        assert all(
            listener["port"] != gm.NGINX_READINESS_PORT for g in gateways for listener in g.get("spec.listeners")
        )


CHECKS = [check_source_ranges, check_tls, check_every_route_requires_an_api_key, check_only_the_health_check_is_open]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_stack_files(stack_run, check):
    check(stack_run)


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_tls_variants(variant_run, check):
    check(variant_run)


def test_variant_objects_validate(variant_run):
    for r in variant_run.resources:
        if r.type.startswith("kubernetes:") and "kind" in r.inputs and r.inputs.get("apiVersion"):
            validate_manifest(r.manifest())


def test_api_key_output_says_how_to_read_a_key_and_holds_none(stack_run):
    command = stack_run.outputs["apiKeyCommand"]
    assert "pulumi config get tritonllm:apiKeys" in command
    for key in json.loads(DEFAULT_SECRETS["apiKeys"]):
        assert key.split(":", 1)[1] not in json.dumps(stack_run.outputs)


def test_auth_off_leaves_routes_open_and_needs_no_keys():
    run = run_program("vllm", overrides={"gateway.auth": {"enabled": False}}, secrets={"apiKeys": None})
    assert not [r for r in run.resources if r.inputs.get("kind") == "AuthenticationFilter"]
    with pytest.raises(AssertionError, match="is open"):
        check_every_route_requires_an_api_key(run)  # the property check notices


def test_tls_outputs_are_https_and_grpc_on_443_with_a_secure_client(variant_run):
    out = variant_run.outputs
    assert out["httpEndpoint"].startswith("https://") and out["grpcEndpoint"].endswith(":443")
    for command in out["clientCommands"].values():
        assert out["grpcEndpoint"] in command and command.endswith(" --ssl")
