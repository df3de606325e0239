"""`python -m tritonllm bench`: load-test a Triton LLM endpoint with NVIDIA AIPerf.

Why AIPerf: it is the maintained successor of genai-perf (which the seed documents used),
measures exactly the LLM metrics asked for (time to first token, inter-token latency,
request latency percentiles, request and output-token throughput) from real streamed
responses, and its `template` endpoint speaks any JSON-over-HTTP API - here Triton's
generate extension (`/v2/models/<m>/generate_stream`, server-sent events). This module adds
what AIPerf does not know: the presets from the seeds, the request body each kind of Triton
model needs (built from the model's own config, so the local model, the vLLM backend and the
TRT-LLM ensemble all work), an offline tokenizer for the local model, a concurrency sweep, and
one JSON + CSV + PNG summary over the runs.

AIPerf pins many libraries (pandas, transformers, pyzmq, orjson...), so it lives in its own
virtualenv, `.cache/aiperf-venv`, created by `python -m tritonllm bench --setup` (also run by
`make bench-local`). The main .venv only needs matplotlib for the plot.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonllm._llm_io import ModelInterface
from tritonllm.client import API_KEY_ENV, auth_headers

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("TRITONLLM_CACHE_DIR", REPO_ROOT / ".cache" / "tritonllm"))
AIPERF_VENV = Path(os.environ.get("TRITONLLM_AIPERF_VENV", REPO_ROOT / ".cache" / "aiperf-venv"))
# Exact pins for the AIPerf virtualenv (gguf: to export the local model's tokenizer offline).
AIPERF_REQUIREMENTS = ("aiperf==0.13.0", "gguf==0.19.0", "transformers==5.23.0", "tokenizers==0.23.3")
LOCAL_TOKENIZER_DIR = CACHE_DIR / "tokenizers" / "smollm2-135m-instruct"


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


# --------------------------------------------------------------------------- request body


def payload_template(iface: ModelInterface, stream: bool = True, ignore_eos: bool = True) -> str:
    """AIPerf Jinja2 template of one /generate(_stream) body for this model.

    AIPerf fills `text` (the synthetic prompt) and `max_tokens` (the requested output length).
    Output length is enforced (ignore_eos / min_length) so every request produces the same number
    of tokens, as genai-perf's presets did. The chat template is turned off where the model has
    the switch, so the input length is what was asked for.
    """
    iface.check_llm()
    parts = ['"text_input": {{ text|tojson }}']
    if "stream" in iface.inputs:
        parts.append(f'"stream": {"true" if stream and iface.streamable else "false"}')
    if "exclude_input_in_output" in iface.inputs:
        parts.append('"exclude_input_in_output": true')
    if "apply_chat_template" in iface.inputs:
        parts.append('"apply_chat_template": false')
    if "sampling_parameters" in iface.inputs:
        sampling = '{"max_tokens": max_tokens' + (', "ignore_eos": true' if ignore_eos else "") + "}"
        parts.append('"sampling_parameters": {{ ' + sampling + " | tojson | tojson }}")
    else:
        spec = iface.input_for("max_tokens")
        if spec is None:
            raise BenchError(f"model '{iface.name}' takes neither sampling_parameters nor max_tokens")
        parts.append(f'"{spec.name}": {{{{ max_tokens }}}}')
        min_spec = iface.input_for("min_tokens")
        if ignore_eos and min_spec is not None:
            parts.append(f'"{min_spec.name}": {{{{ max_tokens }}}}')
    for spec in iface.inputs.values():  # required inputs of some TRT-LLM ensembles
        if not spec.optional and spec.name in ("bad_words", "stop_words"):
            parts.append(f'"{spec.name}": [""]')
    return "{" + ", ".join(parts) + "}"


# --------------------------------------------------------------------------- AIPerf environment


def aiperf_executable(explicit: str | None = None) -> Path | None:
    candidates = [explicit] if explicit else [str(AIPERF_VENV / "bin" / "aiperf"), shutil.which("aiperf")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def setup_aiperf(venv: Path = AIPERF_VENV, quiet: bool = False) -> Path:
    """Create the AIPerf virtualenv (idempotent) and return its aiperf executable."""
    marker = venv / ".tritonllm-requirements"
    wanted = "\n".join(AIPERF_REQUIREMENTS)
    if marker.is_file() and marker.read_text() == wanted and (venv / "bin" / "aiperf").is_file():
        return venv / "bin" / "aiperf"
    if not (venv / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", *(["--quiet"] if quiet else []), *AIPERF_REQUIREMENTS]
    subprocess.run(cmd, check=True)
    marker.write_text(wanted)
    return venv / "bin" / "aiperf"


_TOKENIZER_EXPORT = r"""
import json, sys
from pathlib import Path
import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
src, out = Path(sys.argv[1]), Path(sys.argv[2])
fields = gguf.GGUFReader(str(src)).fields
if fields["tokenizer.ggml.model"].contents() != "gpt2":
    sys.exit("only GPT-2 style BPE vocabularies can be exported")
