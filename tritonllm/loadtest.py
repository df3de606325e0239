"""`tritonllm loadtest`: load a deployed model from inside the cluster and watch its HPA react.

After `pulumi up`, this runs a Kubernetes Job next to the model (in its namespace, against its
`triton` Service, so neither the gateway nor your laptop's network is in the way) that steps or
ramps closed-loop concurrency for a fixed time per level, while this command polls the model's
HPA every few seconds: replica count (current and desired) and the metric value it scales on.
When the Job ends it reads the Job's log and prints latency and throughput per level, then the
HPA timeline:

    python -m tritonllm loadtest --model llama-3-2-1b --steps 1,8,32 --step-seconds 180
    python -m tritonllm loadtest --model llama-3-2-1b --ramp 1:64:5 --step-seconds 120 --max-tokens 256
    python -m tritonllm loadtest --model llama-3-2-1b --steps 4 --dry-run     # print the manifests only

The Job runs `tritonllm/loadtest_worker.py` (standard library only, with the client's model I/O
contract `_llm_io.py`) in the plain Python image pinned in components/catalog/versions.py, both files
mounted from a ConfigMap: no image to build, and the same request shape as `tritonllm client`.
Manifests, log parsing, the HPA reading and the report are pure functions; `main` is the shell
that talks to the cluster (the `kubernetes` client and your kubeconfig).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER_FILES = ("__init__.py", "_llm_io.py", "loadtest_worker.py")
MOUNT = "/opt/tritonllm"
SERVICE = "triton"  # components/serving/builders/triton_manifests.py SERVICE_NAME
HTTP_PORT = 8000
LABEL = "tritonllm.io/loadtest"


# --------------------------------------------------------------------------- load profile


@dataclass(frozen=True)
class Profile:
    levels: tuple[int, ...]  # closed-loop concurrency per step
    step_seconds: int

    @property
    def seconds(self) -> int:
        return len(self.levels) * self.step_seconds


def parse_profile(steps: str | None, ramp: str | None, step_seconds: int) -> Profile:
    """`--steps 1,8,32` or `--ramp START:END:COUNT` (COUNT levels evenly from START to END)."""
    if (steps is None) == (ramp is None):
        raise ValueError("give exactly one of --steps (e.g. 1,8,32) or --ramp (e.g. 1:64:5)")
    if step_seconds < 10:
        raise ValueError(f"--step-seconds {step_seconds}: use at least 10 s per level")
    if steps is not None:
        try:
            levels = tuple(int(v) for v in steps.split(","))
        except ValueError:
            raise ValueError(f"--steps {steps!r}: expected concurrency levels like 1,8,32") from None
    else:
        assert ramp is not None  # exactly one of them is set (checked above)
        try:
            start, end, count = (int(v) for v in ramp.split(":"))
        except ValueError:
            raise ValueError(f"--ramp {ramp!r}: expected START:END:COUNT like 1:64:5") from None
        if count < 2:
            raise ValueError(f"--ramp {ramp!r}: COUNT must be at least 2")
        # evenly spaced, halves rounded up (1:64:5 -> 1, 17, 33, 48, 64)
        levels = tuple(math.floor(start + (end - start) * i / (count - 1) + 0.5) for i in range(count))
    if not levels or min(levels) < 1 or max(levels) > 1024:
        raise ValueError(f"concurrency levels {levels}: each must be 1..1024")
    return Profile(levels, step_seconds)


# --------------------------------------------------------------------------- manifests


def service_url(namespace: str) -> str:
    return f"http://{SERVICE}.{namespace}.svc.cluster.local:{HTTP_PORT}"


def job_name(model: str, stamp: str) -> str:
    return f"loadtest-{model}"[:48].rstrip("-") + f"-{stamp}"


def manifests(
    *,
    name: str,
    namespace: str,
    model: str,
    url: str,
    profile: Profile,
    max_tokens: int,
    image: str,
    sources: dict[str, str],
    prompts: list[str] | None = None,
    request_timeout: int = 600,
) -> list[dict[str, Any]]:
    """The ConfigMap (worker code, prompts) and the Job that runs the load."""
    labels = {"app.kubernetes.io/name": "tritonllm-loadtest", "app.kubernetes.io/part-of": "tritonllm", LABEL: name}
    data = {f"tritonllm.{f}": sources[f] for f in WORKER_FILES}
    if prompts:
        data["prompts.txt"] = "\n".join(prompts) + "\n"
    items = [{"key": f"tritonllm.{f}", "path": f"tritonllm/{f}"} for f in WORKER_FILES]
    if prompts:
        items.append({"key": "prompts.txt", "path": "prompts.txt"})
    command = [
        "python",
        "-m",
        "tritonllm.loadtest_worker",
        "--url",
        url,
        "--model",
        model,
        "--levels",
        ",".join(str(v) for v in profile.levels),
        "--level-seconds",
        str(profile.step_seconds),
        "--max-tokens",
        str(max_tokens),
        "--timeout",
        str(request_timeout),
    ]
    if prompts:
        command += ["--prompts", f"{MOUNT}/prompts.txt"]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a failed load test is a result: never rerun it
            # the profile, plus the last requests' timeout, plus image pull
            "activeDeadlineSeconds": profile.seconds + request_timeout + 300,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "runAsGroup": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # CPU nodes only: GPU nodes carry the nvidia.com/gpu taint, which this does not tolerate.
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [
                        {
                            "name": "load",
                            "image": image,
                            "command": command,
                            "workingDir": MOUNT,
                            "env": [
                                {"name": "PYTHONPATH", "value": MOUNT},
                                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                            ],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "256Mi"},
                                "limits": {"cpu": "2", "memory": "512Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "code", "mountPath": MOUNT, "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "code", "configMap": {"name": name, "items": items}}],
                },
            },
        },
    }
    return [config_map, job]


def worker_sources() -> dict[str, str]:
    return {f: (PACKAGE_DIR / f).read_text() for f in WORKER_FILES}


# --------------------------------------------------------------------------- report


def parse_worker_log(text: str) -> list[dict[str, Any]]:
    """The worker's JSON lines (other log lines, e.g. from the runtime, are skipped)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]  # nearest rank


