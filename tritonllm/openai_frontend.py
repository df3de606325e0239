"""A small OpenAI-compatible frontend for the local Triton, held to the contract of Triton's own.

On EKS the OpenAI API comes from Triton's frontend (triton-inference-server/server
`python/openai`, r25.12), which embeds Triton through its in-process Python bindings
(`tritonserver`). The `nvidia-pytriton` wheel that runs Triton here ships the server binary and
`libtritonserver.so` but not those bindings, so the same routes are served locally by this
module, which forwards to the running Triton over its KServe HTTP API (generate and
generate_stream) and reproduces what the upstream frontend does:

* routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{id},
  GET /health/ready, GET /metrics (Triton's Prometheus text);
* requests: the upstream request schema (unknown fields and out-of-range values are refused with
  422 and FastAPI's `{"detail": [...]}`); chat messages rendered with the model's chat template
  by the frontend (upstream: `--tokenizer`; here the template inside the local GGUF); the
  tensors upstream's `_create_trtllm_generate_request` sends (`text_input`, `stream`,
  `max_tokens`, `return_num_input_tokens`, `return_num_output_tokens`, sampling settings);
* errors: 400 `{"detail": "Unknown model: x"}` and the other ClientError checks of
  `_validate_*_request`; a model or Triton error is 500 `{"detail": "<Triton's message>"}`
  (upstream maps every non-ClientError exception to 500). Every error body also carries
  OpenAI's `{"error": {"message", "type", "param", "code"}}` next to upstream's `detail` (same
  status codes): the openai SDKs read `error`, so their exception names the reason;
* responses: ids `cmpl-<uuid1>`, usage from `num_input_tokens`/`num_output_tokens`, streaming
  as server-sent events ending in `data: [DONE]`, a final usage chunk when
  `stream_options.include_usage` is set.

One deliberate difference: a request field the model has no input for (for example `seed` for
the local model) is refused with 400 naming the field; upstream would send the tensor and
return Triton's "unexpected inference input" as 500.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

if TYPE_CHECKING:  # aiohttp is imported where the server starts (it is a local-serving dependency)
    import aiohttp
    from aiohttp import web

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tritonllm.ports import port_is_free

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_MODEL_CODE = REPO_ROOT / "model_repository" / "local" / "smollm2" / "1"
OWNED_BY = "Triton Inference Server"  # routers/models.py
DEFAULT_MAX_TOKENS = 16  # main.py --default-max-tokens default
DRAIN_RETRY_AFTER_SECONDS = 1  # Retry-After of the 503 a draining server answers (another replica can take it)


# --------------------------------------------------------------------------- request schema (subset of upstream's)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool | None = None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    logit_bias: dict[str, int] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    user: str | None = None
    ignore_eos: bool | None = None
    min_tokens: Annotated[int, Field(ge=0)] | None = None


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    suffix: str | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=0)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class ClientError(ValueError):
    """A request the frontend refuses (upstream: utils.ClientError -> 400)."""


class ServerError(RuntimeError):
    """Triton or the model failed (upstream: every other exception -> 500)."""


# --------------------------------------------------------------------------- chat template


def _quietly(load):
    """Run `load` with llama.cpp's C-level stderr chatter (context warnings) silenced where possible."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):
            return load()
    except (ImportError, OSError, ValueError, AttributeError):  # no real file descriptors (captured streams)
        return load()


class ChatTemplate:
    """The model's chat template, as the upstream frontend takes it from `--tokenizer`.

    For the local model it is the Jinja template inside the GGUF (read with llama.cpp's
    vocabulary-only loader, no weights), rendered with llama-cpp-python's Jinja formatter.
    """

    def __init__(self, render) -> None:
        self._render = render

    @classmethod
    def from_gguf(cls, path: str | Path | None = None) -> ChatTemplate:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if path is None:
            sys.path.insert(0, str(LOCAL_MODEL_CODE))
            try:
                from llm_engine import default_gguf_path
            finally:
                sys.path.pop(0)
            path = default_gguf_path()
        llama = _quietly(lambda: Llama(model_path=str(path), vocab_only=True, verbose=False))
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{path} carries no chat template (tokenizer.chat_template)")
        eos = llama._model.token_get_text(llama.token_eos())
        bos_id = llama.token_bos()
        bos = llama._model.token_get_text(bos_id) if bos_id >= 0 else ""
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return cls(lambda messages: formatter(messages=messages).prompt)

    def render(self, messages: list[dict[str, str]]) -> str:
        return self._render(messages)


