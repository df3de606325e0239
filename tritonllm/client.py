"""`python -m tritonllm client`: send a file of prompts to a Triton LLM model, record the answers.

Works unchanged against the local CPU model, Triton's vLLM backend and the TRT-LLM `ensemble`:
it reads the model's config first and builds each request from the inputs the model has
(see tritonllm/_llm_io.py). gRPC streaming is the default; `--protocol http` uses the
generate extension (`/generate`, or `/generate_stream` with `--stream`).

One line per request (status, latency, time to first token, chunks), a summary, and the
results file (text, or JSON lines when it ends in .jsonl/.json). Exit code: 0 when every
request succeeded, 1 when any failed, 2 when nothing could be sent (bad URL, unknown model,
missing prompts file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonllm._llm_io import ContractError, GenerationSettings, ModelInterface, plan_inputs, text_from_generate_json


@dataclass
class RequestResult:
    index: int
    prompt: str
    ok: bool = False
    text: str = ""
    error: str = ""
    status: str = ""  # HTTP status code or gRPC status name of a failure
    latency_s: float = 0.0
    ttft_s: float | None = None
    chunks: int = 0
    chunk_times_s: list[float] = field(default_factory=list)  # arrival of each text chunk, from send

    def add_chunk(self, text: str, started: float, pieces: list[str]) -> None:
        """Record a text chunk's arrival (the first one is the time to first token)."""
        now = time.perf_counter() - started
        if self.ttft_s is None:
            self.ttft_s = now
        self.chunks += 1
        self.chunk_times_s.append(now)
        pieces.append(text)


async def sse_events(content):
    """The server-sent events of a streamed aiohttp body, each as bytes (split at blank lines)."""
    buffer = b""
    async for raw in content.iter_any():
        buffer += raw
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event
    if buffer.strip():
        yield buffer


def sse_json_events(event: bytes, result: RequestResult):
    """The JSON objects of one server-sent event (`data:` lines; `[DONE]` skipped). A malformed
    line or an `{"error": ...}` object sets `result.error` (the message, for OpenAI-style errors)."""
    for line in event.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == "[DONE]":
            continue
        try:
            obj = json.loads(payload)
        except ValueError:
            result.error = f"malformed event: {payload[:200]}"
            continue
        if "error" in obj:
            err = obj["error"]
            result.error = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            continue
        yield obj


class SetupError(RuntimeError):
    """Nothing could be sent: unreachable server, unknown model, unusable model."""


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


