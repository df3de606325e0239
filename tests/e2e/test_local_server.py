"""The local model served by a real Triton (CPU): contract, streaming, errors, load, metrics."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest

from tritonllm._llm_io import GenerationSettings
from tritonllm.kserve_client import run_requests

pytestmark = pytest.mark.e2e

CONTRACT_INPUTS = {
    "text_input": "BYTES",
    "max_tokens": "INT32",
    "stream": "BOOL",
    "temperature": "FP32",
    "top_p": "FP32",
    "top_k": "INT32",
    "stop": "BYTES",
    "sampling_parameters": "BYTES",
    "exclude_input_in_output": "BOOL",
    "apply_chat_template": "BOOL",
}


# --------------------------------------------------------------------------- helpers


def http_json(url: str, body: dict | str | None = None, method: str | None = None, timeout: float = 120):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read().decode()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw


def generate(server, body: dict, stream: bool = False):
    route = "generate_stream" if stream else "generate"
    return http_json(f"{server.http_url}/v2/models/{server.model_name}/{route}", body)


def sse(server, body: dict, timeout: float = 120, on_first_event=None):
    """POST to generate_stream; return (status, [(seconds since send, event dict)], total seconds).

    `on_first_event()` runs once, as soon as the first event has arrived (before the rest is read)."""
    parts = urlsplit(server.http_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.perf_counter()
    conn.request(
        "POST",
        f"/v2/models/{server.model_name}/generate_stream",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    resp = conn.getresponse()
    events = []
    if resp.getheader("Content-Type", "").startswith("application/json"):
        # errors raised before inference begins come back as one plain JSON error
        body = json.loads(resp.read().decode())
        conn.close()
        return resp.status, [(time.perf_counter() - started, body)], time.perf_counter() - started
    while True:
        raw = resp.readline()
        if not raw:
            break
        line = raw.decode().strip()
        if line.startswith("data:"):
            events.append((time.perf_counter() - started, json.loads(line[5:])))
            if on_first_event is not None and len(events) == 1:
                on_first_event()
    total = time.perf_counter() - started
    conn.close()
    return resp.status, events, total


def metrics_text(server) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=30) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, model: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.eE+-]+)$", re.M)
    total, found = 0.0, False
    for labels, value in pattern.findall(text):
        if f'model="{model}"' in labels:
            total += float(value)
            found = True
    assert found, f"{name} for model {model} not in /metrics"
    return total


def labelled_value(text: str, name: str, **labels: str) -> float:
    """The value of the one series of `name` that has all `labels` (0 when Triton has not exported it yet)."""
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.eE+-]+)$", re.M)
    found = [
        float(value)
        for series, value in pattern.findall(text)
        if all(f'{k}="{v}"' in series for k, v in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def wait_for(predicate, timeout: float = 180.0, interval: float = 0.5):
    """Poll until `predicate()` is truthy; return its last value. The timeout bounds a hang and is
    generous on purpose: what the caller asserts is the value, never how fast it came."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def settled_metric(server, name: str, quiet_s: float = 0.5, timeout: float = 10.0) -> float:
    """A counter's value once it has stopped moving (requests are counted when Triton releases
    them, a moment after their last response reaches the client)."""
    deadline = time.monotonic() + timeout
    value = metric_value(metrics_text(server), name, server.model_name)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = metric_value(metrics_text(server), name, server.model_name)
        if again == value:
            return value
        value = again
    return value


def grpc_stream(server, inputs: list, timeout: float = 120):
    """Send one request on a gRPC stream; return (responses, error)."""
    import tritonclient.grpc as grpcclient

    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer(server.model_name, inputs, enable_empty_final_response=True)
        responses: list = []
        while True:
            result, error = results.get(timeout=timeout)
            if error is not None:
                return responses, error
            responses.append(result)
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return responses, None
    finally:
        client.stop_stream()
        client.close()


def grpc_input(name: str, array: np.ndarray, datatype: str):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def assert_still_serving(server) -> None:
    status, body = generate(server, {"text_input": "Say OK.", "max_tokens": 2, "temperature": 0})
    assert status == 200, body
    assert body["text_output"]


# --------------------------------------------------------------------------- loading and contract


def test_repository_loads_and_model_is_ready(triton_server):
    status, index = http_json(f"{triton_server.http_url}/v2/repository/index", {})
    assert status == 200
    assert {m["name"]: m["state"] for m in index} == {triton_server.model_name: "READY"}
    status, _ = http_json(f"{triton_server.http_url}/v2/models/{triton_server.model_name}/ready")
    assert status == 200


