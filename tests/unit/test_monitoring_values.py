"""Helm values of kube-prometheus-stack, prometheus-adapter and the DCGM exporter, and the
values-key checker other components use for their charts."""

from __future__ import annotations

import pytest

from components.catalog import versions
from components.config import MonitoringConfig
from components.observability.builders import metrics
from components.observability.builders import monitoring_values as mv
from components.observability.builders.dashboards import triton as triton_dashboard
from tests.helm_values import assert_values_keys_exist, reference_values, unknown_keys
from tests.k8s_schema import require_reference_dir

MON = MonitoringConfig(retention="7d", storage_size="80Gi", scrape_interval="30s")


def _kps() -> dict:
    return mv.kube_prometheus_stack_values(MON, "grafana-admin", "fast-gp3")


# --------------------------------------------------------------------------- the checker


def test_checker_reports_each_unknown_key_with_its_path():
    defaults = {"a": {"b": 1, "c": {}}, "d": None, "e": []}
    values = {"a": {"b": 2, "typo": 3, "c": {"x": 1}}, "d": {"k": 1}, "e": [{"anything": 1}], "z": 1}
    assert unknown_keys(values, defaults) == [
        "a.typo",
        "a.c.x",
        "d (the chart's default is empty; list it in free_form if the chart passes it through)",
        "z",
    ]


def test_checker_free_form_paths_and_wildcards():
    defaults = {"a": {"labels": {}, "deep": {"podLabels": {}}}, "labels": {}}
    values = {"a": {"labels": {"x": "1"}, "deep": {"podLabels": {"y": "2"}}}, "labels": {"z": "3"}}
    assert unknown_keys(values, defaults, {"a.labels", "*.podLabels", "labels"}) == []
    assert unknown_keys(values, defaults, {"*.podLabels", "labels"}) == ["a.labels.x"]


def test_assert_values_keys_exist_fails_on_a_typo_in_a_real_chart():
    require_reference_dir()  # the check reads the chart's defaults
    with pytest.raises(AssertionError, match="grafana.admin.existingSecrets"):
        assert_values_keys_exist(
            {"grafana": {"admin": {"existingSecrets": "x"}}}, versions.KUBE_PROMETHEUS_STACK.reference_values_file
        )


# --------------------------------------------------------------------------- every key exists


