"""A real Prometheus (Debian package `prometheus`) scraping a local Triton, with the
project's recording rules loaded, plus the helpers tests and benchmarks use on it.

    with LocalPrometheus(targets=[ScrapeTarget("127.0.0.1:8002", {"namespace": "smollm2", "pod": "p"})],
                         rule_groups=metrics.rule_groups()) as prom:
        prom.wait_for_series('nv_inference_request_success{pod="p"}')
        prom.query("namespace_pod:triton_request_rate")   # [(labels, value)]

Prometheus listens on a free loopback port, scrapes every `scrape_interval` and
evaluates rules as often; its TSDB lives in a temporary directory removed on exit.
The local server is not a Kubernetes pod, so each scrape target gets the
`namespace` and `pod` labels kube-prometheus-stack's PodMonitor would give it,
through relabeling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tritonllm.serve import find_free_port


class PrometheusError(RuntimeError):
    pass


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)  # added by relabeling, e.g. namespace/pod
    metrics_path: str = "/metrics"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def scrape_config(targets: list[ScrapeTarget], scrape_interval: str) -> list[dict[str, Any]]:
    jobs = []
    for i, target in enumerate(targets):
        jobs.append(
            {
                "job_name": f"triton-{i}",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": target.metrics_path,
                "static_configs": [{"targets": [target.address]}],
                "relabel_configs": [
                    {"target_label": label, "replacement": value, "action": "replace"}
                    for label, value in sorted(target.labels.items())
                ],
            }
        )
    return jobs


class LocalPrometheus:
    def __init__(
        self,
        targets: list[ScrapeTarget],
        rule_groups: list[dict[str, Any]],
        scrape_interval: str = "1s",
        startup_timeout: float = 60.0,
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus is not installed (apt-get install -y prometheus)")
        self.binary = binary
        self.targets = targets
        self.rule_groups = rule_groups
        self.scrape_interval = scrape_interval
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "LocalPrometheus":
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonllm-prometheus-"))
        rules = self.workdir / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": self.rule_groups}, sort_keys=False))
        config = self.workdir / "prometheus.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
                    "rule_files": [str(rules)],
                    "scrape_configs": scrape_config(self.targets, self.scrape_interval),
                },
                sort_keys=False,
            )
        )
        self.port = find_free_port("127.0.0.1")
        self.started_at = time.time()
        self.log = self.workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.workdir is not None and not os.environ.get("TRITONLLM_KEEP_PROMETHEUS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except (OSError, AttributeError):
            return ""

    # ---------------------------------------------------------------- API
    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Instant query; raises PrometheusError on a query error. Vector results as (labels, value)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict, list[tuple[float, float]]]]:
        data = self._api(
            "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        )
        return [(item["metric"], [(float(t), float(v)) for t, v in item["values"]]) for item in data["result"]]

    def series(self, match: str, start: float) -> list[dict[str, str]]:
        """Label sets of the series matching `match` since `start` (what prometheus-adapter lists)."""
        return self._api("series", {"match[]": match, "start": f"{start:.0f}"})

    def scrape_health(self) -> list[dict[str, Any]]:
        return self._api("targets", {"state": "active"})["activeTargets"]

    def wait_for_series(self, expr: str, timeout: float = 60.0) -> list[tuple[dict[str, str], float]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise PrometheusError(
            f"no series for {expr} after {timeout}s; targets: {self.scrape_health()}\n{self.log_tail()}"
        )

    def wait_for_scrape_after(self, moment: float, timeout: float = 30.0) -> None:
        """Block until every target has been scraped (and rules evaluated) after wall-clock `moment`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.scrape_health()
            if targets and all(t["health"] == "up" and _rfc3339(t["lastScrape"]) > moment for t in targets):
                time.sleep(2 * _seconds(self.scrape_interval))  # one more rule evaluation on the new samples
                return
            time.sleep(0.2)
        raise PrometheusError(f"targets not scraped after {moment}: {self.scrape_health()}")


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise ValueError(duration)


def _rfc3339(stamp: str) -> float:
    from datetime import datetime

    # Prometheus prints nanoseconds; Python parses microseconds.
    head, _, frac = stamp.partition(".")
    if frac:
        digits = "".join(ch for ch in frac if ch.isdigit())
        zone = frac[len(digits) :]
        stamp = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
