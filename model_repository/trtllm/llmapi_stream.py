"""model.py of a served `llmapi` model (trtllm.runtime: llmapi): upstream's model, streaming deltas.

The pod's start script (components/serving/builders/llmapi.py `prepare_script`) copies the image's
`/app/all_models/llmapi/tensorrt_llm/1/model.py` to `1/upstream_model.py` and puts this file in
front of it as `1/model.py`, with `text_deltas.py` beside it (helpers.py stays as upstream ships it).

Why: upstream's model (NVIDIA/TensorRT-LLM `triton_backend/all_models/llmapi/tensorrt_llm/1/model.py`,
`_create_response`) answers every streamed response with `output.text` of the LLM API's
CompletionOutput, which is the whole text generated so far. Clients that join streamed chunks (our
client, bench and load test, and any KServe client written for Triton's vLLM backend or the TRT-LLM
BLS, which stream deltas) would print "HHeHel..." and count characters and tokens wrongly. This
wrapper keeps upstream's model whole (subclass; every method inherited) and gives its
`_create_response` a view of the request output whose `outputs[i].text` is the new text since the
previous response of the same request. A request answered once (not streamed) gets the whole text,
its delta from nothing. A trailing incomplete character (U+FFFD) is held back until it completes, and
whatever is still held when the request finishes goes out with its final response.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any

try:
    from text_deltas import DeltaText  # next to this file in the model's version directory
except ImportError:  # loaded by path (tests): the same folder
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from text_deltas import DeltaText

import upstream_model  # the image's llmapi model.py, next to this file

if not callable(getattr(upstream_model.TritonPythonModel, "_create_response", None)):
    raise ImportError(
        "the image's llmapi model.py has no TritonPythonModel._create_response, which the streaming "
        "wrapper (model_repository/trtllm/llmapi_stream.py) overrides; update the wrapper for this release"
    )


class _Delegate:
    """An object that answers like `inner` except for the attributes given."""

    def __init__(self, inner: Any, **overrides: Any) -> None:
        self.__dict__["_inner"] = inner
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_inner"], name)


class TritonPythonModel(upstream_model.TritonPythonModel):
    """Upstream's llmapi model with text_output as deltas."""

    def _text_states(self, request_output: Any) -> list[DeltaText]:
        registry = self.__dict__.get("_tritonllm_states")
        if registry is None:
            registry = self.__dict__["_tritonllm_states"] = weakref.WeakKeyDictionary()
        try:
            states: list[DeltaText] = registry.setdefault(request_output, [])
        except TypeError:  # not weak-referenceable: keep it by id until it finishes
            fallback = self.__dict__.setdefault("_tritonllm_states_by_id", {})
            states = fallback.setdefault(id(request_output), [])
        return states

    def _forget(self, request_output: Any) -> None:
        registry = self.__dict__.get("_tritonllm_states")
        try:
            if registry is not None:
                registry.pop(request_output, None)
        except TypeError:
            pass
        self.__dict__.get("_tritonllm_states_by_id", {}).pop(id(request_output), None)

    def _create_response(self, request_output: Any, output_config: Any) -> Any:
        # One request's outputs arrive as the same RequestOutput object, updated in place
        # (generate_async's result, iterated by upstream's _execute_single_request).
        states = self._text_states(request_output)
        finished = bool(getattr(request_output, "finished", False))
        outputs = []
        for i, output in enumerate(request_output.outputs):
            while len(states) <= i:
                states.append(DeltaText())
            delta = states[i].push(output.text)
            if finished:
                delta += states[i].flush()
            outputs.append(_Delegate(output, text=delta))
        if finished:
            self._forget(request_output)
        return super()._create_response(_Delegate(request_output, outputs=outputs), output_config)
