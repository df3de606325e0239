"""Alertmanager's configuration (kube-prometheus-stack's Alertmanager) and the SNS publish policy.

Where alerts go: a receiver `tritonllm` with an SNS topic the stack creates (`monitoring.alerts.sns`)
and/or a webhook (the `alertWebhookUrl` Pulumi secret). Without either, every alert goes to the
`null` receiver: nothing is sent, and the alerts stay visible in Alertmanager's and Prometheus's UIs and
on Grafana's alerting pages.

The whole configuration lives in a Kubernetes Secret the program writes (`CONFIG_SECRET`, key
`alertmanager.yaml`) and the Alertmanager object reads (`alertmanager.alertmanagerSpec.configSecret`);
kube-prometheus-stack 88.5.3 then renders no Secret of its own (`alertmanagerSpec.useExistingSecret`,
templates/alertmanager/secret.yaml), so the webhook URL never passes through Helm values.

Grouping: one notification per alert name and namespace (a model's namespace is its name), sent 30 s
after the first alert of an incident; later alerts of the same incident join it and go out at most
every 5 minutes; a still-firing incident is repeated after `monitoring.alerts.repeatInterval`. Our model
alerts inhibit the chart's generic alerts on the same objects (KubeHpaMaxedOut, KubeJobFailed, ...), so
one incident does not page twice under two names.
"""

from __future__ import annotations

from typing import Any

from components.observability.builders import alerts
from components.observability.builders.monitoring_values import ALERTMANAGER_CONFIG_SECRET
from components.platform.builders.iam import policy_document

RECEIVER = "tritonllm"
NULL_RECEIVER = "null"
# The Secret the Alertmanager object reads its configuration from (key alertmanager.yaml), named through
# alertmanagerSpec.configSecret. Not the default "alertmanager-<name>": a stack deployed before this
# Secret existed has the chart's own Secret of that name, which Pulumi could not create over.
CONFIG_SECRET = ALERTMANAGER_CONFIG_SECRET
CONFIG_KEY = "alertmanager.yaml"

GROUP_BY = ["alertname", "namespace"]
GROUP_WAIT = "30s"
GROUP_INTERVAL = "5m"

# kube-prometheus-stack 88.5.3 alerts (templates/prometheus/rules-1.14/kubernetes-apps.yaml) that fire on
# the same objects as one of ours, in the same namespace: ours says what to do for a model, theirs is muted.
INHIBITED_BY = {
    alerts.MODEL_UNAVAILABLE: (
        "KubePodCrashLooping",
        "KubePodNotReady",
        "KubeDeploymentReplicasMismatch",
        "KubeDeploymentRolloutStuck",
        "KubeStatefulSetReplicasMismatch",
        "KubeContainerWaiting",
    ),
    alerts.MODEL_HPA_MAXED: ("KubeHpaMaxedOut", "KubeHpaReplicasMismatch"),
    alerts.ENGINE_BUILD_FAILED: ("KubeJobFailed",),
}


def _matchers(names: tuple[str, ...]) -> list[str]:
    return [f"alertname =~ {'|'.join(names)}" if len(names) > 1 else f"alertname = {names[0]}"]


def alertmanager_config(
    *, region: str, sns_topic_arn: str | None, webhook_url: str | None, repeat_interval: str
) -> dict[str, Any]:
    """The Alertmanager configuration file (as a dict; YAML-dump it into the config Secret)."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    if sns_topic_arn:
        # sigv4 without keys: the AWS SDK's default chain, i.e. the EKS Pod Identity credentials of the
        # Alertmanager service account (alertmanager v0.34.0 notify/sns/sns.go createSNSClient). The region
        # must be set (it refuses to publish without one).
        receiver["sns_configs"] = [
            {
                "topic_arn": sns_topic_arn,
                "sigv4": {"region": region},
                "subject": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.namespace }}",
                "send_resolved": True,
            }
        ]
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    delivers = len(receiver) > 1
    default = RECEIVER if delivers else NULL_RECEIVER
    inhibit_rules: list[dict[str, Any]] = [
        # The chart's defaults (values.yaml alertmanager.config): a critical alert mutes the warnings of
        # the same name and namespace; the InfoInhibitor mutes info alerts.
        {
            "source_matchers": ["severity = critical"],
            "target_matchers": ["severity =~ warning|info"],
            "equal": ["namespace", "alertname"],
        },
        {
            "source_matchers": ["severity = warning"],
            "target_matchers": ["severity = info"],
            "equal": ["namespace", "alertname"],
        },
        {
            "source_matchers": ["alertname = InfoInhibitor"],
            "target_matchers": ["severity = info"],
            "equal": ["namespace"],
        },
        {"target_matchers": ["alertname = InfoInhibitor"]},
    ]
    inhibit_rules += [
        {"source_matchers": [f"alertname = {ours}"], "target_matchers": _matchers(theirs), "equal": ["namespace"]}
        for ours, theirs in INHIBITED_BY.items()
    ]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": default,
            "group_by": list(GROUP_BY),
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": repeat_interval,
            "routes": [
                # Watchdog always fires (it proves the alerting pipeline works); InfoInhibitor only mutes.
                {"receiver": NULL_RECEIVER, "matchers": ['alertname =~ "Watchdog|InfoInhibitor"']},
            ],
        },
        "inhibit_rules": inhibit_rules,
        "receivers": [{"name": NULL_RECEIVER}, *([receiver] if delivers else [])],
    }


def sns_publish_policy(topic_arn: str) -> dict[str, Any]:
    """What Alertmanager's Pod Identity role may do: publish to the one alerts topic."""
    return policy_document(
        [{"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn}]
    )


def sns_topic_policy(topic_arn: str) -> dict[str, Any]:
    """The topic's own policy: nothing over plain HTTP (like the bucket's and the file system's)."""
    return policy_document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )
