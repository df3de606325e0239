"""The restricted model repository API on a real Triton (issue 18): no header, no model loading.

A real tritonserver (the nvidia-pytriton wheel's, on CPU) runs in explicit model-control mode with
the arguments the EKS builders give explicit-mode servers (components/serving/builders/
triton_manifests.py: `$(TRITONLLM_ADMIN_KEY)` expanded as the kubelet expands it from the pod's
environment). Over HTTP and gRPC:

    load / unload / index without the header, or with a wrong value  -> refused (HTTP 403, gRPC error)
    a load that carries a model file (the override that runs code)   -> refused without the header
    the same requests with the header                                -> done
    health, model readiness and inference                            -> open, no header needed

The model is a small Python-backend identity model written to a temporary repository (the point is
the API, not the LLM), so the server starts in seconds.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from components.catalog.triton_server import ADMIN_KEY_GRPC_METADATA, ADMIN_KEY_HEADER
from components.serving.builders import triton_manifests as tm
from tritonllm.serve import ServerError, TritonServer

pytestmark = pytest.mark.e2e

KEY = "e2eAdminKey0123456789abcdefABCDEF0123456789ab"  # shaped like the generated one (48 alphanumerics)
MODEL_PY = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""


def config_pbtxt(name: str) -> str:
    return f"""name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


def kubelet_expand(args: list[str], env: dict[str, str]) -> list[str]:
    """`$(VAR)` in a container's command/args, expanded from its environment as Kubernetes does."""
    out = []
    for arg in args:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out


def eks_explicit_mode_args(model_name: str) -> list[str]:
    """The explicit-mode and restricted-API arguments a vLLM pod on EKS runs with, expanded."""
    rendered = tm.vllm_tritonserver_args("s3://bucket/models/x", model_name)
    wanted = [
        a
        for a in rendered
        if a.startswith(("--model-control-mode", "--load-model", "--http-restricted-api", "--grpc-restricted-protocol"))
    ]
    assert len(wanted) == 4, rendered
    return kubelet_expand(wanted, {tm.ADMIN_KEY_ENV: KEY})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("restricted-repository")
    (repository / "identity" / "1").mkdir(parents=True)
    (repository / "identity" / "config.pbtxt").write_text(config_pbtxt("identity"))
    (repository / "identity" / "1" / "model.py").write_text(MODEL_PY)
    triton = TritonServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_file=repository.parent / "tritonserver.log",
        # explicit mode as on EKS; TritonServer adds the restricted-API arguments for admin_key (and
        # sends the header on its own index request): the same arguments as the pod's, expanded
        extra_args=[a for a in eks_explicit_mode_args("identity") if "restricted" not in a],
        admin_key=KEY,
        startup_timeout=240,
    )
    try:
        triton.start()
    except ServerError as exc:
        pytest.fail(f"could not start tritonserver: {exc}\n{exc.log_tail[-3000:]}", pytrace=False)
    assert triton.models == {"identity": "READY"}, triton.models  # the index answered, with the header
    eks = [a for a in eks_explicit_mode_args("identity") if "restricted" in a]
    assert len(eks) == 2 and all(a in triton.command_line() for a in eks), (eks, triton.command_line())
    try:
        yield triton
    finally:
        triton.stop()


def http(server: TritonServer, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.http_url + path, data=data, method="POST" if body is not None else "GET", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


ADMIN = {ADMIN_KEY_HEADER: KEY}


def test_http_repository_api_refuses_requests_without_the_header(server):
    for path in (
        "/v2/repository/index",
        "/v2/repository/models/identity/load",
        "/v2/repository/models/identity/unload",
    ):
        for headers in ({}, {ADMIN_KEY_HEADER: "wrong"}, {ADMIN_KEY_HEADER: KEY[:-1]}):
            status, text = http(server, path, {}, headers)
            assert status == 403, (path, headers, status, text)
            assert f"expecting header '{ADMIN_KEY_HEADER}'" in text
    assert http(server, "/v2/models/identity/ready")[0] == 200  # nothing was unloaded


def test_a_load_with_a_model_file_is_refused_without_the_header_and_done_with_it(server):
    """The override that makes explicit mode dangerous: a config and a model.py in the request."""
    body = {
        "parameters": {
            "config": json.dumps(
                {
                    "name": "injected",
                    "backend": "python",
                    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
                    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
                }
            ),
            "file:1/model.py": base64.b64encode(MODEL_PY.encode()).decode(),
        }
    }
    status, _ = http(server, "/v2/repository/models/injected/load", body)
    assert status == 403
    assert http(server, "/v2/models/injected/ready")[0] != 200  # nothing of it was loaded
    status, text = http(server, "/v2/repository/models/injected/load", body, ADMIN)
    assert status == 200, text
    assert http(server, "/v2/models/injected/ready")[0] == 200
    assert http(server, "/v2/repository/models/injected/unload", {}, ADMIN)[0] == 200


def test_http_repository_api_works_with_the_header(server):
    assert http(server, "/v2/repository/models/identity/unload", {}, ADMIN)[0] == 200
    assert http(server, "/v2/models/identity/ready")[0] != 200
    assert http(server, "/v2/repository/models/identity/load", {}, ADMIN)[0] == 200
    status, text = http(server, "/v2/repository/index", {}, ADMIN)
    assert status == 200 and {m["name"]: m["state"] for m in json.loads(text)}["identity"] == "READY"


def test_grpc_repository_api_needs_the_metadata(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for headers in (None, {ADMIN_KEY_GRPC_METADATA: "wrong"}, {ADMIN_KEY_HEADER: KEY}):  # the bare key is HTTP's
            with pytest.raises(InferenceServerException, match="restricted"):
                client.load_model("identity", headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                client.get_model_repository_index(headers=headers)
        client.unload_model("identity", headers={ADMIN_KEY_GRPC_METADATA: KEY}, unload_dependents=False)
        client.load_model("identity", headers={ADMIN_KEY_GRPC_METADATA: KEY})
        index = client.get_model_repository_index(headers={ADMIN_KEY_GRPC_METADATA: KEY}, as_json=True)
        assert {m["name"]: m.get("state") for m in index["models"]}["identity"] == "READY"
    finally:
        client.close()


def test_health_and_inference_stay_open(server):
    assert http(server, "/v2/health/ready")[0] == 200
    assert http(server, "/v2/models/identity/ready")[0] == 200
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_server_live() and client.is_model_ready("identity")
        data = np.array([1.0, 2.0, 3.0], dtype=np.float32)
        tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer("identity", [tensor])
        assert result.as_numpy("OUTPUT0").tolist() == [1.0, 2.0, 3.0]
    finally:
        client.close()


def test_tritonllm_without_the_key_fails_loudly(server, tmp_path: Path):
    """tritonllm's own index request (TritonServer.start) sends the key; a server restricted behind a
    key it was not given is an error naming the fix, not a server that seems to have no models."""
    stranger = TritonServer(
        server.model_repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_file=tmp_path / "tritonserver.log",
        extra_args=eks_explicit_mode_args("identity"),  # restricted, but TritonServer does not know the key
        startup_timeout=240,
    )
    try:
        with pytest.raises(ServerError, match=r"repository API is restricted.*admin_key"):
            stranger.start()
    finally:
        stranger.stop()