def parse_chat_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Messages as the template takes them: text parts joined (upstream engine/utils/chat.py)."""
    conversation = []
    for message in messages:
        content = message.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        conversation.append({"role": message.role, "content": content or ""})
    return conversation


# --------------------------------------------------------------------------- Triton side


class TritonModel:
    """What the frontend knows of one Triton model: its name and input names."""

    def __init__(self, name: str, inputs: set[str], created: int) -> None:
        self.name, self.inputs, self.created = name, inputs, created


# OpenAI field -> candidate Triton input names (the TRT-LLM ensemble's first, as upstream sends them).
FIELD_INPUTS = {
    "stop": ("stop_words", "stop"),
    "top_p": ("top_p",),
    "temperature": ("temperature",),
    "frequency_penalty": ("frequency_penalty",),
    "presence_penalty": ("presence_penalty",),
    "seed": ("seed", "random_seed"),
}


def triton_request(model: TritonModel, prompt: str, request: _Request, default_max_tokens: int) -> dict[str, Any]:
    """The generate-extension body for Triton: upstream's `_create_trtllm_generate_request`."""
    body: dict[str, Any] = {"text_input": prompt, "stream": bool(request.stream)}
    if isinstance(request, ChatCompletionRequest):
        max_tokens = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    else:
        max_tokens = request.max_tokens
    body["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    for field, candidates in FIELD_INPUTS.items():
        value = getattr(request, field)
        if value is None:
            continue
        name = next((c for c in candidates if c in model.inputs), None)
        if name is None:
            raise ClientError(f"{field} is not supported by model {model.name} (it has no {candidates[0]} input)")
        body[name] = [value] if field == "stop" and isinstance(value, str) else value
    # Length controls upstream's schema has (ignore_eos, min_tokens) reach a model that takes vLLM-style
    # sampling_parameters (the local model does), as upstream's vLLM request converter sends them.
    extra = {k: getattr(request, k) for k in ("ignore_eos", "min_tokens") if getattr(request, k) is not None}
    if extra:
        if "sampling_parameters" not in model.inputs:
            raise ClientError(f"{', '.join(extra)} is not supported by model {model.name}")
        body["sampling_parameters"] = json.dumps(extra)
    echo = getattr(request, "echo", None)
    if "exclude_input_in_output" in model.inputs:
        body["exclude_input_in_output"] = not bool(echo)
    if "apply_chat_template" in model.inputs:
        # The frontend owns the prompt: chat is templated here, completions are raw text.
        body["apply_chat_template"] = False
    for flag in ("return_num_input_tokens", "return_num_output_tokens", "return_finish_reason"):
        if flag in model.inputs:
            body[flag] = True
    missing = [n for n in ("text_input", "max_tokens", "stream") if n not in model.inputs]
    if missing:
        raise ServerError(f"model {model.name} lacks the inputs {missing} the OpenAI frontend sends")
    return body


def _error_text(body: str) -> str:
    """Triton's error message from a JSON (`{"error": ...}`) or server-sent-event error body."""
    for candidate in (
        body.strip(),
        *[ln.strip()[len("data:") :] for ln in body.splitlines() if ln.strip().startswith("data:")],
    ):
        try:
            payload = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(payload, dict) and "error" in payload:
            return str(payload["error"])
    return body.strip() or "Triton returned an error without a message"


def openai_error(status: int, detail: Any) -> dict[str, Any]:
    """OpenAI's error object for an upstream `detail` (a message, or FastAPI's list of validation
    errors): what the openai SDKs read, so their exception carries the reason."""
    param = None
    if isinstance(detail, list):  # 422: [{"loc": ["body", "temperature"], "msg": "...", ...}, ...]
        parts = []
        for err in detail:
            err = err if isinstance(err, dict) else {"msg": str(err)}
            field = ".".join(str(x) for x in (err.get("loc") or [])[1:])
            message = str(err.get("msg", err))
            parts.append(f"{field}: {message}" if field else message)
            param = param or field or None
        message = "; ".join(parts) or "invalid request"
    else:
        message = str(detail)
    return {
        "message": message,
        "type": "invalid_request_error" if status < 500 else "server_error",
        "param": param,
        "code": None,
    }


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int] | None:
    if prompt_tokens is None or completion_tokens is None:
        return None
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# --------------------------------------------------------------------------- the server