tokens = fields["tokenizer.ggml.tokens"].contents()
merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
types = fields["tokenizer.ggml.token_type"].contents()
tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3])
out.mkdir(parents=True, exist_ok=True)
tok.save(str(out / "tokenizer.json"))
eos = tokens[fields["tokenizer.ggml.eos_token_id"].contents()]
bos = tokens[fields["tokenizer.ggml.bos_token_id"].contents()]
(out / "tokenizer_config.json").write_text(json.dumps({
    "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos, "unk_token": tokens[0],
    "pad_token": eos, "model_max_length": 8192, "add_bos_token": False}, indent=1))
texts = json.loads(sys.stdin.read())
print(json.dumps([len(tok.encode(t, add_special_tokens=False).ids) for t in texts]))
"""
TOKENIZER_CHECK_TEXTS = [
    "Hello world, what is up?",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "    def foo(x):\n        return x ** 2  # comment",
    "Ünïcödé tëxt — with “quotes” and emojis 🚀🔥.",
]


def ensure_local_tokenizer(aiperf: Path, out_dir: Path = LOCAL_TOKENIZER_DIR) -> Path:
    """Export the local model's tokenizer from its GGUF into a Hugging Face tokenizer directory.

    AIPerf needs the model's tokenizer to size prompts and count output tokens; the hub is
    unreachable here, so it is rebuilt from the vocabulary inside the GGUF (once, cached) and
    checked token-for-token against llama.cpp's own tokenizer on sample texts.
    """
    if (out_dir / "tokenizer.json").is_file() and (out_dir / "tokenizer_config.json").is_file():
        return out_dir
    sys.path.insert(0, str(REPO_ROOT / "model_repository" / "local" / "smollm2" / "1"))
    try:
        from llm_engine import default_gguf_path
    finally:
        sys.path.pop(0)
    gguf_path = default_gguf_path()
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    proc = subprocess.run(
        [str(aiperf.parent / "python"), "-c", _TOKENIZER_EXPORT, str(gguf_path), str(staging)],
        input=json.dumps(TOKENIZER_CHECK_TEXTS),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchError(f"tokenizer export failed: {proc.stderr.strip()[-2000:]}")
    exported = json.loads(proc.stdout.strip().splitlines()[-1])
    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    expected = [len(vocab.tokenize(t.encode(), add_bos=False, special=True)) for t in TOKENIZER_CHECK_TEXTS]
    if exported != expected:
        raise BenchError(f"exported tokenizer disagrees with llama.cpp: {exported} vs {expected} tokens")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


# --------------------------------------------------------------------------- runs


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


def aiperf_command(
    aiperf: Path,
    url: str,
    model: str,
    template_file: Path,
    tokenizer: str,
    preset: Preset,
    concurrency: int,
    requests: int,
    artifact_dir: Path,
    streaming: bool,
    api_key: str | None = None,
) -> list[str]:
    route = "generate_stream" if streaming else "generate"
    cmd = [
        str(aiperf),
        "profile",
        "--model",
        model,
        "--url",
        f"{url.rstrip('/')}/v2/models/{model}/{route}",
        "--endpoint-type",
        "template",
        "--extra-inputs",
        f"payload_template:{template_file}",
        "--extra-inputs",
        "response_field:text_output",
        *aiperf_load_args(tokenizer, preset, concurrency, requests, artifact_dir),
    ]
    if streaming:
        cmd.append("--streaming")
    for name, value in auth_headers(api_key).items():  # the gateway's Basic credentials (AIPerf -H Header:Value)
        cmd += ["--header", f"{name}:{value}"]
    return cmd


def fetch_interface(url: str, model: str, timeout: float = 30, api_key: str | None = None) -> ModelInterface:
    import urllib.error
    import urllib.request

    target = urllib.request.Request(f"{url.rstrip('/')}/v2/models/{model}/config", headers=auth_headers(api_key))
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:
            return ModelInterface.from_config(json.loads(resp.read().decode()))
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise BenchError(
                f"HTTP 401 from {url}: the server wants an API key; pass --api-key name:secret or set {API_KEY_ENV}"
            ) from None
        raise BenchError(
            f"cannot read the config of model '{model}' at {url}: HTTP {exc.code} "
            f"{exc.read().decode(errors='replace').strip()}"
        ) from None
    except OSError as exc:
        raise BenchError(f"cannot reach {url}: {exc}") from None


def concurrency_note(url: str, model: str, concurrencies: list[int]) -> str | None:
    """Say so when the model generates fewer requests at once than the highest concurrency."""
    if not concurrencies:
        return None
    try:
        return fetch_interface(url, model, timeout=10).concurrency_note(max(concurrencies))
    except BenchError:
        return None


def run_benchmark(*args, api: str = "kserve", **kwargs) -> list[RunResult]:
    """AIPerf over Triton's generate extension (api kserve) or the OpenAI API (api openai)."""
    if api == "openai":
        from tritonllm import openai_bench

        return openai_bench.run_benchmark(*args, **kwargs)
    return run_kserve_benchmark(*args, **kwargs)


