"""Whole-program checks under Pulumi mocks, for every stack file."""

from __future__ import annotations

import json

import pytest

from tests import k8s_schema
from tests.unit.harness import DEFAULT_SECRETS, ProgramRun, plain_occurrences, run_program


def test_every_builtin_kubernetes_object_validates(stack_run):
    """Against the Kubernetes schema of the cluster version (no reference data needed)."""
    builtin = [m for m in stack_run.manifests() if not k8s_schema.is_custom_resource(m)]
    for manifest in builtin:
        k8s_schema.validate_k8s_object(manifest)
    assert len(builtin) > 10


def test_every_custom_resource_matches_its_crd(stack_run):
    """Against the upstream CRDs in the reference data's crds/ (skipped, saying so, without them)."""
    custom = [m for m in stack_run.manifests() if k8s_schema.is_custom_resource(m)]
    for manifest in custom:
        k8s_schema.validate_custom_resource(manifest)
    assert len(custom) > 5


def test_secrets_never_appear_in_plain_text(stack_run):
    secret_values = {v for v in DEFAULT_SECRETS.values() if v}
    # Each API key on its own, and its secret part (the htpasswd Secret holds salted hashes only).
    secret_values |= {key for key in json.loads(DEFAULT_SECRETS["apiKeys"])}
    secret_values |= {key.split(":", 1)[1] for key in json.loads(DEFAULT_SECRETS["apiKeys"])}
    secret_values |= {r.outputs["result"] for r in stack_run.of_type("random:index/randomPassword:RandomPassword")}
    assert len(secret_values) >= 2, "expected the HF token and the Grafana password"
    leaks = [
        f"{r.type} {r.name} {path}"
        for r in stack_run.resources
        for secret in secret_values
        for path in plain_occurrences(r.inputs, secret)
        if not r.is_secret(path)
    ]
    assert not leaks, f"secret values in plain-text inputs: {leaks}"
    output_leaks = [
        k
        for k, v in stack_run.outputs.items()
        for s in secret_values
        if plain_occurrences(v, s) and k not in stack_run.secret_outputs
    ]
    assert not output_leaks, f"secret values in plain stack outputs: {output_leaks}"


def test_secret_stack_outputs(stack_run):
    assert "kubeconfig" in stack_run.secret_outputs
    assert "grafanaSecretName" not in stack_run.secret_outputs  # a name, not the password


def test_outputs_give_endpoints_models_and_commands(stack_run):
    out = stack_run.outputs
    for key in (
        "region",
        "vpcId",
        "clusterName",
        "kubeconfig",
        "bucketName",
        "httpEndpoint",
        "grpcEndpoint",
        "servedModels",
        "clientCommands",
        "grafanaSecretName",
        "grafanaPortForwardCommand",
        "grafanaReadPasswordCommand",
        "updateKubeconfigCommand",
    ):
        assert out.get(key), f"stack output {key} missing"
    # Every shipped stack serves TLS with the program's own CA (no domain of the user's).
    name = stack_run.config["tritonllm:name"]
    assert out["httpEndpoint"] == f"https://llm.{name}.internal"
    assert out["grpcEndpoint"] == f"llm.{name}.internal:443"
    assert out["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "caCertificate" not in stack_run.secret_outputs  # public: it is what clients trust
    assert out["caCertificateCommand"] == "pulumi stack output caCertificate > tritonllm-ca.pem"
    assert set(out["clientCommands"]) == set(out["servedModels"])
    for model, command in out["clientCommands"].items():
        assert f"--model-name {model}" in command and out["grpcEndpoint"] in command
        assert command.endswith("--ca-cert tritonllm-ca.pem")


def test_every_aws_resource_uses_the_tagged_regional_provider(stack_run):
    providers = stack_run.of_type("pulumi:providers:aws")
    assert len(providers) == 1
    provider = providers[0]
    assert provider.inputs["region"] == "us-west-2"
    assert "tritonllm:stack" in str(provider.inputs["defaultTags"])
    for r in stack_run.resources:
        if r.type.startswith("aws:") and not r.type.startswith("aws:eks/cluster:Cluster"):
            assert r.provider.startswith(provider.urn), f"{r.type} {r.name} does not use the stack's AWS provider"


# The vllm stack's mistral-7b-instruct scales to zero, which needs monitoring: give it a replica of its own.
WITHOUT_MONITORING = {"monitoring.enabled": False, "models[1].minReplicas": 1, "models[1].autoscaling": None}


@pytest.fixture(scope="module")
def monitoring_off_run() -> ProgramRun:
    """Pulumi.vllm.yaml with monitoring off, one run for the two tests below (they only read it)."""
    return run_program("vllm", overrides=WITHOUT_MONITORING)


def test_monitoring_disabled_drops_monitoring_outputs(monitoring_off_run):
    run = monitoring_off_run
    assert "grafanaSecretName" not in run.outputs
    assert not run.of_type("tritonllm:observability:Monitoring")


def test_monitoring_disabled_serves_fixed_replicas_without_monitoring_crds(monitoring_off_run):
    run = monitoring_off_run
    kinds = {m["kind"] for m in run.manifests()}
    assert "PodMonitor" not in kinds and "HorizontalPodAutoscaler" not in kinds and "PrometheusRule" not in kinds
    deployments = run.manifests("Deployment")
    assert deployments and all(d["spec"]["replicas"] == 1 for d in deployments if d["metadata"]["name"] == "triton")


def test_pod_identity_associations_outlive_nothing_they_need(stack_run):
    """Destroy order: an association is deleted before the role policies it depends on,
    so a controller never loses its permissions while it is still running."""
    checked = 0
    for assoc in stack_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"):
        role = stack_run.by_urn(assoc.parent)
        if role.type != "aws:iam/role:Role":
            continue  # associations made by EKS add-ons carry no policies of their own
        grants = [
            r
            for r in stack_run.children_of(role)
            if r.type in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        ]
        assert grants, f"{assoc.name}: role without policies"
        missing = [g.name for g in grants if g.urn not in assoc.dependencies]
        assert not missing, f"{assoc.name} does not depend on {missing}"
        checked += 1
    assert checked >= 1  # at least Karpenter's controller
