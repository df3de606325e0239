"""`tritonllm client --api openai`: the same prompts file through the OpenAI-compatible API.

Speaks `/v1/chat/completions` (default: the server applies the model's chat template) or
`/v1/completions` (raw text) with or without streaming (server-sent events), against
`tritonllm serve`'s OpenAI port or a model's base URL on EKS (`pulumi stack output
openaiBaseUrls`). Results are RequestResult rows (tritonllm/client_core.py, shared with the KServe
client, tritonllm/kserve_client.py, which this module does not import), so the summary, the
results file and the exit codes are the same as for the KServe APIs. An API key `name:secret` for the
gateway (or `serve --api-key`) comes from `--api-key` / $TRITONLLM_API_KEY and goes out as HTTP
Basic credentials, as for the KServe APIs; without one, $OPENAI_API_KEY is sent as
`Authorization: Bearer <key>`, as the `openai` SDK sends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from tritonllm._llm_io import GenerationSettings
from tritonllm.client_core import (
    RequestResult,
    SetupError,
    host_port,
    http_refused,
    nothing_listens,
    probe,
    send_requests,
    sse_events,
    sse_json_events,
    ssl_context,
    tcp_connector,
)
from tritonllm.client_core import auth_headers as basic_auth_headers

DEFAULT_BASE_URL = "http://localhost:9000/v1"
ENDPOINTS = {"chat": "chat/completions", "completions": "completions"}


def base_url(explicit: str | None) -> str:
    return (explicit or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """Basic credentials for a gateway key `name:secret`; else the SDK's Bearer $OPENAI_API_KEY."""
    if api_key:
        return basic_auth_headers(api_key)
    if os.environ.get("OPENAI_API_KEY"):
        return {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    return {}


def request_body(
    model: str, prompt: str, settings: GenerationSettings, *, endpoint: str, stream: bool
) -> dict[str, Any]:
    """The OpenAI request for one prompt; settings the API has no field for are refused."""
    body: dict[str, Any] = {"model": model, "stream": stream}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
        if not settings.exclude_input_in_output:
            body["echo"] = True
    if stream:
        body["stream_options"] = {"include_usage": True}
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    for field in ("temperature", "top_p", "seed"):
        value = getattr(settings, field)
        if value is not None:
            body[field] = value
    if settings.stop:
        body["stop"] = list(settings.stop)
    unsupported = [name for name, value in (("top_k", settings.top_k),) if value is not None]
    if settings.ignore_eos:
        unsupported.append("ignore_eos")
    if unsupported:
        raise ValueError(f"the OpenAI API has no {', '.join(unsupported)}; drop the option or use --api kserve")
    return body


def error_message(body: str) -> str:
    """The reason in an error body: OpenAI's `error.message` (tritonllm serve's frontend sends it),
    else upstream Triton's `detail` (a message, or FastAPI's list of validation errors), else the body."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body.strip()
    if not isinstance(obj, dict):
        return body.strip()
    error = obj.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    detail = obj.get("detail", body.strip())
    return detail if isinstance(detail, str) else json.dumps(detail)


def _text_of(obj: dict[str, Any], endpoint: str) -> str:
    choices = obj.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if endpoint == "chat":
        part = choice.get("delta") or choice.get("message") or {}
        return part.get("content") or ""
    return choice.get("text") or ""


async def run_requests(
    url: str,
    model: str,
    prompts: list[str],
    settings: GenerationSettings,
    *,
    endpoint: str = "chat",
    stream: bool = True,
    concurrency: int = 1,
    timeout: float = 300.0,
    on_result=None,
    api_key: str | None = None,
    stop_when_refused: bool = False,
    ca_cert: str | None = None,
) -> list:
    """Send every prompt (at most `concurrency` in flight); the results in order. With stop_when_refused
    the first prompt goes alone, and RequestsRefused is raised when the server answers it with a 4xx
    (see client_core.send_requests; a value the model refuses is a 500 here, as upstream answers it)."""
    import aiohttp

    base = base_url(url)
    headers = {"Content-Type": "application/json", **auth_headers(api_key)}
    try:
        bodies = [request_body(model, p, settings, endpoint=endpoint, stream=stream) for p in prompts]
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    results = [RequestResult(index=i, prompt=p) for i, p in enumerate(prompts)]
    connector = tcp_connector(ssl_context(ca_cert))
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        try:
            async with session.get(f"{base}/models", timeout=aiohttp.ClientTimeout(total=30)) as resp:
                listing = await resp.text()
                if resp.status != 200:
                    raise SetupError(f"cannot list the models at {base}/models: HTTP {resp.status} {listing.strip()}")
        except aiohttp.ClientError as exc:
            host, port = host_port(base)
            answer = await asyncio.to_thread(probe, host, port)
            if answer == "refused":
                raise SetupError(f"cannot reach {base}: {nothing_listens(host, port)}") from None
            if answer == "http2":
                raise SetupError(
                    f"{host}:{port} is a gRPC port (it answers in HTTP/2), not the OpenAI API: "
                    "give --url the OpenAI base URL, e.g. http://127.0.0.1:9000/v1"
                ) from None
            raise SetupError(f"cannot reach {base}: {exc}") from None
        served = [m.get("id") for m in json.loads(listing).get("data", [])]
        if model not in served:
            raise SetupError(f"model '{model}' is not served at {base}; it serves {served}")

        async def send(i: int) -> None:
            await _generate(session, f"{base}/{ENDPOINTS[endpoint]}", bodies[i], results[i], endpoint, stream, timeout)

        await send_requests(
            results,
            send,
            concurrency=concurrency,
            on_result=on_result,
            refused=http_refused if stop_when_refused else None,
        )
    return results


async def _generate(
    session, url: str, body: dict[str, Any], result, endpoint: str, stream: bool, timeout: float
) -> None:
    import aiohttp

    started = time.perf_counter()
    pieces: list[str] = []
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200 or not stream:
                text = await resp.text()
                if resp.status != 200:
                    result.status = str(resp.status)
                    result.error = error_message(text)
                else:
                    now = time.perf_counter() - started
                    result.ttft_s, result.chunks, result.chunk_times_s = now, 1, [now]
                    pieces.append(_text_of(json.loads(text), endpoint))
            else:
                async for event in sse_events(resp.content):
                    _event(event, endpoint, pieces, result, started)
    except TimeoutError:
        result.error = f"timed out after {timeout:.0f}s"
    except aiohttp.ClientError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.latency_s = time.perf_counter() - started
    result.text = "".join(pieces)
    result.ok = not result.error


def _event(event: bytes, endpoint: str, pieces: list[str], result, started: float) -> None:
    for obj in sse_json_events(event, result):
        text = _text_of(obj, endpoint)
        if text:
            result.add_chunk(text, started, pieces)
