"""The Gateway component under Pulumi mocks: what it registers, in which dependency order.

`pulumi destroy` deletes a resource only after everything that depends on it, so
"the NLB is gone before its controller" is a property of the dependency graph: the
LoadBalancer Service must (transitively) depend on the LBC release, and the release on
the controller's Pod Identity association, IAM policy and role.

The component runs on its own through a tiny program (the stack's config, a stand-in
Kubernetes provider), and inside the whole program (`__main__.py`) too.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TypedDict

import pytest

from components.catalog import versions
from components.gateway.builders import manifests as gm
from tests.k8s_schema import validate_custom_resource, validate_k8s_object
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, RecordedResource, plain_occurrences, run_program

GATEWAY_TYPE = "tritonllm:gateway:Gateway"
RELEASE = "kubernetes:helm.sh/v3:Release"
SERVICE = "kubernetes:core/v1:Service"

GATEWAY_ONLY_PROGRAM = textwrap.dedent("""
    import pulumi
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s

    from components.config import read_pulumi_config
    from components.gateway.resources.gateway import Gateway, GatewayArgs

    cfg = read_pulumi_config()
    provider = k8s.Provider("k8s", kubeconfig="{}")
    # Stand-ins for what the controllers run on (Cluster's system node group and add-ons).
    nodes = aws.eks.NodeGroup("system", cluster_name=cfg.name, node_role_arn="arn:aws:iam::123456789012:role/n",
                              subnet_ids=["subnet-1"], scaling_config={"min_size": 1, "max_size": 1, "desired_size": 1})
    agent = aws.eks.Addon("eks-pod-identity-agent", cluster_name=cfg.name, addon_name="eks-pod-identity-agent")
    gateway = Gateway(cfg.name, GatewayArgs(
        stack=cfg.identity, gateway=cfg.gateway, network=cfg.network, k8s_provider=provider, cluster_name=cfg.name,
        vpc_id="vpc-0123456789abcdef0", controllers_depend_on=[nodes, agent]))
    pulumi.export("httpEndpoint", gateway.http_endpoint)
    pulumi.export("grpcEndpoint", gateway.grpc_endpoint)
    pulumi.export("hostname", gateway.hostname)
    pulumi.export("gatewayName", gateway.gateway_name)
    pulumi.export("gatewayNamespace", gateway.gateway_namespace)
