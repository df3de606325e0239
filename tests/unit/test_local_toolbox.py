"""The local toolbox's messages and reports (issue 13): protocol inference, help texts, the
concurrency note read from the shipped model config, bench CSV rounding and plot axes, the
in-flight count serve announces, and stale shared-memory detection. Pure functions; the real
server paths are in tests/e2e/test_local_serve.py and tests/e2e/test_local_ux.py."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from tritonllm import bench, client, lifecycle
from tritonllm._llm_io import ModelInterface

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = REPO / "model_repository" / "local" / "smollm2" / "config.pbtxt"


# --------------------------------------------------------------------------- client: protocol


@pytest.mark.parametrize(
    "url, protocol, expected",
    [
        ("http://127.0.0.1:18000", None, ("http", False)),
        ("https://triton.example.com", None, ("http", True)),
        ("HTTP://127.0.0.1:8000", None, ("http", False)),
        ("grpc://127.0.0.1:8001", None, ("grpc", False)),
        ("grpcs://triton.example.com:443", None, ("grpc", True)),
        ("127.0.0.1:8001", None, ("grpc", False)),
        ("127.0.0.1:8000", "http", ("http", False)),
        (None, None, ("grpc", False)),
        (None, "http", ("http", False)),
        ("http://127.0.0.1:8000", "http", ("http", False)),
    ],
)
def test_protocol_follows_the_url(url, protocol, expected):
    assert client.infer_protocol(url, protocol) == expected


def test_a_scheme_contradicting_protocol_says_what_to_change():
    with pytest.raises(client.UsageError) as info:
        client.infer_protocol("http://127.0.0.1:18000", "grpc")
    message = str(info.value)
    assert "HTTP address" in message and "drop --protocol" in message and "--url 127.0.0.1:8001" in message
    with pytest.raises(client.UsageError, match="gRPC address .* drop --protocol"):
        client.infer_protocol("grpc://127.0.0.1:8001", "http")
    with pytest.raises(client.UsageError, match="unknown scheme 'ftp://'"):
        client.infer_protocol("ftp://x:1", None)


def test_client_main_reports_the_contradiction_with_exit_2(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    prompts = tmp_path / "p.txt"
    prompts.write_text("hi\n")
    args = parser.parse_args(["--url", "http://127.0.0.1:1", "--protocol", "grpc", "--input-prompts", str(prompts)])
    assert client.main(args) == 2
    assert "drop --protocol" in capsys.readouterr().err


def test_sampling_options_have_help_text():
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    helps = {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}
    assert "greedy" in helps["--temperature"]
    assert "(0, 1]" in helps["--top-p"] and "most likely" in helps["--top-p"]
    assert "k most likely" in helps["--top-k"] and "1 = greedy" in helps["--top-k"]
    assert "same answer" in helps["--seed"]


def test_unknown_model_message_lists_what_is_served():
    message = client.unknown_model_message("llama", "http://h:1", {"smollm2": "READY", "other": "UNAVAILABLE"}, "x")
    assert message.startswith(
        "model 'llama' is not served at http://h:1; it serves: other (UNAVAILABLE), smollm2 (READY)"
    )
    assert "--model-name" in message


# --------------------------------------------------------------------------- concurrency note


def _local_config_json() -> dict:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(LOCAL_CONFIG.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def test_the_local_model_says_it_generates_one_request_at_a_time():
    iface = ModelInterface.from_config(_local_config_json())
    assert iface.concurrent_requests == 1
    assert iface.concurrency_note(1) is None
    note = iface.concurrency_note(4)
    assert note and "generates 1 request at a time" in note and "concurrency 4" in note
    assert "throughput stays that of concurrency 1" in note


def test_no_note_for_models_that_do_not_say():
    config = _local_config_json()
    del config["parameters"]["max_concurrent_requests"]
    assert ModelInterface.from_config(config).concurrency_note(64) is None
    config["parameters"]["max_concurrent_requests"] = {"string_value": "2"}
    config["instance_group"] = [{"count": 2, "kind": "KIND_CPU"}]
    iface = ModelInterface.from_config(config)
    assert iface.concurrent_requests == 4 and iface.concurrency_note(4) is None and iface.concurrency_note(5)


# --------------------------------------------------------------------------- bench reports

ROW = {
    "concurrency": 1,
    "ttft_ms_p50": 101.23456789,
    "ttft_ms_p90": 102.987654321,
    "ttft_ms_p99": 103.5,
    "ttft_ms_avg": 101.9,
    "itl_ms_p50": 20.1111111,
    "itl_ms_p90": 20.2,
    "itl_ms_p99": 20.3,
    "itl_ms_avg": 20.15,
    "request_latency_ms_p50": 700.0001,
    "request_latency_ms_p90": 701.0,
    "request_latency_ms_p99": 702.0,
    "request_latency_ms_avg": 700.5,
    "requests_per_s": 1.4285714285714286,
    "output_tokens_per_s": 45.71428571,
    "output_tokens_per_s_per_user_p50": 45.0,
    "completed_requests": 8,
    "error_requests": 0,
    "output_sequence_length_avg": 32.0,
    "benchmark_duration_s": 5.6000000001,
}


def _rows():
    second = {k: (v * 1.01 if isinstance(v, float) else v) for k, v in ROW.items()}
    second["concurrency"] = 2
    return [ROW, second]


def test_csv_floats_are_rounded(tmp_path):
    results = [bench.RunResult(r["concurrency"], 8, True, row=r) for r in _rows()]
    paths = bench.write_reports(tmp_path, {"model": "m", "preset": "p", "input_tokens": 1, "output_tokens": 1}, results)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert rows[0]["ttft_ms_p50"] == "101.235" and rows[0]["requests_per_s"] == "1.429"
    for row in rows:
        for value in row.values():
            if "." in value:
                assert len(value.split(".")[1]) <= bench.CSV_DECIMALS, row
    # the JSON keeps full precision
    assert json.loads(paths["json"].read_text())["runs"][0]["metrics"]["ttft_ms_p50"] == ROW["ttft_ms_p50"]


def test_every_plot_axis_starts_at_zero(tmp_path):
    """Values within 1 % of each other: an autoscaled axis would make them look far apart."""
    fig = bench.plot(_rows(), tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").stat().st_size > 0
    lows = [ax.get_ylim()[0] for ax in fig.axes]
    assert len(lows) == 5 and all(low == 0 for low in lows), lows


# --------------------------------------------------------------------------- serve: in flight, shm

METRICS = """# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="smollm2",version="1"} 3
nv_inference_pending_request_count{model="other",version="1"} 1
# TYPE tritonllm_requests_executing gauge
tritonllm_requests_executing{model="smollm2",version="1"} 1
nv_inference_request_success{model="smollm2",version="1"} 12
"""


def test_requests_in_flight_adds_queued_and_executing():
    assert lifecycle.requests_in_flight(METRICS) == 5
    assert lifecycle.requests_in_flight(METRICS, model="smollm2") == 4
    without_gauge = "\n".join(ln for ln in METRICS.splitlines() if "executing" not in ln)
    assert lifecycle.requests_in_flight(without_gauge) is None  # running requests unknown: say so


def test_stale_shared_memory_is_that_of_dead_processes(tmp_path):
    for name in ("tritonllm100x8000_abc", "tritonllm200x8000_def", "tritonllm100x9_x", "other_file", "tritonllmXx1_"):
        (tmp_path / name).write_text("")
    stale = lifecycle.stale_shm(tmp_path, alive=lambda pid: pid == 200)
    assert [p.name for p in stale] == ["tritonllm100x8000_abc", "tritonllm100x9_x"]
    assert lifecycle.shm_prefix(100, 8000) == "tritonllm100x8000_"


def test_signals_decide_the_exit_code():
    import signal

    s = lifecycle.StopSignals()
    s._handle(signal.SIGINT, None)
    assert s.exit_code() == 130 and not s.forced
    s._handle(signal.SIGINT, None)
    assert s.forced and s.exit_code() == 137
    t = lifecycle.StopSignals()
    t._handle(signal.SIGTERM, None)
    assert t.exit_code() == 143
