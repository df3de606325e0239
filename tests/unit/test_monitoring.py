"""The Monitoring component inside the whole program (`__main__.py`) under Pulumi mocks
(tests/unit/harness.py): `run` is the program's run, `mon` only the Monitoring component's resources.
"""

from __future__ import annotations

import json

import pytest

from components.catalog import versions
from components.observability.builders import metrics
from components.observability.builders import monitoring_values as mv
from tests.helm_values import assert_values_keys_exist
from tests.k8s_schema import validate_custom_resource
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, plain_occurrences, run_program

MONITORING_TYPE = "tritonllm:observability:Monitoring"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return stack_run_for("vllm")


@pytest.fixture(scope="module")
def mon(run) -> ProgramRun:
    scoped = run.within(MONITORING_TYPE)
    assert scoped.resources, "the program builds no Monitoring component"
    return scoped


def _password(run: ProgramRun) -> str:
    # Grafana's (models in explicit model-control mode have their own: their repository API keys)
    (password,) = [p for p in run.of_type("random:index/randomPassword:RandomPassword") if "grafana" in p.name]
    value = password.outputs["result"]
    assert isinstance(value, str) and len(value) >= 16
    return value


def test_grafana_password_never_appears_in_plain_text_in_any_resource_input(run, mon):
    password = _password(mon)
    holders = []
    for resource in run.resources:
        for path in plain_occurrences(resource.inputs, password):
            assert resource.is_secret(path), f"{resource.type} {resource.name}: {path} holds the password unmarked"
            holders.append((resource.type, path))
    # it reaches exactly Secrets Manager and the Kubernetes Secret Grafana reads
    assert sorted(holders) == [
        ("aws:secretsmanager/secretVersion:SecretVersion", "secretString"),
        ("kubernetes:core/v1:Secret", f"stringData.{mv.GRAFANA_PASSWORD_KEY}"),
    ]
    assert not plain_occurrences(run.outputs, password)


def test_grafana_reads_the_kubernetes_secret_made_from_the_generated_password(mon):
    (secret,) = [s for s in mon.of_type("kubernetes:core/v1:Secret") if s.get("metadata.name") == "grafana-admin"]
    assert secret.get("metadata.namespace") == mv.NAMESPACE
    assert secret.get(f"stringData.{mv.GRAFANA_USER_KEY}") == mv.GRAFANA_ADMIN_USER
    kps = mon.helm_release("kube-prometheus-stack")
    assert kps.get("values.grafana.admin.existingSecret") == secret.get("metadata.name")
    assert secret.urn in kps.dependencies


def test_secrets_manager_secret_name_is_the_stack_output_with_commands(run, mon):
    aws_secret = mon.one("aws:secretsmanager/secret:Secret")
    name = aws_secret.outputs["name"]
    assert name.startswith("tritonllm-vllm/grafana-admin-")
    assert run.outputs["grafanaSecretName"] == name
    assert run.outputs["grafanaReadPasswordCommand"] == (
        f"aws secretsmanager get-secret-value --region us-west-2 --secret-id {name} --query SecretString --output text"
    )
    assert run.outputs["grafanaPortForwardCommand"] == "kubectl -n monitoring port-forward svc/kps-grafana 3000:80"
    version = mon.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.get("secretId") == aws_secret.id


def test_aws_resources_use_the_regional_provider_and_k8s_ones_the_clusters(run, mon):
    (aws_provider,) = [r for r in run.of_type("pulumi:providers:aws")]
    (k8s_provider,) = [
        r
        for r in run.of_type("pulumi:providers:kubernetes")
        if any(a.type == "tritonllm:platform:Cluster" for a in run.ancestors(r))
    ]
    assert any(r.type.startswith("aws:") for r in mon.resources)
    assert any(r.type.startswith("kubernetes:") for r in mon.resources)
    for resource in mon.resources:
        if resource.type.startswith("aws:"):
            assert resource.provider.startswith(aws_provider.urn), resource.name
        elif resource.type.startswith("kubernetes:"):
            assert resource.provider.startswith(k8s_provider.urn), resource.name