class OpenAIFrontend:
    """aiohttp server in a background thread; `start()` returns once it accepts connections."""

    def __init__(
        self,
        triton_http_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        chat_template: ChatTemplate | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        request_timeout: float = 600.0,
        metrics_url: str | None = None,
        api_keys: list[tuple[str, str]] | None = None,
    ) -> None:
        self.triton = triton_http_url.rstrip("/")
        self.host, self.port = host, port
        self.chat_template = chat_template
        self.default_max_tokens = default_max_tokens
        self.request_timeout = request_timeout
        self.metrics_url = metrics_url
        # `serve --api-key`: the same HTTP Basic check the gateway (and the local KServe front) makes
        import base64

        self._credentials = {"Basic " + base64.b64encode(f"{n}:{k}".encode()).decode() for n, k in api_keys or []}
        self.models: dict[str, TritonModel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        # `serve` asked to stop: new /v1 requests get 503 + Retry-After (what a client of a replica being
        # removed gets from the gateway when no other replica is left); those in flight run on (drain()).
        self.draining = False

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1"

    # ---- lifecycle
    def start(self, timeout: float = 30.0) -> OpenAIFrontend:
        self._thread = threading.Thread(target=self._run, name="openai-frontend", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the OpenAI frontend did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread:
                self._thread.join(timeout)

    def drain(self) -> None:
        """Refuse new inference requests from now on (503, Retry-After); responses in flight continue."""
        self.draining = True

    def __enter__(self) -> OpenAIFrontend:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client session to Triton (exists from startup to shutdown)."""
        if self._session is None:
            raise RuntimeError("the OpenAI frontend is not started")
        return self._session

    async def _startup(self) -> None:
        import aiohttp
        from aiohttp import web

        # No keep-alive to Triton: an idle pooled connection would hold Triton's graceful stop (it waits
        # for its HTTP connections) until the grace period runs out; loopback connects cost ~0.1 ms.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
        )
        await self._load_models()

        @web.middleware
        async def require_key(request, handler):
            if (
                self._credentials
                and request.path != "/health/ready"
                and request.headers.get("Authorization") not in self._credentials
            ):
                return web.Response(
                    status=401,
                    text="401 Authorization Required",
                    headers={"WWW-Authenticate": 'Basic realm="tritonllm"'},
                )
            return await handler(request)

        @web.middleware
        async def refuse_while_draining(request, handler):
            if self.draining and (request.method == "POST" or request.path == "/health/ready"):
                response = self._detail(
                    503, "the server is draining (stopping): it takes no new requests; retry on another replica"
                )
                response.headers["Retry-After"] = str(DRAIN_RETRY_AFTER_SECONDS)
                return response
            return await handler(request)

        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[require_key, refuse_while_draining])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model_name}", self._retrieve_model)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        runner = self._runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = runner.addresses[0][1]  # the port the OS chose

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _load_models(self) -> None:
        """Every model in Triton's repository, with its inputs (upstream: server.models())."""
        async with self.session.post(f"{self.triton}/v2/repository/index", json={}) as resp:
            index = await resp.json()
        created = int(time.time())
        for entry in index:
            name = entry["name"]
            async with self.session.get(f"{self.triton}/v2/models/{name}/config") as resp:
                config = await resp.json()
            inputs = {i["name"] for i in config.get("input", [])}
            self.models[name] = TritonModel(name, inputs, created)

    # ---- helpers
    @staticmethod
    def _json(payload: Any, status: int = 200):
        from aiohttp import web

        return web.json_response(payload, status=status)

    def _detail(self, status: int, detail: Any):
        """Upstream's `{"detail": ...}` body, kept for its clients, with OpenAI's `error` object added."""
        return self._json({"detail": detail, "error": openai_error(status, detail)}, status)

    async def _parse(self, request, schema: type[BaseModel]) -> BaseModel | Any:
        """The body as `schema`, or FastAPI's 422 response for a malformed or invalid body."""
        raw = await request.read()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return self._detail(
                422,
                [
                    {
                        "type": "json_invalid",
                        "loc": ["body", getattr(exc, "pos", 0)],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": str(exc)},
                    }
                ],
            )
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            errors = []
            for err in exc.errors(include_url=False):
                item: dict[str, Any] = dict(err)
                item["loc"] = ["body", *err["loc"]]
                item.pop("ctx", None)
                errors.append(item)
            return self._detail(422, json.loads(json.dumps(errors, default=str)))

    def _model(self, request: _Request) -> TritonModel:
        model = self.models.get(request.model)
        if model is None:
            raise ClientError(f"Unknown model: {request.model}")
        if request.n and request.n > 1:
            raise ClientError(f"Received n={request.n}, but only single choice (n=1) is currently supported")
        if request.logit_bias is not None:
            raise ClientError("logit bias is not currently supported")
        if request.stream_options and not request.stream:
            raise ClientError("`stream_options` can only be used when `stream` is True")
        return model

    async def _generate(self, model: TritonModel, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streaming generation (Triton's /generate)."""
        async with self.session.post(f"{self.triton}/v2/models/{model.name}/generate", json=body) as resp:
            text = await resp.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if resp.status != 200 or not isinstance(payload, dict) or "error" in payload:
            raise ServerError(_error_text(text))
        return payload

    async def _generate_stream(self, model: TritonModel, body: dict[str, Any]):
        """Responses of Triton's /generate_stream (server-sent events), as dicts."""
        resp = await self.session.post(f"{self.triton}/v2/models/{model.name}/generate_stream", json=body)
        try:
            if resp.status != 200:
                raise ServerError(_error_text(await resp.text()))
            async for raw in resp.content:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[len("data:") :].strip())
                if "error" in event:
                    raise ServerError(event["error"])
                yield event
        finally:
            resp.release()

    # ---- routes
    async def _ready(self, request):
        from aiohttp import web

        try:
            async with self.session.get(f"{self.triton}/v2/health/ready") as resp:
                ok = resp.status == 200
        except Exception:
            ok = False
        if not ok:
            return self._detail(400, "Attached inference engine is not ready for inference requests.")
        return web.Response(status=200)

    async def _metrics(self, request):
        from aiohttp import web

        if not self.metrics_url:
            return web.Response(status=404)
        async with self.session.get(self.metrics_url) as resp:
            return web.Response(text=await resp.text(), content_type="text/plain")

    def _model_entry(self, model: TritonModel) -> dict[str, Any]:
        return {"id": model.name, "created": model.created, "object": "model", "owned_by": OWNED_BY}

    async def _list_models(self, request):
        return self._json({"object": "list", "data": [self._model_entry(m) for m in self.models.values()]})

    async def _retrieve_model(self, request):
        name = request.match_info["model_name"]
        if name not in self.models:
            return self._detail(404, f"Unknown model: {name}")
        return self._json(self._model_entry(self.models[name]))

    async def _completions(self, request):
        parsed = await self._parse(request, CompletionRequest)
        if not isinstance(parsed, CompletionRequest):
            return parsed
        try:
            model = self._model(parsed)
            if parsed.suffix is not None:
                raise ClientError("suffix is not currently supported")
            if not parsed.prompt:
                raise ClientError("prompt must be non-empty")
            if not isinstance(parsed.prompt, str):
                raise ClientError("only single string input is supported")
            if parsed.best_of and parsed.best_of > 1:
                raise ClientError("best_of > 1 is not currently supported")
            if parsed.logprobs is not None and parsed.logprobs > 0:
                raise ClientError("logprobs are currently available only for the vLLM backend")
            body = triton_request(model, parsed.prompt, parsed, self.default_max_tokens)
            return await self._respond(request, parsed, model, body, chat=False)
        except ClientError as exc:
            return self._detail(400, str(exc))
        except Exception as exc:  # ServerError, Triton unreachable, ...: upstream answers 500 with the message
            return self._detail(500, str(exc) or type(exc).__name__)

    async def _chat(self, request):
        parsed = await self._parse(request, ChatCompletionRequest)
        if not isinstance(parsed, ChatCompletionRequest):
            return parsed
        try:
            model = self._model(parsed)
            if self.chat_template is None:
                raise ServerError("Unknown tokenizer")
            if parsed.logprobs or parsed.top_logprobs is not None:
                raise ClientError("logprobs are currently available only for the vLLM backend")
            if parsed.tools:
                raise ClientError("having tools in the request requires --tool-call-parser to be set")
            prompt = self.chat_template.render(parse_chat_messages(parsed.messages))
            body = triton_request(model, prompt, parsed, self.default_max_tokens)
            return await self._respond(request, parsed, model, body, chat=True)
        except ClientError as exc:
            return self._detail(400, str(exc))
        except Exception as exc:  # ServerError, Triton unreachable, ...: upstream answers 500 with the message
            return self._detail(500, str(exc) or type(exc).__name__)

    async def _respond(self, request, parsed: _Request, model: TritonModel, body: dict[str, Any], *, chat: bool):
        request_id = f"cmpl-{uuid.uuid1()}"
        created = int(time.time())
        if not parsed.stream:
            out = await self._generate(model, body)
            text = _first(out.get("text_output")) or ""
            usage = _usage(_first(out.get("num_input_tokens")), _first(out.get("num_output_tokens")))
            finish = "stop"  # upstream reports "stop" for every non-tool completion
            if chat:
                payload = {
                    "id": request_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": parsed.model,
                    "system_fingerprint": None,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                                "tool_calls": None,
                                "function_call": None,
                            },
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            else:
                payload = {
                    "id": request_id,
                    "object": "text_completion",
                    "created": created,
                    "model": parsed.model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                    "usage": usage,
                }
            return self._json(payload)
        return await self._stream(request, parsed, model, body, request_id, created, chat=chat)

    async def _stream(
        self,
        request,
        parsed: _Request,
        model: TritonModel,
        body: dict[str, Any],
        request_id: str,
        created: int,
        *,
        chat: bool,
    ):
        from aiohttp import web

        events = self._generate_stream(model, body)
        # Read the first event before answering 200, so an error the model raises at once (a bad
        # argument, a prompt too long) is an HTTP error rather than a broken stream.
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        obj = "chat.completion.chunk" if chat else "text_completion"
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        def chunk(choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
            out = {
                "id": request_id,
                "object": obj,
                "created": created,
                "model": parsed.model,
                "system_fingerprint": None,
                "choices": [choice] if choice is not None else [],
            }
            if usage is not None:
                out["usage"] = usage
            return out

        if chat:  # the first chunk carries the role only (upstream _get_first_streaming_chat_response)
            await send(
                chunk(
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                )
            )
        prompt_tokens: int | None = None
        completion_tokens = 0
        try:
            event = first
            while event is not None:
                if prompt_tokens is None and event.get("num_input_tokens") is not None:
                    prompt_tokens = int(_first(event["num_input_tokens"]))
                completion_tokens += int(_first(event.get("num_output_tokens")) or 0)
                text = _first(event.get("text_output")) or ""
                reason = _first(event.get("finish_reason")) or None
                finish = "stop" if reason else None
                if text or finish:
                    if chat:
                        await send(
                            chunk({"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish})
                        )
                    else:
                        await send(chunk({"index": 0, "text": text, "logprobs": None, "finish_reason": finish}))
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    event = None
        except ServerError as exc:
            # Mid-stream failure: the status is already sent; end the stream with the error.
            await send({"error": openai_error(500, str(exc))})
        if include_usage and prompt_tokens is not None:
            await send(chunk(None, _usage(prompt_tokens, completion_tokens)))
        await send("[DONE]")
        await response.write_eof()
        return response


def start_frontend(triton_http_url: str, **kwargs: Any) -> OpenAIFrontend:
    """Start a frontend for the Triton at `triton_http_url` with the local model's chat template."""
    kwargs.setdefault("chat_template", ChatTemplate.from_gguf())
    return OpenAIFrontend(triton_http_url, **kwargs).start()


class FrontendStartError(RuntimeError):
    """The OpenAI frontend of `tritonllm serve` could not start (port taken, no chat template)."""


def check_port(host: str, port: int | None) -> None:
    """FrontendStartError when --openai-port is a fixed port something listens on already (serve
    checks it before starting Triton, and again when it starts the frontend)."""
    if port and port > 0 and not port_is_free(host, port):
        raise FrontendStartError(
            f"port {port} (OpenAI API) on {host} is already in use: stop whatever "
            "listens there or choose another with --openai-port (0 picks a free one, -1 turns it off)"
        )


def start_for_serve(
    server: Any, args: Any, api_keys: list[tuple[str, str]] | None = None, loopback: bool = False
) -> OpenAIFrontend | None:
    """`tritonllm serve`'s hook: the OpenAI API next to the running Triton, unless --openai-port -1.
    With API keys it checks them itself (HTTP Basic, as the gateway does) on the address serve exposes.
    `loopback` (serve --tls): on a free loopback port, behind the front that terminates TLS on --openai-port."""
    port = getattr(args, "openai_port", -1)
    if port is None or port < 0:
        return None
    host = getattr(args, "host", None) or server.host
    check_port(host, port)
    if loopback:
        host, port = "127.0.0.1", 0
    try:
        return start_frontend(server.http_url, host=host, port=port, metrics_url=server.metrics_url, api_keys=api_keys)
    except OSError as exc:
        raise FrontendStartError(f"the OpenAI API could not start on {host}:{port}: {exc}") from exc
