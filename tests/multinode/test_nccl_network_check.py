"""The leader's NCCL network check, run for real: nccl-watch.sh (mpirun's output passes through it) and
ready.sh (the leader's readiness probe) from components/serving/builders/multinode.py.

The lines fed in are NCCL_DEBUG=INFO output as mpirun --tag-output forwards it: NCCL's
"NCCL INFO Using network <name>" (NCCL src/init.cc) and aws-ofi-nccl's "NET/OFI Selected provider is
<p>, fabric is <f> (found <n> nics)" (src/nccl_ofi_net.cpp). ready.sh's last step, Triton's own HTTP
check, goes to a local HTTP server standing in for tritonserver.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from components.serving.builders import multinode

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="ready.sh ends with curl (the image has it)")

EFA_LINES = [
    "[1,0]<stdout>:triton-mn-0:812:901 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 4 nics)",
    "[1,0]<stdout>:triton-mn-0:812:901 [0] NCCL INFO Using network Libfabric",
    "[1,4]<stdout>:triton-mn-0-1:77:120 [0] NCCL INFO Using network Libfabric",
]
SOCKET_LINES = [
    "[1,0]<stdout>:triton-mn-0:812:901 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so",
    "[1,0]<stdout>:triton-mn-0:812:901 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.1.5<0>",
    "[1,0]<stdout>:triton-mn-0:812:901 [0] NCCL INFO Using network Socket",
]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def triton():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _watch(run_dir: Path, lines: list[str]) -> subprocess.CompletedProcess:
    script = run_dir / "nccl-watch.sh"
    script.write_text(multinode.nccl_watch_script())
    return subprocess.run(
        ["/bin/sh", str(script)],
        input="".join(f"{line}\n" for line in lines),
        env={"PATH": os.environ["PATH"], "TRITONLLM_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def _ready(run_dir: Path, port: int, require_efa: bool) -> subprocess.CompletedProcess:
    script = run_dir / "ready.sh"
    script.write_text(multinode.ready_script())
    env = {
        "PATH": os.environ["PATH"],
        "TRITONLLM_RUN_DIR": str(run_dir),
        "TRITONLLM_REQUIRE_EFA": "1" if require_efa else "0",
    }
    return subprocess.run(
        ["/bin/sh", str(script), str(port), "/v2/health/ready"], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_watcher_passes_every_line_and_logs_the_network_once(tmp_path):
    result = _watch(tmp_path, EFA_LINES)
    out = result.stdout.splitlines()
    assert [line for line in out if not line.startswith("tritonllm:")] == EFA_LINES
    assert out.count("tritonllm: NCCL network: Libfabric") == 1
    assert "tritonllm: NCCL provider: efa" in out
    assert sorted((tmp_path / multinode.NCCL_NETWORK_FILE).read_text().splitlines()) == [
        "network Libfabric",
        "provider efa",
    ]


def test_a_group_on_efa_is_ready(tmp_path, triton):
    _watch(tmp_path, EFA_LINES)
    result = _ready(tmp_path, triton.server_port, require_efa=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_group_on_sockets_is_not_ready_and_says_why(tmp_path, triton):
    out = _watch(tmp_path, SOCKET_LINES).stdout
    assert "tritonllm: NCCL network: Socket" in out  # the leader logs what NCCL selected
    result = _ready(tmp_path, triton.server_port, require_efa=True)
    assert result.returncode == 1
    assert "multiNode.efa is true but NCCL is not on EFA: network 'Socket';" in result.stdout
    assert "no 'NET/OFI Selected provider is efa' line" in result.stdout


def test_aws_libfabric_on_another_provider_is_not_efa(tmp_path, triton):
    lines = [
        "x NCCL INFO NET/OFI Selected Provider is tcp, fabric is 10.0.0.0/16 (found 1 nics)",
        "x NCCL INFO Using network AWS Libfabric",
    ]
    _watch(tmp_path, lines)
    result = _ready(tmp_path, triton.server_port, require_efa=True)
    assert result.returncode == 1 and "libfabric provider 'tcp'" in result.stdout


def test_no_nccl_line_yet_is_not_ready(tmp_path, triton):
    result = _ready(tmp_path, triton.server_port, require_efa=True)
    assert result.returncode == 1 and "has not reported its network yet" in result.stdout


def test_without_efa_only_triton_decides(tmp_path, triton):
    _watch(tmp_path, SOCKET_LINES)
    assert _ready(tmp_path, triton.server_port, require_efa=False).returncode == 0
    _Health.status = 503
    try:
        assert _ready(tmp_path, triton.server_port, require_efa=False).returncode != 0
    finally:
        _Health.status = 200


def test_the_leader_probe_runs_ready_sh_with_tritons_port_and_path():
    from tests.multinode.test_launch import _config

    cfg, model = _config()
    lws = multinode.leader_worker_set_manifest(model, cfg.site_of(model), bucket="b", engine_key="k" * 64, image="img")
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert leader["readinessProbe"]["exec"]["command"] == [
        "/bin/sh",
        f"{multinode.LAUNCH_DIR}/ready.sh",
        "8000",
        "/v2/health/ready",
    ]
    assert "httpGet" not in leader["readinessProbe"]
    assert {"name": "TRITONLLM_REQUIRE_EFA", "value": "1"} in leader["env"]  # the multinode stack has efa: true
    assert leader["image"] == worker["image"] == "img"