def run_kserve_benchmark(
    url: str,
    model: str,
    preset: Preset,
    output_dir: Path,
    aiperf: Path,
    tokenizer: str,
    concurrencies: tuple[int, ...] | None = None,
    requests_per_run: int | None = None,
    streaming: bool = True,
    log=print,
    api_key: str | None = None,
) -> list[RunResult]:
    iface = fetch_interface(url, model, api_key=api_key)
    output_dir.mkdir(parents=True, exist_ok=True)
    template_file = output_dir / "payload_template.json"
    template_file.write_text(payload_template(iface, stream=streaming) + "\n")
    results: list[RunResult] = []
    for concurrency in concurrencies or preset.concurrencies:
        requests = requests_per_run or preset.requests_per_run or max(8, 4 * concurrency)
        artifact_dir = output_dir / f"concurrency-{concurrency}"
        cmd = aiperf_command(
            aiperf,
            url,
            model,
            template_file,
            tokenizer,
            preset,
            concurrency,
            requests,
            artifact_dir,
            streaming,
            api_key=api_key,
        )
        log(f"  concurrency {concurrency:>3}: {requests} requests ...")
        artifact_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = run_aiperf(cmd, artifact_dir, concurrency, requests)
        results.append(result)
        elapsed = time.monotonic() - started
        if result.row:
            r = result.row
            log(
                f"  concurrency {concurrency:>3}: done in {elapsed:.0f}s; TTFT p50 {r['ttft_ms_p50']:.0f} ms, "
                f"ITL p50 {r['itl_ms_p50'] or 0:.1f} ms, latency p99 {r['request_latency_ms_p99']:.0f} ms, "
                f"{r['requests_per_s']:.2f} req/s, {r['output_tokens_per_s']:.1f} output tok/s"
            )
        if not result.ok:
            log(f"  concurrency {concurrency:>3}: FAILED: {result.error}")
    return results


# --------------------------------------------------------------------------- reports

CSV_COLUMNS = (
    ["concurrency"]
    + [f"{prefix}_{stat}" for prefix in METRICS.values() for stat in STATS]
    + [
        "requests_per_s",
        "output_tokens_per_s",
        "output_tokens_per_s_per_user_p50",
        "completed_requests",
        "error_requests",
        "output_sequence_length_avg",
        "benchmark_duration_s",
    ]
)


