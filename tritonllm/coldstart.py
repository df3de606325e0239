"""`python -m tritonllm coldstart --stack NAME --model M`: add one replica and show where its start-up time goes.

On a deployed stack this raises the model's replica floor by one (its HPA's minReplicas; for a model that
scales to zero its KEDA ScaledObject's minReplicaCount, since KEDA owns that HPA; its Deployment's replicas
when it has neither), waits for the new pod to serve, sends it one streamed request straight through a port-forward (so
no older replica answers), then prints each phase with the moment it ended (from the scale-up) and how
long it took:

    node launched    Karpenter's NodeClaim condition Launched (the EC2 instance exists)
    node ready       the NodeClaim's Initialized (node Ready, GPUs advertised), else the Node's Ready
    weights staged   the staging init container(s) (`stage-*`): started -> terminated
    image pulled     kubelet's Pulling -> Pulled events of the serving container (`triton`)
    model loaded     Triton's "successfully loaded" log line, else the pod's Ready condition
    first token      the first streamed chunk of a real request to the new pod

Karpenter v1.14.1 records Launched/Registered/Initialized as NodeClaim status conditions, not events
(kubernetes-sigs/karpenter v1.14.1 pkg/apis/v1/nodeclaim_status.go); the pod's `Nominated` event names the
NodeClaim ("Pod should schedule on: nodeclaim/NAME", pkg/controllers/provisioning/scheduling/events.go).
Kubelet pulls an image just before it starts that container (kubernetes v1.34 pkg/kubelet/kuberuntime/
kuberuntime_container.go startContainer, step 1), so the init containers (staging) run before
the serving image is pulled; phases are printed in the order they ended.

The phase report is computed by pure functions from a recorded sequence (`records_from_cluster` turns the
pod, its events, the NodeClaim, the Node and the log into `Record`s; `phases` times them); `main` is the
shell that talks to the cluster with the `kubernetes` client and your kubeconfig, and `kubectl
port-forward` for the request. `--keep` leaves the extra replica; otherwise the floor is put back.
Exit codes: 0 the pod served a token, 1 it did not within --timeout, 2 bad arguments or stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVING_CONTAINER = "triton"  # components/serving/builders/triton_manifests.py deployment_manifest
STAGING_PREFIX = "stage-"  # the staging init containers: stage-engine, stage-repository, ...
DEPLOYMENT = "triton"  # triton_manifests.DEPLOYMENT_NAME (and the HPA's name)
NODECLAIM_GROUP, NODECLAIM_VERSION, NODECLAIM_PLURAL = "karpenter.sh", "v1", "nodeclaims"
# A model with minReplicas 0: its ScaledObject (components/serving/builders/scale_to_zero.py, named like the
# Deployment) and KEDA's own default maxReplicaCount (keda v2.20.2 apis/keda/v1alpha1/scaledobject_types.go).
SCALEDOBJECT_GROUP, SCALEDOBJECT_VERSION, SCALEDOBJECT_PLURAL = "keda.sh", "v1alpha1", "scaledobjects"
KEDA_DEFAULT_MAX_REPLICAS = 100
# Triton core logs this when a model is ready (server src/model_lifecycle.cc, "successfully loaded '<name>'").
LOADED = re.compile(r"successfully loaded '([^']+)'")
NOMINATED = re.compile(r"nodeclaim/([a-z0-9.-]+)")
PULL_TOOK = re.compile(r" in ([0-9hms.]+) ")
IMAGE_SIZE = re.compile(r"Image size: ([0-9]+) bytes")


# --------------------------------------------------------------------------- the recorded sequence


@dataclass(frozen=True)
class Record:
    """One timed observation: where it came from, what happened, to which container, and its text."""

    at: datetime  # UTC
    source: str  # NodeClaim | Node | Pod | Log | Request
    reason: str  # Launched, Initialized, Ready, Pulling, Pulled, Started, Terminated, Loaded, Sent, FirstToken
    container: str = ""  # for Pod records: the container it is about
    message: str = ""


@dataclass(frozen=True)
class Phase:
    name: str
    end: datetime | None  # None: not seen
    took_s: float | None  # from its own start marker, else from the end of the phase before it
    at_s: float | None  # end, seconds after the scale-up
    note: str = ""


PHASES = ("node launched", "node ready", "weights staged", "image pulled", "model loaded", "first token")


def _container_matches(name: str, want: str | None) -> bool:
    """None: any; a name ending in "-" is a prefix (the staging init containers); else the exact name."""
    return want is None or (name.startswith(want) if want.endswith("-") else name == want)


def _first(records: Iterable[Record], source: str, reason: str, container: str | None = None) -> Record | None:
    found = [
        r for r in records if r.source == source and r.reason == reason and _container_matches(r.container, container)
    ]
    return min(found, key=lambda r: r.at) if found else None


def _last(records: Iterable[Record], source: str, reason: str, container: str) -> Record | None:
    found = [
        r for r in records if r.source == source and r.reason == reason and _container_matches(r.container, container)
    ]
    return max(found, key=lambda r: r.at) if found else None


def _markers(records: Sequence[Record]) -> dict[str, tuple[Record | None, Record | None, str]]:
    """Per phase: (start marker, end marker, note). A missing start means "since the previous phase"."""
    pulled = _first(records, "Pod", "Pulled", SERVING_CONTAINER)
    pull_note = ""
    if pulled is not None:
        if "already present" in pulled.message:
            pull_note = "image already on the node"
        else:
            took = PULL_TOOK.search(pulled.message)
            size = IMAGE_SIZE.search(pulled.message)
            pull_note = ", ".join(
                x
                for x in (
                    f"kubelet: {took.group(1)}" if took else "",
                    f"{int(size.group(1)) / 1e9:.1f} GB" if size else "",
                )
                if x
            )
    ready = _first(records, "NodeClaim", "Initialized") or _first(records, "Node", "Ready")
    loaded = _first(records, "Log", "Loaded")
    pod_ready = _first(records, "Pod", "Ready")
    already = pulled is not None and "already present" in pulled.message
    token = _first(records, "Request", "FirstToken")
    return {
        "node launched": (_first(records, "NodeClaim", "Created"), _first(records, "NodeClaim", "Launched"), ""),
        "node ready": (
            _first(records, "NodeClaim", "Launched"),
            ready,
            "" if ready is None or ready.source == "NodeClaim" else "Node Ready (no NodeClaim)",
        ),
        "weights staged": (
            _first(records, "Pod", "Started", STAGING_PREFIX),
            _last(records, "Pod", "Terminated", STAGING_PREFIX),
            "",
        ),
        "image pulled": (
            pulled if already else _first(records, "Pod", "Pulling", SERVING_CONTAINER),
            pulled,
            pull_note,
        ),
        "model loaded": (
            _first(records, "Pod", "Started", SERVING_CONTAINER),
            loaded or pod_ready,
            "" if loaded is not None or pod_ready is None else "pod Ready (no Triton log line)",
        ),
        "first token": (_first(records, "Request", "Sent"), token, token.message if token is not None else ""),
    }


def phases(records: Sequence[Record], scaled_at: datetime) -> list[Phase]:
    """Time every phase from a recorded sequence; phases come out in the order they ended (not seen: last).

    took = end - own start marker when that was recorded, else end - the end of the phase before it in
    time (or the scale-up). A phase that ended before the scale-up (the pod landed on a node that was
    already up) is reported as "existing node", took 0.
    """
    seen: list[tuple[str, Record | None, Record, str]] = []
    missing: list[Phase] = []
    for name, (start, end, note) in _markers(records).items():
        if end is None:
            missing.append(Phase(name, None, None, None, "not seen"))
        else:
            seen.append((name, start, end, note))
    seen.sort(key=lambda item: (item[2].at, PHASES.index(item[0])))
    out: list[Phase] = []
    previous_end = scaled_at
    for name, start, end, note in seen:
        if end.at <= scaled_at:
            out.append(Phase(name, end.at, 0.0, 0.0, "existing node"))
            continue
        begin = start.at if start is not None and start.at >= scaled_at else previous_end
        out.append(Phase(name, end.at, (end.at - begin).total_seconds(), (end.at - scaled_at).total_seconds(), note))
        previous_end = max(previous_end, end.at)
    return out + missing


def total_s(result: Sequence[Phase]) -> float | None:
    """Scale-up to first token, when the first token was seen."""
    token = next((p for p in result if p.name == "first token"), None)
    return token.at_s if token is not None else None


def format_report(result: Sequence[Phase], goal_s: float | None = None) -> str:
    lines = [f"{'phase':<16} {'at':>9} {'took':>9}  note"]
    for p in result:
        at = f"+{p.at_s:.1f}s" if p.at_s is not None else "-"
        took = f"{p.took_s:.1f}s" if p.took_s is not None else "-"
        lines.append(f"{p.name:<16} {at:>9} {took:>9}  {p.note}".rstrip())
    total = total_s(result)
    if total is None:
        lines.append("total: no first token, see the phases not seen")
    else:
        verdict = "" if goal_s is None else (f" (goal < {goal_s:.0f}s: {'met' if total < goal_s else 'missed'})")
        lines.append(f"total: {total:.1f}s from scale-up to first token{verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- from what the cluster says


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 (Kubernetes' timestamps, with or without fractions) to an aware UTC datetime."""
    if not value:
        return None
    # Python 3.11's fromisoformat reads the nanoseconds of logs read with timestamps (keeping microseconds).
    return datetime.fromisoformat(value).astimezone(UTC)


