"""Alerts, their delivery and CloudWatch Container Insights inside the whole program, under Pulumi mocks
(tests/unit/harness.py): what the stack files deploy by default, and what the opt-ins add.

The promtool tests of the rules are tests/rules/test_alert_rules.py; amtool and a real Alertmanager
check the configuration in tests/rules/test_alertmanager.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from components.catalog import versions
from components.observability.builders import alertmanager as am
from components.observability.builders import alerts, container_insights
from components.observability.builders import monitoring_values as mv
from tests.helm_values import assert_values_keys_exist
from tests.k8s_schema import validate_custom_resource
from tests.unit.conftest import OPT_IN_OVERRIDES, WEBHOOK_URL, stack_run_for
from tests.unit.harness import ACCOUNT_ID, ProgramRun, plain_occurrences, run_program

MONITORING = "tritonllm:observability:Monitoring"
CONTAINER_INSIGHTS = "tritonllm:observability:ContainerInsights"
ROLE = "aws:iam/role:Role"


@pytest.fixture(scope="module")
def default_run() -> ProgramRun:
    return stack_run_for("vllm")


@pytest.fixture(scope="module")
def opt_in_run() -> ProgramRun:
    return stack_run_for("vllm-opt-ins")  # conftest's VARIANTS: vllm with OPT_IN_OVERRIDES and OPT_IN_SECRETS


def _alertmanager_secret(run: ProgramRun):
    (secret,) = [s for s in run.of_type("kubernetes:core/v1:Secret") if s.get("metadata.name") == am.CONFIG_SECRET]
    return secret


def _alertmanager_config(run: ProgramRun) -> dict:
    return yaml.safe_load(_alertmanager_secret(run).inputs["stringData"][am.CONFIG_KEY])


# --------------------------------------------------------------------------- by default


def test_alert_rules_are_a_valid_prometheus_rule_provisioned_after_the_stack(default_run):
    mon = default_run.within(MONITORING)
    (rule,) = [r for r in mon.k8s_objects("PrometheusRule") if r.get("metadata.name") == alerts.ALERT_RULE_NAME]
    manifest = rule.manifest()
    validate_custom_resource(manifest)
    names = {r["alert"] for r in manifest["spec"]["groups"][0]["rules"]}
    assert alerts.MODEL_SLOW_FIRST_TOKEN in names  # the vllm stack's models report TTFT
    assert alerts.MODEL_QUEUE_TIME not in names  # ... and no model of it is TensorRT-LLM
    assert mon.helm_release("kube-prometheus-stack").urn in rule.dependencies


def test_karpenter_is_scraped_through_a_valid_service_monitor(default_run):
    mon = default_run.within(MONITORING)
    (monitor,) = [m for m in mon.k8s_objects("ServiceMonitor") if m.get("metadata.name") == "karpenter"]
    manifest = monitor.manifest()
    validate_custom_resource(manifest)
    assert manifest["spec"]["namespaceSelector"] == {"matchNames": ["kube-system"]}
    # the Karpenter release's name and namespace are what the selector and the namespace name
    release = default_run.helm_release("oci://public.ecr.aws/karpenter/karpenter")
    assert release.inputs["namespace"] == "kube-system"
    assert manifest["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == release.inputs["name"]
    assert manifest["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics"}]
    # the chart's own ServiceMonitor stays off: it would not render before the CRD exists
    assert "serviceMonitor" not in release.inputs["values"]


def test_without_a_receiver_alerts_go_nowhere_and_no_aws_resource_is_made(default_run):
    config = _alertmanager_config(default_run)
    assert config["route"]["receiver"] == am.NULL_RECEIVER
    assert [r["name"] for r in config["receivers"]] == [am.NULL_RECEIVER]
    assert not default_run.of_type("aws:sns/topic:Topic")
    assert not [r for r in default_run.of_type(ROLE) if "alertmanager" in r.name]
    assert "alertsTopicArn" not in default_run.outputs
    assert default_run.outputs["alertmanagerPortForwardCommand"] == (
        "kubectl -n monitoring port-forward svc/kps-alertmanager 9093:9093"
    )


def test_alertmanager_reads_the_programs_secret_before_the_chart_installs(default_run):
    mon = default_run.within(MONITORING)
    kps = mon.helm_release("kube-prometheus-stack")
    secret = _alertmanager_secret(default_run)
    assert secret.get("metadata.namespace") == mv.NAMESPACE
    assert secret.urn in kps.dependencies
    assert kps.get("values.alertmanager.alertmanagerSpec.useExistingSecret") is True
    assert kps.get("values.alertmanager.alertmanagerSpec.configSecret") == am.CONFIG_SECRET
    # not the chart's default name, which a stack deployed before this change holds as a Helm-made Secret
    assert am.CONFIG_SECRET != f"alertmanager-{mv.ALERTMANAGER_NAME}"
    assert kps.get("values.alertmanager.serviceAccount.name") == mv.ALERTMANAGER_SERVICE_ACCOUNT
    assert "config" not in kps.get("values.alertmanager")  # the chart renders no configuration of its own
    assert_values_keys_exist(
        kps.inputs["values"],
        versions.KUBE_PROMETHEUS_STACK.reference_values_file,
        mv.FREE_FORM["kube-prometheus-stack"],
    )


def test_no_container_insights_unless_asked(default_run):
    assert not default_run.within(CONTAINER_INSIGHTS).resources
    assert "amazon-cloudwatch-observability" not in {
        a.inputs["addonName"] for a in default_run.of_type("aws:eks/addon:Addon")
    }
    assert "customMetrics" not in default_run.helm_release("dcgm-exporter").inputs["values"]


# --------------------------------------------------------------------------- SNS topic and webhook


def test_the_sns_topic_is_encrypted_tls_only_and_has_the_configured_subscribers(opt_in_run):
    topic = opt_in_run.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == "alias/aws/sns"
    policy = json.loads(opt_in_run.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    subscriptions = opt_in_run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted(s.inputs["endpoint"] for s in subscriptions) == sorted(
        OPT_IN_OVERRIDES["monitoring.alerts.sns"]["emails"]
    )
    assert {s.inputs["protocol"] for s in subscriptions} == {"email"}
    assert {s.inputs["topic"] for s in subscriptions} == {topic.outputs["arn"]}
    assert opt_in_run.outputs["alertsTopicArn"] == topic.outputs["arn"]


def test_alertmanager_publishes_with_its_own_pod_identity_role_scoped_to_the_topic(opt_in_run):
    topic_arn = opt_in_run.one("aws:sns/topic:Topic").outputs["arn"]
    (role,) = [r for r in opt_in_run.of_type(ROLE) if r.name.endswith("-alertmanager")]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert trust["aws:RequestTag/kubernetes-namespace"] == mv.NAMESPACE
    assert trust["aws:RequestTag/kubernetes-service-account"] == mv.ALERTMANAGER_SERVICE_ACCOUNT
    (inline,) = [
        p for p in opt_in_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith("-alertmanager-inline")
    ]
    assert json.loads(inline.inputs["policy"])["Statement"] == [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn}
    ]
    (association,) = [
        a
        for a in opt_in_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if a.inputs["namespace"] == mv.NAMESPACE
    ]
    assert association.inputs["serviceAccount"] == mv.ALERTMANAGER_SERVICE_ACCOUNT
    assert association.inputs["roleArn"] == role.outputs["arn"]
    # Alertmanager starts with its credentials: the chart waits for the association
    assert association.urn in opt_in_run.helm_release("kube-prometheus-stack").dependencies
    config = _alertmanager_config(opt_in_run)
    (ours,) = [r for r in config["receivers"] if r["name"] == am.RECEIVER]
    assert ours["sns_configs"][0]["topic_arn"] == topic_arn
    assert ours["sns_configs"][0]["sigv4"] == {"region": "us-west-2"}
    assert config["route"]["receiver"] == am.RECEIVER


def test_the_webhook_url_reaches_only_the_alertmanager_secret_and_stays_secret(opt_in_run):
    holders = []
    for resource in opt_in_run.resources:
        for path in plain_occurrences(resource.inputs, WEBHOOK_URL):
            assert resource.is_secret(path), f"{resource.type} {resource.name}: {path} holds the webhook URL unmarked"
            holders.append((resource.type, path))
    assert holders == [("kubernetes:core/v1:Secret", f"stringData.{am.CONFIG_KEY}")]
    assert not plain_occurrences(opt_in_run.outputs, WEBHOOK_URL)
    for release in opt_in_run.helm_releases():
        assert not plain_occurrences(release.inputs, WEBHOOK_URL), release.name
    (ours,) = [r for r in _alertmanager_config(opt_in_run)["receivers"] if r["name"] == am.RECEIVER]
    assert ours["webhook_configs"] == [{"url": WEBHOOK_URL, "send_resolved": True}]


# --------------------------------------------------------------------------- CloudWatch Container Insights


def test_the_cloudwatch_add_on_is_pinned_configured_and_waits_for_nodes_and_pod_identity(opt_in_run):
    (addon,) = [
        a for a in opt_in_run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == container_insights.ADDON_NAME
    ]
    assert addon.inputs["addonVersion"] == versions.OPTIONAL_EKS_ADDONS[container_insights.ADDON_NAME]
    assert addon.inputs["addonVersion"].endswith("-eksbuild.1")
    configuration = json.loads(addon.inputs["configurationValues"])
    assert configuration == {
        "agent": {
            "config": {
                "logs": {
                    "metrics_collected": {
                        "kubernetes": {"enhanced_container_insights": True, "accelerated_compute_metrics": True}
                    }
                }
            }
        },
        "containerLogs": {"enabled": False},
    }
    (association,) = addon.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == "cloudwatch-agent"
    dependencies = set(addon.dependencies)
    assert {a.urn for a in opt_in_run.of_type("aws:eks/nodeGroup:NodeGroup")} <= dependencies
    (agent_addon,) = [
        a for a in opt_in_run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "eks-pod-identity-agent"
    ]
    assert agent_addon.urn in dependencies


def test_the_cloudwatch_agent_role_is_scoped_like_our_other_roles(opt_in_run):
    (addon,) = [
        a for a in opt_in_run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == container_insights.ADDON_NAME
    ]
    (association,) = addon.inputs["podIdentityAssociations"]
    (role,) = [r for r in opt_in_run.of_type(ROLE) if r.outputs["arn"] == association["roleArn"]]
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": ACCOUNT_ID,
        "aws:RequestTag/eks-cluster-arn": f"arn:aws:eks:us-west-2:{ACCOUNT_ID}:cluster/tritonllm-vllm",
        "aws:RequestTag/kubernetes-namespace": "amazon-cloudwatch",
        "aws:RequestTag/kubernetes-service-account": "cloudwatch-agent",
    }
    attached = [
        a
        for a in opt_in_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    ]
    assert [a.inputs["policyArn"] for a in attached] == ["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]
    assert not [
        p for p in opt_in_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.outputs["id"]
    ]


def test_with_cloudwatch_our_dcgm_exporter_leaves_the_profiling_counters_to_the_add_on(opt_in_run):
    values = opt_in_run.helm_release("dcgm-exporter").inputs["values"]
    assert values["customMetrics"] == mv.dcgm_metrics_csv()
    fields = [line.split(",")[0] for line in values["customMetrics"].splitlines()]
    assert not [f for f in fields if f.startswith("DCGM_FI_PROF_")]
    # ... and keeps what the alerts and the dashboard read
    assert {"DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_UTIL"} <= set(
        fields
    )
    assert_values_keys_exist(values, versions.DCGM_EXPORTER.reference_values_file, mv.FREE_FORM["dcgm-exporter"])


def test_container_logs_can_be_shipped_too():
    run = run_program("vllm", overrides={"monitoring.cloudwatch": {"enabled": True, "containerLogs": True}})
    (addon,) = [a for a in run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == container_insights.ADDON_NAME]
    assert json.loads(addon.inputs["configurationValues"])["containerLogs"] == {"enabled": True}


@pytest.mark.parametrize("which", ["default", "opt-in"])
def test_amtool_accepts_the_configuration_the_program_writes(default_run, opt_in_run, which, tmp_path):
    """The exact bytes of the Secret each run registers (tests/rules/test_alertmanager.py checks the
    builder's shapes and runs them)."""
    from tests.rules.test_alertmanager import _tool

    run = default_run if which == "default" else opt_in_run
    path = tmp_path / "alertmanager.yaml"
    path.write_text(_alertmanager_secret(run).inputs["stringData"][am.CONFIG_KEY])
    result = subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
