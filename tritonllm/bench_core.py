"""What the KServe and OpenAI halves of `python -m tritonllm bench` share (tritonllm/kserve_bench.py,
tritonllm/openai_bench.py), so that neither imports the other: the presets, AIPerf's load
arguments, one AIPerf run at one concurrency and its summary row.

Protocol-neutral: the request side (a payload template for Triton's generate extension, or
AIPerf's own OpenAI mode) is each half's.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Preset:
    description: str
    input_tokens: int
    output_tokens: int
    concurrencies: tuple[int, ...]
    requests_per_run: int | None = None  # None: max(8, 4 x concurrency)
    input_tokens_stddev: int = 0
    api: str = "kserve"  # "openai": AIPerf's own OpenAI mode against /v1/chat/completions (tritonllm/openai_bench.py)


PRESETS: dict[str, Preset] = {
    "seed-500in-5out": Preset(
        "the seeds' genai-perf load test: 500 input / 5 output tokens at concurrency 20",
        input_tokens=500,
        output_tokens=5,
        concurrencies=(20,),
        requests_per_run=40,
    ),
    "chat": Preset(
        "chat-shaped: ~256 input (stddev 64) / 128 output tokens at concurrency 4",
        input_tokens=256,
        input_tokens_stddev=64,
        output_tokens=128,
        concurrencies=(4,),
        requests_per_run=16,
    ),
    "sweep": Preset(
        "concurrency sweep 1, 2, 4, 8 with 128 input / 32 output tokens",
        input_tokens=128,
        output_tokens=32,
        concurrencies=(1, 2, 4, 8),
    ),
    "smoke": Preset(
        "a quick check (CI): 32 input / 8 output tokens at concurrency 1 and 2",
        input_tokens=32,
        output_tokens=8,
        concurrencies=(1, 2),
        requests_per_run=4,
    ),
    "openai-chat": Preset(
        "AIPerf's OpenAI mode (/v1/chat/completions, streaming): 128 input / 32 output tokens at concurrency 1 and 4",
        input_tokens=128,
        output_tokens=32,
        concurrencies=(1, 4),
        requests_per_run=12,
        api="openai",
    ),
}

# metric name in AIPerf's JSON export -> column prefix in our summary
METRICS = {
    "time_to_first_token": "ttft_ms",
    "inter_token_latency": "itl_ms",
    "request_latency": "request_latency_ms",
}
STATS = ("p50", "p90", "p99", "avg")


class BenchError(RuntimeError):
    pass


@dataclass
class RunResult:
    concurrency: int
    requests: int
    ok: bool
    row: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    artifact_dir: str = ""


def summarize_export(data: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """One summary row from AIPerf's profile_export_aiperf.json."""
    row: dict[str, Any] = {"concurrency": concurrency}
    for metric, prefix in METRICS.items():
        values = data.get(metric) or {}
        for stat in STATS:
            row[f"{prefix}_{stat}"] = values.get(stat)
    row["requests_per_s"] = (data.get("request_throughput") or {}).get("avg")
    row["output_tokens_per_s"] = (data.get("output_token_throughput") or {}).get("avg")
    row["output_tokens_per_s_per_user_p50"] = (data.get("output_token_throughput_per_user") or {}).get("p50")
    row["completed_requests"] = int((data.get("request_count") or {}).get("avg") or 0)
    errors = data.get("error_request_count") or {}
    row["error_requests"] = int(errors.get("avg") or 0) if isinstance(errors, dict) else int(errors or 0)
    row["output_sequence_length_avg"] = (data.get("output_sequence_length") or {}).get("avg")
    row["benchmark_duration_s"] = (data.get("benchmark_duration") or {}).get("avg")
    return row


def run_aiperf(cmd: list[str], artifact_dir: Path, concurrency: int, requests: int) -> RunResult:
    """Run one AIPerf level (console log in artifact_dir) and summarize its export; a level with a
    failed or missing request is not ok."""
    with open(artifact_dir / "aiperf-console.log", "w", encoding="utf-8") as console:
        # (no HF_HUB_OFFLINE: in offline mode AIPerf only looks tokenizers up in the hub cache and
        # rejects a local directory; a local directory never touches the network anyway)
        proc = subprocess.run(cmd, stdout=console, stderr=subprocess.STDOUT, cwd=artifact_dir, env=dict(os.environ))
    export = artifact_dir / "profile_export_aiperf.json"
    result = RunResult(concurrency, requests, ok=False, artifact_dir=str(artifact_dir))
    if proc.returncode != 0 or not export.is_file():
        tail = (artifact_dir / "aiperf-console.log").read_text(errors="replace")[-3000:]
        result.error = f"aiperf exited with {proc.returncode}:\n{tail}"
    else:
        result.row = summarize_export(json.loads(export.read_text()), concurrency)
        result.ok = result.row["error_requests"] == 0 and result.row["completed_requests"] == requests
        if not result.ok:
            result.error = (
                f"{result.row['error_requests']} failed requests, "
                f"{result.row['completed_requests']}/{requests} completed"
            )
    return result


def aiperf_load_args(tokenizer: str, preset: Preset, concurrency: int, requests: int, artifact_dir: Path) -> list[str]:
    """AIPerf arguments every preset shares (KServe and OpenAI): synthetic load of the preset's
    shape, fixed seed, one worker, no server/GPU telemetry, generous request timeout."""
    return [
        "--tokenizer",
        tokenizer,
        "--synthetic-input-tokens-mean",
        str(preset.input_tokens),
        "--synthetic-input-tokens-stddev",
        str(preset.input_tokens_stddev),
        "--output-tokens-mean",
        str(preset.output_tokens),
        "--output-tokens-stddev",
        "0",
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(requests),
        "--warmup-request-count",
        str(min(concurrency, 4)),
        "--random-seed",
        "0",
        "--artifact-dir",
        str(artifact_dir),
        "--ui-type",
        "none",
        "--workers-max",
        "1",
        "--record-processors",
        "1",
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--request-timeout-seconds",
        "900",
    ]
