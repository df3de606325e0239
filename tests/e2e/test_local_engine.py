"""The local model's engine in-process (the code Triton runs): request rules and real generation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ENGINE_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "local" / "smollm2" / "1"
sys.path.insert(0, str(ENGINE_DIR))
import llm_engine  # noqa: E402
from llm_engine import (  # noqa: E402
    EngineDefaults,
    GenerationRequest,
    RequestError,
    _stop_holdback,
    build_request,
    parse_sampling_parameters,
)

sys.path.remove(str(ENGINE_DIR))


# --------------------------------------------------------------------------- request rules (pure)


def test_precedence_tensor_over_json_over_parameters_over_defaults():
    req = build_request(
        "hi",
        tensors={"max_tokens": 5},
        sampling_parameters=json.dumps({"max_tokens": 9, "temperature": 0.3}),
        request_parameters=json.dumps({"max_tokens": 11, "temperature": 0.9, "top_k": 7, "unrelated": "x"}),
        defaults=EngineDefaults(max_tokens=64, temperature=0.5, top_k=40),
    )
    assert (req.max_tokens, req.temperature, req.top_k) == (5, 0.3, 7)
    assert build_request("hi").max_tokens == EngineDefaults().max_tokens


def test_vllm_style_string_values_are_converted():
    params = parse_sampling_parameters(
        '{"temperature": "0.01", "top_p": "1.0", "max_tokens": "128", "ignore_eos": "true", "stop": ["a", ""]}'
    )
    assert params == {"temperature": 0.01, "top_p": 1.0, "max_tokens": 128, "ignore_eos": True, "stop": ["a"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"best_of": 2}', "best_of"),
        ('{"temperature": "warm"}', "temperature"),
        ('{"max_tokens": true}', "max_tokens"),
        ('{"stop": [1, 2]}', "stop"),
        ('{"stop": ' + json.dumps(["s"] * 17) + "}", "at most 16"),
        ('{"temperature": "nan"}', "finite"),
    ],
)
def test_bad_sampling_parameters(text, message):
    with pytest.raises(RequestError, match=message):
        build_request("hi", sampling_parameters=text)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tensors": {"max_tokens": 0}}, "max_tokens"),
        ({"tensors": {"max_tokens": 4097}}, "max_tokens"),
        ({"tensors": {"top_p": 1.5}}, "top_p"),
        ({"tensors": {"top_k": -2}}, "top_k"),
        ({"sampling_parameters": '{"n": 2}'}, "n=1"),
        ({"sampling_parameters": '{"seed": -1}'}, "seed"),
        ({"sampling_parameters": '{"min_tokens": 50, "max_tokens": 10}'}, "min_tokens"),
        ({"sampling_parameters": '{"presence_penalty": 3}'}, "presence_penalty"),
        ({"tensors": {"bogus": 1}}, "unknown input"),
    ],
)
def test_bad_values_are_request_errors(kwargs, message):
    with pytest.raises(RequestError, match=message):
        build_request("hi", max_tokens_limit=4096, **kwargs)


@pytest.mark.parametrize(
    "text_input, message", [(None, "missing"), ("   ", "empty"), (b"\xff\xfe", "UTF-8"), (5, "string")]
)
def test_bad_text_input(text_input, message):
    with pytest.raises(RequestError, match=message):
        build_request(text_input)


def test_stop_holdback():
    assert _stop_holdback("hello wor", ["world"]) == 3
    assert _stop_holdback("hello", ["world"]) == 0
    assert _stop_holdback("abc<|", ["<|im_end|>", "x"]) == 2
    assert _stop_holdback("", ["a"]) == 0


def test_defaults_from_model_parameters():
    d = EngineDefaults.from_parameters(
        {
            "default_max_tokens": "32",
            "default_temperature": "0",
            "default_apply_chat_template": "false",
            "n_ctx": "2048",
        }
    )
    assert (d.max_tokens, d.temperature, d.apply_chat_template) == (32, 0.0, False)
    assert build_request("hi", defaults=d).apply_chat_template is False


# --------------------------------------------------------------------------- real model, in-process


@pytest.fixture(scope="module")
def engine():
    return llm_engine.LlamaEngine(n_ctx=1024)


def greedy(prompt: str, **kw) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt,
        max_tokens=kw.pop("max_tokens", 24),
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        repetition_penalty=1.0,
        **kw,
    )


def run(engine, req):
    chunks = list(engine.generate(req))
    return "".join(c.text for c in chunks), sum(c.num_tokens for c in chunks), chunks[-1].finish_reason, chunks


def test_engine_loads_the_packaged_gguf(engine):
    # How fast it loads is a figure, not a pass/fail check on a shared machine: `make bench-local`
    # (benchmarks/local_overhead.py) measures the warm load against its 10 s target.
    assert engine.model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert engine.n_ctx == 1024


def test_ignore_eos_produces_exactly_max_tokens(engine):
    text, tokens, finish, chunks = run(engine, greedy("Say yes.", max_tokens=20, ignore_eos=True))
    assert tokens == 20 and finish == "length"
    assert len(chunks) >= 10  # streamed piece by piece, not in one block
    # the token count is the model's own: re-tokenizing the text gives (about) the same number
    assert abs(engine.count_tokens(text) - 20) <= 2


def test_natural_stop_at_end_of_turn(engine):
    text, tokens, finish, _ = run(engine, greedy("Reply with the single word: yes", max_tokens=200))
    assert finish == "stop" and 0 < tokens < 200 and "<|im_end|>" not in text


def test_min_tokens_delays_the_end_of_turn(engine):
    _, short, _, _ = run(engine, greedy("Reply with the single word: yes", max_tokens=200))
    _, tokens, _, _ = run(engine, greedy("Reply with the single word: yes", max_tokens=200, min_tokens=short + 15))
    assert tokens >= short + 15


def test_stop_strings_and_include_stop_str(engine):
    full, _, _, _ = run(engine, greedy("Count from 1 to 10, separated by commas.", max_tokens=40, ignore_eos=True))
    assert "5" in full, full
    cut, _, finish, _ = run(engine, greedy("Count from 1 to 10, separated by commas.", max_tokens=40, stop=["5"]))
    assert finish == "stop" and cut == full[: full.index("5")]
    kept, _, _, _ = run(
        engine,
        greedy("Count from 1 to 10, separated by commas.", max_tokens=40, stop=["5"], include_stop_str_in_output=True),
    )
    assert kept == full[: full.index("5") + 1]


def test_cancellation_stops_generation(engine):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) >= 3

    _, tokens, finish, _ = run_with_cancel(
        engine, greedy("Tell a long story.", max_tokens=200, ignore_eos=True), cancelled
    )
    assert finish == "cancelled" and tokens == 3


def run_with_cancel(engine, req, cancelled):
    chunks = list(engine.generate(req, is_cancelled=cancelled))
    return "".join(c.text for c in chunks), sum(c.num_tokens for c in chunks), chunks[-1].finish_reason, chunks


def test_prompt_longer_than_the_context_is_refused(engine):
    with pytest.raises(RequestError, match="context window"):
        list(engine.generate(greedy("word " * 2000)))


def test_generation_stops_at_the_context_window(engine):
    prompt = "word " * 950
    n_prompt = len(engine.tokenize(engine.render_prompt(greedy(prompt))))
    assert n_prompt < engine.n_ctx
    _, tokens, finish, _ = run(engine, greedy(prompt, max_tokens=500, ignore_eos=True))
    assert finish == "length" and tokens == engine.n_ctx - n_prompt


def test_chat_template_rendering(engine):
    templated = engine.render_prompt(greedy("Hello"))
    assert templated.startswith("<|im_start|>") and templated.endswith("<|im_start|>assistant\n")
    assert "Hello" in templated
    assert engine.render_prompt(greedy("Hello", apply_chat_template=False)) == "Hello"
    assert engine.render_prompt(greedy(templated)) == templated  # already formatted: left alone
