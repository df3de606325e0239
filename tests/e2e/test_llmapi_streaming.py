"""Issue 17 item 4: a `trtllm.runtime: llmapi` model streams deltas to clients, on a real tritonserver (CPU).

Upstream's llmapi model (NVIDIA/TensorRT-LLM triton_backend/all_models/llmapi/tensorrt_llm/1/
model.py) sends `output.text`, the LLM API's whole text so far, on every streamed response
(`_execute_single_request` -> `_create_response`: `text_output = [output.text.encode("utf-8") ...]`).
Clients joining the chunks (tritonllm client/bench/loadtest, and KServe clients written for the vLLM
backend or the TRT-LLM BLS, which stream deltas) got "HHeHel...".

The model repository here is assembled by the pod's own start script (llmapi.prepare_script, paths
moved into a temporary directory) from the ConfigMap data the stack renders and a stand-in for the
image's llmapi model: a Python model with upstream's response path (same method names and calls,
the same RequestOutput object updated in place, the cumulative `text` per streamed response, FINAL
with the last one, one response when not streaming) and a scripted engine instead of
`tensorrt_llm.LLM`. The real tritonserver serves it with the pod's tritonserver flags, and
tritonllm's KServe client (gRPC streaming, HTTP generate_stream and generate) must get the text once.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from components.serving.builders import llmapi as llmapi_repository
from tests.unit.test_openai_llmapi import _llmapi_model
from tritonllm._llm_io import GenerationSettings
from tritonllm.kserve_client import run_requests
from tritonllm.serve import TritonServer

pytestmark = pytest.mark.e2e

# The engine's output for every prompt, in the pieces a detokenizer would add per step (whole
# characters, multi-byte ones included), and the whole text the LLM API reports at the end.
PIECES = ["Tri", "ton", " stre", "ams", ":", " na", "ïve", " caf", "é", " 🎉", " 日本", "語", "."]
REPLY = "".join(PIECES)

STAND_IN_UPSTREAM_MODEL = f'''
"""Stand-in for the image's llmapi model.py: upstream's response path, a scripted engine."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

PIECES = {PIECES!r}


class CompletionOutput:  # tensorrt_llm.llmapi CompletionOutput: `text` is everything so far
    def __init__(self):
        self.index, self.text, self.finish_reason = 0, "", None
        self.stop_reason, self.cumulative_logprob = None, None


class RequestOutput:  # generate_async's result: one object per request, updated in place
    def __init__(self):
        self.outputs, self.finished = [CompletionOutput()], False


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        config = pb_utils.get_output_config_by_name(self.model_config, "text_output")
        self.output_dtype = pb_utils.triton_string_to_numpy(config["data_type"])

    def execute(self, requests):
        for request in requests:
            self._execute_single_request(request)
        return None

    def _execute_single_request(self, request):
        response_sender = request.get_response_sender()
        streaming = bool(_scalar(request, "streaming", False))  # helpers.get_streaming_from_request
        output_config = {{  # helpers.get_output_config_from_request
            "return_finish_reason": bool(_scalar(request, "return_finish_reason", False)),
            "return_stop_reason": False,
            "return_cumulative_logprob": False,
        }}
        steps = min(int(_scalar(request, "sampling_param_max_tokens", len(PIECES))), len(PIECES))
        request_output = RequestOutput()
        for step in range(steps):  # `async for request_output in response_iterator`
            request_output.outputs[0].text += PIECES[step]
            request_output.finished = step == steps - 1
            if request_output.finished:
                request_output.outputs[0].finish_reason = "length"
            if streaming:
                flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if request_output.finished else 0
                response_sender.send(self._create_response(request_output=request_output,
                                                           output_config=output_config), flags)
        if not streaming:  # "Send the last response which contains all the outputs if not streaming."
            response_sender.send(self._create_response(request_output=request_output, output_config=output_config),
                                 flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _create_response(self, request_output, output_config):
        response = []
        text_output = [output.text.encode("utf-8") for output in request_output.outputs]
        response.append(pb_utils.Tensor("text_output", np.asarray(text_output, dtype=self.output_dtype)))
        if output_config["return_finish_reason"]:
            reasons = [str(output.finish_reason) for output in request_output.outputs]
            response.append(pb_utils.Tensor("finish_reason", np.asarray(reasons, dtype=np.object_)))
        return pb_utils.InferenceResponse(output_tensors=response)

    def finalize(self):
        pass
'''


def assemble_repository(tmp_path: Path, model) -> Path:
    """Run the pod's prepare script with its paths moved under tmp_path."""
    image = tmp_path / "image-llmapi-model"
    image.mkdir()
    (image / "model.py").write_text(STAND_IN_UPSTREAM_MODEL)
    (image / "helpers.py").write_text("# the image's helpers.py (the stand-in reads its inputs itself)\n")
    config = tmp_path / "configmap"
    config.mkdir()
    for key, text in llmapi_repository.configmap_data(model).items():
        (config / key).write_text(text)
    repository = tmp_path / "model_repository"
    script = (
        llmapi_repository.prepare_script(model)
        .replace(llmapi_repository.LLMAPI_MODEL_DIR, str(image))
        .replace(llmapi_repository.CONFIG_MOUNT, str(config))
        .replace(llmapi_repository.REPOSITORY_DIR, str(repository))
    )
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return repository


@pytest.fixture(scope="module")
def llmapi_server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("llmapi")
    model = _llmapi_model()
    repository = assemble_repository(tmp_path, model)
    server = TritonServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_file=tmp_path / "tritonserver.log",
        extra_args=list(llmapi_repository.TRITONSERVER_EXTRA_ARGS),  # the pod's --disable-auto-complete-config
    )
    server.start()
    try:
        yield server, model.name
    finally:
        server.stop()


@pytest.mark.parametrize(
    "protocol, stream", [("grpc", True), ("http", True), ("grpc", False), ("http", False)], ids=str
)
def test_clients_get_the_text_once(llmapi_server, protocol, stream):
    server, name = llmapi_server
    url = server.grpc_url if protocol == "grpc" else server.http_url
    settings = GenerationSettings(max_tokens=len(PIECES))
    _, results = asyncio.run(run_requests(url, name, ["hello"], settings, protocol=protocol, stream=stream))
    result = results[0]
    assert result.ok, result.error
    assert result.text == REPLY
    assert result.chunks == (len(PIECES) if stream else 1)


def test_a_cut_generation_streams_what_was_generated(llmapi_server):
    server, name = llmapi_server
    settings = GenerationSettings(max_tokens=5)
    _, results = asyncio.run(run_requests(server.grpc_url, name, ["a", "b"], settings, concurrency=2))
    assert [r.text for r in results] == ["".join(PIECES[:5])] * 2