""")


@pytest.fixture(scope="module")
def program_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "gateway_program.py"
    path.write_text(GATEWAY_ONLY_PROGRAM)
    return path


@pytest.fixture(scope="module")
def run(program_file) -> ProgramRun:
    return run_program("dev", program=program_file)


# --------------------------------------------------------------------------- graph helpers


def _ancestors(run: ProgramRun, resource: RecordedResource) -> set[str]:
    """URNs `resource` transitively depends on (what destroy must keep until it is gone)."""
    by_urn = {r.urn: r for r in run.resources}
    seen: set[str] = set()
    todo = list(resource.dependencies)
    while todo:
        urn = todo.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in by_urn:
            todo.extend(by_urn[urn].dependencies)
    return seen


def _depends_on(run: ProgramRun, resource: RecordedResource, other: RecordedResource) -> bool:
    return other.urn in _ancestors(run, resource)


def destroy_order(run: ProgramRun) -> list[str]:
    """A destroy order Pulumi could take: nothing is deleted before the resources that depend on it."""
    dependents: dict[str, set[str]] = {r.urn: set() for r in run.resources}
    for r in run.resources:
        for dep in r.dependencies:
            dependents.setdefault(dep, set()).add(r.urn)
    order: list[str] = []
    done: set[str] = set()
    pending = set(dependents)
    while pending:
        ready = sorted(u for u in pending if dependents[u] <= done)
        assert ready, "dependency cycle"
        order += ready
        done |= set(ready)
        pending -= set(ready)
    return order


class GatewayResources(TypedDict):
    component: RecordedResource
    lbc: RecordedResource
    ngf: RecordedResource
    service: RecordedResource
    association: RecordedResource
    policy: RecordedResource
    role: RecordedResource
    crds: RecordedResource
    gateway: RecordedResource
    children: list[RecordedResource]  # everything under the Gateway component


def _gateway_resources(run: ProgramRun) -> GatewayResources:
    (component,) = run.of_type(GATEWAY_TYPE)
    children: list[RecordedResource] = []
    todo = [component.urn]
    while todo:
        kids = run.children_of(todo.pop())
        children += kids
        todo += [k.urn for k in kids]
    lbc = next(r for r in run.helm_releases() if r.inputs.get("name") == gm.LBC_RELEASE_NAME)
    ngf = next(r for r in run.helm_releases() if r.inputs.get("name") == gm.NGF_RELEASE_NAME)
    (service,) = [r for r in children if r.type == SERVICE]
    (association,) = [r for r in children if r.type == "aws:eks/podIdentityAssociation:PodIdentityAssociation"]
    (policy,) = [r for r in children if r.type == "aws:iam/rolePolicy:RolePolicy"]
    (role,) = [r for r in children if r.type == "aws:iam/role:Role"]
    (crds,) = [r for r in children if r.type == "kubernetes:yaml/v2:ConfigFile"]
    (gateway,) = [r for r in children if r.inputs.get("kind") == "Gateway"]
    return GatewayResources(
        component=component,
        lbc=lbc,
        ngf=ngf,
        service=service,
        association=association,
        policy=policy,
        role=role,
        crds=crds,
        gateway=gateway,
        children=children,
    )


def check_nlb_is_destroyed_before_its_controller(run: ProgramRun) -> None:
    g = _gateway_resources(run)
    assert _depends_on(run, g["service"], g["lbc"]), "the NLB Service must depend on the LBC release"
    assert _depends_on(run, g["lbc"], g["association"])
    assert _depends_on(run, g["association"], g["policy"]), "the LBC must keep its permissions until it is gone"
    assert _depends_on(run, g["association"], g["role"])
    order = destroy_order(run)
    sequence = [order.index(r.urn) for r in (g["service"], g["lbc"], g["association"], g["policy"], g["role"])]
    assert sequence == sorted(sequence), "destroy: Service, LBC release, association, policy, role"
    # Every LoadBalancer Service anywhere in the program is cleaned up while the LBC runs.
    for svc in run.of_type(SERVICE):
        if svc.get("spec.type") == "LoadBalancer":
            assert _depends_on(run, svc, g["lbc"]), svc.name
    # ...and no chart is asked for one: NGF's NGINX Service is ClusterIP.
    assert g["ngf"].inputs["values"]["nginx"]["service"]["type"] == "ClusterIP"
    # What the controller runs on (nodes, Pod Identity agent, CoreDNS, CNI) outlives it.
    runs_on = run.of_type("aws:eks/nodeGroup:NodeGroup") + run.of_type("aws:eks/addon:Addon")
    assert runs_on, "no node group or add-ons recorded"
    for r in runs_on:
        assert _depends_on(run, g["lbc"], r), f"the LBC release must depend on {r.type} {r.name}"


def check_gateway_objects_validate(run: ProgramRun) -> None:
    g = _gateway_resources(run)
    k8s_children = [r for r in g["children"] if "kind" in r.inputs and r.type.startswith("kubernetes:")]
    assert {r.inputs["kind"] for r in k8s_children} >= {"Namespace", "Gateway", "Service"}
    for r in k8s_children:
        manifest = r.manifest()
        if "/" in manifest["apiVersion"] and "." in manifest["apiVersion"].split("/")[0]:
            validate_custom_resource(manifest)
        else:
            validate_k8s_object(manifest)


# --------------------------------------------------------------------------- the component alone


def test_nlb_service_is_destroyed_before_the_load_balancer_controller(run):
    check_nlb_is_destroyed_before_its_controller(run)


def test_gateway_waits_for_crds_and_ngf_and_the_nlb_service(run):
    g = _gateway_resources(run)
    assert _depends_on(run, g["ngf"], g["crds"])
    assert _depends_on(run, g["gateway"], g["ngf"]) and _depends_on(run, g["gateway"], g["crds"])
    for r in g["children"]:
        if r.inputs.get("apiVersion", "").startswith("gateway.nginx.org/"):
            assert _depends_on(run, r, g["gateway"]), r.name


def test_nlb_service_exists_before_any_nginx_pod(run):
    # NGF starts NGINX pods when the Gateway exists; the LBC injects its readiness gate only into
    # pods created after the Service's TargetGroupBinding. So: namespace (gate label) -> Service -> Gateway.
    g = _gateway_resources(run)
    assert _depends_on(run, g["gateway"], g["service"]), "the Gateway (and its NGINX pods) must wait for the NLB"
    assert not _depends_on(run, g["service"], g["gateway"])
    (namespace,) = [r for r in g["children"] if r.inputs.get("kind") == "Namespace"]
    assert namespace.get("metadata.labels")["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    assert _depends_on(run, g["service"], namespace)


def test_every_kubernetes_object_validates(run):
    check_gateway_objects_validate(run)


def test_endpoints_come_from_the_service_status(run):
    g = _gateway_resources(run)
    host = g["service"].outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert run.outputs["hostname"] == host
    # The dev stack serves TLS with the program's own CA: endpoints on the private zone's name, port 443.
    assert run.outputs["httpEndpoint"] == "https://llm.tritonllm-dev.internal"
    assert run.outputs["grpcEndpoint"] == "llm.tritonllm-dev.internal:443"
    plain = run_program("dev", overrides={"gateway.tls": {"plaintextInsideVpc": True}})
    host = _gateway_resources(plain)["service"].outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert (plain.outputs["httpEndpoint"], plain.outputs["grpcEndpoint"]) == (f"http://{host}:8000", f"{host}:8001")
    assert (run.outputs["gatewayName"], run.outputs["gatewayNamespace"]) == (gm.GATEWAY_NAME, gm.NGF_NAMESPACE)


def test_releases_use_pinned_charts_and_resolved_values(run):
    g = _gateway_resources(run)
    lbc, ngf = g["lbc"].inputs, g["ngf"].inputs
    assert (lbc["chart"], lbc["version"]) == ("aws-load-balancer-controller", "3.5.0")
    assert lbc["repositoryOpts"]["repo"] == versions.AWS_LOAD_BALANCER_CONTROLLER.repo
    assert (ngf["chart"], ngf["version"]) == ("oci://ghcr.io/nginx/charts/nginx-gateway-fabric", "2.6.7")
    assert lbc["namespace"] == gm.LBC_NAMESPACE and ngf["namespace"] == gm.NGF_NAMESPACE
    values = lbc["values"]
    assert values["clusterName"] == "tritonllm-dev" and values["vpcId"] == "vpc-0123456789abcdef0"
    assert values["region"] == "us-west-2"
    assert values["defaultTags"]["project"] == "tritonllm" and values["defaultTags"]["tritonllm:stack"] == "dev"
    assert values["nodeSelector"] == {"tritonllm.io/node-group": "system"}
    assert ngf["values"]["nginx"]["pod"]["nodeSelector"] == {"tritonllm.io/node-group": "system"}


def test_lbc_role_is_its_own_pod_identity_role_with_the_published_policy(run):
    g = _gateway_resources(run)
    assert json.loads(g["policy"].inputs["policy"]) == gm.lbc_controller_policy_document()
    trust = json.loads(g["role"].inputs["assumeRolePolicy"])
    # Only the LBC's service account in this cluster may use the role (session-tag conditions).
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {
            "aws:SourceAccount": "123456789012",
            "aws:RequestTag/eks-cluster-arn": "arn:aws:eks:us-west-2:123456789012:cluster/tritonllm-dev",
            "aws:RequestTag/kubernetes-namespace": gm.LBC_NAMESPACE,
            "aws:RequestTag/kubernetes-service-account": gm.LBC_SERVICE_ACCOUNT,
        }
    }
    a = g["association"].inputs
    assert (a["namespace"], a["serviceAccount"]) == (gm.LBC_NAMESPACE, gm.LBC_SERVICE_ACCOUNT)
    assert a["clusterName"] == "tritonllm-dev"
    assert g["lbc"].inputs["values"]["serviceAccount"]["name"] == a["serviceAccount"]
    # No other policy reaches this role.
    attached = [
        r
        for r in run.resources
        if r.type.startswith("aws:iam/rolePolicy")
        and r.inputs.get("role") in (g["role"].id, g["role"].outputs.get("name"))
    ]
    assert attached == [g["policy"]]


TLS_DOMAIN = {"domain": "llm.example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"}
P = "service.beta.kubernetes.io/aws-load-balancer-"


def test_internet_facing_with_a_created_certificate_and_alias(program_file):
    tls_run = run_program(
        "dev",
        program=program_file,
        overrides={"gateway": {"scheme": "internet-facing", "allowedCidrs": ["203.0.113.0/24"], "tls": TLS_DOMAIN}},
    )
    svc = _gateway_resources(tls_run)["service"]
    ann = svc.get("metadata.annotations")
    assert ann[f"{P}scheme"] == "internet-facing"
    assert svc.get("spec.loadBalancerSourceRanges") == ["203.0.113.0/24"]
    (cert,) = tls_run.of_type("aws:acm/certificate:Certificate")
    assert (cert.inputs["domainName"], cert.inputs["validationMethod"]) == ("llm.example.com", "DNS")
    (validation,) = tls_run.of_type("aws:acm/certificateValidation:CertificateValidation")
    # The NLB presents the certificate only once it is issued (validation awaited).
    assert ann[f"{P}ssl-cert"] == validation.outputs["certificateArn"] == cert.outputs["arn"]
    assert _depends_on(tls_run, svc, validation)
    records = {r.inputs["type"]: r for r in tls_run.of_type("aws:route53/record:Record")}
    assert records["CNAME"].inputs["name"] == cert.outputs["domainValidationOptions"][0]["resourceRecordName"]
    alias = records["A"]
    assert alias.inputs["name"] == "llm.example.com" and alias.inputs["zoneId"] == TLS_DOMAIN["hostedZoneId"]
    host = svc.outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert alias.inputs["aliases"][0]["name"] == host
    assert alias.inputs["aliases"][0]["zoneId"] == "Z18D5FSROUN65G"  # NLBs in us-west-2
    assert tls_run.outputs["httpEndpoint"] == "https://llm.example.com"
    assert tls_run.outputs["grpcEndpoint"] == "llm.example.com:443"


def test_brought_certificate_is_used_as_is(program_file):
    arn = "arn:aws:acm:us-west-2:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
    tls_run = run_program("dev", program=program_file, overrides={"gateway": {"tls": {"certificateArn": arn}}})
    svc = _gateway_resources(tls_run)["service"]
    assert svc.get("metadata.annotations")[f"{P}ssl-cert"] == arn
    assert not tls_run.of_type("aws:acm/certificate:Certificate")
    host = svc.outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert tls_run.outputs["httpEndpoint"] == f"https://{host}"


def test_internet_facing_refused_without_cidrs_or_tls(program_file):
    for gateway, key in (
        ({"scheme": "internet-facing", "tls": TLS_DOMAIN}, "allowedCidrs"),
        (
            {"scheme": "internet-facing", "allowedCidrs": ["203.0.113.0/24"], "tls": {"plaintextInsideVpc": True}},
            "plaintextInsideVpc",
        ),
    ):
        refused = run_program("dev", program=program_file, check=False, overrides={"gateway": gateway})
        assert refused.error is not None and key in str(refused.error)
        assert not refused.of_type(SERVICE)


def test_default_is_internal_and_admits_only_the_vpc(run):
    svc = _gateway_resources(run)["service"]
    assert svc.get("metadata.annotations")[f"{P}scheme"] == "internal"
    # Pulumi.dev.yaml: vpcCidr 10.1.0.0/16, podCidr 100.64.0.0/16 (pods reach the NLB from pod IPs).
    assert svc.get("spec.loadBalancerSourceRanges") == ["10.1.0.0/16", "100.64.0.0/16"]


def test_plaintext_listeners_idle_longer_than_nginx_waits(program_file):
    timed = run_program(
        "dev",
        program=program_file,
        overrides={
            "gateway.requestTimeoutSeconds": 900,
            "models[0].drainSeconds": 900,
            "gateway.tls": {"plaintextInsideVpc": True},
        },
    )
    g = _gateway_resources(timed)
    ann = g["service"].get("metadata.annotations")
    assert ann[f"{P}listener-attributes.TCP-8000"] == "tcp.idle_timeout.seconds=910"
    policies = {
        r.inputs["kind"]: r.inputs["spec"]
        for r in g["children"]
        if r.inputs.get("apiVersion", "").startswith("gateway.nginx.org/")
    }
    assert policies["ProxySettingsPolicy"]["timeout"] == {"read": "900s", "send": "900s"}
    assert "grpc_read_timeout 900s;" in policies["SnippetsPolicy"]["snippets"][0]["value"]
    assert g["ngf"].inputs["values"]["nginxGateway"]["snippets"]["enable"] is True


# --------------------------------------------------------------------------- inside the whole program


@pytest.fixture(scope="module", params=["dev", "vllm"])
def full_run(request) -> ProgramRun:
    run = stack_run_for(request.param)  # the session's cached run of the stack
    assert run.of_type(GATEWAY_TYPE), "__main__.py builds no Gateway"
    return run


def test_whole_program_destroys_the_nlb_before_the_controller(full_run):
    check_nlb_is_destroyed_before_its_controller(full_run)
    check_gateway_objects_validate(full_run)


def test_whole_program_routes_attach_to_the_gateway(full_run):
    g = _gateway_resources(full_run)
    routes = [r for r in full_run.resources if r.inputs.get("kind") in ("HTTPRoute", "GRPCRoute")]
    namespaces = {r.get("metadata.name"): r.get("metadata.labels") or {} for r in full_run.k8s_objects("Namespace")}
    for route in routes:
        validate_custom_resource(route.manifest())
        assert _depends_on(full_run, route, g["gateway"]), f"{route.name} must be created after the Gateway"
        ns = route.get("metadata.namespace")
        if ns in namespaces:
            assert gm.route_namespace_labels().items() <= namespaces[ns].items(), f"namespace {ns} not allowed"


# --------------------------------------------------------------------------- TLS with the program's own CA


def _tls_resources(run: ProgramRun) -> dict[str, list[RecordedResource]]:
    children = _gateway_resources(run)["children"]
    kinds = {
        "keys": "tls:index/privateKey:PrivateKey",
        "ca": "tls:index/selfSignedCert:SelfSignedCert",
        "request": "tls:index/certRequest:CertRequest",
        "server": "tls:index/locallySignedCert:LocallySignedCert",
        "acm": "aws:acm/certificate:Certificate",
        "zone": "aws:route53/zone:Zone",
        "record": "aws:route53/record:Record",
    }
    return {k: [r for r in children if r.type == t] for k, t in kinds.items()}


def test_without_a_domain_the_nlb_serves_a_certificate_from_the_programs_ca(run):
    """The dev stack as shipped: CA + server certificate (pulumi_tls, keys secret) imported into ACM,
    presented by the NLB's TLS listener like a brought certificate, for a private hosted zone name."""
    from components.gateway.builders import certificates

    t = _tls_resources(run)
    domain = "llm.tritonllm-dev.internal"
    plan = certificates.gateway_plan(domain, stack_name="tritonllm-dev")
    (ca,), (request,), (server,), (acm,), (zone,), (record,) = (
        t[k] for k in ("ca", "request", "server", "acm", "zone", "record")
    )
    keys = {r.inputs["algorithm"]: r for r in t["keys"]}
    assert set(keys) == {"ECDSA", "RSA"} and keys["RSA"].inputs["rsaBits"] == 2048
    assert ca.inputs["isCaCertificate"] is True and ca.inputs["allowedUses"] == list(certificates.CA_USES)
    assert ca.inputs["validityPeriodHours"] == 10 * 365 * 24
    assert request.inputs["dnsNames"] == [domain] and request.inputs["subject"]["commonName"] == domain
    assert server.inputs["allowedUses"] == ["digital_signature", "key_encipherment", "server_auth"]
    assert server.inputs["validityPeriodHours"] == plan.server_validity_hours == 365 * 24
    assert server.inputs["earlyRenewalHours"] == 30 * 24
    # ACM import: key (secret), body, chain; the NLB's listener takes its ARN (ssl-cert), port 443 only
    assert acm.is_secret("privateKey") and acm.inputs["privateKey"].startswith("-----BEGIN")
    assert acm.inputs["certificateBody"] == server.outputs["certPem"]
    assert acm.inputs["certificateChain"] == ca.outputs["certPem"]
    assert "domainName" not in acm.inputs and "validationMethod" not in acm.inputs
    # the private keys exist only as secrets: nowhere in plain text in any resource's inputs
    for key in t["keys"]:
        pem = key.outputs["privateKeyPem"].strip()
        for resource in run.resources:
            for path in plain_occurrences(resource.inputs, pem):
                assert resource.is_secret(path), f"private key in plain text at {resource.type} {resource.name} {path}"
    service = _gateway_resources(run)["service"]
    ann = service.get("metadata.annotations")
    assert ann[f"{P}ssl-cert"] == acm.outputs["arn"]
    assert [p["port"] for p in service.get("spec.ports")] == [443]
    # the name: a private hosted zone in the VPC, its apex aliased to the NLB
    assert zone.inputs["name"] == domain and zone.inputs["vpcs"] == [
        {"vpcId": "vpc-0123456789abcdef0", "vpcRegion": "us-west-2"}
    ]
    assert record.inputs["zoneId"] == zone.outputs["zoneId"] and record.inputs["name"] == domain
    assert record.inputs["aliases"][0]["name"] == service.outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]


def test_a_certificate_of_yours_or_the_opt_out_generate_nothing(program_file):
    arn = "arn:aws:acm:us-west-2:123456789012:certificate/0123abcd-0123-4567-89ab-0123456789ab"
    for tls in ({"certificateArn": arn}, {"plaintextInsideVpc": True}, TLS_DOMAIN):
        t = _tls_resources(run_program("dev", program=program_file, overrides={"gateway.tls": tls}))
        assert not (t["keys"] or t["ca"] or t["server"] or t["zone"]), tls


def test_private_domain_names_the_endpoint(program_file):
    other = run_program("dev", program=program_file, overrides={"gateway.tls": {"privateDomain": "llm.corp.internal"}})
    t = _tls_resources(other)
    assert t["zone"][0].inputs["name"] == "llm.corp.internal"
    assert t["request"][0].inputs["dnsNames"] == ["llm.corp.internal"]
    assert other.outputs["httpEndpoint"] == "https://llm.corp.internal"
