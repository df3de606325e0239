"""The in-cluster load generator of `tritonllm loadtest`, run here against the real local Triton
(fixture `triton_server`) exactly as its Job runs it (the ConfigMap's files on PYTHONPATH, no
project dependencies), and its report computed from that real log: the requests it reports must be
the requests Triton counted."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from components.catalog import versions
from tritonllm import loadtest

pytestmark = pytest.mark.e2e


def _success(server) -> int:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{server.model_name}/stats", timeout=10) as resp:
        (stats,) = json.loads(resp.read())["model_stats"]
    return int(stats["inference_stats"]["success"]["count"])


def test_worker_from_the_config_map_loads_triton_and_the_report_counts_what_triton_counted(triton_server, tmp_path):
    profile = loadtest.parse_profile("1,2", None, 10)
    config_map, job = loadtest.manifests(
        name="loadtest-local",
        namespace="local",
        model=triton_server.model_name,
        url=triton_server.http_url,
        profile=profile,
        max_tokens=4,
        image=versions.PYTHON_IMAGE,
        sources=loadtest.worker_sources(),
        prompts=["Say hi.", "Name a color."],
        request_timeout=120,
    )
    for item in job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]:
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_map["data"][item["key"]])
    command = [sys.executable, "-S"] + job["spec"]["template"]["spec"]["containers"][0]["command"][1:]
    command = [c.replace(loadtest.MOUNT, str(tmp_path)) for c in command]
    before = _success(triton_server)
    result = subprocess.run(
        command, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=300
    )
    after = _success(triton_server)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = loadtest.parse_worker_log(result.stdout)
    assert records[-1]["event"] == "done"
    rows = loadtest.summarize(records, profile.step_seconds)
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["errors"] == 0 and r["requests"] >= 1 for r in rows), rows
    assert sum(r["requests"] for r in rows) == after - before  # every request reached Triton, once
    for r in rows:
        assert 0 < r["ttft_ms_p50"] <= r["latency_ms_p50"]
        assert r["responses_per_s"] > 0
    print(loadtest.format_report(rows, []))
