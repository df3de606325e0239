"""`python -m tritonllm client`: send a file of prompts to a Triton LLM model, record the answers.

Works unchanged against the local CPU model, Triton's vLLM backend and the TRT-LLM `ensemble`:
it reads the model's config first and builds each request from the inputs the model has
(see tritonllm/_llm_io.py). gRPC streaming is the default; `--protocol http` uses the
generate extension (`/generate`, or `/generate_stream` with `--stream`); `--api openai` the
OpenAI-compatible API.

This module is the command: arguments, one line per request, the summary and the results file.
The requests are sent by tritonllm/kserve_client.py (KServe v2, gRPC and HTTP) or
tritonllm/openai_client.py (OpenAI API), which share tritonllm/client_core.py and not each other.

One line per request (status, latency, time to first token, chunks), a summary, and the
results file (text, or JSON lines when it ends in .jsonl/.json). Exit code: 0 when every
request succeeded, 1 when any failed, 2 when nothing could be sent (bad URL, unknown model,
missing prompts file). The first request goes alone: when the server refuses it for what it
asks (HTTP 4xx, gRPC INVALID_ARGUMENT or the model's error response, e.g. --max-tokens out of
range), the reason is said once and the others, which carry the same settings, are not sent (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tritonllm import kserve_client, openai_client
from tritonllm._llm_io import GenerationSettings
from tritonllm.client_core import API_KEY_ENV, CA_CERT_ENV, RequestResult, RequestsRefused, SetupError


class UsageError(ValueError):
    """The arguments contradict each other; the message says what to change."""


# --------------------------------------------------------------------------- helpers


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped.
    A literal "\\n" in a line stands for a newline inside the prompt."""
    prompts = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompts.append(line.rstrip("\n").replace("\\n", "\n"))
    return prompts


def infer_protocol(url: str | None, protocol: str | None) -> tuple[str, bool]:
    """(protocol, tls) from --url and --protocol: the URL's scheme decides when it has one.

    http://, https:// -> HTTP (https: TLS); grpc://, grpcs:// -> gRPC (grpcs: TLS); host:port ->
    --protocol, gRPC by default. A scheme that contradicts an explicit --protocol is an error
    that names both ways out.
    """
    scheme = url.split("://", 1)[0].lower() if url and "://" in url else ""
    from_url = {"http": "http", "https": "http", "grpc": "grpc", "grpcs": "grpc"}.get(scheme)
    if scheme and from_url is None:
        raise UsageError(
            f"--url {url}: unknown scheme '{scheme}://'; use http(s)://host:port for HTTP or "
            "host:port (or grpc://host:port) for gRPC"
        )
    if from_url and protocol and protocol != from_url:
        if from_url == "http":
            raise UsageError(
                f"--url {url} is an HTTP address but --protocol {protocol} was given: drop "
                f"--protocol (the URL decides), or for gRPC give host:port of Triton's gRPC port "
                "(8001 by default), e.g. --url 127.0.0.1:8001"
            )
        raise UsageError(
            f"--url {url} is a gRPC address but --protocol {protocol} was given: drop --protocol, "
            "or for HTTP give http://host:port of Triton's HTTP port (8000 by default)"
        )
    return from_url or protocol or "grpc", scheme in ("https", "grpcs")


def _excerpt(text: str, width: int = 48) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_line(result: RequestResult, total: int) -> str:
    width = len(str(total))
    head = f"[{result.index + 1:>{width}}/{total}]"
    if result.ok:
        ttft = f"{result.ttft_s:.3f}s" if result.ttft_s is not None else "-"
        return (
            f"{head} OK   {result.latency_s:7.3f}s  ttft {ttft:>7}  {result.chunks:4d} chunks  "
            f"{_excerpt(result.prompt)!r} -> {_excerpt(result.text)!r}"
        )
    status = f" [{result.status}]" if result.status else ""
    return f"{head} FAIL {result.latency_s:7.3f}s{status}  {result.error}"


def summarize(results: list[RequestResult], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    lat = sorted(r.latency_s for r in ok)
    ttft = sorted(r.ttft_s for r in ok if r.ttft_s is not None)

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, max(0, int(round(q / 100 * len(values) + 0.5)) - 1))]

    return {
        "requests": len(results),
        "succeeded": len(ok),
        "failed": len(results) - len(ok),
        "wall_time_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        "latency_mean_s": statistics.fmean(lat) if lat else None,
        "latency_p50_s": pct(lat, 50),
        "latency_p90_s": pct(lat, 90),
        "latency_max_s": lat[-1] if lat else None,
        "ttft_p50_s": pct(ttft, 50),
    }


