"""API keys end to end, on loopback: real NGINX (`auth_basic`, the module NGF's AuthenticationFilter
renders) with the htpasswd file the cluster's Secret holds, in front of the real local Triton.

    HTTP: no key / wrong key / unknown name -> 401 (never reaches Triton); a key -> 200
    gRPC: the same -> UNAUTHENTICATED; a key -> the model's answer
    `tritonllm client` and `bench`'s interface probe take --api-key / $TRITONLLM_API_KEY.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ANY_FREE_PORTS
from tritonllm import auth_front
from tritonllm._llm_io import GenerationSettings
from tritonllm.client_core import API_KEY_ENV, SetupError
from tritonllm.kserve_client import run_requests

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = [("ci", "0123456789abcdef0123456789abcdef"), ("ci-next", "fedcba9876543210fedcba9876543210")]
KEY = ":".join(KEYS[0])
SETTINGS = GenerationSettings(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def front(triton_server):
    if auth_front.nginx_binary() is None:
        pytest.fail("nginx is not installed (apt-get install nginx; .ci/run installs it)", pytrace=False)
    server = triton_server.server
    with auth_front.ApiKeyFront(
        KEYS, triton_http=server.http_port, triton_grpc=server.grpc_port, http_port=0, grpc_port=0
    ) as proxy:
        yield proxy


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key.encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _basic("ci:wrong-secret-0123456789abcdef"),
        _basic(f"nobody:{KEYS[0][1]}"),
        _basic(f"ci:{KEYS[1][1]}"),  # another key's secret under this key's name
        {"Authorization": f"Bearer {KEYS[0][1]}"},
        {"x-api-key": KEY},
    ],
    ids=["none", "wrong-secret", "unknown-name", "crossed-keys", "bearer", "other-header"],
)
def test_http_without_a_valid_key_is_401(front, triton_server, headers):
    for path in (f"/v2/models/{triton_server.model_name}/config", "/v2/health/ready", "/v2/repository/index"):
        status, response_headers, _ = _get(front.http_url + path, headers)
        assert status == 401, path
        assert response_headers.get("WWW-Authenticate") == 'Basic realm="tritonllm"'


@pytest.mark.parametrize("name, secret", KEYS, ids=[n for n, _ in KEYS])
def test_http_with_either_key_reaches_triton(front, triton_server, name, secret):
    status, _, body = _get(f"{front.http_url}/v2/models/{triton_server.model_name}/config", _basic(f"{name}:{secret}"))
    assert status == 200 and json.loads(body)["name"] == triton_server.model_name


def test_readiness_stays_open(front):
    status, _, _ = _get(front.http_url + auth_front.READINESS_PATH)
    assert status == 200


def _grpc_config(front, model: str, headers: dict[str, str] | None):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(front.grpc_url)
    try:
        return client.get_model_config(model, headers=headers, as_json=True)
    finally:
        client.close()


def test_grpc_without_a_valid_key_is_unauthenticated(front, triton_server):
    from tritonclient.utils import InferenceServerException

    for headers in (None, {"authorization": _basic("ci:wrong-secret-0123456789abcdef")["Authorization"]}):
        with pytest.raises(InferenceServerException) as info:
            _grpc_config(front, triton_server.model_name, headers)
        assert info.value.status() == "StatusCode.UNAUTHENTICATED", info.value


def test_grpc_with_a_key_reaches_triton(front, triton_server):
    config = _grpc_config(front, triton_server.model_name, {"authorization": _basic(KEY)["Authorization"]})
    assert config["config"]["name"] == triton_server.model_name


@pytest.mark.parametrize("protocol, stream", [("grpc", True), ("http", False), ("http", True)])
def test_client_generates_with_the_key_and_explains_without(front, triton_server, protocol, stream):
    url = front.grpc_url if protocol == "grpc" else front.http_url
    _, results = asyncio.run(
        run_requests(
            url, triton_server.model_name, ["Say hi."], SETTINGS, protocol=protocol, stream=stream, api_key=KEY
        )
    )
    assert results[0].ok and results[0].text.strip(), results[0]
    with pytest.raises(SetupError, match="--api-key"):
        asyncio.run(
            run_requests(url, triton_server.model_name, ["Say hi."], SETTINGS, protocol=protocol, stream=stream)
        )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_cli_takes_the_key_from_the_environment(front, triton_server, tmp_path, protocol):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi.\n")
    url = front.grpc_url if protocol == "grpc" else front.http_url
    args = [
        sys.executable,
        "-m",
        "tritonllm",
        "client",
        "--url",
        url,
        "--protocol",
        protocol,
        "--model-name",
        triton_server.model_name,
        "--input-prompts",
        str(prompts),
        "--results-file",
        str(tmp_path / "r.jsonl"),
        "--max-tokens",
        "4",
    ]
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    refused = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--api-key" in refused.stdout + refused.stderr
    ok = subprocess.run(args, cwd=REPO_ROOT, env={**env, API_KEY_ENV: KEY}, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert KEYS[0][1] not in ok.stdout + ok.stderr  # never echoed


def test_bench_reads_the_interface_with_the_key(front, triton_server):
    from tritonllm.bench_core import PRESETS, BenchError
    from tritonllm.kserve_bench import aiperf_command, fetch_interface

    assert fetch_interface(front.http_url, triton_server.model_name, api_key=KEY).inputs
    with pytest.raises(BenchError, match="401"):
        fetch_interface(front.http_url, triton_server.model_name)
    cmd = aiperf_command(
        Path("aiperf"),
        front.http_url,
        "m",
        Path("t.json"),
        "tok",
        PRESETS["sweep"],
        1,
        1,
        Path("out"),
        True,
        api_key=KEY,
    )
    assert cmd[cmd.index("--header") + 1] == "authorization:" + _basic(KEY)["Authorization"]


def test_serve_api_key_puts_the_check_in_front_of_triton(tmp_path):
    """`tritonllm serve --api-key` end to end: the command it runs gets the front's URLs and a key."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hi.\n")
    client = [
        sys.executable,
        "-m",
        "tritonllm",
        "client",
        "--protocol",
        "grpc",
        "--model-name",
        "smollm2",
        "--input-prompts",
        str(prompts),
        "--results-file",
        str(tmp_path / "r.jsonl"),
        "--max-tokens",
        "4",
    ]
    script = (
        "import os, subprocess, sys, urllib.request, urllib.error\n"
        f"client = {client!r}\n"
        "ok = subprocess.run(client).returncode\n"
        "env = {k: v for k, v in os.environ.items() if k != 'TRITONLLM_API_KEY'}\n"
        "refused = subprocess.run(client, env=env).returncode\n"
        "try:\n"
        "    urllib.request.urlopen(os.environ['TRITON_HTTP_URL'] + '/v2/health/ready', timeout=10)\n"
        "    http = 200\n"
        "except urllib.error.HTTPError as exc:\n"
        "    http = exc.code\n"
        "print('RESULT', ok, refused, http)\n"
        "sys.exit(0 if (ok, refused, http) == (0, 2, 401) else 1)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "serve",
            *ANY_FREE_PORTS,
            "--quiet",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        cwd=REPO_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != API_KEY_ENV},
            auth_front.API_KEYS_ENV: f"{KEY},{':'.join(KEYS[1])}",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RESULT 0 2 401" in proc.stdout
    assert "API keys required (ci, ci-next)" in proc.stdout
    assert KEYS[0][1] not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- gRPC read timeout

