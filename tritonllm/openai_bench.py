"""`tritonllm bench --api openai` (preset `openai-chat`): AIPerf in its own OpenAI mode.

AIPerf's `chat` / `completions` endpoint types speak the OpenAI API natively (request body,
server-sent events, usage), so no payload template is needed: it is pointed at the base URL's
`/chat/completions` (or `/completions`) path. The base URL is `tritonllm serve`'s OpenAI port
(`http://127.0.0.1:9000/v1`) or a model's on EKS (`.../openai/<model>/v1`). Output length is
pinned with `ignore_eos` (a field of the OpenAI schema Triton's frontend accepts; the local model
honours it), as the KServe presets pin it with min_tokens/ignore_eos.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from tritonllm.bench import BenchError, Preset, RunResult, aiperf_load_args, run_aiperf
from tritonllm.openai_client import auth_headers

ENDPOINT_PATHS = {"chat": "chat/completions", "completions": "completions"}


def split_base_url(base_url: str, endpoint: str = "chat") -> tuple[str, str]:
    """('http://host:port', '/prefix/v1/chat/completions') for AIPerf's --url and --custom-endpoint."""
    parts = urlsplit(base_url.rstrip("/"))
    if not parts.scheme or not parts.netloc:
        raise BenchError(f"not an OpenAI base URL: {base_url!r} (expected e.g. http://127.0.0.1:9000/v1)")
    return f"{parts.scheme}://{parts.netloc}", f"{parts.path}/{ENDPOINT_PATHS[endpoint]}"


def aiperf_command(
    aiperf: Path,
    base_url: str,
    model: str,
    tokenizer: str,
    preset: Preset,
    concurrency: int,
    requests: int,
    artifact_dir: Path,
    streaming: bool,
    endpoint: str = "chat",
    api_key: str | None = None,
) -> list[str]:
    server, path = split_base_url(base_url, endpoint)
    cmd = [
        str(aiperf),
        "profile",
        "--model",
        model,
        "--url",
        server,
        "--endpoint-type",
        endpoint,
        "--custom-endpoint",
        path,
        "--extra-inputs",
        "ignore_eos:true",
        *aiperf_load_args(tokenizer, preset, concurrency, requests, artifact_dir),
    ]
    for name, value in auth_headers(api_key).items():
        cmd += ["--header", f"{name}:{value}"]
    if streaming:
        cmd.append("--streaming")
    return cmd


def check_model(base_url: str, model: str, timeout: float = 30, api_key: str | None = None) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{base_url.rstrip('/')}/models", headers=auth_headers(api_key))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            served = [m.get("id") for m in json.loads(resp.read().decode()).get("data", [])]
    except urllib.error.HTTPError as exc:
        raise BenchError(f"cannot list the models at {base_url}: HTTP {exc.code}") from None
    except OSError as exc:
        raise BenchError(f"cannot reach {base_url}: {exc}") from None
    if model not in served:
        raise BenchError(f"model '{model}' is not served at {base_url}; it serves {served}")


def run_benchmark(
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
    endpoint: str = "chat",
    api_key: str | None = None,
) -> list[RunResult]:
    check_model(url, model, api_key=api_key)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    for concurrency in concurrencies or preset.concurrencies:
        requests = requests_per_run or preset.requests_per_run or max(8, 4 * concurrency)
        artifact_dir = output_dir / f"concurrency-{concurrency}"
        artifact_dir.mkdir(parents=True, exist_ok=True)
        cmd = aiperf_command(
            aiperf,
            url,
            model,
            tokenizer,
            preset,
            concurrency,
            requests,
            artifact_dir,
            streaming,
            endpoint,
            api_key=api_key,
        )
        log(f"  concurrency {concurrency:>3}: {requests} requests (OpenAI API, {endpoint}) ...")
        started = time.monotonic()
        result = run_aiperf(cmd, artifact_dir, concurrency, requests)
        results.append(result)
        if result.row:
            r = result.row
            log(
                f"  concurrency {concurrency:>3}: done in {time.monotonic() - started:.0f}s; TTFT p50 "
                f"{r['ttft_ms_p50'] or 0:.0f} ms, ITL p50 {r['itl_ms_p50'] or 0:.1f} ms, latency p99 "
                f"{r['request_latency_ms_p99'] or 0:.0f} ms, {r['requests_per_s']:.2f} req/s, "
                f"{r['output_tokens_per_s']:.1f} output tok/s"
            )
        if not result.ok:
            log(f"  concurrency {concurrency:>3}: FAILED: {result.error}")
    return results