def summarize(records: list[dict[str, Any]], step_seconds: float) -> list[dict[str, Any]]:
    """Per level: requests, errors, request and response (~token) throughput, TTFT and latency percentiles.

    A request belongs to the level it started in; throughput divides by the level's duration.
    """
    rows = []
    steps = [r for r in records if r["event"] == "step"]
    for step in steps:
        done = [r for r in records if r["event"] == "request" and r["step"] == step["step"]]
        ok = [r for r in done if r.get("ok")]
        latency = [r["latency"] * 1000 for r in ok]
        ttft = [r["ttft"] * 1000 for r in ok if r.get("ttft") is not None]
        rows.append(
            {
                "step": step["step"],
                "concurrency": step["concurrency"],
                "start_s": step["start"],
                "requests": len(done),
                "errors": len(done) - len(ok),
                "requests_per_s": len(ok) / step_seconds,
                "responses_per_s": sum(r["responses"] for r in ok) / step_seconds,
                **{f"ttft_ms_p{q}": _pct(ttft, q) for q in (50, 90, 99)},
                **{f"latency_ms_p{q}": _pct(latency, q) for q in (50, 90, 99)},
                "latency_ms_avg": statistics.fmean(latency) if latency else None,
            }
        )
    return rows


_SUFFIX = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as the HPA reports metric values ("12500m", "3", "1.5k")."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    for suffix in ("Ki", "Mi", "Gi", "m", "k", "M", "G"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


@dataclass(frozen=True)
class HpaSample:
    t: float  # seconds since the Job was created
    replicas: int
    desired: int
    metric: str
    value: float | None
    target: float | None
    conditions: tuple[str, ...] = field(default=())


