"""What the KServe client (tritonllm/kserve_client.py) and the OpenAI client
(tritonllm/openai_client.py) share, so that neither imports the other: a request's result, the
error that stops a run before anything is sent, API-key credentials, server-sent events.

Protocol-neutral: nothing here knows Triton's KServe APIs or the OpenAI API.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


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


# --------------------------------------------------------------------------- a run stops when its settings are refused

# gRPC status names (tritonclient reports "StatusCode.<NAME>") of a request refused for what it asks.
GRPC_REFUSALS = frozenset(
    {
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "NOT_FOUND",
        "UNIMPLEMENTED",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
    }
)


def http_refused(result: RequestResult) -> bool:
    """An HTTP 4xx answer, before any text: the request was refused for what it asks (408 and 429
    are about timing and load, not the request)."""
    return (
        not result.ok
        and not result.chunks
        and result.status.isdigit()
        and 400 <= int(result.status) < 500
        and int(result.status) not in (408, 429)
    )


class RequestsRefused(RuntimeError):
    """The server refused the first request of a run for what it asks (a value out of range, an
    option the model lacks): every request of the run carries the same settings, so the others
    were not sent."""

    def __init__(self, result: RequestResult, unsent: int) -> None:
        self.result, self.unsent = result, unsent
        status = f" [{result.status}]" if result.status else ""
        message = f"the server refused the first request{status}: {result.error}"
        if unsent:
            message += (
                f"\n  the other {unsent} request{'s' if unsent != 1 else ''} carry the same settings, "
                "so they were not sent; change the setting it names and run again"
            )
        super().__init__(message)


async def send_requests(
    results: list[RequestResult], send, *, concurrency: int = 1, on_result=None, refused=None
) -> None:
    """Await `send(i)` for each result, at most `concurrency` at once, calling `on_result` as each ends.
    With `refused` (a predicate on a result), the first request goes alone and, when the server
    refused it, RequestsRefused is raised instead of sending the others (nor reporting the first)."""
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int) -> None:
        async with semaphore:
            await send(i)
        if on_result:
            on_result(results[i])

    rest = range(len(results))
    if refused is not None and results:
        await send(0)
        if refused(results[0]):
            raise RequestsRefused(results[0], len(results) - 1)
        if on_result:
            on_result(results[0])
        rest = range(1, len(results))
    await asyncio.gather(*(one(i) for i in rest))


# --------------------------------------------------------------------------- API keys

API_KEY_ENV = "TRITONLLM_API_KEY"
API_KEY_HINT = (
    f"the server wants an API key; pass --api-key name:secret or set {API_KEY_ENV} "
    "(EKS: the stack output apiKeyCommand prints one)"
)


CA_CERT_ENV = "TRITONLLM_CA_CERT"  # the CA certificate a TLS endpoint's server certificate is verified against


def ssl_context(ca_cert: str | None):
    """TLS verification for aiohttp/urllib: against `ca_cert` only (the stack's or `serve --tls`'s CA),
    else the system's trust store (True: aiohttp's default). Hostnames are always checked."""
    if not ca_cert:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise SetupError(f"cannot read the CA certificate {ca_cert}: {exc}") from None


# A request to a model at zero replicas is held at the gateway while a replica starts (docs/autoscaling.md
# "Scale to zero"), minutes without a byte on the connection. The NLB's TLS listener closes a connection
# idle for 350 s, and that cannot be changed (Elastic Load Balancing, network/update-idle-timeout.html).
# So the clients keep their connections alive well inside it: gRPC with HTTP/2 PINGs (TLS records, data
# to the NLB), HTTP with TCP keepalives, which the NLB documents as resetting its idle timeout.
KEEPALIVE_IDLE_SECONDS = 60
KEEPALIVE_INTERVAL_SECONDS = 20
KEEPALIVE_PROBES = 5
GRPC_KEEPALIVE_SECONDS = 300  # < the NLB's 350 s, >= Triton's minimum ping interval (grpc_keepalive_options)


def keepalive_socket(addr_info: tuple) -> Any:
    """aiohttp's TCPConnector socket_factory (aiohappyeyeballs AddrInfoType): a TCP socket sending
    keepalive probes after KEEPALIVE_IDLE_SECONDS of silence (Linux defaults to 7200 s)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),  # Linux; macOS names it TCP_KEEPALIVE
        ("TCP_KEEPALIVE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


def tcp_connector(ssl: Any) -> Any:
    """The aiohttp connector every toolbox HTTP client uses: no pool limit, keepalive sockets."""
    import aiohttp

    return aiohttp.TCPConnector(limit=0, ssl=ssl, socket_factory=keepalive_socket)


def grpc_keepalive_options() -> Any:
    """HTTP/2 PINGs every GRPC_KEEPALIVE_SECONDS while a call is open, however long it waits for data
    (gRPC core stops after 2 pings without data unless http2_max_pings_without_data is 0). Not more
    often: a Triton reached directly (no gateway) counts a ping sooner than 300 s after the last one,
    without data, as a strike and closes the connection after 2 (its gRPC KeepAliveOptions defaults,
    http2_min_recv_ping_interval_without_data_ms 300000, http2_max_ping_strikes 2)."""
    from tritonclient.grpc import KeepAliveOptions

    return KeepAliveOptions(
        keepalive_time_ms=GRPC_KEEPALIVE_SECONDS * 1000,
        keepalive_timeout_ms=20_000,
        keepalive_permit_without_calls=False,
        http2_max_pings_without_data=0,
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


# --------------------------------------------------------------------------- what answers at an address

# A client's HTTP/2 connection preface (RFC 9113 section 3.4) and an empty SETTINGS frame.
HTTP2_CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def is_http2_settings_frame(head: bytes) -> bool:
    """True for the 9-byte header of an HTTP/2 SETTINGS frame on stream 0: what an HTTP/2 server
    (a gRPC port) sends first, and what an HTTP/1.1 client reads as a bad status line
    ("\\x00\\x00\\x18\\x04...")."""
    return (
        len(head) >= 9
        and head[3] == 0x04
        and head[5:9] == b"\x00\x00\x00\x00"
        and int.from_bytes(head[:3], "big") % 6 == 0
    )


def probe(host: str, port: int, timeout: float = 3.0) -> str:
    """What answers at host:port, to explain a failed request:
    "refused" (nothing listens), "http2" (an HTTP/2-only server, such as Triton's gRPC port: it
    answers HTTP/2's connection preface with a SETTINGS frame), "listening" (something else
    accepts connections) or "unreachable" (no connection for another reason: name, route, timeout)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "unreachable"
    with sock:
        head = b""
        try:
            sock.sendall(HTTP2_CLIENT_PREFACE)
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
    return "http2" if is_http2_settings_frame(head) else "listening"


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of http(s)://host:port/..., grpc(s)://host:port or host:port (default ports
    80/443 for HTTP(S), 8001 for gRPC)."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    default = {"https": 443, "http": 80}.get(parts.scheme, 8001)
    return parts.hostname or "localhost", parts.port or default


def nothing_listens(host: str, port: int) -> str:
    return (
        f"nothing listens at {host}:{port} (connection refused): start the server "
        "(python -m tritonllm serve) or check --url"
    )


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