def write_results(path: Path, results: list[RequestResult], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".jsonl", ".json"):
        with path.open("w", encoding="utf-8") as fh:
            for r in results:
                row = asdict(r)
                row.update({"model": meta["model"], "protocol": meta["protocol"]})
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    with path.open("w", encoding="utf-8") as fh:
        for r in results:
            fh.write(f"=== request {r.index + 1} ({'ok' if r.ok else 'FAILED'}, {r.latency_s:.3f}s)\n")
            fh.write(f"Prompt:\n{r.prompt}\n\n")
            fh.write(f"Output:\n{r.text}\n\n" if r.ok else f"Error:\n{r.error}\n\n")


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="server address; the protocol follows it: http(s)://host:port is HTTP, "
        "host:port (or grpc://host:port) is gRPC (default $TRITON_GRPC_URL or localhost:8001, "
        "with --protocol http $TRITON_HTTP_URL or http://localhost:8000)",
    )
    parser.add_argument(
        "--protocol",
        choices=("grpc", "http"),
        default=None,
        help="only needed without --url or with a host:port URL (default: from --url, else grpc)",
    )
    parser.add_argument(
        "--api",
        choices=("kserve", "openai"),
        default="kserve",
        help="kserve: Triton's v2 APIs (--protocol); openai: the OpenAI-compatible API at --url "
        "(default $OPENAI_BASE_URL or http://localhost:9000/v1), streaming unless --no-stream",
    )
    parser.add_argument(
        "--openai-endpoint",
        choices=("chat", "completions"),
        default="chat",
        help="with --api openai: /v1/chat/completions (chat template applied by the server) or "
        "/v1/completions (raw text) (default %(default)s)",
    )
    parser.add_argument(
        "--model-name",
        default="smollm2",
        help="model to call, e.g. smollm2, ensemble, llama-2-7b-chat (default %(default)s)",
    )
    parser.add_argument(
        "--input-prompts", default="prompts.txt", help="prompts file, one per line (default %(default)s)"
    )
    parser.add_argument(
        "--results-file",
        default="results/client-results.txt",
        help="where to write prompts and answers; .jsonl/.json for JSON lines (default %(default)s)",
    )
    stream = parser.add_mutually_exclusive_group()
    stream.add_argument(
        "--stream",
        dest="stream",
        action="store_true",
        default=None,
        help="stream tokens (default for gRPC; /generate_stream for HTTP)",
    )
    stream.add_argument("--no-stream", dest="stream", action="store_false", help="one response per request")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens to generate (default %(default)s)")
    parser.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature; 0 = greedy, the same answer every time (model default if unset)",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        help="nucleus sampling: sample only from the most likely tokens whose probabilities add up "
        "to this, in (0, 1]; 1 = off (model default if unset)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        help="sample only from the k most likely tokens; 1 = greedy, 0 or -1 = off (model default if unset)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed of the sampler, 0 to 2^32-1: the same seed, prompt and settings give "
        "the same answer (random if unset)",
    )
    parser.add_argument("--stop", action="append", default=[], help="stop word (repeatable)")
    parser.add_argument("--ignore-eos", action="store_true", help="always generate --max-tokens tokens")
    parser.add_argument(
        "--include-input",
        action="store_true",
        help="ask the model to prepend the prompt to the output (exclude_input_in_output=false)",
    )
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat-template",
        dest="chat_template",
        action="store_true",
        default=None,
        help="force the chat template (models with an apply_chat_template input)",
    )
    chat.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="send prompts raw (models with an apply_chat_template input)",
    )
    parser.add_argument(
        "--sampling-style",
        choices=("auto", "json", "tensors"),
        default="auto",
        help="auto: sampling_parameters JSON when the model has it (vLLM, local), else separate "
        "tensors (TRT-LLM ensemble)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per-request timeout in seconds")
    parser.add_argument("--ssl", action="store_true", help="TLS (https / secure gRPC channel)")
    parser.add_argument(
        "--ca-cert",
        default=None,
        metavar="FILE",
        help="verify the server's certificate against this CA certificate (implies TLS): the stack output "
        f"caCertificate or `serve --tls`'s ca.pem (default ${CA_CERT_ENV})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"API key name:secret for the gateway or `serve --api-key` (default ${API_KEY_ENV})",
    )
    parser.add_argument("--quiet", action="store_true", help="only print the summary")


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        stop=list(args.stop),
        seed=args.seed,
        ignore_eos=args.ignore_eos,
        exclude_input_in_output=not args.include_input,
        apply_chat_template=args.chat_template,
    )


