"""The KServe half of `python -m tritonllm client`: Triton's v2 APIs over gRPC (streaming) and HTTP
(the generate extension), against the local CPU model, Triton's vLLM backend and the TRT-LLM
`ensemble` alike: it reads the model's config first and builds each request from the inputs the
model has (see tritonllm/_llm_io.py).

It shares tritonllm/client_core.py with the OpenAI half (tritonllm/openai_client.py) and imports
nothing of it; tritonllm/client.py (the command) chooses between them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tritonllm._llm_io import ContractError, GenerationSettings, ModelInterface, plan_inputs, text_from_generate_json
from tritonllm.client_core import (
    API_KEY_HINT,
    CA_CERT_ENV,
    GRPC_REFUSALS,
    RequestResult,
    SetupError,
    auth_headers,
    grpc_keepalive_options,
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


def http_base(url: str, ssl: bool = False) -> str:
    if "://" not in url:
        url = ("https://" if ssl else "http://") + url
    return url.rstrip("/")


def _grpc_status(error: Exception) -> str:
    """The gRPC status name of a failure (tritonclient's `status()`, grpc's own `code()`), "" when it
    has none (an error response inside a stream)."""
    for attribute in ("status", "code"):
        status = getattr(error, attribute, None)
        try:
            value = status() if callable(status) else status
        except Exception:  # noqa: BLE001
            continue
        if value is not None and value != "":
            return str(value)
    return ""


def _grpc_message(error: Exception) -> str:
    message = getattr(error, "message", None)
    try:
        return str(message()) if callable(message) else str(error)
    except Exception:  # noqa: BLE001
        return str(error)


# --------------------------------------------------------------------------- gRPC


class GrpcBackend:
    def __init__(self, url: str, ssl: bool = False, api_key: str | None = None, ca_cert: str | None = None) -> None:
        import tritonclient.grpc.aio as grpcclient

        self._auth = auth_headers(api_key)
        self._grpc = grpcclient
        self.url = url
        # root_certificates: a PEM file tritonclient reads; the server certificate must chain to it.
        self.client = grpcclient.InferenceServerClient(
            grpc_target(url),
            ssl=ssl or bool(ca_cert),
            root_certificates=ca_cert,
            keepalive_options=grpc_keepalive_options(),
        )
        self._error_responses: set[int] = set()  # results whose failure was the server's error response

    async def model_interface(self, model: str) -> ModelInterface:
        try:
            config = await self.client.get_model_config(
                model, headers={**routing_headers(model), **self._auth}, as_json=True
            )
        except Exception as exc:  # noqa: BLE001
            message, status = _grpc_message(exc), _grpc_status(exc)
            if "UNAUTHENTICATED" in status:
                raise SetupError(f"gRPC UNAUTHENTICATED: {API_KEY_HINT}") from None
            served = await self.served_models()
            if served is not None:
                raise SetupError(unknown_model_message(model, self.url, served, message)) from None
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in message or "handshake failed" in message.lower():
                raise SetupError(
                    f"TLS: the server at {grpc_target(self.url)} presents a certificate that does not verify "
                    f"against the CA given (--ca-cert / ${CA_CERT_ENV}, else the system's): {message}"
                ) from None
            if "UNAVAILABLE" in status or "Socket closed" in message or "failed to connect" in message.lower():
                host, port = host_port(grpc_target(self.url))
                answer = await asyncio.to_thread(probe, host, port)
                if answer == "refused":
                    raise SetupError(f"cannot reach {grpc_target(self.url)}: {nothing_listens(host, port)}") from None
                if answer == "listening":  # something answers, but not in HTTP/2: not a gRPC port
                    hint = (
                        f"\n  no gRPC server answers at {host}:{port}: if that is Triton's HTTP port, "
                        f"use --url http://{host}:{port} (the protocol follows the URL)"
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
                if error is not None:  # the server answered this request with an error
                    result.error, result.status = _grpc_message(error), _grpc_status(error)
                    self._error_responses.add(result.index)
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

    def refused(self, result: RequestResult) -> bool:
        """Refused for what it asks, before any text: a gRPC status of that kind, or the server's error
        response in the stream (Triton sends the model's own refusal so, without a status), not a
        failure of the call itself (deadline, connection)."""
        if result.ok or result.chunks:
            return False
        return result.status.rsplit(".", 1)[-1] in GRPC_REFUSALS or (
            result.index in self._error_responses and not result.status
        )

    async def close(self) -> None:
        await self.client.close()


# --------------------------------------------------------------------------- HTTP


class HttpBackend:
    def __init__(
        self, url: str, ssl: bool = False, stream: bool = False, api_key: str | None = None, ca_cert: str | None = None
    ) -> None:
        self._auth = auth_headers(api_key)
        self.base = http_base(url, ssl or bool(ca_cert))
        self.stream = stream
        self.session = None
        self._ssl = ssl_context(ca_cert)

    async def _session(self):
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession(connector=tcp_connector(self._ssl))
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
                    raise SetupError(f"HTTP 401 from {self.base}: {API_KEY_HINT}")
                if response.status != 200:
                    served = await self.served_models()
                    message = f"HTTP {response.status} {body.strip()}"
                    if served is not None:
                        raise SetupError(unknown_model_message(model, self.base, served, message))
                    raise SetupError(f"cannot read the config of model '{model}': {message}")
                return ModelInterface.from_config(json.loads(body))
        except aiohttp.ClientError as exc:
            host, port = host_port(self.base)
            answer = await asyncio.to_thread(probe, host, port)
            if answer == "refused":
                raise SetupError(f"cannot reach {self.base}: {nothing_listens(host, port)}") from None
            if answer == "http2":  # aiohttp read the gRPC server's SETTINGS frame as a bad status line
                raise SetupError(
                    f"{host}:{port} is a gRPC port (it answers in HTTP/2), not an HTTP one: for gRPC "
                    f"use --url {host}:{port} (host:port, no scheme, no --protocol http)"
                ) from None
            raise SetupError(f"cannot reach {self.base}: {exc}") from None

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
        except (TimeoutError, aiohttp.ClientError, ValueError):
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
        except TimeoutError:
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

    refused = staticmethod(http_refused)

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
    stop_when_refused: bool = False,
    ca_cert: str | None = None,
) -> tuple[ModelInterface, list[RequestResult]]:
    """Send every prompt (at most `concurrency` in flight); return the model interface and results in order.
    With stop_when_refused the first prompt goes alone, and RequestsRefused is raised when the server
    refuses it for what it asks (see client_core.send_requests)."""
    backend = (
        GrpcBackend(url, ssl, api_key, ca_cert)
        if protocol == "grpc"
        else HttpBackend(url, ssl, stream, api_key, ca_cert)
    )
    try:
        iface = await backend.model_interface(model)
        try:
            iface.check_llm()
            planned = [plan_inputs(iface, p, settings, stream=stream, style=style) for p in prompts]
        except ContractError as exc:
            raise SetupError(str(exc)) from None
        results = [RequestResult(index=i, prompt=p) for i, p in enumerate(prompts)]

        async def send(i: int) -> None:
            await backend.generate(iface, model, planned[i], results[i], timeout)

        await send_requests(
            results,
            send,
            concurrency=concurrency,
            on_result=on_result,
            refused=backend.refused if stop_when_refused else None,
        )
        return iface, results
    finally:
        await backend.close()