def hpa_sample(hpa: dict[str, Any], t: float) -> HpaSample:
    """Replicas and the Pods metric's value/target from an autoscaling/v2 HPA object (as the API returns it)."""
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    wanted = next((m for m in spec.get("metrics") or [] if m.get("type") == "Pods"), None)
    name = wanted["pods"]["metric"]["name"] if wanted else ""
    target = wanted["pods"]["target"].get("averageValue") if wanted else None
    value = None
    for current in status.get("currentMetrics") or []:
        pods = current.get("pods") or {}
        if current.get("type") == "Pods" and (pods.get("metric") or {}).get("name") == name:
            average = (pods.get("current") or {}).get("averageValue")
            value = parse_quantity(average) if average is not None else None
    trouble = tuple(
        f"{c.get('type')}={c.get('status')} ({c.get('reason')})"
        for c in status.get("conditions") or []
        if (c.get("type"), c.get("status")) in (("ScalingActive", "False"), ("AbleToScale", "False"))
    )
    return HpaSample(
        t,
        int(status.get("currentReplicas") or 0),
        int(status.get("desiredReplicas") or 0),
        name,
        value,
        parse_quantity(target) if target is not None else None,
        trouble,
    )


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def format_report(rows: list[dict[str, Any]], samples: list[HpaSample]) -> str:
    lines = [
        f"{'level':>5} {'conc':>4} {'reqs':>5} {'err':>4} {'req/s':>7} {'resp/s':>8} "
        f"{'TTFT p50/p90/p99 ms':>22} {'latency p50/p90/p99 ms':>26}"
    ]
    for r in rows:
        ttft = "/".join(_ms(r[f"ttft_ms_p{q}"]) for q in (50, 90, 99))
        lat = "/".join(_ms(r[f"latency_ms_p{q}"]) for q in (50, 90, 99))
        lines.append(
            f"{r['step']:>5} {r['concurrency']:>4} {r['requests']:>5} {r['errors']:>4} "
            f"{r['requests_per_s']:>7.2f} {r['responses_per_s']:>8.1f} {ttft:>22} {lat:>26}"
        )
    if samples:
        metric = samples[-1].metric or "metric"
        lines += [
            "",
            f"HPA over time ({metric}; target {samples[-1].target if samples[-1].target is not None else '?'}):",
            f"{'t s':>6} {'replicas':>8} {'desired':>7} {'value':>10}  notes",
        ]
        previous = None
        for s in samples:
            row = (s.replicas, s.desired, s.value, s.conditions)
            if row == previous and s is not samples[-1]:
                continue  # print changes only
            previous = row
            value = "-" if s.value is None else f"{s.value:.3f}"
            lines.append(f"{s.t:>6.0f} {s.replicas:>8} {s.desired:>7} {value:>10}  {' '.join(s.conditions)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the shell


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="served model name (models[].name; also its namespace)")
    parser.add_argument("--namespace", default=None, help="model namespace (default: the model name)")
    parser.add_argument("--steps", default=None, help="concurrency per level, e.g. 1,8,32")
    parser.add_argument("--ramp", default=None, help="START:END:COUNT levels, e.g. 1:64:5")
    parser.add_argument("--step-seconds", type=int, default=120, help="seconds per level (default 120)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompts", type=Path, default=None, help="prompts file, one per line")
    parser.add_argument("--url", default=None, help="Triton HTTP URL seen from the Job (default: the model's Service)")
    parser.add_argument("--hpa", default=None, help="HPA name (default: the model name)")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="HPA polling period")
    parser.add_argument("--image", default=None, help="container image (default: components.versions.PYTHON_IMAGE)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="print the manifests as YAML and exit")
    parser.add_argument("--keep", action="store_true", help="leave the Job and ConfigMap (else deleted at the end)")


def main(args: argparse.Namespace) -> int:
    try:
        profile = parse_profile(args.steps, args.ramp, args.step_seconds)
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    namespace = args.namespace or args.model
    if args.image is None:
        from components.catalog import versions

        args.image = versions.PYTHON_IMAGE
    prompts = None
    if args.prompts:
        prompts = [p.strip() for p in args.prompts.read_text().splitlines() if p.strip()]
    name = job_name(args.model, time.strftime("%H%M%S"))
    objs = manifests(
        name=name,
        namespace=namespace,
        model=args.model,
        url=args.url or service_url(namespace),
        profile=profile,
        max_tokens=args.max_tokens,
        image=args.image,
        sources=worker_sources(),
        prompts=prompts,
    )
    if args.dry_run:
        import yaml

        print(yaml.safe_dump_all(objs, sort_keys=False))
        return 0
    return _run(args, namespace, name, objs, profile)


def _run(args: argparse.Namespace, namespace: str, name: str, objs: list[dict], profile: Profile) -> int:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    config.load_kube_config()
    core, batch, autoscaling = client.CoreV1Api(), client.BatchV1Api(), client.AutoscalingV2Api()
    api = client.ApiClient()
    core.create_namespaced_config_map(namespace, objs[0])
    batch.create_namespaced_job(namespace, objs[1])
    print(
        f"loadtest: Job {namespace}/{name}: levels {list(profile.levels)} x {profile.step_seconds} s "
        f"({profile.seconds} s); polling HPA {namespace}/{args.hpa or args.model} every {args.poll_seconds:g} s",
        file=sys.stderr,
    )
    samples: list[HpaSample] = []
    started = time.monotonic()
    deadline = started + objs[1]["spec"]["activeDeadlineSeconds"] + 60
    status = None
    try:
        while time.monotonic() < deadline:
            try:
                hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(args.hpa or args.model, namespace)
                sample = hpa_sample(api.sanitize_for_serialization(hpa), time.monotonic() - started)
                samples.append(sample)
                print(
                    f"  t={sample.t:5.0f}s replicas {sample.replicas} (desired {sample.desired}) "
                    f"{sample.metric} {sample.value if sample.value is not None else '-'}",
                    file=sys.stderr,
                )
            except ApiException as exc:
                print(f"  HPA not readable: {exc.status} {exc.reason}", file=sys.stderr)
            job = batch.read_namespaced_job_status(name, namespace).status
            if job.succeeded or job.failed:
                status = "succeeded" if job.succeeded else "failed"
                break
            time.sleep(args.poll_seconds)
        pods = core.list_namespaced_pod(namespace, label_selector=f"{LABEL}={name}").items
        log = core.read_namespaced_pod_log(pods[0].metadata.name, namespace) if pods else ""
    finally:
        if not args.keep:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            core.delete_namespaced_config_map(name, namespace)
    records = parse_worker_log(log)
    errors = [r for r in records if r["event"] == "error"]
    rows = summarize(records, profile.step_seconds)
    print(format_report(rows, samples))
    if args.output:
        args.output.write_text(
            json.dumps({"levels": rows, "hpa": [s.__dict__ for s in samples]}, indent=2, default=list)
        )
    if errors or status != "succeeded":
        print(f"loadtest: Job {status or 'timed out'}; {errors[0]['error'] if errors else ''}", file=sys.stderr)
        return 1
    return 0