def main(args: argparse.Namespace) -> int:
    try:
        protocol, tls = infer_protocol(args.url, args.protocol)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # under `tritonllm serve -- ...` the server's addresses come in the environment
    url = args.url or (
        os.environ.get("TRITON_GRPC_URL", "localhost:8001")
        if protocol == "grpc"
        else os.environ.get("TRITON_HTTP_URL", "http://localhost:8000")
    )
    ca_cert = getattr(args, "ca_cert", None) or os.environ.get(CA_CERT_ENV) or None
    ssl = args.ssl or tls or bool(ca_cert)
    if ca_cert and url.startswith("http://"):
        print(f"error: --ca-cert verifies TLS, but --url {url} is plain http://; use https://", file=sys.stderr)
        return 2
    stream = args.stream if args.stream is not None else (protocol == "grpc")
    openai_api = getattr(args, "api", "kserve") == "openai"
    if openai_api:
        protocol, url = f"openai-{args.openai_endpoint}", openai_client.base_url(args.url)
        stream = args.stream if args.stream is not None else True
    try:
        prompts = read_prompts(args.input_prompts)
    except OSError as exc:
        print(f"error: cannot read prompts: {exc}", file=sys.stderr)
        return 2
    if not prompts:
        print(f"error: no prompts in {args.input_prompts}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    total = len(prompts)
    mode = f"{protocol}{' streaming' if stream else ''}"
    print(
        f"sending {total} prompts to model '{args.model_name}' at {url} ({mode}, concurrency {args.concurrency})",
        flush=True,
    )

    def report(result: RequestResult) -> None:
        if not args.quiet or not result.ok:
            print(format_line(result, total), flush=True)

    started = time.perf_counter()
    try:
        if openai_api:
            iface, results = (
                None,
                asyncio.run(
                    openai_client.run_requests(
                        url,
                        args.model_name,
                        prompts,
                        settings,
                        endpoint=args.openai_endpoint,
                        stream=stream,
                        concurrency=args.concurrency,
                        timeout=args.timeout,
                        on_result=report,
                        api_key=args.api_key or os.environ.get(API_KEY_ENV),
                        stop_when_refused=True,
                        ca_cert=ca_cert,
                    )
                ),
            )
        else:
            iface, results = asyncio.run(
                kserve_client.run_requests(
                    url,
                    args.model_name,
                    prompts,
                    settings,
                    protocol=protocol,
                    stream=stream,
                    concurrency=args.concurrency,
                    timeout=args.timeout,
                    ssl=ssl,
                    style=args.sampling_style,
                    on_result=report,
                    api_key=args.api_key or os.environ.get(API_KEY_ENV),
                    stop_when_refused=True,
                    ca_cert=ca_cert,
                )
            )
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RequestsRefused as exc:  # said once, for the first request; the others were not sent
        print(f"error: {exc}", file=sys.stderr)
        write_results(Path(args.results_file), [exc.result], {"model": args.model_name, "protocol": protocol})
        print(f"results written to {args.results_file}")
        return 1
    wall = time.perf_counter() - started
    summary = summarize(results, wall)
    write_results(Path(args.results_file), results, {"model": args.model_name, "protocol": protocol})
    p50 = summary["latency_p50_s"]
    print(
        f"total: {summary['succeeded']}/{summary['requests']} succeeded, {summary['failed']} failed in {wall:.2f}s"
        + (
            f"; latency p50 {p50:.3f}s, p90 {summary['latency_p90_s']:.3f}s, max {summary['latency_max_s']:.3f}s"
            if p50 is not None
            else ""
        )
        + (f"; {summary['requests_per_s']:.2f} req/s" if summary["requests_per_s"] else "")
    )
    note = iface.concurrency_note(min(args.concurrency, total)) if iface is not None else None
    if note:
        print(note)
    print(f"results written to {args.results_file}")
    return 0 if summary["failed"] == 0 else 1
