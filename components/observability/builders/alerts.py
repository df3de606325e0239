"""Alert rules for LLM serving: a PrometheusRule next to the recording rules, built from the same catalog.

Each alert names the model (its namespace, which is `models[].name`, and the pod where the series is
per pod) and says what to do. Thresholds come from `monitoring.alerts.*`; latency targets may differ
per model (`monitoring.alerts.models.<name>`).

Where the series come from, at the pinned versions (each checked in tests/rules/test_alert_rules.py
with the metric names and labels these sources define):

* The recording rules (`components/catalog/serving_metrics.py`): failures, requests, queue time per
  request and vLLM's time to first token, per pod (`namespace_pod:*`).
* kube-state-metrics v2.20.0 (kube-prometheus-stack 88.5.3 depends on its chart 8.4.0, appVersion
  2.20.0): `docs/metrics/workload/{deployment,statefulset,horizontalpodautoscaler,job,pod}-metrics.md`.
  `kube_pod_container_resource_requests` covers `spec.containers` only and
  `kube_pod_init_container_resource_requests` the init containers (an engine build asks for its GPUs in
  one); an extended resource's name is sanitised into the `resource` label, `nvidia.com/gpu` ->
  `nvidia_com_gpu` (`internal/store/pod.go`, `SanitizeLabelName`). `kube_job_status_failed` carries a
  `reason` label (`internal/store/job.go`: one series per known reason, 1 for the Job's).
* LeaderWorkerSet v0.10.0 names a group's leader StatefulSet after the LWS
  (`pkg/controllers/leaderworkerset_controller.go`, constructLeaderStatefulSetApplyConfiguration);
  kube-state-metrics reports it like any StatefulSet.
* Karpenter 1.14.1 (sigs.k8s.io/karpenter at 6e7eab7a0f48, what karpenter-provider-aws v1.14.1's go.mod
  pins): `karpenter_cloudprovider_errors_total{controller, method, provider, error}`, counted by the
  cloud-provider decorator for every failed call, `method="Create"` for node launches, `error` one of
  InsufficientCapacityError, NodeClassNotReadyError, NodeClaimNotFoundError or "" (other errors:
  `pkg/cloudprovider/metrics/cloudprovider.go`). Scraped through the ServiceMonitor in
  `monitoring.karpenter_service_monitor_manifest`.
* dcgm-exporter 4.5.3-4.8.2 (chart 4.8.2): `DCGM_FI_DEV_XID_ERRORS` (gauge, the last XID),
  `DCGM_FI_DEV_FB_USED` and `DCGM_FI_DEV_FB_FREE` (MiB) are in the chart's default metrics ConfigMap
  (`deployment/templates/metrics-configmap.yaml`); each GPU series carries gpu, UUID, pci_bus_id, device,
  modelName and Hostname (`internal/pkg/rendermetrics/render_metrics.go`) and, for a GPU a pod holds, that
  pod's namespace, pod and container (`internal/pkg/transformation/const.go`; kept as they are by the
  ServiceMonitor's honorLabels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.config import ModelConfig, MonitoringConfig
from components.config.monitoring import AlertsConfig
from components.config.monitoring_checks import latency_signal
from components.observability.builders import metrics
from components.serving.builders import engine_build
from components.serving.builders import multinode as mn
from components.serving.builders import triton_manifests as tm

ALERT_GROUP = "tritonllm.alerts"
ALERT_RULE_NAME = "tritonllm-alerts"

# How far back the Karpenter alert looks for failed launches: Karpenter retries a launch within
# seconds to minutes, so a launch problem that lasts keeps this window non-empty.
KARPENTER_ERROR_WINDOW = "15m"
KARPENTER_FOR = "5m"
GPU_MEMORY_FOR = "15m"

# Alert names, as the Alertmanager routes and inhibitions (alertmanager.py) and the docs refer to them.
MODEL_UNAVAILABLE = "TritonModelUnavailable"
MODEL_FAILING = "TritonModelFailureRatioHigh"
MODEL_SLOW_FIRST_TOKEN = "TritonModelTimeToFirstTokenHigh"
MODEL_QUEUE_TIME = "TritonModelQueueTimeHigh"
MODEL_HPA_MAXED = "TritonModelHpaMaxedOut"
GPU_POD_UNSCHEDULABLE = "GpuPodUnschedulable"
KARPENTER_LAUNCH_FAILING = "KarpenterGpuNodeLaunchFailing"
GPU_XID = "GpuXidError"
GPU_MEMORY_FULL = "GpuMemoryNearFull"
ENGINE_BUILD_FAILED = "TritonEngineBuildFailed"

CRITICAL, WARNING = "critical", "warning"


def _duration_seconds(duration: str) -> int:
    """Seconds of a Prometheus duration such as 15m or 1h30m."""
    units = {"s": 1, "m": 60, "h": 3600}
    total, number = 0, ""
    for char in duration:
        if char.isdigit():
            number += char
        else:
            total += int(number) * units[char]
            number = ""
    return total


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if _duration_seconds(for_) > 0:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _namespaces(models: Sequence[ModelConfig]) -> str:
    """A label matcher on the model namespaces (a model's namespace is its name)."""
    names = sorted(m.name for m in models)
    return f'namespace="{names[0]}"' if len(names) == 1 else 'namespace=~"' + "|".join(names) + '"'


def _gpu_pod_waiting() -> str:
    """(namespace, pod) of every pod that asks for a GPU (in a container or an init container) and that
    the scheduler has not placed: phase Pending with PodScheduled=False, i.e. waiting for a node."""
    requests = " or ".join(
        f'sum by (namespace, pod) ({series}{{resource="nvidia_com_gpu"}}) > 0'
        for series in ("kube_pod_container_resource_requests", "kube_pod_init_container_resource_requests")
    )
    return f"max by (namespace, pod) (kube_pod_status_unschedulable) and on (namespace, pod) ({requests})"


def model_alerts(alerts_cfg: AlertsConfig, models: Sequence[ModelConfig]) -> list[dict[str, Any]]:
    """Per-model alerts: no ready replica, failure ratio, latency target, HPA at maxReplicas."""
    rules: list[dict[str, Any]] = []
    startup = tm.STARTUP_BUDGET_SECONDS
    single = [m for m in models if m.multi_node is None and not m.scales_to_zero]
    grouped = [m for m in models if m.multi_node is not None]
    what_to_do = (
        "Check `kubectl -n {{ $labels.namespace }} get pods` and `kubectl -n {{ $labels.namespace }} "
        "describe pods` (CrashLoopBackOff, OOMKilled, Pending for a GPU) and the Triton log "
        "(`kubectl -n {{ $labels.namespace }} logs <pod> -c triton --previous`)."
    )
    # A Deployment's available replicas, or a LeaderWorkerSet's ready leaders (its leader StatefulSet).
    unavailable = []
    for selected, workload, ready, kind in (
        (single, tm.DEPLOYMENT_NAME, "kube_deployment_status_replicas_available", "deployment"),
        (grouped, mn.LWS_NAME, "kube_statefulset_status_replicas_ready", "statefulset"),
    ):
        if selected:
            match = f'{_namespaces(selected)}, {kind}="{workload}"'
            unavailable.append(
                f"((max by (namespace, {kind}) ({ready}{{{match}}}) == 0) and on (namespace, {kind}) "
                f"(time() - kube_{kind}_created{{{match}}} > {startup}))"
            )
    # Models that scale to zero (minReplicas 0) have no replica by design while idle: only a Deployment that
    # has wanted one for longer than the model's cold-start bound (held requests then get 504) counts.
    for model in sorted((m for m in models if m.scales_to_zero), key=lambda m: m.name):
        match = f'namespace="{model.name}", deployment="{tm.DEPLOYMENT_NAME}"'
        bound = model.autoscaling.cold_start_timeout
        unavailable.append(
            f"((max by (namespace, deployment) (kube_deployment_status_replicas_available{{{match}}}) == 0) "
            f"and on (namespace, deployment) (min_over_time(kube_deployment_spec_replicas{{{match}}}[{bound}s]) > 0))"
        )
    rules.append(
        _alert(
            MODEL_UNAVAILABLE,
            " or ".join(unavailable),
            alerts_cfg.unavailable_for,
            CRITICAL,
            "Model {{ $labels.namespace }} has no ready replica: its endpoint fails every request",
            f"Model {{{{ $labels.namespace }}}} has had no ready Triton pod (the Deployment {tm.DEPLOYMENT_NAME}, or "
            f"the leaders of the LeaderWorkerSet {mn.LWS_NAME}) for {alerts_cfg.unavailable_for}; objects younger "
            f"than the {startup // 60} min cold-start budget are not counted. {what_to_do}",
        )
    )
    ns = _namespaces(models)
    failures = f"sum by (namespace) ({metrics.METRICS['triton_failure_rate'].record}{{{ns}}})"
    successes = f"sum by (namespace) ({metrics.METRICS['triton_request_rate'].record}{{{ns}}})"
    ratio = alerts_cfg.failure_ratio
    rules.append(
        _alert(
            MODEL_FAILING,
            f"{failures} / ({successes} + {failures}) > {ratio:g}",
            alerts_cfg.failure_for,
            CRITICAL,
            "Model {{ $labels.namespace }}: {{ $value | humanizePercentage }} of inference requests fail",
            f"More than {ratio:.0%} of the requests to model {{{{ $labels.namespace }}}} failed for "
            f"{alerts_cfg.failure_for} (Triton's nv_inference_request_failure against "
            "nv_inference_request_success at the served model). Read the Triton log for the error "
            "(`kubectl -n {{ $labels.namespace }} logs -l app.kubernetes.io/name=triton -c triton`): a request "
            "larger than the model accepts, GPU out of memory, or a backend that stopped.",
        )
    )
    # Latency: one rule per signal, a branch per model with its own target (label target_ms).
    latency: dict[str, list[str]] = {"ttft": [], "queue": []}
    for model in sorted(models, key=lambda m: m.name):
        signal = latency_signal(model)
        if signal is None:
            continue
        override = alerts_cfg.models.get(model.name)
        if signal == "ttft":
            record = metrics.METRICS["vllm_time_to_first_token_ms"].record
            target = override.ttft_ms if override and override.ttft_ms is not None else alerts_cfg.ttft_ms
        else:
            record = metrics.METRICS["triton_queue_time_per_request_ms"].record
            target = (
                override.queue_time_ms if override and override.queue_time_ms is not None else alerts_cfg.queue_time_ms
            )
        latency[signal].append(
            f'label_replace(max by (namespace, pod) ({record}{{namespace="{model.name}"}}) > {target:g}, '
            f'"target_ms", "{target:g}", "", "")'
        )
    for signal, name, what in (
        ("ttft", MODEL_SLOW_FIRST_TOKEN, "mean time to first token"),
        ("queue", MODEL_QUEUE_TIME, "time a request waits in Triton's scheduler queue"),
    ):
        if not latency[signal]:
            continue
        rules.append(
            _alert(
                name,
                " or ".join(latency[signal]),
                alerts_cfg.latency_for,
                WARNING,
                f"Model {{{{ $labels.namespace }}}}: {what} {{{{ $value | humanize }}}} ms on pod "
                "{{ $labels.pod }}, above its {{ $labels.target_ms }} ms target",
                f"The {what} of model {{{{ $labels.namespace }}}} (pod {{{{ $labels.pod }}}}) stayed above "
                f"{{{{ $labels.target_ms }}}} ms for {alerts_cfg.latency_for}. More replicas are the fix: check "
                "whether its HPA is at maxReplicas (TritonModelHpaMaxedOut) or new replicas wait for a GPU "
                "(GpuPodUnschedulable); otherwise raise models[].maxReplicas or lower the per-pod autoscaling "
                "target.",
            )
        )
    scalable = [m for m in models if m.min_replicas < m.max_replicas]
    if scalable:
        match = f'{_namespaces(scalable)}, horizontalpodautoscaler="{tm.DEPLOYMENT_NAME}"'
        rules.append(
            _alert(
                MODEL_HPA_MAXED,
                f"kube_horizontalpodautoscaler_status_current_replicas{{{match}}} >= on (namespace, "
                f"horizontalpodautoscaler) kube_horizontalpodautoscaler_spec_max_replicas{{{match}}}",
                alerts_cfg.hpa_maxed_for,
                WARNING,
                "Model {{ $labels.namespace }} runs at maxReplicas ({{ $value }}) and cannot scale further",
                f"The HPA of model {{{{ $labels.namespace }}}} has been at its maxReplicas for "
                f"{alerts_cfg.hpa_maxed_for}: more load queues up. Raise models[].maxReplicas (and the node "
                "pool's maxGpus) with `pulumi up`, or lower the load.",
            )
        )
    return rules


def cluster_alerts(monitoring: MonitoringConfig) -> list[dict[str, Any]]:
    """Alerts on GPUs and capacity, for every model at once: GPU pods that wait, Karpenter launches that
    fail, XID errors, GPU memory near full, engine build Jobs that fail."""
    alerts_cfg = monitoring.alerts
    window = metrics.window_for(monitoring.scrape_interval)
    waiting = _gpu_pod_waiting()
    rules = [
        _alert(
            GPU_POD_UNSCHEDULABLE,
            waiting,
            alerts_cfg.gpu_pending_for,
            WARNING,
            "Pod {{ $labels.namespace }}/{{ $labels.pod }} has waited for a GPU node for "
            f"{alerts_cfg.gpu_pending_for}",
            f"{{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} asks for nvidia.com/gpu and has not been scheduled "
            f"for {alerts_cfg.gpu_pending_for}. See `kubectl -n {{{{ $labels.namespace }}}} describe pod "
            "{{ $labels.pod }}` (events), `kubectl get nodeclaims` and the Karpenter log "
            "(`kubectl -n kube-system logs -l app.kubernetes.io/name=karpenter`): the NodePool's GPU limit "
            "(nodePools[].maxGpus) reached, no capacity for its instance types in its zones "
            "(KarpenterGpuNodeLaunchFailing), or a GPU node that never became ready.",
        ),
        _alert(
            KARPENTER_LAUNCH_FAILING,
            f'sum by (error) (increase(karpenter_cloudprovider_errors_total{{method="Create"}}'
            f"[{KARPENTER_ERROR_WINDOW}])) > 0 and on () (count({waiting}) > 0)",
            KARPENTER_FOR,
            WARNING,
            "Karpenter fails to launch nodes ({{ $labels.error }}) while GPU pods wait",
            f"Karpenter's node launches failed in the last {KARPENTER_ERROR_WINDOW} with "
            '"{{ $labels.error }}" and pods asking for GPUs are unscheduled. InsufficientCapacityError: '
            "EC2 has none of the pool's GPU instance types in its zones and capacity types; add instance "
            "families or zones, or allow spot/on-demand (nodePools[]). Another error: read "
            "`kubectl -n kube-system logs -l app.kubernetes.io/name=karpenter` (quotas such as the "
            "account's G/P vCPU limit, the EC2NodeClass, IAM).",
        ),
    ]
    if monitoring.dcgm_exporter:
        gpu_labels = "Hostname, gpu, UUID, modelName, namespace, pod"
        rules += [
            _alert(
                GPU_XID,
                f"max by ({gpu_labels}) (max_over_time(DCGM_FI_DEV_XID_ERRORS[{window}])) > 0",
                "0s",
                CRITICAL,
                "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported XID {{ $value }} "
                "(used by {{ $labels.namespace }}/{{ $labels.pod }})",
                "The NVIDIA driver reported XID {{ $value }} on GPU {{ $labels.gpu }} ({{ $labels.modelName }}, "
                "{{ $labels.UUID }}) of node {{ $labels.Hostname }}. Look the code up in NVIDIA's XID catalog "
                "(docs.nvidia.com/deploy/xid-errors). 13, 31, 43 and 45 are usually the application (check the "
                "pod's log); 48, 63, 64, 74, 79, 92, 94, 95 and 119 point at the GPU or its memory: cordon and "
                "drain the node (`kubectl drain <node> --ignore-daemonsets --delete-emptydir-data`) so Karpenter "
                "replaces it.",
            ),
            _alert(
                GPU_MEMORY_FULL,
                f"max by ({gpu_labels}) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))"
                f" > {alerts_cfg.gpu_memory_used_ratio:g}",
                GPU_MEMORY_FOR,
                WARNING,
                "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is {{ $value | humanizePercentage }} full "
                "(used by {{ $labels.namespace }}/{{ $labels.pod }})",
                f"GPU memory in use stayed above {alerts_cfg.gpu_memory_used_ratio:.0%} for {GPU_MEMORY_FOR}, "
                "beyond what the serving engines reserve (vLLM's gpuMemoryUtilization, TensorRT-LLM's KV-cache "
                "fraction): the next allocation (a larger batch, CUDA graphs, another process) may fail with out "
                "of memory. Lower vllm.gpuMemoryUtilization or engine.kvCacheFreeGpuMemFraction, or check for a "
                "second process on the GPU (`kubectl debug node/{{ $labels.Hostname }}`, nvidia-smi).",
            ),
        ]
    rules.append(
        _alert(
            ENGINE_BUILD_FAILED,
            f'max by (namespace, job_name) (kube_job_status_failed{{job_name=~"{engine_build.JOB_NAME_PREFIX}.+"}})'
            " > 0",
            "0s",
            WARNING,
            "TensorRT-LLM engine build {{ $labels.namespace }}/{{ $labels.job_name }} failed",
            "The engine build Job of model {{ $labels.namespace }} failed, so its Triton pods have no engine "
            "to load (`pulumi up` reported the log tail too). Read the whole log with "
            "`kubectl -n {{ $labels.namespace }} logs job/{{ $labels.job_name }} -c build`, fix the cause "
            "(gated model without hfToken, engine options too large for the GPU, the Job's deadline "
            "engine.timeoutMinutes) and run `pulumi up` again: it replaces the failed Job.",
        )
    )
    return rules


def alert_rule_groups(monitoring: MonitoringConfig, models: Sequence[ModelConfig]) -> list[dict[str, Any]]:
    """The alerting group, as a PrometheusRule's `spec.groups` and a Prometheus rule file take them.

    Evaluated at the scrape interval like the recording rules it reads.
    """
    return [
        {
            "name": ALERT_GROUP,
            "interval": monitoring.scrape_interval,
            "rules": model_alerts(monitoring.alerts, models) + cluster_alerts(monitoring),
        }
    ]


def alert_rule_manifest(namespace: str, monitoring: MonitoringConfig, models: Sequence[ModelConfig]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": ALERT_RULE_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tritonllm"},
        },
        "spec": {"groups": alert_rule_groups(monitoring, models)},
    }