def grpc_target(url: str) -> str:
    for prefix in ("grpc://", "grpcs://", "http://", "https://"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
    return url.rstrip("/")


# The EKS gateway routes gRPC (and server-wide HTTP health) by this header, since gRPC
# carries the model name inside the message; a plain Triton ignores it.
MODEL_HEADER = "x-triton-model"


def routing_headers(model: str) -> dict[str, str]:
    return {MODEL_HEADER: model}


API_KEY_ENV = "TRITONLLM_API_KEY"
_API_KEY_HINT = (
    f"the server wants an API key; pass --api-key name:secret or set {API_KEY_ENV} "
    "(EKS: the stack output apiKeyCommand prints one)"
)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """HTTP Basic credentials for an API key `name:secret`, as the gateway (and `serve --api-key`)
    checks them; lower-case, so the same dict is valid gRPC metadata."""
    if not api_key:
        return {}
    if ":" not in api_key:
        raise SetupError("an API key looks like name:secret (as in the stack's apiKeys)")
    import base64

    return {"authorization": "Basic " + base64.b64encode(api_key.encode()).decode()}


def http_base(url: str, ssl: bool = False) -> str:
    if "://" not in url:
        url = ("https://" if ssl else "http://") + url
    return url.rstrip("/")


def _grpc_status(error: Exception) -> str:
    status = getattr(error, "status", None)
    try:
        return str(status()) if callable(status) else str(status or "")
    except Exception:  # noqa: BLE001
        return ""


def _grpc_message(error: Exception) -> str:
    message = getattr(error, "message", None)
    try:
        return str(message()) if callable(message) else str(error)
    except Exception:  # noqa: BLE001
        return str(error)


# --------------------------------------------------------------------------- gRPC


class GrpcBackend:
    def __init__(self, url: str, ssl: bool = False, api_key: str | None = None) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._auth = auth_headers(api_key)
        self._grpc = grpcclient
        self.url = url
        self.client = grpcclient.InferenceServerClient(grpc_target(url), ssl=ssl)

    async def model_interface(self, model: str) -> ModelInterface:
        try:
            config = await self.client.get_model_config(
                model, headers={**routing_headers(model), **self._auth}, as_json=True
            )
        except Exception as exc:  # noqa: BLE001
            message, status = _grpc_message(exc), _grpc_status(exc)
            if "UNAUTHENTICATED" in status:
                raise SetupError(f"gRPC UNAUTHENTICATED: {_API_KEY_HINT}") from None
            served = await self.served_models()
            if served is not None:
                raise SetupError(unknown_model_message(model, self.url, served, message)) from None
            hint = ""
            if "UNAVAILABLE" in status or "Socket closed" in message or "failed to connect" in message.lower():
                hint = (
                    f"\n  no gRPC server answers at {grpc_target(self.url)}: if that is Triton's HTTP port, "
                    f"use --url http://{grpc_target(self.url)} (the protocol follows the URL)"
                )
            raise SetupError(f"cannot read the config of model '{model}': {message}{hint}") from None
        return ModelInterface.from_config(config)

    async def served_models(self) -> dict[str, str] | None:
        """name -> state from the repository index; None when the server does not answer it."""
        try:
            index = await self.client.get_model_repository_index(
                headers=self._auth or None, as_json=True, client_timeout=10
            )
        except Exception:  # noqa: BLE001
            return None
        return {m.get("name", ""): m.get("state", "UNKNOWN") for m in (index or {}).get("models", [])}

    def _inputs(self, iface: ModelInterface, values: dict[str, Any]) -> list:
        from tritonllm._llm_io import to_numpy

        tensors = []
        for name, value in values.items():
            array = to_numpy(iface, name, value)
            tensor = self._grpc.InferInput(name, list(array.shape), iface.inputs[name].datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    async def generate(
        self, iface: ModelInterface, model: str, values: dict[str, Any], result: RequestResult, timeout: float
    ) -> None:
        inputs = self._inputs(iface, values)
        outputs = [self._grpc.InferRequestedOutput("text_output")]
        started = time.perf_counter()
        pieces: list[str] = []

        # The streaming RPC serves decoupled and non-decoupled models alike (one response for
        # the latter), and unary ModelInfer refuses decoupled ones: always stream.
        async def requests():
            yield {
                "model_name": model,
                "inputs": inputs,
                "outputs": outputs,
                "request_id": str(result.index),
                "enable_empty_final_response": True,
            }

        try:
            async for response, error in self.client.stream_infer(
                requests(), stream_timeout=timeout, headers={**routing_headers(model), **self._auth}
            ):
                if error is not None:
                    result.error, result.status = _grpc_message(error), _grpc_status(error)
                    break
                self._collect(response, pieces, result, started)
                final = response.get_response().parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    break
        except Exception as exc:  # noqa: BLE001
            result.error, result.status = _grpc_message(exc), _grpc_status(exc)
        result.latency_s = time.perf_counter() - started
        result.text = "".join(pieces)
        result.ok = not result.error

    @staticmethod
    def _collect(response, pieces: list[str], result: RequestResult, started: float) -> None:
        array = response.as_numpy("text_output")
        if array is None:
            return
        text = "".join(
            v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)
        )
        if text:
            result.add_chunk(text, started, pieces)

    async def close(self) -> None:
        await self.client.close()


# --------------------------------------------------------------------------- HTTP


class HttpBackend:
    def __init__(self, url: str, ssl: bool = False, stream: bool = False, api_key: str | None = None) -> None:
        self._auth = auth_headers(api_key)
        self.base = http_base(url, ssl)
        self.stream = stream
        self.session = None

    async def _session(self):
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self.session

    async def model_interface(self, model: str) -> ModelInterface:
        import aiohttp

        session = await self._session()
        try:
            async with session.get(
                f"{self.base}/v2/models/{model}/config", headers={**routing_headers(model), **self._auth}
            ) as response:
                body = await response.text()
                if response.status == 401:
                    raise SetupError(f"HTTP 401 from {self.base}: {_API_KEY_HINT}")
                if response.status != 200:
                    served = await self.served_models()
                    message = f"HTTP {response.status} {body.strip()}"
                    if served is not None:
                        raise SetupError(unknown_model_message(model, self.base, served, message))
                    raise SetupError(f"cannot read the config of model '{model}': {message}")
                return ModelInterface.from_config(json.loads(body))
        except aiohttp.ClientError as exc:
            hint = ""
            if isinstance(exc, aiohttp.ServerDisconnectedError) or "Server disconnected" in str(exc):
                hint = (
                    f"\n  if {self.base} is Triton's gRPC port, use --url {self.base.split('://', 1)[-1]} "
                    "(host:port, no scheme: gRPC)"
                )
            raise SetupError(f"cannot reach {self.base}: {exc}{hint}") from None

    async def served_models(self) -> dict[str, str] | None:
        """name -> state from POST /v2/repository/index; None when the server does not answer it."""
        import aiohttp

        session = await self._session()
        try:
            async with session.post(
                f"{self.base}/v2/repository/index", json={}, headers=self._auth, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                if response.status != 200:
                    return None
                index = json.loads(await response.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        return {m.get("name", ""): m.get("state", "UNKNOWN") for m in index if isinstance(m, dict)}

    async def generate(
        self, iface: ModelInterface, model: str, values: dict[str, Any], result: RequestResult, timeout: float
    ) -> None:
        import aiohttp

        session = await self._session()
        route = "generate_stream" if self.stream else "generate"
        started = time.perf_counter()
        pieces: list[str] = []
        try:
            async with session.post(
                f"{self.base}/v2/models/{model}/{route}",
                json=values,
                headers={**routing_headers(model), **self._auth},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if not self.stream or response.content_type == "application/json":
                    body = await response.text()
                    now = time.perf_counter() - started
                    try:
                        obj = json.loads(body)
                    except ValueError:
                        obj = {"error": body.strip()}
                    if response.status != 200 or "error" in obj:
                        result.error, result.status = str(obj.get("error", body)), str(response.status)
                    else:
                        text = text_from_generate_json(obj)
                        result.ttft_s, result.chunks, result.chunk_times_s = now, 1, [now]
                        pieces.append(text)
                else:
                    if response.status != 200:
                        result.status = str(response.status)
                    async for event in sse_events(response.content):
                        self._event(event, pieces, result, started)
                    if response.status != 200 and not result.error:
                        result.error = f"HTTP {response.status}"
        except asyncio.TimeoutError:
            result.error = f"timed out after {timeout:.0f}s"
        except aiohttp.ClientError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        result.latency_s = time.perf_counter() - started
        result.text = "".join(pieces)
        result.ok = not result.error

    @staticmethod
    def _event(event: bytes, pieces: list[str], result: RequestResult, started: float) -> None:
        for obj in sse_json_events(event, result):
            text = text_from_generate_json(obj)
            if text:
                result.add_chunk(text, started, pieces)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def unknown_model_message(model: str, where: str, served: dict[str, str], error: str) -> str:
    """The config of `model` could not be read; say which models the server does serve."""
    if not served:
        return f"cannot read the config of model '{model}': {error}\n  the server at {where} serves no model"
    listed = ", ".join(f"{name} ({state})" for name, state in sorted(served.items()))
    if model in served:
        return f"cannot read the config of model '{model}' ({served[model]}): {error}\n  served: {listed}"
    return f"model '{model}' is not served at {where}; it serves: {listed}\n  pass one of them with --model-name"


# --------------------------------------------------------------------------- runner


async def run_requests(
    url: str,
    model: str,
    prompts: list[str],
    settings: GenerationSettings,
    protocol: str = "grpc",
    stream: bool = True,
    concurrency: int = 1,
    timeout: float = 300.0,
    ssl: bool = False,
    style: str = "auto",
    on_result=None,
    api_key: str | None = None,
) -> tuple[ModelInterface, list[RequestResult]]:
    """Send every prompt (at most `concurrency` in flight); return the model interface and results in order."""
    backend = GrpcBackend(url, ssl, api_key) if protocol == "grpc" else HttpBackend(url, ssl, stream, api_key)
    try:
        iface = await backend.model_interface(model)
        try:
            iface.check_llm()
            planned = [plan_inputs(iface, p, settings, stream=stream, style=style) for p in prompts]
        except ContractError as exc:
            raise SetupError(str(exc)) from None
        semaphore = asyncio.Semaphore(max(1, concurrency))
        results = [RequestResult(index=i, prompt=p) for i, p in enumerate(prompts)]

        async def one(i: int) -> None:
            async with semaphore:
                await backend.generate(iface, model, planned[i], results[i], timeout)
            if on_result:
                on_result(results[i])

        await asyncio.gather(*(one(i) for i in range(len(prompts))))
        return iface, results
    finally:
        await backend.close()


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
    ssl = args.ssl or tls
    stream = args.stream if args.stream is not None else (protocol == "grpc")
    openai_api = getattr(args, "api", "kserve") == "openai"
    if openai_api:
        from tritonllm import openai_client

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
                    )
                ),
            )
        else:
            iface, results = asyncio.run(
                run_requests(
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
                )
            )
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
