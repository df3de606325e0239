"""What the KServe client (tritonllm/kserve_client.py) and the OpenAI client
(tritonllm/openai_client.py) share, so that neither imports the other: a request's result, the
error that stops a run before anything is sent, API-key credentials, server-sent events.

Protocol-neutral: nothing here knows Triton's KServe APIs or the OpenAI API.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field


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


class SetupError(RuntimeError):
    """Nothing could be sent: unreachable server, unknown model, unusable model."""


# --------------------------------------------------------------------------- API keys

API_KEY_ENV = "TRITONLLM_API_KEY"
API_KEY_HINT = (f"the server wants an API key; pass --api-key name:secret or set {API_KEY_ENV} "
                "(EKS: the stack output apiKeyCommand prints one)")


def auth_headers(api_key: str | None) -> dict[str, str]:
    """HTTP Basic credentials for an API key `name:secret`, as the gateway (and `serve --api-key`)
    checks them; lower-case, so the same dict is valid gRPC metadata."""
    if not api_key:
        return {}
    if ":" not in api_key:
        raise SetupError("an API key looks like name:secret (as in the stack's apiKeys)")
    import base64

    return {"authorization": "Basic " + base64.b64encode(api_key.encode()).decode()}


# --------------------------------------------------------------------------- server-sent events


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