def _container_of(field_path: str) -> str:
    """`spec.containers{triton}` / `spec.initContainers{stage-engine}` -> the container name."""
    match = re.search(r"\{([^}]+)\}", field_path or "")
    return match.group(1) if match else ""


def nominated_nodeclaim(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The NodeClaim Karpenter nominated the pod for, from its `Nominated` event."""
    for event in events:
        if event.get("reason") == "Nominated":
            match = NOMINATED.search(event.get("message", ""))
            if match:
                return match.group(1)
    return None


def log_records(log_text: str, model: str) -> list[Record]:
    """Triton's "successfully loaded '<model>'" from a log read with timestamps=True (RFC 3339 prefix)."""
    out = []
    for line in log_text.splitlines():
        stamp, _, rest = line.partition(" ")
        match = LOADED.search(rest)
        if match and match.group(1) == model:
            at = parse_time(stamp)
            if at is not None:
                out.append(Record(at, "Log", "Loaded", SERVING_CONTAINER, rest.strip()))
    return out


def records_from_cluster(
    pod: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    nodeclaim: Mapping[str, Any] | None,
    node: Mapping[str, Any] | None,
    log_text: str,
    model: str,
) -> list[Record]:
    """Records from JSON as the API returns it (`kubectl get -o json`): the pod, its events, its NodeClaim and
    Node (None when not found), and the serving container's log read with timestamps."""
    out: list[Record] = []
    if nodeclaim is not None:
        created = parse_time(nodeclaim.get("metadata", {}).get("creationTimestamp"))
        if created is not None:
            out.append(Record(created, "NodeClaim", "Created"))
        for cond in nodeclaim.get("status", {}).get("conditions", []):
            at = parse_time(cond.get("lastTransitionTime"))
            if cond.get("status") == "True" and at is not None:
                out.append(Record(at, "NodeClaim", cond["type"]))
    if node is not None:
        for cond in node.get("status", {}).get("conditions", []):
            at = parse_time(cond.get("lastTransitionTime"))
            if cond.get("type") == "Ready" and cond.get("status") == "True" and at is not None:
                out.append(Record(at, "Node", "Ready"))
    for event in events:
        at = parse_time(event.get("eventTime") or event.get("firstTimestamp") or event.get("lastTimestamp"))
        if at is None:
            continue
        container = _container_of(event.get("involvedObject", {}).get("fieldPath", ""))
        out.append(Record(at, "Pod", event.get("reason", ""), container, event.get("message", "")))
    status = pod.get("status", {})
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            state = cs.get("state", {})
            terminated = state.get("terminated") or cs.get("lastState", {}).get("terminated")
            if terminated and terminated.get("exitCode") == 0:
                for reason, key in (("Started", "startedAt"), ("Terminated", "finishedAt")):
                    at = parse_time(terminated.get(key))
                    if at is not None:
                        out.append(Record(at, "Pod", reason, cs["name"]))
            started = parse_time((state.get("running") or {}).get("startedAt"))
            if started is not None:
                out.append(Record(started, "Pod", "Started", cs["name"]))
    for cond in status.get("conditions", []):
        at = parse_time(cond.get("lastTransitionTime"))
        if cond.get("type") == "Ready" and cond.get("status") == "True" and at is not None:
            out.append(Record(at, "Pod", "Ready", SERVING_CONTAINER))
    return out + log_records(log_text, model)


# --------------------------------------------------------------------------- who owns the replica count


@dataclass(frozen=True)
class Floor:
    """What holds the model's replica count, and the patches that raise it by one and put it back.

    kind: "scaledobject" (minReplicas 0: KEDA's ScaledObject), "hpa" (the plain HPA) or "deployment" (no HPA).
    KEDA owns the HPA of a ScaledObject: it writes the HPA back on every change of the HPA's spec (keda
    v2.20.2 controllers/keda/scaledobject_controller.go watches the HPAs it owns; controllers/keda/hpa.go
    updateHPAIfNeeded), and at zero replicas the HPA does not scale at all. So for such a model the floor
    is the ScaledObject's minReplicaCount: below it KEDA scales the Deployment up itself (pkg/scaling/
    executor/scale_scaledobjects.go, "currentReplicas < minReplicas").
    """

    kind: str
    raise_patch: dict[str, Any]
    restore_patch: dict[str, Any]


def floor_for(kind: str, replicas: int, old_min: int | None = None, old_max: int | None = None) -> Floor:
    """The patches for one more replica than `replicas` (the ceiling raised too when it is reached)."""
    target = replicas + 1
    if kind == "deployment":
        return Floor(kind, {"spec": {"replicas": target}}, {"spec": {"replicas": replicas}})
    if old_max is None:
        raise ValueError(f"{kind}: the current ceiling is needed")
    keys = {"hpa": ("minReplicas", "maxReplicas"), "scaledobject": ("minReplicaCount", "maxReplicaCount")}[kind]
    low, high = keys
    return Floor(
        kind,
        {"spec": {low: target, high: max(old_max, target)}},
        {"spec": {low: old_min, high: old_max}},
    )


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True, help="stack whose Pulumi.<stack>.yaml to read")
    parser.add_argument("--model", required=True, help="models[].name (also its namespace)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the pod to serve")
    parser.add_argument("--prompt", default="Say hello.", help="the request timed for the first token")
    parser.add_argument("--keep", action="store_true", help="leave the extra replica (default: scale back)")
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary (for the port-forward)")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--goal", type=float, default=120.0, help="seconds the total is compared with (default %(default)s)"
    )


