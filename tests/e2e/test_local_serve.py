"""`python -m tritonllm serve`: readiness, clean Ctrl-C, clear errors for taken ports and broken models."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tritonllm.serve import ModelLoadError, PortInUseError, ServerError, TritonServer, find_free_port, port_is_free

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tritonllm", "serve", *args]


def free_ports(n: int = 3) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        ports.append(find_free_port(exclude=ports))
    return ports


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    http, grpc, metrics = free_ports()
    proc = subprocess.Popen(
        serve_cmd("--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--quiet"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C to stop" in line:
            break
    output = "".join(lines)
    assert "Triton is ready" in output, output
    assert f"HTTP:    http://127.0.0.1:{http}" in output and f"gRPC:    127.0.0.1:{grpc}" in output
    assert f"metrics: http://127.0.0.1:{metrics}/metrics" in output and "smollm2 (READY)" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=10) as resp:
        assert resp.status == 200
    server_pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]
    assert server_pids, "tritonserver is not a child of the serve process"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output + rest
    assert "tritonserver stopped" in rest
    for pid in server_pids:
        assert not _alive(pid), f"tritonserver {pid} outlived serve"
    for port in (http, grpc, metrics):
        assert port_is_free("127.0.0.1", port)


def test_a_taken_port_is_reported_before_starting(tmp_path):
    http, grpc, metrics = free_ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", grpc))
        blocker.listen()
        proc = subprocess.run(
            serve_cmd("--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--quiet"),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"port {grpc} (grpc) on 127.0.0.1 is already in use" in proc.stdout, proc.stdout + proc.stderr
    with pytest.raises(PortInUseError):
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", http))
            blocker.listen()
            TritonServer(http_port=http, grpc_port=0, metrics_port=0).start()


BROKEN_MODEL = textwrap.dedent('''
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            raise RuntimeError("weights file is corrupt (deliberately broken test model)")

        def execute(self, requests):
            return None
''')


def test_a_model_that_fails_to_load_is_reported(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.py").write_text(BROKEN_MODEL)
    (tmp_path / "broken" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_STRING dims: [ 1 ] } ]\n')
    proc = subprocess.run(serve_cmd("--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "0",
                                    "--metrics-port", "0", "--quiet"),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1
    assert "failed to load" in proc.stdout and "'broken'" in proc.stdout, proc.stdout
    assert "weights file is corrupt" in proc.stdout
    with pytest.raises(ModelLoadError, match="weights file is corrupt"):
        TritonServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0).start()


def test_missing_repository_is_an_error(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        TritonServer(tmp_path / "nope", http_port=0, grpc_port=0, metrics_port=0).start()


def test_serve_runs_a_command_against_the_ready_server():
    probe = ("import os, sys, urllib.request; "
             "r = urllib.request.urlopen(os.environ['TRITON_HTTP_URL'] + '/v2/models/smollm2/ready'); "
             "assert os.environ['TRITON_GRPC_URL'] and os.environ['TRITON_METRICS_URL'].endswith('/metrics'); "
             "sys.exit(7 if r.status == 200 else 1)")
    proc = subprocess.run(serve_cmd("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--quiet",
                                    "--", sys.executable, "-c", probe),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "tritonserver stopped" in proc.stdout