def test_model_metadata_has_the_shared_contract(triton_server):
    status, meta = http_json(f"{triton_server.http_url}/v2/models/{triton_server.model_name}")
    assert status == 200
    inputs = {i["name"]: i["datatype"] for i in meta["inputs"]}
    for name, datatype in CONTRACT_INPUTS.items():
        assert inputs.get(name) == datatype, (name, inputs)
    assert {o["name"]: o["datatype"] for o in meta["outputs"]}["text_output"] == "BYTES"
    status, config = http_json(f"{triton_server.http_url}/v2/models/{triton_server.model_name}/config")
    assert config["model_transaction_policy"]["decoupled"] is True
    required = [i["name"] for i in config["input"] if not i.get("optional")]
    assert required == ["text_input"]


# --------------------------------------------------------------------------- generation


def test_generate_is_deterministic_when_greedy_and_honours_exclude_input(triton_server):
    body = {"text_input": "Name a primary color.", "max_tokens": 12, "temperature": 0, "exclude_input_in_output": True}
    s1, r1 = generate(triton_server, body)
    s2, r2 = generate(triton_server, body)
    assert s1 == s2 == 200, (r1, r2)
    assert r1["text_output"].strip() and r1["text_output"] == r2["text_output"]
    assert not r1["text_output"].startswith("Name a primary color.")
    # vLLM-backend semantics: without exclude_input_in_output the prompt is prepended
    status, r3 = generate(triton_server, {**body, "exclude_input_in_output": False})
    assert status == 200 and r3["text_output"] == "Name a primary color." + r1["text_output"]


def test_max_tokens_counts_and_finish_reason(triton_server):
    body = {
        "text_input": "Tell me a long story about a dragon.",
        "sampling_parameters": json.dumps({"max_tokens": 7, "ignore_eos": True, "temperature": 0}),
        "return_num_output_tokens": True,
        "return_finish_reason": True,
        "return_num_input_tokens": True,
        "exclude_input_in_output": True,
    }
    status, out = generate(triton_server, body)
    assert status == 200, out
    assert out["num_output_tokens"] == 7
    assert out["finish_reason"] == "length"
    assert out["num_input_tokens"] > 10  # the chat template wraps the prompt


def test_sampling_parameters_accept_string_values_like_the_vllm_backend(triton_server):
    body = {
        "text_input": "Hello!",
        "sampling_parameters": json.dumps(
            {"temperature": "0", "top_p": "1.0", "max_tokens": "6", "ignore_eos": "true"}
        ),
        "return_num_output_tokens": True,
    }
    status, out = generate(triton_server, body)
    assert status == 200, out
    assert out["num_output_tokens"] == 6


def test_tensor_inputs_override_sampling_parameters(triton_server):
    body = {
        "text_input": "Hello!",
        "max_tokens": 3,
        "return_num_output_tokens": True,
        "sampling_parameters": json.dumps({"max_tokens": 20, "ignore_eos": True, "temperature": 0}),
    }
    status, out = generate(triton_server, body)
    assert status == 200, out
    assert out["num_output_tokens"] == 3


def test_request_parameters_are_honoured(triton_server):
    body = {
        "text_input": "Hello!",
        "return_num_output_tokens": True,
        "parameters": {"max_tokens": 4, "ignore_eos": True, "temperature": 0},
    }
    status, out = generate(triton_server, body)
    assert status == 200, out
    assert out["num_output_tokens"] == 4


def test_seeded_sampling_is_reproducible(triton_server):
    def run(seed):
        body = {
            "text_input": "Invent a name for a cat.",
            "exclude_input_in_output": True,
            "sampling_parameters": json.dumps(
                {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "seed": seed, "max_tokens": 16, "ignore_eos": True}
            ),
        }
        status, out = generate(triton_server, body)
        assert status == 200, out
        return out["text_output"]

    assert run(7) == run(7)
    assert len({run(7), run(8), run(9)}) > 1