def load_model(stack: str, model_name: str):
    from components.config import SECRET_KEYS, parse_stack_config

    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"coldstart: no stack file {path.name}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    values = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("tritonllm:")}
    cfg = parse_stack_config(values, set(SECRET_KEYS))  # no secret is needed to find the model
    models = {m.name: m for m in cfg.models}
    if model_name not in models:
        raise SystemExit(f"coldstart: stack {stack} has no model {model_name!r} (models: {sorted(models)})")
    model = models[model_name]
    if model.multi_node is not None:
        raise SystemExit("coldstart: multi-node models run as a LeaderWorkerSet; this command times Deployments")
    return model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def port_forward(kubectl: str, namespace: str, pod: str, remote: int, context: str | None) -> Iterator[int]:
    local = _free_port()
    cmd = [kubectl, *(["--context", context] if context else []), "-n", namespace, "port-forward"]
    proc = subprocess.Popen(
        [*cmd, f"pod/{pod}", f"{local}:{remote}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> REMOTE" once it listens
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def first_token(model: Any, port: int, prompt: str, timeout: float) -> tuple[datetime, datetime | None, str]:
    """Send one streamed request to the pod; (sent, first chunk or None, note). A model that cannot stream
    over KServe HTTP (not decoupled) is asked once more without streaming: its whole answer is then the
    first token, and the note says so."""
    from components.serving.builders.model_repository import served_model_name
    from tritonllm._llm_io import GenerationSettings

    settings = GenerationSettings(max_tokens=16)
    name = served_model_name(model)
    note = ""
    for stream in (True, False):
        sent = datetime.now(UTC)
        if model.openai.enabled:
            from tritonllm import openai_client

            results = asyncio.run(
                openai_client.run_requests(
                    f"http://127.0.0.1:{port}/v1", name, [prompt], settings, stream=stream, timeout=timeout
                )
            )
        else:
            from tritonllm import kserve_client

            _, results = asyncio.run(
                kserve_client.run_requests(
                    f"http://127.0.0.1:{port}",
                    name,
                    [prompt],
                    settings,
                    protocol="http",
                    stream=stream,
                    timeout=timeout,
                )
            )
        result = results[0]
        if result.ok:
            seconds = result.ttft_s if result.ttft_s is not None else result.latency_s
            return sent, sent + timedelta(seconds=seconds), note or ("" if stream else "whole answer (no stream)")
        note = f"streamed request failed: {result.error}; "
    return sent, None, note + f"unstreamed request failed: {result.error}"


def main(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.stack, args.model)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a ConfigError names the key
        print(f"coldstart: {exc}", file=sys.stderr)
        return 2
    from kubernetes import client, config

    from components.serving.builders import openai as openai_frontend
    from components.serving.builders import triton_manifests as tm

    config.load_kube_config(context=args.context)
    api = client.ApiClient()
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    autoscaling, custom = client.AutoscalingV2Api(), client.CustomObjectsApi()
    namespace = model.name
    selector = ",".join(f"{k}={v}" for k, v in tm.pod_labels(model).items())
    before = {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items}

    replicas = apps.read_namespaced_deployment_scale(DEPLOYMENT, namespace).spec.replicas or 0
    # Raise the floor of whatever owns the replica count, or it scales the new replica away again.
    if model.scales_to_zero:
        spec = custom.get_namespaced_custom_object(
            SCALEDOBJECT_GROUP, SCALEDOBJECT_VERSION, namespace, SCALEDOBJECT_PLURAL, DEPLOYMENT
        )["spec"]
        floor = floor_for(
            "scaledobject",
            replicas,
            spec.get("minReplicaCount", 0),
            spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS),
        )
    else:
        hpa = None
        with contextlib.suppress(client.ApiException):
            hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(DEPLOYMENT, namespace)
        floor = (
            floor_for("hpa", replicas, hpa.spec.min_replicas or 1, hpa.spec.max_replicas)
            if hpa is not None
            else floor_for("deployment", replicas)
        )

    def patch_floor(body: dict[str, Any]) -> None:
        if floor.kind == "scaledobject":
            custom.patch_namespaced_custom_object(
                SCALEDOBJECT_GROUP, SCALEDOBJECT_VERSION, namespace, SCALEDOBJECT_PLURAL, DEPLOYMENT, body
            )
        elif floor.kind == "hpa":
            autoscaling.patch_namespaced_horizontal_pod_autoscaler(DEPLOYMENT, namespace, body)
        else:
            apps.patch_namespaced_deployment_scale(DEPLOYMENT, namespace, body)

    scaled_at = datetime.now(UTC)
    patch_floor(floor.raise_patch)
    print(
        f"coldstart: {namespace}/{DEPLOYMENT} {replicas} -> {replicas + 1} replicas ({floor.kind}) "
        f"at {scaled_at:%H:%M:%S} UTC"
    )

    deadline = time.monotonic() + args.timeout
    pod_name, pod = None, None
    records: list[Record] = []
    try:
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
            new = [p for p in pods if p.metadata.name not in before]
            if new:
                pod_name = new[0].metadata.name
                pod = api.sanitize_for_serialization(new[0])
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
                )
                if ready:
                    break
            time.sleep(5)
        if pod_name is None or pod is None:
            print(f"coldstart: no new pod within {args.timeout:.0f}s", file=sys.stderr)
            return 1
        remote = openai_frontend.OPENAI_PORT if model.openai.enabled else tm.HTTP_PORT
        sent, token, note = datetime.now(UTC), None, "pod never Ready"
        if time.monotonic() < deadline:
            with port_forward(args.kubectl, namespace, pod_name, remote, args.context) as port:
                sent, token, note = first_token(model, port, args.prompt, max(30.0, deadline - time.monotonic()))
        records.append(Record(sent, "Request", "Sent"))
        if token is not None:
            records.append(Record(token, "Request", "FirstToken", message=note))
        pod = api.sanitize_for_serialization(core.read_namespaced_pod(pod_name, namespace))
        events = [
            api.sanitize_for_serialization(e)
            for e in core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod_name}").items
        ]
        node_name = pod.get("spec", {}).get("nodeName")
        nodeclaim_name = nominated_nodeclaim(events)
        nodeclaim = None
        for item in custom.list_cluster_custom_object(NODECLAIM_GROUP, NODECLAIM_VERSION, NODECLAIM_PLURAL)["items"]:
            if item["metadata"]["name"] == nodeclaim_name or item.get("status", {}).get("nodeName") == node_name:
                nodeclaim = item
                break
        node = api.sanitize_for_serialization(core.read_node(node_name)) if node_name else None
        log = core.read_namespaced_pod_log(pod_name, namespace, container=SERVING_CONTAINER, timestamps=True)
        records += records_from_cluster(pod, events, nodeclaim, node, log, model.name)
        print(f"coldstart: pod {pod_name} on node {node_name} (NodeClaim {nodeclaim_name or 'none: existing node'})")
        if note:
            print(f"coldstart: first request: {note}", file=sys.stderr)
        result = phases(records, scaled_at)
        print(format_report(result, args.goal))
        return 0 if token is not None else 1
    finally:
        if not args.keep:
            patch_floor(floor.restore_patch)
            print("coldstart: replica floor restored (--keep leaves the extra replica)")