def write_reports(output_dir: Path, meta: dict[str, Any], results: list[RunResult]) -> dict[str, Path]:
    rows = [r.row for r in results if r.row]
    summary = {
        **meta,
        "runs": [
            {
                "concurrency": r.concurrency,
                "requests": r.requests,
                "ok": r.ok,
                "error": r.error,
                "artifact_dir": r.artifact_dir,
                "metrics": r.row,
            }
            for r in results
        ],
    }
    paths = {"json": output_dir / "summary.json", "csv": output_dir / "summary.csv", "png": output_dir / "summary.png"}
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_row(row))
    if not rows:
        del paths["png"]
        return paths
    plot(
        rows,
        paths["png"],
        title=f"{meta['model']} - preset {meta['preset']} ({meta['input_tokens']} in / {meta['output_tokens']} out)",
    )
    return paths


CSV_DECIMALS = 3


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """Floats rounded to CSV_DECIMALS places (the JSON summary keeps AIPerf's full values)."""
    return {k: (round(v, CSV_DECIMALS) if isinstance(v, float) else v) for k, v in row.items()}


def plot(rows: list[dict[str, Any]], path: Path, title: str):
    """Latency and throughput against concurrency; every y axis starts at zero, so a small
    difference looks small. Returns the (closed) figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["concurrency"])
    x = [r["concurrency"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0][0], "ttft_ms", "Time to first token (ms)"),
        (axes[0][1], "itl_ms", "Inter-token latency (ms)"),
        (axes[1][0], "request_latency_ms", "Request latency (ms)"),
    ]
    for ax, prefix, label in panels:
        for stat, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ys = [r.get(f"{prefix}_{stat}") for r in rows]
            if any(v is not None for v in ys):
                ax.plot(x, [v if v is not None else float("nan") for v in ys], style, label=stat)
        ax.set_title(label)
        ax.set_xlabel("concurrency")
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_ylim(bottom=0)
    ax = axes[1][1]
    line1 = ax.plot(x, [r["output_tokens_per_s"] for r in rows], "o-", color="tab:green", label="output tokens/s")
    ax.set_ylabel("output tokens/s", color="tab:green")
    ax.set_xlabel("concurrency")
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    line2 = ax2.plot(x, [r["requests_per_s"] for r in rows], "s--", color="tab:purple", label="requests/s")
    ax2.set_ylabel("requests/s", color="tab:purple")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.legend(line1 + line2, [ln.get_label() for ln in line1 + line2], loc="lower right")
    ax.set_title("Throughput")
    for a in list(axes.flat):
        a.set_xticks(x)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'conc':>4} {'TTFT p50/p90/p99 ms':>24} {'ITL p50/p90/p99 ms':>22} "
        f"{'latency p50/p90/p99 ms':>26} {'req/s':>7} {'out tok/s':>9} {'errors':>6}"
    )
    lines = [header]

    def trio(r, prefix, fmt):
        return "/".join(
            fmt.format(r[f"{prefix}_{s}"]) if r.get(f"{prefix}_{s}") is not None else "-" for s in ("p50", "p90", "p99")
        )

    for r in sorted(rows, key=lambda r: r["concurrency"]):
        lines.append(
            f"{r['concurrency']:>4} {trio(r, 'ttft_ms', '{:.0f}'):>24} {trio(r, 'itl_ms', '{:.1f}'):>22} "
            f"{trio(r, 'request_latency_ms', '{:.0f}'):>26} {r['requests_per_s']:>7.2f} "
            f"{r['output_tokens_per_s']:>9.1f} {r['error_requests']:>6}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="Triton HTTP endpoint (default $TRITON_HTTP_URL or http://localhost:8000); "
        "with --api openai the OpenAI base URL (default $OPENAI_BASE_URL or http://localhost:9000/v1)",
    )
    parser.add_argument(
        "--api",
        choices=("kserve", "openai"),
        help="kserve: Triton's generate extension; openai: AIPerf's OpenAI mode against "
        "/v1/chat/completions (default: the preset's, kserve for all but openai-*)",
    )
    parser.add_argument("--model-name", default="smollm2", help="model to load-test (default %(default)s)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="sweep",
        help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()) + " (default %(default)s)",
    )
    parser.add_argument("--concurrency", help="comma-separated concurrencies, overriding the preset's (e.g. 1,4,16)")
    parser.add_argument("--request-count", type=int, help="requests per concurrency level (default: the preset's)")
    parser.add_argument("--input-tokens", type=int, help="override the preset's input length")
    parser.add_argument("--output-tokens", type=int, help="override the preset's output length")
    parser.add_argument(
        "--no-stream", action="store_true", help="use /generate (no TTFT/ITL) instead of generate_stream"
    )
    parser.add_argument(
        "--tokenizer",
        help="tokenizer for AIPerf: a local Hugging Face tokenizer directory or hub "
        "name (default: SmolLM2's, exported offline from the local model's GGUF)",
    )
    parser.add_argument("--output-dir", help="where to write the results (default results/bench/<preset>-<time>)")
    parser.add_argument("--aiperf", help="aiperf executable (default .cache/aiperf-venv/bin/aiperf, then PATH)")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"API key name:secret for the gateway or `serve --api-key` (default ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--setup", action="store_true", help="create the AIPerf virtualenv and the local tokenizer, then exit"
    )


def main(args: argparse.Namespace) -> int:
    if args.setup:
        aiperf = setup_aiperf()
        tokenizer = ensure_local_tokenizer(aiperf)
        print(f"aiperf ready: {aiperf}\nlocal tokenizer: {tokenizer}")
        return 0
    aiperf = aiperf_executable(args.aiperf)
    if aiperf is None:
        print(
            "error: aiperf not found; run `python -m tritonllm bench --setup` (or `make bench-local`)", file=sys.stderr
        )
        return 2
    base = PRESETS[args.preset]
    api = getattr(args, "api", None) or base.api
    if api == "openai":
        from tritonllm import openai_client

        args.url = openai_client.base_url(args.url)
    else:
        args.url = args.url or os.environ.get("TRITON_HTTP_URL", "http://localhost:8000")
    preset = Preset(
        base.description,
        input_tokens=args.input_tokens or base.input_tokens,
        output_tokens=args.output_tokens or base.output_tokens,
        concurrencies=base.concurrencies,
        requests_per_run=base.requests_per_run,
        input_tokens_stddev=base.input_tokens_stddev if not args.input_tokens else 0,
    )
    try:
        concurrencies = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency else None
    except ValueError:
        print(
            f"error: --concurrency must be a comma-separated list of integers, got {args.concurrency!r}",
            file=sys.stderr,
        )
        return 2
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = Path(args.output_dir or REPO_ROOT / "results" / "bench" / f"{args.preset}-{stamp}").resolve()
    try:
        tokenizer = args.tokenizer or str(ensure_local_tokenizer(aiperf))
        print(
            f"benchmarking model '{args.model_name}' at {args.url} with AIPerf, preset {args.preset}: "
            f"{preset.input_tokens} in / {preset.output_tokens} out"
        )
        results = run_benchmark(
            args.url,
            args.model_name,
            preset,
            output_dir,
            aiperf,
            tokenizer,
            concurrencies=concurrencies,
            requests_per_run=args.request_count,
            streaming=not args.no_stream,
            api_key=args.api_key or os.environ.get(API_KEY_ENV),
            api=api,
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = {
        "model": args.model_name,
        "url": args.url,
        "preset": args.preset,
        "description": preset.description,
        "input_tokens": preset.input_tokens,
        "output_tokens": preset.output_tokens,
        "streaming": not args.no_stream,
        "tokenizer": tokenizer,
        "tool": AIPERF_REQUIREMENTS[0],
        "api": api,
    }
    note = concurrency_note(args.url, args.model_name, [r.concurrency for r in results]) if api == "kserve" else None
    if note:
        meta["note"] = note
    paths = write_reports(output_dir, meta, results)
    rows = [r.row for r in results if r.row]
    if rows:
        print(format_table(rows))
    if note:
        print(note)
    print("results: " + "\n         ".join(str(p) for p in paths.values()))
    return 0 if results and all(r.ok for r in results) else 1
