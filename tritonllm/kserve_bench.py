"""The KServe half of `python -m tritonllm bench`: AIPerf's `template` endpoint against Triton's
generate extension (`/v2/models/<m>/generate_stream`, server-sent events), with the request
body each kind of Triton model needs, built from the model's own config (the local model, the
vLLM backend and the TRT-LLM ensemble all work).

It shares tritonllm/bench_core.py (presets, one AIPerf run) and tritonllm/client_core.py (API-key
credentials) with the OpenAI half, tritonllm/openai_bench.py, and imports nothing of it;
tritonllm/bench.py (the command) chooses between them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tritonllm._llm_io import ModelInterface
from tritonllm.bench_core import BenchError, Preset, RunResult, aiperf_load_args, run_aiperf
from tritonllm.client_core import API_KEY_ENV, auth_headers


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
