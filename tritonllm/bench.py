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

This module is the command: the AIPerf environment, the reports and the CLI. The runs are made
by tritonllm/kserve_bench.py (generate extension) or tritonllm/openai_bench.py (AIPerf's OpenAI
mode), which share tritonllm/bench_core.py and not each other.

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
from pathlib import Path
from typing import Any

from tritonllm import kserve_bench, openai_bench, openai_client
from tritonllm.bench_core import METRICS, PRESETS, STATS, BenchError, Preset, RunResult
from tritonllm.client_core import API_KEY_ENV, CA_CERT_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("TRITONLLM_CACHE_DIR", REPO_ROOT / ".cache" / "tritonllm"))
AIPERF_VENV = Path(os.environ.get("TRITONLLM_AIPERF_VENV", REPO_ROOT / ".cache" / "aiperf-venv"))
# Exact pins for the AIPerf virtualenv (gguf: to export the local model's tokenizer offline).
AIPERF_REQUIREMENTS = ("aiperf==0.13.0", "gguf==0.19.0", "transformers==5.23.0", "tokenizers==0.23.3")
LOCAL_TOKENIZER_DIR = CACHE_DIR / "tokenizers" / "smollm2-135m-instruct"


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


def run_benchmark(*args, api: str = "kserve", **kwargs) -> list[RunResult]:
    """AIPerf over Triton's generate extension (api kserve) or the OpenAI API (api openai)."""
    if api == "openai":
        return openai_bench.run_benchmark(*args, **kwargs)
    return kserve_bench.run_benchmark(*args, **kwargs)


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
        "--ca-cert",
        default=None,
        metavar="FILE",
        help="verify the endpoint's TLS certificate against this CA certificate (the stack output "
        f"caCertificate or `serve --tls`'s ca.pem; default ${CA_CERT_ENV}): given to AIPerf as SSL_CERT_FILE",
    )
    parser.add_argument(
        "--setup", action="store_true", help="create the AIPerf virtualenv and the local tokenizer, then exit"
    )


def main(args: argparse.Namespace) -> int:
    if args.setup:
        installed = setup_aiperf()
        local_tokenizer = ensure_local_tokenizer(installed)
        print(f"aiperf ready: {installed}\nlocal tokenizer: {local_tokenizer}")
        return 0
    aiperf = aiperf_executable(args.aiperf)
    if aiperf is None:
        print(
            "error: aiperf not found; run `python -m tritonllm bench --setup` (or `make bench-local`)", file=sys.stderr
        )
        return 2
    ca_cert = getattr(args, "ca_cert", None) or os.environ.get(CA_CERT_ENV)
    if ca_cert:
        if not Path(ca_cert).is_file():
            print(f"error: --ca-cert {ca_cert}: no such file", file=sys.stderr)
            return 2
        # Python's ssl (the interface probe) and AIPerf (a child process, aiohttp) verify against the
        # OpenSSL default file, which $SSL_CERT_FILE names: this CA and nothing else.
        os.environ["SSL_CERT_FILE"] = str(Path(ca_cert).resolve())
    base = PRESETS[args.preset]
    api = getattr(args, "api", None) or base.api
    if api == "openai":
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
    note = (
        kserve_bench.concurrency_note(args.url, args.model_name, [r.concurrency for r in results])
        if api == "kserve"
        else None
    )
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
