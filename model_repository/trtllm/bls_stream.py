"""model.py of the served TensorRT-LLM model: upstream's tensorrt_llm_bls, streaming whole characters.

build_engine.py copies the image's `tensorrt_llm_bls` template as the served model, keeps its
`1/model.py` as `1/upstream_model.py` and puts this file in front of it as `1/model.py`.

Why: in upstream's ensemble the postprocessing model decodes the tokens of each streamed response
on their own (postprocessing/1/model.py: `tokenizer.batch_decode` on that response's tokens), so a
character whose UTF-8 bytes span two tokens (accents, CJK, emoji in byte-level BPE vocabularies)
arrives as U+FFFD and streamed text differs from non-streamed text. Upstream's BLS with
`accumulate_tokens: true` (tensorrt_llm_bls/1/lib/decode.py `Decoder.postprocess`) decodes all of a
request's tokens so far instead, so its text is right but cumulative. This wrapper turns that
cumulative text back into deltas and holds back a trailing incomplete character (U+FFFD at the end)
until the next token completes it. The concatenated stream equals the non-streamed text.

When a generation ends inside a character (max_tokens reached mid-emoji), what is still held goes
out in the last response, never in an extra one: a non-streamed request must get one response with
text (plus upstream's empty final-flag response). Triton's OpenAI frontend refuses a third
(server r25.12 `python/openai/openai_frontend/engine/utils/triton.py`
`_validate_triton_responses_non_streaming`: "Unexpected number of responses"), and reads the text
of the first response only (`engine/triton_engine.py` `completion`: `responses[0]`). So a response
whose text ends before a held-back character is kept until the next response of its sequence
arrives (then sent as is) or the generation ends (then sent with the rest attached).

The pure part (DeltaText in text_deltas.py, stream_deltas) needs only the standard library and is unit-tested with a
real byte-level BPE tokenizer (tests/repository/test_trtllm_streaming.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

try:
    from text_deltas import DeltaText  # next to this file in the model's version directory
except ImportError:  # loaded by path (tests): the same folder
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from text_deltas import DeltaText


def _index(value: Any) -> int:
    try:
        return int(value[0][0]) if value is not None and getattr(value, "shape", None) == (1, 1) else 0
    except (TypeError, IndexError):
        return 0


def stream_deltas(responses: Iterable[Any]) -> Iterator[Any]:
    """Upstream BLS Response objects with cumulative text_output -> the same with delta text_output.

    Yields exactly as many responses as it is given (see the module docstring for the order)."""
    states: dict[tuple[int, int, int], DeltaText] = {}
    held: dict[tuple[int, int], Any] = {}  # (batch, sequence) -> a response kept back, see above
    for response in responses:
        sequence = (_index(response.batch_index), _index(response.sequence_index))
        if sequence in held:
            yield held.pop(sequence)  # the next response of its sequence came: it was not the last
        out, pending = [], False
        for beam, text in enumerate(response.text_output):
            state = states.setdefault((*sequence, beam), DeltaText())
            decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
            out.append(state.push(decoded).encode("utf-8"))
            pending = pending or state.pending
        response.text_output = _like(response.text_output, out)
        if pending:
            held[sequence] = response
        else:
            yield response
    for sequence, response in held.items():
        # The generation ended inside a character: the held-back rest goes out with this last response.
        tails = [
            bytes(text) + states[(*sequence, beam)].flush().encode("utf-8")
            for beam, text in enumerate(response.text_output)
        ]
        response.text_output = _like(response.text_output, tails)
        yield response


def _like(original: Any, values: list[bytes]) -> Any:
    """A value of the same kind as upstream's text_output (a numpy object array in the backend)."""
    try:
        import numpy as np  # in the Triton image

        return np.array(values, dtype=object)
    except ImportError:  # pragma: no cover - numpy is always there in Triton
        return values


class TritonPythonModel:
    """Upstream's BLS model, with its decoder's responses turned into whole-character deltas."""

    def initialize(self, args: dict[str, Any]) -> None:
        import upstream_model  # the image's tensorrt_llm_bls/1/model.py, next to this file

        self.inner = upstream_model.TritonPythonModel()
        self.inner.initialize(args)
        decoder = self.inner.decoder
        if not getattr(decoder, "_accumulate", False):
            raise ValueError(
                "the served BLS model needs parameters.accumulate_tokens = true "
                "(build_engine.py fills it); without it streamed text breaks characters"
            )
        upstream_decode = decoder.decode

        def decode(request: Any, *a: Any, **kw: Any) -> Iterator[Any]:
            yield from stream_deltas(upstream_decode(request, *a, **kw))

        decoder.decode = decode

    def execute(self, requests: list[Any]) -> Any:
        return self.inner.execute(requests)

    def finalize(self) -> None:
        self.inner.finalize()