SLOW_MODEL = '''
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Silent for as many seconds as text_input says, then answers (a slow first token)."""

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            seconds = float(pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0])
            time.sleep(seconds)
            out = pb_utils.Tensor("text_output", np.array([b"done"], dtype=np.object_))
            sender.send(pb_utils.InferenceResponse(output_tensors=[out]),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    from tritonllm.serve import TritonServer

    root = tmp_path_factory.mktemp("slow_repository")
    (root / "slow" / "1").mkdir(parents=True)
    (root / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    (root / "slow" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        "instance_group [ { kind: KIND_CPU count: 2 } ]\n"
        'input [ { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
    )
    server = TritonServer(root, http_port=0, grpc_port=0, metrics_port=0, log_file=root.parent / "slow.log")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("timeout_seconds, ok", [(1, False), (15, True)])
def test_grpc_read_timeout_in_the_http_block_governs_grpc_streams(slow_server, timeout_seconds, ok):
    """The gateway's SnippetsPolicy puts grpc_read_timeout in NGINX's http block; a gRPC stream
    whose first response takes 3 s is cut by a 1 s timeout and passes under a longer one."""
    with auth_front.ApiKeyFront(
        KEYS,
        triton_http=slow_server.http_port,
        triton_grpc=slow_server.grpc_port,
        http_port=0,
        grpc_port=0,
        timeout_seconds=timeout_seconds,
    ) as proxy:
        _, results = asyncio.run(
            run_requests(
                proxy.grpc_url,
                "slow",
                ["3"],
                GenerationSettings(),
                protocol="grpc",
                stream=True,
                api_key=KEY,
                timeout=60,
            )
        )
    assert results[0].ok is ok, results[0]
    if not ok:  # NGINX gave up on the upstream (504), not something else
        assert "UNAVAILABLE" in (results[0].error or "") or "504" in (results[0].error or ""), results[0].error