def test_three_pinned_helm_releases_with_checked_values(mon):
    releases = {r.inputs["chart"]: r for r in mon.helm_releases()}
    assert set(releases) == {"kube-prometheus-stack", "prometheus-adapter", "dcgm-exporter"}
    for chart in (versions.KUBE_PROMETHEUS_STACK, versions.PROMETHEUS_ADAPTER, versions.DCGM_EXPORTER):
        release = releases[chart.name]
        assert release.inputs["version"] == chart.version
        assert release.inputs["repositoryOpts"]["repo"] == chart.repo
        assert release.inputs["namespace"] == mv.NAMESPACE
        assert_values_keys_exist(release.inputs["values"], chart.reference_values_file, mv.FREE_FORM[chart.name])
    kps = releases["kube-prometheus-stack"]
    assert kps.inputs["name"] == mv.KPS_RELEASE
    # the vllm stack sets retention 7d; scrape interval and storage keep their defaults
    assert kps.get("values.prometheus.prometheusSpec.retention") == "7d"
    assert kps.urn in releases["prometheus-adapter"].dependencies
    assert kps.urn in releases["dcgm-exporter"].dependencies


def test_dcgm_exporter_can_be_turned_off():
    run = run_program("vllm", overrides={"monitoring.dcgmExporter": False}).within(MONITORING_TYPE)
    assert {r.inputs["chart"] for r in run.helm_releases()} == {"kube-prometheus-stack", "prometheus-adapter"}


def test_recording_rules_and_dashboard_are_provisioned_after_the_stack(mon):
    kps = mon.helm_release("kube-prometheus-stack")
    (rule,) = [r for r in mon.k8s_objects("PrometheusRule") if r.get("metadata.name") == "tritonllm-recording-rules"]
    manifest = rule.manifest()
    validate_custom_resource(manifest)
    assert manifest["spec"]["groups"] == metrics.rule_groups()
    assert kps.urn in rule.dependencies
    (dashboard,) = [r for r in mon.k8s_objects("ConfigMap") if r.get("metadata.labels.grafana_dashboard") == "1"]
    (body,) = dashboard.inputs["data"].values()
    assert json.loads(body)["uid"] == "tritonllm-triton"


def test_prometheus_volume_storage_class_is_encrypted_gp3(mon):
    (sc,) = mon.k8s_objects("StorageClass")
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    assert sc.inputs["parameters"] == {"type": "gp3", "encrypted": "true"}
    kps = mon.helm_release("kube-prometheus-stack")
    claim = kps.get("values.prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec")
    assert claim["storageClassName"] == sc.get("metadata.name")
    assert claim["resources"]["requests"]["storage"] == "50Gi"


@pytest.mark.parametrize("stack", ["dev", "vllm"])
def test_whole_program_never_carries_the_grafana_password_in_plain_text(stack):
    """The same guarantee for the real program (__main__.py wires Monitoring in)."""
    run = stack_run_for(stack)
    password = _password(run)
    for resource in run.resources:
        for path in plain_occurrences(resource.inputs, password):
            assert resource.is_secret(path), f"{resource.type} {resource.name}: {path} holds the password unmarked"
    assert not plain_occurrences(run.outputs, password)
    aws_secret = run.one("aws:secretsmanager/secret:Secret")
    assert run.outputs["grafanaSecretName"] == aws_secret.outputs["name"]
    assert aws_secret.outputs["name"] in run.outputs["grafanaReadPasswordCommand"]
    # every Triton HPA asks for a metric the adapter serves, and each model's PodMonitor exists
    served = {r["name"]["as"] for r in run.helm_release("prometheus-adapter").inputs["values"]["rules"]["custom"]}
    hpas = run.manifests("HorizontalPodAutoscaler")
    assert hpas and all(m["pods"]["metric"]["name"] in served for h in hpas for m in h["spec"]["metrics"])
    # models at minReplicas 0: KEDA's ScaledObject reads the record the adapter serves, from Prometheus
    scaled = run.manifests("ScaledObject")
    records = {
        r["seriesQuery"].split("{")[0]
        for r in run.helm_release("prometheus-adapter").inputs["values"]["rules"]["custom"]
    }
    for so in scaled:
        (query,) = [t["metadata"]["query"] for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
        assert query.removeprefix("sum(").split("{")[0] in records, query
    assert {p["metadata"]["namespace"] for p in run.manifests("PodMonitor")} == {
        h["metadata"]["namespace"] for h in hpas + scaled
    }
