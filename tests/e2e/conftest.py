"""End-to-end fixtures: a real Triton Inference Server (CPU) serving model_repository/local.

Fixture `triton_server` (session scope) -- stable interface, other test modules rely on it:

    def test_something(triton_server):
        triton_server.http_url      # "http://127.0.0.1:PORT"  (KServe v2 REST + generate extension)
        triton_server.grpc_url      # "127.0.0.1:PORT"         (KServe v2 gRPC, streaming)
        triton_server.metrics_url   # "http://127.0.0.1:PORT/metrics"  (Prometheus text, nv_inference_*)
        triton_server.model_name    # "smollm2"  (the LLM in model_repository/local)
        triton_server.model_repository  # pathlib.Path of the served repository
        triton_server.logs()        # recent tritonserver log lines (for assertion messages)
        triton_server.server        # the tritonllm.serve.TritonServer (process, ports, stop())

One server is started for the whole test session on free loopback ports (nothing outside
127.0.0.1 is contacted) and stopped at the end; its full log is written to the session's
temporary directory. Tests must not stop it. The fixture fails, rather than skips, when the
server cannot start (e.g. `pip install -r requirements-local.txt` not done), so a missing
dependency never passes silently.

Fixture `default_ports_held` (session scope, autouse): for the whole e2e session something
listens on each default port of `serve` (8000, 8001, 8002, 9000) on 127.0.0.1, as on a machine
where a `serve` is already running: a test that starts a server without choosing free ports
fails every time, not only on such a machine (issue 22).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tritonllm.serve import DEFAULT_MODEL_REPOSITORY, ServerError, TritonServer

LOCAL_MODEL_NAME = "smollm2"
# serve's defaults: --http-port, --grpc-port, --metrics-port, --openai-port
DEFAULT_PORTS = {8000: "HTTP", 8001: "gRPC", 8002: "metrics", 9000: "OpenAI API"}
# `tritonllm serve` arguments that put every port on a free one, each picked by the server itself (never
# the DEFAULT_PORTS the session holds).
ANY_FREE_PORTS = ("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--openai-port", "0")


@pytest.fixture(scope="session", autouse=True)
def default_ports_held() -> Iterator[dict[int, str]]:
    """port -> who holds it for the session: "this fixture", or "another process" when it was taken
    already (with the same effect on the tests)."""
    held: dict[int, str] = {}
    sockets = []
    for port in DEFAULT_PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            sock.close()
            held[port] = "another process"
            continue
        sockets.append(sock)
        held[port] = "this fixture"
    try:
        yield held
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class LocalTriton:
    server: TritonServer
    model_name: str
    model_repository: Path
    log_file: Path

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url

    def logs(self) -> str:
        return self.server.logs()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    log_file = tmp_path_factory.mktemp("tritonserver") / "tritonserver.log"
    server = TritonServer(
        DEFAULT_MODEL_REPOSITORY, http_port=0, grpc_port=0, metrics_port=0, host="127.0.0.1", log_file=log_file
    )
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(f"could not start the local Triton server: {exc}\n{exc.log_tail[-3000:]}", pytrace=False)
    if server.models.get(LOCAL_MODEL_NAME) != "READY":
        server.stop()
        pytest.fail(f"model {LOCAL_MODEL_NAME} is not READY: {server.models}", pytrace=False)
    try:
        yield LocalTriton(server, LOCAL_MODEL_NAME, DEFAULT_MODEL_REPOSITORY, log_file)
    finally:
        alive = server.is_running()
        server.stop()
        if not alive:  # the server died during the session: say so loudly
            raise AssertionError(f"tritonserver exited during the test session; log: {log_file}")
