"""A dead vLLM engine must fail the pod's probes: checked on a real tritonserver (CPU).

The vLLM backend's health check (ENABLE_VLLM_HEALTH_CHECK, vllm_backend r25.12 src/model.py
`_check_health`) calls `pb_utils.unload_model(<its own name>)` when the engine is dead and answers
the request UNAVAILABLE. Here a Python model does exactly that when asked, so the test needs no
GPU; the server runs with the model-control flags components/serving/builders/triton_manifests.py gives vLLM pods,
and the probe paths are the ones the Deployment gets. What the test shows:

- with those flags (explicit mode, --load-model) the unload happens and every probe path of the
  vLLM Deployment fails afterwards, while /v2/health/live and /v2/health/ready, the former probes,
  stay 200 (strict readiness only counts loaded models);
- with --model-control-mode=none (the former flags) the unload is refused and the dead model stays
  READY, so no probe could ever notice (why docs/health_check.md asks for explicit mode).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from components.serving.builders import triton_manifests as tm

MODEL = "vllm-like"
DYING_MODEL = '''
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers like a healthy engine until a request says "die"; then does what the vLLM backend's
    health check does for a dead engine: unload itself and answer UNAVAILABLE."""

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
            if prompt == b"die":
                pb_utils.unload_model(self.model_config["name"])  # non-blocking, as in vllm_backend
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    message="Model is unavailable due to unhealthy vLLM engine",
                    code=pb_utils.TritonError.UNAVAILABLE)), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                out = pb_utils.Tensor("text_output", np.array([prompt], dtype=np.object_))
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''
CONFIG = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def write_repository(root: Path) -> Path:
    (root / MODEL / "1").mkdir(parents=True)
    (root / MODEL / "1" / "model.py").write_text(DYING_MODEL)
    (root / MODEL / "config.pbtxt").write_text(CONFIG)
    return root


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def kill_engine(server) -> str:
    """A request that makes the model's 'engine' die (HTTP /generate, which takes decoupled models)."""
    import json

    request = urllib.request.Request(
        f"{server.http_url}/v2/models/{MODEL}/generate",
        data=json.dumps({"text_input": "die"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=30)
    return failed.value.read().decode()


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def serve(tmp_path: Path, control_args: list[str]):
    from tritonllm.serve import TritonServer

    server = TritonServer(
        write_repository(tmp_path / "repo"),
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_file=tmp_path / "tritonserver.log",
        extra_args=control_args,
    )
    server.start()
    return server


def test_a_dead_engine_fails_every_vllm_probe(tmp_path):
    # The model-control flags of the vLLM Deployment (everything else there is for the GPU image).
    flags = [
        a for a in tm.vllm_tritonserver_args("unused", MODEL) if a.startswith(("--model-control-mode", "--load-model"))
    ]
    assert flags == ["--model-control-mode=explicit", f"--load-model={MODEL}"]
    probe_paths = {p["httpGet"]["path"] for p in tm.probes(MODEL).values()}
    server = serve(tmp_path, flags)
    try:
        base = server.http_url
        assert all(status(base + path) == 200 for path in probe_paths)
        assert "unhealthy vLLM engine" in kill_engine(server)
        assert wait_for(lambda: all(status(base + path) != 200 for path in probe_paths)), (
            f"probes {probe_paths} still pass after the engine died"
        )
        # The former probes would not notice: the server stays live, and once the unload has finished
        # (strict readiness counts only loaded models) ready again, with the model still gone.
        assert status(base + "/v2/health/live") == 200
        assert wait_for(lambda: status(base + "/v2/health/ready") == 200)
        assert all(status(base + path) != 200 for path in probe_paths)
    finally:
        server.stop()


def test_without_explicit_mode_the_dead_model_stays_ready(tmp_path):
    """Mode none refuses the unload the health check relies on, so the model stays READY.

    The refusal is shown through the repository API rather than a dying model: in Triton 2.51's Python
    backend (the one this machine runs) `pb_utils.unload_model` under mode none aborts the server
    about one run in five (boost::interprocess::lock_exception), which would make this check flaky.
    """
    server = serve(tmp_path, ["--model-control-mode=none"])
    try:
        base = server.http_url
        request = urllib.request.Request(
            f"{base}/v2/repository/models/{MODEL}/unload", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert "explicit model load / unload is not allowed" in refused.value.read().decode()
        assert status(base + f"/v2/models/{MODEL}/ready") == 200
    finally:
        server.stop()