def test_stop_words_end_generation_before_the_stop_string(triton_server):
    base = {
        "text_input": "List the days of the week.",
        "temperature": 0,
        "max_tokens": 40,
        "exclude_input_in_output": True,
    }
    status, full = generate(triton_server, base)
    assert status == 200, full
    text = full["text_output"]
    words = [w for w in re.findall(r"[A-Za-z]{4,}", text)]
    assert len(words) >= 3, text
    stop_word = words[len(words) // 2]
    cut = text[: text.index(stop_word)]
    # as a tensor (TRT-LLM style list of stop words)
    status, out = generate(triton_server, {**base, "stop": ["zzzz-never", stop_word]})
    assert status == 200, out
    assert out["text_output"] == cut
    # in sampling_parameters (vLLM style)
    status, out = generate(triton_server, {**base, "sampling_parameters": json.dumps({"stop": stop_word})})
    assert status == 200, out
    assert out["text_output"] == cut


def test_chat_template_applied_to_plain_prompts_unless_turned_off(triton_server):
    body = {"text_input": "What is 2 + 2?", "max_tokens": 1, "temperature": 0, "return_num_input_tokens": True}
    _, templated = generate(triton_server, body)
    _, raw = generate(triton_server, {**body, "apply_chat_template": False})
    assert templated["num_input_tokens"] > raw["num_input_tokens"] + 5
    # a prompt that is already in the chat format is not wrapped a second time
    preformatted = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    _, pre = generate(triton_server, {**body, "text_input": preformatted})
    assert pre["num_input_tokens"] < templated["num_input_tokens"] + 3


# --------------------------------------------------------------------------- streaming


def spread_share(first: float, last: float) -> float:
    """Share of a stream's duration (send to last event) over which its events arrived.

    Streamed, the events come one per token, so they span nearly the whole generation (~0.9 for
    64 tokens); buffered, they arrive in one burst at the end (~0). A ratio of two intervals of
    the same request, so it does not depend on how fast the machine is."""
    return (last - first) / last if last > 0 else 0.0


def test_generate_stream_delivers_tokens_incrementally(triton_server):
    max_tokens = 64
    body = {
        "text_input": "Write a short poem about the sea.",
        "stream": True,
        "exclude_input_in_output": True,
        "sampling_parameters": json.dumps({"max_tokens": max_tokens, "ignore_eos": True, "temperature": 0}),
    }
    settled_metric(triton_server, "nv_inference_request_success")  # nothing else in flight: no queueing
    status, events, _ = sse(triton_server, body)
    assert status == 200
    assert not [e for _, e in events if "error" in e]
    texts = [e["text_output"] for _, e in events]
    assert len(texts) >= 40, texts  # about one event per token
    first, last = events[0][0], events[-1][0]
    assert spread_share(first, last) > 0.25, ("events arrived in one burst: buffered, not streamed", first, last)
    # the stream's text is the same as the non-streaming answer
    status, whole = generate(triton_server, {**body, "stream": False})
    assert status == 200 and "".join(texts) == whole["text_output"]


def test_grpc_stream_delivers_tokens_incrementally(triton_server):
    # (test_cancelled_grpc_stream_frees_the_model proves it without any timing: a generation can
    # only be cancelled after its first response if that response came while it was running.)
    settings = GenerationSettings(max_tokens=40, temperature=0.0, ignore_eos=True)
    settled_metric(triton_server, "nv_inference_request_success")  # nothing else in flight: no queueing
    _, results = asyncio.run(
        run_requests(
            triton_server.grpc_url,
            triton_server.model_name,
            ["Describe a sunrise."],
            settings,
            protocol="grpc",
            stream=True,
        )
    )
    result = results[0]
    assert result.ok, result.error
    assert result.chunks >= 32
    assert result.chunk_times_s == sorted(result.chunk_times_s)
    assert spread_share(result.ttft_s, result.chunk_times_s[-1]) > 0.25, result.chunk_times_s


def test_stream_false_then_true_on_generate_stream(triton_server):
    # upstream Triton once crashed on this sequence; both must work and the server must survive
    body = {"text_input": "Hi", "max_tokens": 3, "temperature": 0}
    status, events, _ = sse(triton_server, {**body, "stream": False})
    assert status == 200 and len(events) == 1 and events[0][1]["text_output"]
    status, events, _ = sse(triton_server, {**body, "stream": True, "exclude_input_in_output": True})
    assert status == 200 and len(events) >= 1
    assert_still_serving(triton_server)


def test_cancelled_grpc_stream_frees_the_model(triton_server):
    """A client that goes away stops its generation; the next request is served at once."""
    import tritonclient.grpc as grpcclient

    got: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    inputs = [
        grpc_input("text_input", np.array([b"Count from one to one thousand."], dtype=object), "BYTES"),
        grpc_input("stream", np.array([True]), "BOOL"),
        grpc_input(
            "sampling_parameters",
            np.array([json.dumps({"max_tokens": 3000, "ignore_eos": True}).encode()], dtype=object),
            "BYTES",
        ),
    ]
    model = triton_server.model_name

    def cancelled_count() -> float:
        return labelled_value(
            metrics_text(triton_server), "tritonllm_request_failure_total", model=model, reason="cancelled"
        )

    def generated_tokens() -> float:
        return metric_value(metrics_text(triton_server), "tritonllm_generation_tokens_total", model)

    cancelled_before = cancelled_count()
    tokens_before = settled_metric(triton_server, "tritonllm_generation_tokens_total")
    client.async_stream_infer(model, inputs)
    for _ in range(3):
        result, error = got.get(timeout=60)
        assert error is None, error
    client.stop_stream(cancel_requests=True)
    client.close()
    # No "next request within N seconds" figure: the model itself reports that it stopped the
    # generation on the cancel (it counts a cancelled failure and no generated tokens); a model that
    # ignored the cancel would finish the context window and count its tokens instead.
    # the request ends either way: cancelled (counted as such) or run to its end (tokens counted)
    wait_for(lambda: cancelled_count() > cancelled_before or generated_tokens() > tokens_before)
    assert generated_tokens() == tokens_before, "the cancelled generation ran to its end"
    assert cancelled_count() == cancelled_before + 1, "the model did not report the cancellation"
    assert_still_serving(triton_server)


# --------------------------------------------------------------------------- malformed requests

BAD_GENERATE_BODIES = [
    pytest.param({"max_tokens": 5}, "text_input", id="missing-text_input"),
    pytest.param({"text_input": "hi", "sampling_parameters": "{not json"}, "not valid JSON", id="sampling-not-json"),
    pytest.param({"text_input": "hi", "sampling_parameters": "[1, 2]"}, "JSON object", id="sampling-not-object"),
    pytest.param(
        {"text_input": "hi", "sampling_parameters": json.dumps({"temprature": 0.5})},
        "temprature",
        id="sampling-unknown-key",
    ),
    pytest.param(
        {"text_input": "hi", "sampling_parameters": json.dumps({"temperature": "hot"})},
        "temperature",
        id="sampling-wrong-type",
    ),
    pytest.param(
        {"text_input": "hi", "sampling_parameters": json.dumps({"max_tokens": 1.5})},
        "max_tokens",
        id="sampling-max_tokens-not-integer",
    ),
    pytest.param({"text_input": "hi", "max_tokens": 1_000_000_000}, "max_tokens", id="max_tokens-absurd"),
    pytest.param({"text_input": "hi", "max_tokens": 0}, "max_tokens", id="max_tokens-zero"),
    pytest.param({"text_input": "hi", "max_tokens": -5}, "max_tokens", id="max_tokens-negative"),
    pytest.param({"text_input": "hi", "temperature": -1.0}, "temperature", id="temperature-negative"),
    pytest.param({"text_input": "hi", "top_p": 0.0}, "top_p", id="top_p-zero"),
    pytest.param({"text_input": "hi", "parameters": {"seed": "lots"}}, "seed", id="parameter-wrong-type"),
    pytest.param({"text_input": "hi", "ignore_eos": "maybe"}, "ignore_eos", id="extra-key-wrong-type"),
    pytest.param({"text_input": ["a", "b"]}, "text_input", id="text_input-two-elements"),
    pytest.param({"text_input": ""}, "empty", id="text_input-empty"),
    pytest.param({"text_input": "word " * 5000, "max_tokens": 4}, "context window", id="prompt-too-long"),
]


@pytest.mark.parametrize("body, needle", BAD_GENERATE_BODIES)
def test_malformed_generate_requests_get_400_and_server_keeps_serving(triton_server, body, needle):
    status, out = generate(triton_server, body)
    assert status == 400, (status, out)
    assert isinstance(out, dict) and needle in out["error"], out
    status, events, _ = sse(triton_server, {**body, "stream": True})
    assert status == 400
    assert needle in events[0][1]["error"]
    assert_still_serving(triton_server)


@pytest.mark.parametrize(
    "name, array, datatype",
    [
        pytest.param("max_tokens", np.array([8.0], dtype=np.float32), "FP32", id="max_tokens-as-FP32"),
        pytest.param("temperature", np.array([b"hot"], dtype=object), "BYTES", id="temperature-as-BYTES"),
        pytest.param("stream", np.array([1], dtype=np.int32), "INT32", id="stream-as-INT32"),
        pytest.param("text_input", np.array([3], dtype=np.int32), "INT32", id="text_input-as-INT32"),
    ],
)
def test_grpc_wrong_datatypes_are_refused_with_a_readable_error(triton_server, name, array, datatype):
    """gRPC streaming carries errors in-band (ModelStreamInferResponse.error_message, no status
    code): the request gets that error and no data, and the server keeps serving."""
    inputs = [grpc_input(name, array, datatype)]
    if name != "text_input":
        inputs.insert(0, grpc_input("text_input", np.array([b"hi"], dtype=object), "BYTES"))
    responses, error = grpc_stream(triton_server, inputs)
    assert error is not None and not responses
    message = error.message()
    assert f"'{name}'" in message and f"'{datatype}'" in message and "expects" in message, message
    assert_still_serving(triton_server)


def test_grpc_invalid_values_get_the_models_message(triton_server):
    inputs = [
        grpc_input("text_input", np.array([b"hi"], dtype=object), "BYTES"),
        grpc_input("max_tokens", np.array([-8], dtype=np.int32), "INT32"),
    ]
    responses, error = grpc_stream(triton_server, inputs)
    assert error is not None and not responses
    assert "'max_tokens' must be between 1 and" in error.message()


def test_unary_grpc_infer_is_refused_for_the_decoupled_model(triton_server):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.infer(triton_server.model_name, [grpc_input("text_input", np.array([b"hi"], dtype=object), "BYTES")])
    client.close()
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "decoupled" in info.value.message()


@pytest.mark.parametrize(
    "body",
    [
        {"text_input": 5},
        {"text_input": "hi", "max_tokens": "ten"},
        {"text_input": "hi", "stream": "yes"},
    ],
)
def test_http_json_of_the_wrong_type_is_refused_before_the_model(triton_server, body):
    """Triton's HTTP frontend converts generate JSON to typed tensors itself and reports a JSON
    value of the wrong JSON type as an INTERNAL error, i.e. HTTP 500 (upstream behaviour in every
    Triton release; TritonJson parse errors are TRITONSERVER_ERROR_INTERNAL). The model never
    sees the request; the message names the problem and the server keeps serving. gRPC clients
    get INVALID_ARGUMENT for the same mistake (test above)."""
    status, out = generate(triton_server, body)
    assert status == 500, (status, out)
    assert "attempt to access JSON" in out["error"] or "Unable to parse" in out["error"], out
    assert_still_serving(triton_server)


# --------------------------------------------------------------------------- load and metrics


def test_32_concurrent_requests_all_succeed(triton_server):
    before = settled_metric(triton_server, "nv_inference_request_success")
    queue_before = settled_metric(triton_server, "nv_inference_queue_duration_us")
    compute_before = settled_metric(triton_server, "nv_inference_compute_infer_duration_us")
    prompts = [f"Give me one fact about the number {i}." for i in range(32)]
    settings = GenerationSettings(max_tokens=12, temperature=0.0)
    started = time.perf_counter()
    _, results = asyncio.run(
        run_requests(
            triton_server.grpc_url,
            triton_server.model_name,
            prompts,
            settings,
            protocol="grpc",
            stream=True,
            concurrency=32,
            timeout=300,
        )
    )
    wall = time.perf_counter() - started
    failures = [(r.index, r.error) for r in results if not r.ok]
    assert failures == [], failures
    assert all(r.text for r in results)
    after = settled_metric(triton_server, "nv_inference_request_success")
    assert after - before == 32, (before, after, wall)
    # They really were in flight together: with one model instance Triton queued them, so the time
    # they spent queued exceeds the time they spent generating (sent one after another, queueing
    # would be ~0; 32 at once wait ~15x their compute). A ratio of two server-side durations, so
    # it holds on a slow or busy machine alike.
    queued = settled_metric(triton_server, "nv_inference_queue_duration_us") - queue_before
    computed = settled_metric(triton_server, "nv_inference_compute_infer_duration_us") - compute_before
    assert computed > 0 and queued > computed, (queued, computed)


def test_metrics_expose_nv_inference_for_the_model(triton_server):
    generate(triton_server, {"text_input": "Hello", "max_tokens": 3})
    generate(triton_server, {"text_input": "hi", "max_tokens": -1})  # a failure to count
    text = metrics_text(triton_server)
    model = triton_server.model_name
    for name in (
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_pending_request_count",
    ):
        metric_value(text, name, model)  # present for this model
    assert metric_value(text, "nv_inference_request_success", model) >= 1
    metric_value(text, "nv_inference_request_failure", model)  # exported (Triton leaves it 0 for these)
    invalid = re.search(
        r'^tritonllm_request_failure_total\{[^}]*model="smollm2"[^}]*reason="invalid_argument"'
        r"[^}]*\} ([0-9.]+)$",
        text,
        re.M,
    )
    assert invalid and float(invalid.group(1)) >= 1, "model-reported failures not counted"
    assert metric_value(text, "tritonllm_generation_tokens_total", model) >= 3
    assert metric_value(text, "tritonllm_prompt_tokens_total", model) >= 1
    assert "# TYPE nv_inference_request_success counter" in text