@pytest.mark.parametrize(
    "chart, values",
    [
        (versions.KUBE_PROMETHEUS_STACK, _kps()),
        (versions.PROMETHEUS_ADAPTER, mv.prometheus_adapter_values()),
        (versions.DCGM_EXPORTER, mv.dcgm_exporter_values(MON)),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_every_values_key_exists_in_the_chart_defaults(chart, values):
    assert_values_keys_exist(values, chart.reference_values_file, mv.FREE_FORM[chart.name])


# --------------------------------------------------------------------------- kube-prometheus-stack


def test_prometheus_retention_storage_and_scrape_interval_come_from_config():
    spec = _kps()["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "7d"
    assert spec["scrapeInterval"] == spec["evaluationInterval"] == "30s"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "80Gi"
    assert claim["storageClassName"] == "fast-gp3"


def test_monitors_and_rules_are_not_restricted_to_the_release():
    spec = _kps()["prometheus"]["prometheusSpec"]
    for kind in ("podMonitor", "serviceMonitor", "rule", "probe"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
    defaults = reference_values(versions.KUBE_PROMETHEUS_STACK.reference_values_file)["prometheus"]["prometheusSpec"]
    # with the flag off, the chart's empty selectors select every object in every namespace
    assert defaults["podMonitorSelector"] == defaults["podMonitorNamespaceSelector"] == {}
    assert defaults["ruleSelector"] == defaults["ruleNamespaceSelector"] == {}


def test_grafana_admin_comes_from_an_existing_secret_and_no_password_is_in_values():
    grafana = _kps()["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": mv.GRAFANA_USER_KEY,
        "passwordKey": mv.GRAFANA_PASSWORD_KEY,
    }

    def keys(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{prefix}{k}"
                yield from keys(v, f"{prefix}{k}.")

    assert [k for k in keys(_kps()) if "password" in k.lower()] == ["grafana.admin.passwordKey"]


def test_grafana_stays_inside_the_cluster():
    grafana = _kps()["grafana"]
    assert grafana["ingress"]["enabled"] is False
    # the chart's own Service type is ClusterIP: nothing overrides it
    assert "type" not in grafana.get("service", {})


def test_grafana_sidecar_watches_the_label_the_dashboard_configmap_carries():
    sidecar = _kps()["grafana"]["sidecar"]["dashboards"]
    cm = triton_dashboard.config_map_manifest(mv.NAMESPACE)
    assert sidecar["enabled"] is True
    assert cm["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
    assert sidecar["searchNamespace"] == "ALL"


# --------------------------------------------------------------------------- adapter and DCGM


def test_adapter_reads_the_stack_prometheus_and_serves_only_the_catalog_rules():
    values = mv.prometheus_adapter_values("monitoring")
    assert f"{values['prometheus']['url']}:{values['prometheus']['port']}" == mv.prometheus_url("monitoring")
    assert values["prometheus"]["url"] == "http://kps-prometheus.monitoring.svc"
    assert values["rules"]["default"] is False
    assert values["rules"]["custom"] == metrics.adapter_rules()


def test_dcgm_exporter_runs_only_on_gpu_nodes_and_tolerates_their_taint():
    values = mv.dcgm_exporter_values(MON)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]}
    ]
    assert values["serviceMonitor"]["enabled"] is True
    assert values["serviceMonitor"]["interval"] == "30s"
    assert values["serviceMonitor"]["honorLabels"] is True


# --------------------------------------------------------------------------- fits EKS, timing


def test_control_plane_targets_eks_does_not_expose_are_not_scraped_nor_alerted_on():
    values = _kps()
    defaults = reference_values(versions.KUBE_PROMETHEUS_STACK.reference_values_file)
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert defaults[component]["enabled"] is True  # the chart scrapes it unless told otherwise
        assert values[component] == {"enabled": False}
    off = {group for group, on in values["defaultRules"]["rules"].items() if on is False}
    assert off == {"kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "etcd", "kubeProxy"}
    assert off <= set(defaults["defaultRules"]["rules"])  # real rule-group names of chart 88.5.3
    # what still runs on EKS stays on: kubelet, apiserver, node exporter, kube-state-metrics
    assert "kubelet" not in values["defaultRules"]["rules"] and "kubeApiServer" not in values


def test_retention_size_bounds_the_volume():
    spec = _kps()["prometheus"]["prometheusSpec"]
    assert spec["retentionSize"] == MON.retention_size == "40GB"


def test_retention_size_must_fit_the_volume():
    from components import config

    with pytest.raises(config.ConfigError) as err:
        config.parse_stack_config(
            {
                "region": "us-west-2",
                "nodePools": [{"name": "g", "instanceFamilies": ["g6e"]}],
                "gateway": {"tls": {"plaintextInsideVpc": True}},
                "monitoring": {"storageSize": "50Gi", "retentionSize": "60GB"},
            }
        )
    assert err.value.problems[0][0] == "monitoring.retentionSize"


@pytest.mark.parametrize("scrape, relist, max_age", [("15s", "30s", "1m"), ("60s", "2m", "4m")])
def test_adapter_relist_and_max_age_follow_the_scrape_interval(scrape, relist, max_age):
    values = mv.prometheus_adapter_values("monitoring", scrape)
    assert values["metricsRelistInterval"] == relist
    assert values["extraArguments"] == [f"--metrics-max-age={max_age}"]


# --------------------------------------------------------------------------- DCGM fields (alerts, CloudWatch)


def _documented_dcgm_fields() -> dict[str, str]:
    """Field -> Prometheus type, from the metrics list the chart's values.yaml documents under
    `customMetrics` (commented out: "Must be the complete list"), dcgm-exporter 4.8.2."""
    path = require_reference_dir() / "helm-values" / versions.DCGM_EXPORTER.reference_values_file
    fields = {}
    for line in path.read_text().splitlines():
        text = line.strip().lstrip("#").strip()
        if text.startswith("DCGM_FI_"):
            name, kind, *_ = (part.strip() for part in text.split(","))
            fields[name] = kind
    return fields


def test_the_dcgm_fields_the_alerts_read_are_documented_by_the_pinned_chart():
    documented = _documented_dcgm_fields()
    for field in ("DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"):
        assert documented[field] == "gauge", field


def test_our_csv_without_profiling_uses_documented_fields_and_types():
    documented = _documented_dcgm_fields()
    assert any(f.startswith("DCGM_FI_PROF_") for f in documented)  # the chart has profiling fields ...
    for name, kind, _ in mv.DCGM_FIELDS_WITHOUT_PROFILING:
        assert not name.startswith("DCGM_FI_PROF_")  # ... ours leaves them to the CloudWatch add-on's exporter
        assert documented.get(name) == kind, name
    lines = mv.dcgm_metrics_csv().splitlines()
    assert len(lines) == len(mv.DCGM_FIELDS_WITHOUT_PROFILING)
    assert lines[0] == "DCGM_FI_DEV_SM_CLOCK, gauge, SM clock frequency (in MHz)."


def test_dcgm_custom_metrics_only_with_cloudwatch():
    assert "customMetrics" not in mv.dcgm_exporter_values(MON)
    with_cloudwatch = MonitoringConfig(cloudwatch={"enabled": True})
    assert mv.dcgm_exporter_values(with_cloudwatch)["customMetrics"] == mv.dcgm_metrics_csv()


@pytest.mark.parametrize(
    "chart, key",
    [
        (versions.KUBE_PROMETHEUS_STACK, "alertmanager.alertmanagerSpec.configSecret"),
        (versions.DCGM_EXPORTER, "customMetrics"),
    ],
    ids=["kps-configSecret", "dcgm-customMetrics"],
)
def test_keys_set_outside_the_defaults_are_documented_there_commented_out(chart, key):
    """The two keys we set that the defaults hold only as a comment (listed in FREE_FORM): each is in the
    chart's values.yaml as `# <key>:` (its templates read it: see the comments in monitoring_values.py)."""
    assert key in mv.FREE_FORM[chart.name]
    defaults = reference_values(chart.reference_values_file)
    parent, _, leaf = key.rpartition(".")
    node = defaults
    for part in parent.split(".") if parent else []:
        node = node[part]
    assert leaf not in node  # really absent from the parsed defaults ...
    text = (require_reference_dir() / "helm-values" / chart.reference_values_file).read_text()
    assert f"# {leaf}:" in text  # ... and documented
