"""Monitoring: kube-prometheus-stack, Grafana admin secret and dashboard, DCGM exporter,
prometheus-adapter, the recording rules the HPAs read, the serving alerts and where Alertmanager sends
them (an SNS topic with its publisher role, a webhook), and Karpenter's metrics.

A thin shell over pure builders: Helm values in `components/observability/builders/monitoring_values.py`,
rules, adapter rules and the PodMonitor in `components/catalog/serving_metrics.py`, the dashboard
in `components/observability/builders/dashboards/triton.py`, the alert rules in
`components/observability/builders/alerts.py`, Alertmanager's configuration in
`components/observability/builders/alertmanager.py`.

The Grafana admin password is generated (pulumi_random), stored in AWS Secrets
Manager, and handed to Grafana through a Kubernetes Secret built from the same
Pulumi secret output; Helm values only name that Secret. Nothing prints or
stores it in plain text: read it with `grafana_read_password_command`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as kubernetes
import pulumi_random as random
import yaml

from components.catalog import versions
from components.config import ModelConfig, MonitoringConfig, StackIdentity
from components.observability.builders import alertmanager, alerts, metrics, monitoring_values
from components.observability.builders.dashboards import triton as triton_dashboard
from components.observability.builders.monitoring import (
    GRAFANA_SECRET_K8S_NAME,
    PROMETHEUS_STORAGE_CLASS,
    alertmanager_port_forward_command,
    karpenter_service_monitor_manifest,
    port_forward_command,
    read_password_command,
)
from components.platform.builders import pod_security
from components.platform.resources import iam_roles
from components.platform.resources.k8s_objects import k8s_object
from components.tokens import component_type, with_previous_types


@dataclass(frozen=True)
class MonitoringArgs:
    stack: StackIdentity  # names and tags the Grafana secret; its region goes into the read command
    monitoring: MonitoringConfig
    k8s_provider: kubernetes.Provider
    cluster_name: pulumi.Input[str]  # trust of Alertmanager's Pod Identity role (SNS publishing)
    models: Sequence[ModelConfig] = ()  # the served models the alerts watch
    alert_webhook_url: pulumi.Input[str] | None = None  # secret; Alertmanager posts every alert there


class Monitoring(pulumi.ComponentResource):
    """kube-prometheus-stack + Grafana secret and dashboard + DCGM exporter + prometheus-adapter + rules.

    AWS resources use the provider passed in `opts` (providers={"aws": ...});
    Kubernetes resources use `args.k8s_provider`.
    """

    grafana_secret_name: pulumi.Output[str]
    grafana_port_forward_command: pulumi.Output[str]
    grafana_read_password_command: pulumi.Output[str]
    prometheus_url: pulumi.Output[str]
    alertmanager_port_forward_command: pulumi.Output[str]
    alerts_topic_arn: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        args: MonitoringArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            component_type("observability", "Monitoring"),
            name,
            None,
            with_previous_types(opts, "tritonllm:index:Monitoring"),
        )
        mon = args.monitoring
        namespace_name = monitoring_values.NAMESPACE
        child = pulumi.ResourceOptions(parent=self)
        k8s = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)

        namespace = kubernetes.core.v1.Namespace(
            f"{name}-namespace",
            # Pod Security: privileged, said explicitly (node-exporter and DCGM use the host), audited at baseline.
            metadata={
                "name": namespace_name,
                "labels": {
                    "app.kubernetes.io/part-of": "tritonllm",
                    **pod_security.namespace_labels("privileged", audit="baseline"),
                },
            },
            opts=k8s,
        )
        in_namespace = pulumi.ResourceOptions.merge(k8s, pulumi.ResourceOptions(depends_on=[namespace]))

        # --- Grafana admin password: generated, kept in Secrets Manager, given to Grafana as a Secret
        password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
        secret = aws.secretsmanager.Secret(
            f"{name}-grafana-admin",
            name_prefix=f"{args.stack.name}/grafana-admin-",
            description=f"Grafana admin password of the {args.stack.name} monitoring stack (user {monitoring_values.GRAFANA_ADMIN_USER})",
            tags={**args.stack.tags, "tritonllm:component": "monitoring"},
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-grafana-admin",
            secret_id=secret.id,
            secret_string=password.result,
            opts=child,
        )
        grafana_secret = kubernetes.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_SECRET_K8S_NAME, "namespace": namespace_name},
            type="Opaque",
            string_data={
                monitoring_values.GRAFANA_USER_KEY: monitoring_values.GRAFANA_ADMIN_USER,
                monitoring_values.GRAFANA_PASSWORD_KEY: password.result,
            },
            opts=in_namespace,
        )

        # --- Prometheus volume: encrypted gp3 through the EBS CSI driver (EKS has no default class)
        storage_class = kubernetes.storage.v1.StorageClass(
            f"{name}-prometheus-gp3",
            metadata={"name": PROMETHEUS_STORAGE_CLASS},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=k8s,
        )

        def release(
            resource_name: str,
            chart: versions.Chart,
            release_name: str,
            values: dict,
            depends_on: list[pulumi.Resource],
        ) -> kubernetes.helm.v3.Release:
            return kubernetes.helm.v3.Release(
                resource_name,
                name=release_name,
                chart=chart.name,
                version=chart.version,
                repository_opts=kubernetes.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                namespace=namespace_name,
                values=values,
                timeout=900,
                opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=depends_on)),
            )

        # --- Where alerts go: an SNS topic Alertmanager publishes to with its own role, and/or a webhook.
        self.alerts_topic_arn = None
        publisher_grants: list[pulumi.Resource] = []
        if mon.alerts.sns.enabled:
            topic = aws.sns.Topic(
                f"{name}-alerts",
                name_prefix=f"{args.stack.name}-alerts-",
                display_name=f"{args.stack.name} alerts",
                kms_master_key_id="alias/aws/sns",  # encrypted at rest with the AWS managed key
                tags={**args.stack.tags, "tritonllm:component": "monitoring"},
                opts=child,
            )
            aws.sns.TopicPolicy(
                f"{name}-alerts",
                arn=topic.arn,
                policy=topic.arn.apply(lambda arn: json.dumps(alertmanager.sns_topic_policy(arn))),
                opts=pulumi.ResourceOptions(parent=topic),
            )
            for email in mon.alerts.sns.emails:
                aws.sns.TopicSubscription(
                    f"{name}-alerts-{email}",
                    topic=topic.arn,
                    protocol="email",
                    endpoint=email,
                    opts=pulumi.ResourceOptions(parent=topic),
                )
            account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
            _, association = iam_roles.pod_identity_role(
                f"{name}-alertmanager",
                cluster_name=args.cluster_name,
                namespace=namespace_name,
                service_account=monitoring_values.ALERTMANAGER_SERVICE_ACCOUNT,
                account_id=account_id,
                inline_policy=topic.arn.apply(lambda arn: json.dumps(alertmanager.sns_publish_policy(arn))),
                opts=child,
            )
            assert association is not None
            publisher_grants.append(association)  # Alertmanager starts with its credentials in place
            self.alerts_topic_arn = topic.arn
        alertmanager_config = pulumi.Output.all(
            self.alerts_topic_arn, args.alert_webhook_url if args.alert_webhook_url is not None else None
        ).apply(
            lambda a: yaml.safe_dump(
                alertmanager.alertmanager_config(
                    region=args.stack.region,
                    sns_topic_arn=a[0],
                    webhook_url=a[1],
                    repeat_interval=mon.alerts.repeat_interval,
                ),
                sort_keys=False,
            )
        )
        # The whole configuration in the Secret the Alertmanager object reads (the chart renders none:
        # alertmanagerSpec.useExistingSecret); with a webhook it holds the secret URL, so it stays a
        # Pulumi secret.
        alertmanager_secret = kubernetes.core.v1.Secret(
            f"{name}-alertmanager-config",
            metadata={"name": alertmanager.CONFIG_SECRET, "namespace": namespace_name},
            type="Opaque",
            string_data={alertmanager.CONFIG_KEY: alertmanager_config},
            opts=in_namespace,
        )

        kps = release(
            f"{name}-kube-prometheus-stack",
            versions.KUBE_PROMETHEUS_STACK,
            monitoring_values.KPS_RELEASE,
            monitoring_values.kube_prometheus_stack_values(mon, GRAFANA_SECRET_K8S_NAME, PROMETHEUS_STORAGE_CLASS),
            [grafana_secret, storage_class, alertmanager_secret, *publisher_grants],
        )
        release(
            f"{name}-prometheus-adapter",
            versions.PROMETHEUS_ADAPTER,
            monitoring_values.ADAPTER_RELEASE,
            monitoring_values.prometheus_adapter_values(namespace_name, mon.scrape_interval),
            [kps],
        )
        if mon.dcgm_exporter:
            release(
                f"{name}-dcgm-exporter",
                versions.DCGM_EXPORTER,
                monitoring_values.DCGM_RELEASE,
                monitoring_values.dcgm_exporter_values(mon),
                [kps],  # its ServiceMonitor needs the CRDs the stack installs
            )

        after_stack = pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[kps]))
        rule = metrics.prometheus_rule_manifest(namespace_name, scrape_interval=mon.scrape_interval)
        k8s_object(f"{name}-recording-rules", rule, after_stack)
        if mon.alerts.enabled and args.models:
            alert_rule = alerts.alert_rule_manifest(namespace_name, mon, args.models)
            k8s_object(f"{name}-alert-rules", alert_rule, after_stack)
        karpenter_monitor = karpenter_service_monitor_manifest(namespace_name)
        k8s_object(f"{name}-karpenter-servicemonitor", karpenter_monitor, after_stack)
        dashboard = triton_dashboard.config_map_manifest(namespace_name)
        kubernetes.core.v1.ConfigMap(
            f"{name}-triton-dashboard",
            metadata=dashboard["metadata"],
            data=dashboard["data"],
            opts=in_namespace,
        )

        self.grafana_secret_name = secret.name
        self.grafana_port_forward_command = pulumi.Output.from_input(port_forward_command(namespace_name))
        self.grafana_read_password_command = secret.name.apply(lambda n: read_password_command(n, args.stack.region))
        self.prometheus_url = pulumi.Output.from_input(monitoring_values.prometheus_url(namespace_name))
        self.alertmanager_port_forward_command = pulumi.Output.from_input(
            alertmanager_port_forward_command(namespace_name)
        )
        self.register_outputs(
            {
                "grafana_secret_name": self.grafana_secret_name,
                "grafana_port_forward_command": self.grafana_port_forward_command,
                "grafana_read_password_command": self.grafana_read_password_command,
                "prometheus_url": self.prometheus_url,
                "alertmanager_port_forward_command": self.alertmanager_port_forward_command,
                "alerts_topic_arn": self.alerts_topic_arn,
            }
        )
