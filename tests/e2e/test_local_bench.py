"""`python -m tritonllm bench` for real: AIPerf against the local Triton, reports checked."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from tritonllm._llm_io import ModelInterface
from tritonllm.bench import CSV_COLUMNS, aiperf_executable, payload_template, setup_aiperf

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aiperf() -> Path:
    """AIPerf lives in its own virtualenv; create it on first use (cached in .cache/aiperf-venv)."""
    return aiperf_executable() or setup_aiperf(quiet=True)


def _request_success(triton_server) -> float:
    import urllib.request

    text = urllib.request.urlopen(triton_server.metrics_url, timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith("nv_inference_request_success{") and f'model="{triton_server.model_name}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("nv_inference_request_success missing")


def test_bench_runs_aiperf_and_writes_json_csv_png(triton_server, aiperf, tmp_path):
    before = _request_success(triton_server)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "bench",
            "--url",
            triton_server.http_url,
            "--model-name",
            triton_server.model_name,
            "--preset",
            "smoke",
            "--concurrency",
            "1,2",
            "--request-count",
            "3",
            "--aiperf",
            str(aiperf),
            "--output-dir",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "smoke" and summary["tool"].startswith("aiperf==")
    runs = summary["runs"]
    assert [r["concurrency"] for r in runs] == [1, 2] and all(r["ok"] for r in runs), runs
    for run in runs:
        m = run["metrics"]
        assert m["completed_requests"] == 3 and m["error_requests"] == 0
        assert m["output_sequence_length_avg"] == 8  # output length enforced (ignore_eos)
        assert 0 < m["ttft_ms_p50"] <= m["ttft_ms_p90"] <= m["ttft_ms_p99"]
        assert 0 < m["itl_ms_p50"] and m["request_latency_ms_p50"] <= m["request_latency_ms_p99"]
        assert m["ttft_ms_p50"] < m["request_latency_ms_p50"]  # streamed: first token before the end
        assert m["requests_per_s"] > 0 and m["output_tokens_per_s"] > 0
        assert (Path(run["artifact_dir"]) / "profile_export_aiperf.json").is_file()
    with (out / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["concurrency"]) for r in rows] == [1, 2] and list(rows[0]) == CSV_COLUMNS
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "TTFT p50/p90/p99" in proc.stdout
    # concurrency 2 against a model that generates one request at a time: said in the summary
    assert "note: model 'smollm2' generates 1 request at a time" in proc.stdout
    assert "at concurrency 2" in summary["note"]
    # the load really went through Triton: 2 x (3 measured + warm-up) requests
    assert _request_success(triton_server) - before >= 6


def test_bench_reports_an_unknown_model(triton_server, aiperf, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "bench",
            "--url",
            triton_server.http_url,
            "--model-name",
            "nope",
            "--aiperf",
            str(aiperf),
            "--output-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "nope" in proc.stderr


def _render(template: str, text: str = 'say "hi" <b>', max_tokens: int = 7) -> dict:
    env = jinja2.Environment(autoescape=True)  # as AIPerf's template endpoint renders it
    return json.loads(env.from_string(template).render(text=text, max_tokens=max_tokens))


def test_payload_template_for_the_local_model_config():
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(
        (REPO_ROOT / "model_repository" / "local" / "smollm2" / "config.pbtxt").read_text(),
        model_config_pb2.ModelConfig(),
    )
    local = ModelInterface.from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
    body = _render(payload_template(local))
    assert body == {
        "text_input": 'say "hi" <b>',
        "stream": True,
        "exclude_input_in_output": True,
        "apply_chat_template": False,
        "sampling_parameters": body["sampling_parameters"],
    }
    assert json.loads(body["sampling_parameters"]) == {"max_tokens": 7, "ignore_eos": True}


def test_payload_template_for_the_trtllm_ensemble_shape():
    ensemble = ModelInterface.from_config(
        {
            "name": "ensemble",
            "platform": "ensemble",
            "max_batch_size": 64,
            "input": [
                {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
                {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": [1]},
                {"name": "bad_words", "data_type": "TYPE_STRING", "dims": [-1]},
                {"name": "stop_words", "data_type": "TYPE_STRING", "dims": [-1]},
                {"name": "min_length", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
                {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
            ],
            "output": [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}],
        }
    )
    assert _render(payload_template(ensemble)) == {
        "text_input": 'say "hi" <b>',
        "stream": True,
        "max_tokens": 7,
        "min_length": 7,
        "bad_words": [""],
        "stop_words": [""],
    }
