"""Pure parts of the local OpenAI tooling: request mapping (frontend), client bodies, AIPerf URLs."""

from __future__ import annotations

import pytest

from tritonllm import openai_bench, openai_client
from tritonllm._llm_io import GenerationSettings
from tritonllm.openai_frontend import ChatCompletionRequest, ClientError, CompletionRequest, TritonModel, triton_request

LOCAL_INPUTS = {
    "text_input",
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "sampling_parameters",
    "exclude_input_in_output",
    "apply_chat_template",
    "return_finish_reason",
    "return_num_input_tokens",
    "return_num_output_tokens",
}
ENSEMBLE_INPUTS = {
    "text_input",
    "max_tokens",
    "stream",
    "stop_words",
    "top_p",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "return_num_input_tokens",
    "return_num_output_tokens",
    "exclude_input_in_output",
    "bad_words",
}


def test_chat_request_maps_like_upstreams_trtllm_converter():
    model = TritonModel("smollm2", LOCAL_INPUTS, 0)
    req = ChatCompletionRequest.model_validate(
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 9,
            "max_completion_tokens": 5,
            "stop": "x",
            "temperature": 0.5,
            "stream": True,
        }
    )
    body = triton_request(model, "<templated>", req, 16)
    assert body == {
        "text_input": "<templated>",
        "stream": True,
        "max_tokens": 5,
        "stop": ["x"],
        "temperature": 0.5,
        "exclude_input_in_output": True,
        "apply_chat_template": False,
        "return_finish_reason": True,
        "return_num_input_tokens": True,
        "return_num_output_tokens": True,
    }


def test_defaults_and_ensemble_names():
    model = TritonModel("ensemble", ENSEMBLE_INPUTS, 0)
    req = CompletionRequest.model_validate(
        {"model": "ensemble", "prompt": "p", "stop": ["a", "b"], "seed": 3, "echo": True}
    )
    body = triton_request(model, "p", req, 16)
    assert body["max_tokens"] == 16 and body["stop_words"] == ["a", "b"] and body["seed"] == 3
    assert body["exclude_input_in_output"] is False and "apply_chat_template" not in body


def test_fields_the_model_cannot_take_are_refused():
    model = TritonModel("smollm2", LOCAL_INPUTS, 0)
    with pytest.raises(ClientError, match="seed is not supported by model smollm2"):
        triton_request(model, "p", CompletionRequest.model_validate({"model": "m", "prompt": "p", "seed": 1}), 16)
    req = CompletionRequest.model_validate({"model": "m", "prompt": "p", "ignore_eos": True, "min_tokens": 4})
    assert triton_request(model, "p", req, 16)["sampling_parameters"] == '{"ignore_eos": true, "min_tokens": 4}'


def test_schema_refuses_unknown_fields_like_upstream():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": "p", "no_such": 1})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": []})


def test_client_bodies():
    s = GenerationSettings(max_tokens=7, temperature=0.0, stop=["\n"])
    assert openai_client.request_body("m", "hi", s, endpoint="chat", stream=True) == {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
        "max_tokens": 7,
        "temperature": 0.0,
        "stop": ["\n"],
    }
    assert openai_client.request_body(
        "m", "hi", GenerationSettings(exclude_input_in_output=False), endpoint="completions", stream=False
    ) == {"model": "m", "stream": False, "prompt": "hi", "echo": True}
    with pytest.raises(ValueError, match="top_k"):
        openai_client.request_body("m", "hi", GenerationSettings(top_k=4), endpoint="chat", stream=False)


def test_aiperf_url_split():
    assert openai_bench.split_base_url("http://127.0.0.1:9000/v1") == ("http://127.0.0.1:9000", "/v1/chat/completions")
    assert openai_bench.split_base_url("http://nlb:8000/openai/m/v1/", "completions") == (
        "http://nlb:8000",
        "/openai/m/v1/completions",
    )
    with pytest.raises(Exception, match="not an OpenAI base URL"):
        openai_bench.split_base_url("localhost:9000")
