"""Alertmanager's configuration (components/observability/builders/alertmanager.py), checked by the real
amtool and run by a real Alertmanager.

* `amtool check-config` accepts every shape the stack writes (no receiver, SNS, webhook, both) and
  `amtool config routes test` routes our alerts to the receiver and Watchdog nowhere.
* A real Alertmanager on loopback, fed alerts over its API with the webhook pointed at a local HTTP
  server: an incident's alerts (one alert name, one namespace) arrive as one notification, the chart's
  generic alert on the same HPA is inhibited by ours, Watchdog is never sent, and alerts re-sent by
  Prometheus (it re-sends firing alerts every evaluation) do not page again within repeat_interval. Only
  the timers are shortened (group_wait, group_interval) so the test takes seconds.

Both come from the Debian package `prometheus-alertmanager` (0.25; the chart runs 0.34, which reads
every 0.25 configuration; amtool 0.25 is stricter, not looser, about what it accepts).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.observability.builders import alertmanager as am
from components.observability.builders import alerts
from tritonllm.ports import find_free_port

TOPIC = "arn:aws:sns:us-west-2:123456789012:tritonllm-vllm-alerts-0123"
WEBHOOK = "https://hooks.example.com/services/T000/B000/XXXX"
SHAPES: dict[str, dict[str, Any]] = {
    "no-receiver": {"sns_topic_arn": None, "webhook_url": None},
    "sns": {"sns_topic_arn": TOPIC, "webhook_url": None},
    "webhook": {"sns_topic_arn": None, "webhook_url": WEBHOOK},
    "sns-and-webhook": {"sns_topic_arn": TOPIC, "webhook_url": WEBHOOK},
}


def _tool(name: str, package: str = "prometheus-alertmanager") -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: CI must `apt-get install -y {package}`")
        pytest.skip(f"{name} not installed (apt-get install -y {package})")
    return path


def _config(shape: str, **overrides: Any) -> dict[str, Any]:
    return am.alertmanager_config(region="us-west-2", repeat_interval="12h", **{**SHAPES[shape], **overrides})


def _write(tmp_path: Path, config: dict[str, Any], name: str = "alertmanager.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --------------------------------------------------------------------------- amtool


@pytest.mark.parametrize("shape", SHAPES)
def test_amtool_check_config_accepts_every_shape(tmp_path, shape):
    result = subprocess.run(
        [_tool("amtool"), "check-config", str(_write(tmp_path, _config(shape)))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    receivers = 1 if shape == "no-receiver" else 2  # "null", plus ours when something delivers
    assert f" - {receivers} receivers" in result.stdout, result.stdout


def test_amtool_check_config_rejects_a_broken_config(tmp_path):
    """The check can fail: an SNS config without its topic is refused."""
    config = _config("sns")
    del config["receivers"][1]["sns_configs"][0]["topic_arn"]
    result = subprocess.run(
        [_tool("amtool"), "check-config", str(_write(tmp_path, config))], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Topic ARN" in result.stdout + result.stderr


def _route(config_file: Path, *labels: str) -> str:
    result = subprocess.run(
        [_tool("amtool"), "config", "routes", "test", f"--config.file={config_file}", *labels],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("shape", SHAPES)
def test_routes_send_every_alert_to_the_receiver_and_watchdog_nowhere(tmp_path, shape):
    path = _write(tmp_path, _config(shape))
    expected = am.NULL_RECEIVER if shape == "no-receiver" else am.RECEIVER
    for name in (alerts.MODEL_UNAVAILABLE, alerts.GPU_XID, "KubePodCrashLooping"):
        assert _route(path, f"alertname={name}", "namespace=llama", "severity=critical") == expected, name
    assert _route(path, "alertname=Watchdog", "severity=none") == am.NULL_RECEIVER


def test_the_webhook_url_and_the_topic_appear_only_in_their_receiver():
    config = _config("sns-and-webhook")
    (ours,) = [r for r in config["receivers"] if r["name"] == am.RECEIVER]
    assert ours["webhook_configs"] == [{"url": WEBHOOK, "send_resolved": True}]
    assert ours["sns_configs"][0]["topic_arn"] == TOPIC
    assert ours["sns_configs"][0]["sigv4"] == {"region": "us-west-2"}  # keys from Pod Identity, region given
    assert config["route"]["group_by"] == ["alertname", "namespace"]
    assert config["route"]["repeat_interval"] == "12h"


# --------------------------------------------------------------------------- a real Alertmanager


class _Webhook(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                outer.received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", find_free_port()), Handler)


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    server = _Webhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alertmanager(tmp_path, webhook) -> Iterator[str]:
    binary = _tool("prometheus-alertmanager")
    config = _config("webhook", webhook_url=f"http://127.0.0.1:{webhook.server_address[1]}/")
    config["route"].update({"group_wait": "1s", "group_interval": "3s"})  # seconds instead of 30s / 5m
    port = find_free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={_write(tmp_path, config)}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"alertmanager did not start: {process.stderr.read() if process.stderr else ''}"
                    ) from exc
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _post(url: str, alerts_: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=json.dumps(alerts_).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).read()


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {"summary": name}}


def _sent(webhook: _Webhook) -> list[tuple[str, str, list[str]]]:
    """(alertname, namespace, [pod of each alert]) per notification received."""
    return sorted(
        (
            n["groupLabels"].get("alertname", ""),
            n["groupLabels"].get("namespace", ""),
            sorted(a["labels"].get("pod", "") for a in n["alerts"]),
        )
        for n in webhook.received
    )


def test_one_incident_pages_once_and_the_charts_twin_alert_is_inhibited(alertmanager, webhook):
    incident = [
        # one model at maxReplicas: ours and the chart's generic alert on the same HPA
        _alert(alerts.MODEL_HPA_MAXED, "warning", namespace="llama", horizontalpodautoscaler="triton"),
        _alert("KubeHpaMaxedOut", "warning", namespace="llama", horizontalpodautoscaler="triton"),
        # two pods of one model waiting for GPUs: one incident
        _alert(alerts.GPU_POD_UNSCHEDULABLE, "warning", namespace="chat", pod="triton-a"),
        _alert(alerts.GPU_POD_UNSCHEDULABLE, "warning", namespace="chat", pod="triton-b"),
        # always firing, by design
        _alert("Watchdog", "none"),
    ]
    _post(alertmanager, incident)
    deadline = time.monotonic() + 20
    while len(webhook.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Prometheus re-sends firing alerts every evaluation: twice more, past group_interval
    for _ in range(2):
        time.sleep(4)
        _post(alertmanager, incident)
    time.sleep(4)
    assert _sent(webhook) == [
        (alerts.GPU_POD_UNSCHEDULABLE, "chat", ["triton-a", "triton-b"]),
        (alerts.MODEL_HPA_MAXED, "llama", [""]),
    ]
    status = json.loads(urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5).read())
    inhibited = {
        a["labels"]["alertname"]: a["status"]["inhibitedBy"]
        for a in status
        if a["labels"]["alertname"] == "KubeHpaMaxedOut"
    }
    assert inhibited["KubeHpaMaxedOut"], status


def test_a_new_alert_of_the_same_incident_joins_it_without_a_second_page_before_group_interval(alertmanager, webhook):
    _post(alertmanager, [_alert(alerts.GPU_POD_UNSCHEDULABLE, "warning", namespace="chat", pod="triton-a")])
    deadline = time.monotonic() + 20
    while not webhook.received and time.monotonic() < deadline:
        time.sleep(0.2)
    _post(
        alertmanager,
        [
            _alert(alerts.GPU_POD_UNSCHEDULABLE, "warning", namespace="chat", pod="triton-a"),
            _alert(alerts.GPU_POD_UNSCHEDULABLE, "warning", namespace="chat", pod="triton-b"),
        ],
    )
    time.sleep(1)
    assert len(webhook.received) == 1  # the second pod waits for the group's next flush
    time.sleep(4)
    assert _sent(webhook)[-1] == (alerts.GPU_POD_UNSCHEDULABLE, "chat", ["triton-a", "triton-b"])
    assert len(webhook.received) == 2  # one update of the same group, not a page per pod


def test_the_real_intervals_are_the_ones_the_docs_state():
    route = _config("webhook")["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "12h")
    assert copy.deepcopy(route["group_by"]) == ["alertname", "namespace"]
