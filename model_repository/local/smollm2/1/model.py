"""Triton Python-backend model: SmolLM2-135M-Instruct on CPU via llama.cpp, decoupled (streaming).

Same request contract as the EKS models (Triton's vLLM backend, the TRT-LLM ensemble):
text_input -> text_output, with optional max_tokens, stream, temperature, top_p, top_k,
stop, sampling_parameters (vLLM JSON), exclude_input_in_output, apply_chat_template.
See llm_engine.py (next to this file) for validation rules and precedence.

* stream=true: one response per piece of generated text as soon as it is decoded, then an
  empty response flagged FINAL (so /generate_stream and gRPC streaming see tokens arrive).
* stream=false (default): one response with the whole text, flagged FINAL (works with
  /generate, which accepts exactly one response). Like the vLLM backend, the prompt is
  prepended unless exclude_input_in_output=true; streamed text never includes the prompt.
* Invalid requests get an INVALID_ARG error (HTTP 400, gRPC INVALID_ARGUMENT) and the model
  keeps serving.
* Draining (`tritonllm serve` asked to stop, like a replica chosen for removal): requests that
  arrive after the drain began are refused with UNAVAILABLE (HTTP 503, gRPC UNAVAILABLE, retryable);
  the one generating and those already queued in Triton when it began are served to their end.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_engine import EngineDefaults, LlamaEngine, RequestError, build_request  # noqa: E402

TENSOR_INPUTS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stream",
    "exclude_input_in_output",
    "apply_chat_template",
    "return_finish_reason",
    "return_num_input_tokens",
    "return_num_output_tokens",
)
TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]


def _scalar(array: np.ndarray, name: str):
    flat = array.reshape(-1)
    if name == "stop":
        return [v for v in flat.tolist()]
    if flat.size != 1:
        raise RequestError(f"input '{name}' must hold exactly one element, got shape {list(array.shape)}")
    value = flat[0]
    return value.item() if hasattr(value, "item") and not isinstance(value, (bytes, str)) else value


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        self.model_version = args.get("model_version", "1")
        if not pb_utils.using_decoupled_model_transaction_policy(self.model_config):
            raise pb_utils.TritonModelException(
                "model_transaction_policy { decoupled: true } is required so that responses can stream"
            )
        params = {k: v.get("string_value", "") for k, v in self.model_config.get("parameters", {}).items()}
        # declared for clients (tritonllm client/bench explain queueing from it); execute() below
        # generates one request at a time, so no other value would be true
        if params.get("max_concurrent_requests", "1").strip() != "1":
            raise pb_utils.TritonModelException(
                "parameter max_concurrent_requests must be 1: this model generates one request at a time"
            )
        self.defaults = EngineDefaults.from_parameters(params)
        self.input_names = {i["name"] for i in self.model_config["input"]}
        self.output_names = {o["name"] for o in self.model_config["output"]}
        model_path = params.get("gguf_path") or None
        if model_path and not os.path.isabs(model_path):
            model_path = os.path.join(args["model_repository"], model_path)
        self.engine = LlamaEngine(
            model_path=model_path,
            n_ctx=int(params.get("n_ctx", "4096") or 4096),
            n_threads=int(params.get("n_threads", "0") or 0),
            n_batch=int(params.get("n_batch", "512") or 512),
            defaults=self.defaults,
        )
        pb_utils.Logger.log_info(
            f"[{self.model_name}] loaded {self.engine.model_path.name} in {self.engine.load_seconds:.2f}s "
            f"(warm-up {self.engine.warmup_seconds:.2f}s, n_ctx={self.engine.n_ctx})"
        )
        self._setup_metrics(params.get("REPORT_CUSTOM_METRICS", "true").lower() == "true")
        # `tritonllm serve` creates this file when its grace period on Ctrl-C/SIGTERM is over: Triton
        # cannot cancel a running generation itself, so each one ends at its next token.
        self.stop_file = os.environ.get("TRITONLLM_STOP_FILE") or None
        # `tritonllm serve` creates this file (JSON {"admitted": N}) when it is asked to stop: the N requests
        # queued in Triton at that moment are served, every later one is refused (see _draining_refuses).
        self.drain_file = os.environ.get("TRITONLLM_DRAIN_FILE") or None
        self._admitted: int | None = None
        self._started_in_drain = 0

    # ------------------------------------------------------------------ metrics
    def _setup_metrics(self, enabled: bool) -> None:
        self.metrics = None
        self.failure_metrics = {}
        self.executing = None
        if not enabled:
            return
        labels = {"model": self.model_name, "version": str(self.model_version)}
        families = {
            "prompt": pb_utils.MetricFamily(
                name="tritonllm_prompt_tokens_total",
                description="Prompt tokens processed",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
            "generation": pb_utils.MetricFamily(
                name="tritonllm_generation_tokens_total",
                description="Tokens generated",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
        }
        # Triton counts a decoupled model's request as a success once the model releases it, even
        # when its only response is an error, so nv_inference_request_failure stays 0 for these:
        # count the errors the model returns itself.
        failures = pb_utils.MetricFamily(
            name="tritonllm_request_failure_total",
            description="Requests answered with an error by the model, by reason",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        # Requests this instance is generating (Triton's nv_inference_pending_request_count has the
        # queued ones): `tritonllm serve` reports their sum when it is asked to stop.
        executing = pb_utils.MetricFamily(
            name="tritonllm_requests_executing",
            description="Requests being generated right now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.executing = executing.Metric(labels=labels)
        self._families = {**families, "failure": failures, "executing": executing}
        self.metrics = {name: family.Metric(labels=labels) for name, family in families.items()}
        self.failure_metrics = {
            reason: failures.Metric(labels={**labels, "reason": reason})
            for reason in ("invalid_argument", "internal", "cancelled", "draining")
        }
        self.ttft = None
        histogram = getattr(pb_utils.MetricFamily, "HISTOGRAM", None)
        if histogram is not None:
            try:
                family = pb_utils.MetricFamily(
                    name="tritonllm_time_to_first_token_seconds",
                    description="Time from request start to the first generated text",
                    kind=histogram,
                )
                self._families["ttft"] = family
                self.ttft = family.Metric(labels=labels, buckets=TTFT_BUCKETS)
            except Exception as exc:  # older python backends: no histogram support
                pb_utils.Logger.log_warn(f"[{self.model_name}] TTFT histogram unavailable: {exc}")

    # ------------------------------------------------------------------ requests
    def _parse(self, request):
        text = pb_utils.get_input_tensor_by_name(request, "text_input")
        if text is None:
            raise RequestError("missing required input 'text_input'")
        tensors = {}
        for name in TENSOR_INPUTS:
            if name in self.input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    tensors[name] = _scalar(tensor.as_numpy(), name)
        sampling = None
        if "sampling_parameters" in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, "sampling_parameters")
            if tensor is not None:
                sampling = _scalar(tensor.as_numpy(), "sampling_parameters")
        return build_request(
            _scalar(text.as_numpy(), "text_input"),
            tensors=tensors,
            sampling_parameters=sampling,
            request_parameters=request.parameters(),
            defaults=self.defaults,
            max_tokens_limit=self.engine.n_ctx,
        )

    def _response(self, req, text: str, num_tokens: int, finish_reason, num_input_tokens):
        outputs = [pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
        if req.return_finish_reason and "finish_reason" in self.output_names and finish_reason:
            outputs.append(pb_utils.Tensor("finish_reason", np.array([finish_reason.encode()], dtype=np.object_)))
        if req.return_num_input_tokens and "num_input_tokens" in self.output_names:
            outputs.append(pb_utils.Tensor("num_input_tokens", np.array([num_input_tokens], dtype=np.uint32)))
        if req.return_num_output_tokens and "num_output_tokens" in self.output_names:
            outputs.append(pb_utils.Tensor("num_output_tokens", np.array([num_tokens], dtype=np.uint32)))
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def _error(self, sender, message: str, code, reason: str | None = None) -> None:
        if self.metrics:
            reason = reason or {pb_utils.TritonError.INVALID_ARG: "invalid_argument"}.get(code, "internal")
            if code == getattr(pb_utils.TritonError, "CANCELLED", None):
                reason = "cancelled"
            self.failure_metrics[reason].increment(1)
        try:
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code)),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the sender was closed by a cancelled request
            pb_utils.Logger.log_warn(f"[{self.model_name}] could not send error response ({message}): {exc}")

    def execute(self, requests):
        # One generation at a time on this instance; Triton queues the rest (visible in
        # nv_inference_queue_duration_us). Responses go out through each request's sender.
        for request in requests:
            if self.executing is not None:
                self.executing.increment(1)
            try:
                if self._draining_refuses():
                    self._error(
                        request.get_response_sender(),
                        "the server is draining (stopping): it takes no new requests; retry on another replica "
                        "or once it is back",
                        pb_utils.TritonError.UNAVAILABLE,
                        "draining",
                    )
                else:
                    self._serve(request)
            finally:
                if self.executing is not None:
                    self.executing.increment(-1)
                self._mark_drained()
        return None

    # ------------------------------------------------------------------ draining
    def _drain_admitted(self) -> int | None:
        """None while not draining; else how many queued requests the drain still serves (read once)."""
        if self.drain_file is None or not os.path.exists(self.drain_file):
            return None
        if self._admitted is None:
            try:
                with open(self.drain_file) as handle:
                    self._admitted = max(0, int(json.load(handle).get("admitted", 0)))
            except (OSError, ValueError, AttributeError):
                self._admitted = 0
        return self._admitted

    def _draining_refuses(self) -> bool:
        """Whether this request arrived after the drain began. Triton hands queued requests over in
        arrival order, so the first `admitted` ones started after the drain file appeared were queued
        before it; everything after them is new."""
        admitted = self._drain_admitted()
        if admitted is None:
            return False
        if self._started_in_drain < admitted:
            self._started_in_drain += 1
            return False
        return True

    def _mark_drained(self) -> None:
        """Tell `serve` that nothing admitted before the drain is left (it then stops Triton)."""
        admitted = self._drain_admitted()
        if admitted is None or self._started_in_drain < admitted:
            return
        try:
            with open(f"{self.drain_file}.drained", "w") as handle:
                handle.write("drained\n")
        except OSError:
            pass

    def _stopping(self) -> bool:
        return self.stop_file is not None and os.path.exists(self.stop_file)

    def _serve(self, request) -> None:
        sender = request.get_response_sender()
        started = time.perf_counter()
        try:
            req = self._parse(request)
            prompt_tokens = self.engine.tokenize(self.engine.render_prompt(req))
            if len(prompt_tokens) >= self.engine.n_ctx:
                raise RequestError(
                    f"the prompt has {len(prompt_tokens)} tokens, which does not fit the context window "
                    f"of {self.engine.n_ctx} tokens"
                )
        except RequestError as exc:
            self._error(sender, str(exc), pb_utils.TritonError.INVALID_ARG)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client, the model keeps serving
            self._error(sender, f"could not parse the request: {exc}", pb_utils.TritonError.INVALID_ARG)
            return

        if self._stopping():
            self._error(sender, "the server is shutting down", pb_utils.TritonError.UNAVAILABLE, "cancelled")
            return
        client_cancelled = getattr(sender, "is_cancelled", lambda: False)

        def cancelled() -> bool:
            return client_cancelled() or self._stopping()

        total_tokens = 0
        first_text_at = None
        pieces: list[str] = []
        try:
            for chunk in self.engine.generate(req, is_cancelled=cancelled, prompt_tokens=prompt_tokens):
                total_tokens += chunk.num_tokens
                if chunk.text and first_text_at is None:
                    first_text_at = time.perf_counter()
                if chunk.finish_reason == "cancelled":
                    if self._stopping():
                        self._error(
                            sender,
                            "request cancelled: the server is shutting down",
                            pb_utils.TritonError.UNAVAILABLE,
                            "cancelled",
                        )
                        return
                    code = getattr(pb_utils.TritonError, "CANCELLED", pb_utils.TritonError.UNAVAILABLE)
                    self._error(sender, "request cancelled", code)
                    return
                if not req.stream:
                    pieces.append(chunk.text)
                    continue
                last = chunk.finish_reason is not None
                if chunk.text or (last and req.return_finish_reason):
                    sender.send(
                        self._response(req, chunk.text, chunk.num_tokens, chunk.finish_reason, len(prompt_tokens))
                    )
            if req.stream:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                text = "".join(pieces)
                if not req.exclude_input_in_output:
                    text = req.prompt + text
                sender.send(
                    self._response(req, text, total_tokens, chunk.finish_reason, len(prompt_tokens)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
        except RequestError as exc:
            self._error(sender, str(exc), pb_utils.TritonError.INVALID_ARG)
            return
        except Exception as exc:  # noqa: BLE001
            pb_utils.Logger.log_error(f"[{self.model_name}] generation failed: {exc!r}")
            self._error(sender, f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)
            return
        if self.metrics:
            self.metrics["prompt"].increment(len(prompt_tokens))
            self.metrics["generation"].increment(total_tokens)
            if self.ttft is not None and first_text_at is not None:
                self.ttft.observe(first_text_at - started)

    def finalize(self):
        self.engine = None
