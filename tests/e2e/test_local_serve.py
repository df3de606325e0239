"""`python -m tritonllm serve`: readiness, clean Ctrl-C, clear errors for taken ports and broken models.

Every server here runs on ports chosen free (0 or find_free_port), the OpenAI port included: the
defaults (8000, 8001, 8002, 9000) are held for the whole session by tests/e2e/conftest.py, and a
serve that exits early fails the test at once with its own output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ANY_FREE_PORTS
from tritonllm import lifecycle
from tritonllm.ports import find_free_port, port_is_free
from tritonllm.serve import ModelLoadError, PortInUseError, ServerError, TritonServer

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tritonllm", "serve", *args]


def free_ports(n: int = 4) -> list[int]:
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


class _Lines:
    """Collects a process's stdout lines in a thread; wait_for() blocks until a line matches and
    fails at once, with the process's exit code and output, when the process ends first."""

    def __init__(self, proc: subprocess.Popen, name: str = "the process") -> None:
        import threading

        self.proc, self.name = proc, name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # EOF marker
            self._cond.notify_all()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for_eof(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self.lines and self.lines[-1] == "":
                    code: int | str
                    try:
                        code = self.proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        code = "? (closed its output but still runs)"
                    raise AssertionError(
                        f"{self.name} exited with code {code} before printing a line with {needle!r}:\n{self.text()}"
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f"no line with {needle!r} within {timeout:.0f}s:\n{self.text()}")
                self._cond.wait(timeout=1)


def test_the_default_ports_are_held_during_the_session(default_ports_held):
    """The fixture that makes a test needing 8000/8001/8002/9000 free fail on every machine."""
    assert sorted(default_ports_held) == [8000, 8001, 8002, 9000]
    for port in default_ports_held:
        assert not port_is_free("127.0.0.1", port), port


def test_a_serve_on_a_default_port_fails_at_once_with_its_own_message():
    """What a test that forgot a port meets: serve's error, at once (not a timeout waiting for a line)."""
    proc = subprocess.Popen(
        serve_cmd("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--quiet"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Lines(proc, "serve")
    try:
        with pytest.raises(AssertionError) as failure:
            out.wait_for("press Ctrl-C to stop", timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    message = str(failure.value)
    assert message.startswith(
        f"serve exited with code {lifecycle.EXIT_SERVER_FAILED} before printing a line with 'press Ctrl-C to stop'"
    ), message
    assert "port 9000 (OpenAI API) on 127.0.0.1 is already in use" in message, message


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    http, grpc, metrics, openai = free_ports()
    proc = subprocess.Popen(
        serve_cmd(
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--openai-port",
            str(openai),
            "--quiet",
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Lines(proc, "serve")
    try:
        out.wait_for("press Ctrl-C to stop", timeout=180)
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    output = out.text()
    assert "Triton is ready" in output, output
    assert f"HTTP:    http://127.0.0.1:{http}" in output and f"gRPC:    127.0.0.1:{grpc}" in output
    assert f"metrics: http://127.0.0.1:{metrics}/metrics" in output and "smollm2 (READY)" in output
    assert f"OpenAI:  http://127.0.0.1:{openai}/v1" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=10) as resp:
        assert resp.status == 200
    server_pids = [
        int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    ]
    assert server_pids, "tritonserver is not a child of the serve process"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    out.wait_for_eof(timeout=10)
    rest = out.text()[len(output) :]
    assert proc.returncode == 130, output + rest  # stopped by Ctrl-C, in order
    assert "stopping on Ctrl-C (SIGINT): no request in flight" in rest, rest
    assert "tritonserver stopped (exit code 0)" in rest
    for pid in server_pids:
        assert not _alive(pid), f"tritonserver {pid} outlived serve"
    for port in (http, grpc, metrics, openai):
        assert port_is_free("127.0.0.1", port)


def test_a_taken_port_is_reported_before_starting(tmp_path):
    http, grpc, metrics, openai = free_ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", grpc))
        blocker.listen()
        proc = subprocess.run(
            serve_cmd(
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
                "--metrics-port",
                str(metrics),
                "--openai-port",
                str(openai),
                "--quiet",
            ),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"port {grpc} (grpc) on 127.0.0.1 is already in use" in proc.stdout, proc.stdout + proc.stderr
    with pytest.raises(PortInUseError):
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", http))
            blocker.listen()
            TritonServer(http_port=http, grpc_port=0, metrics_port=0).start()


BROKEN_MODEL = textwrap.dedent("""
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            raise RuntimeError("weights file is corrupt (deliberately broken test model)")

        def execute(self, requests):
            return None
""")


def test_a_model_that_fails_to_load_is_reported(tmp_path):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.py").write_text(BROKEN_MODEL)
    (tmp_path / "broken" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
    )
    proc = subprocess.run(
        serve_cmd("--model-repository", str(tmp_path), *ANY_FREE_PORTS, "--quiet"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1
    assert "failed to load" in proc.stdout and "'broken'" in proc.stdout, proc.stdout
    assert "weights file is corrupt" in proc.stdout
    with pytest.raises(ModelLoadError, match="weights file is corrupt"):
        TritonServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0).start()


def test_missing_repository_is_an_error(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        TritonServer(tmp_path / "nope", http_port=0, grpc_port=0, metrics_port=0).start()


def test_serve_runs_a_command_against_the_ready_server():
    probe = (
        "import os, sys, urllib.request; "
        "r = urllib.request.urlopen(os.environ['TRITON_HTTP_URL'] + '/v2/models/smollm2/ready'); "
        "assert os.environ['TRITON_GRPC_URL'] and os.environ['TRITON_METRICS_URL'].endswith('/metrics'); "
        "sys.exit(7 if r.status == 200 else 1)"
    )
    proc = subprocess.run(
        serve_cmd(*ANY_FREE_PORTS, "--quiet", "--", sys.executable, "-c", probe),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "tritonserver stopped" in proc.stdout


# --------------------------------------------------------------------------- stopping under load
# Issue 13: Ctrl-C while a long request streams. Each case starts `serve` as a real process on a
# copy of the model repository (a path no other server uses, so any process whose command line
# carries it is ours), streams a long generation, signals serve, and then looks at the whole
# machine: no descendant of serve, no process naming our repository, no /dev/shm segment of ours.

SHM = Path("/dev/shm")


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) of every live non-zombie process (read from /proc, independently of tritonllm)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if state != "Z":
            table[int(entry.name)] = (int(ppid), cmdline)
    return table


def _descendants(root: int) -> dict[int, str]:
    table = _proc_table()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = cmdline
                frontier.append(pid)
    return found


def _survivors(pids, marker: str) -> dict[int, str]:
    table = _proc_table()
    alive = {pid: table[pid][1] for pid in pids if pid in table}
    alive.update({pid: cmd for pid, (_, cmd) in table.items() if marker in cmd and pid != os.getpid()})
    return alive


def _our_shm(serve_pid: int) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(f"tritonllm{serve_pid}x"))


class _LongStream:
    """A long streamed generation (ignore_eos, thousands of tokens) read in a thread; `finish_reason`
    is set when the generation ran to its end ("length": max_tokens reached)."""

    def __init__(self, http_url: str, api_key: str | None = None) -> None:
        import base64
        import threading

        self.chunks: list[str] = []
        self.errors: list[str] = []
        self.finish_reason: str | None = None
        self.first = threading.Event()
        self.done = threading.Event()
        body = {
            "text_input": "Tell me a very long story about a lighthouse.",
            "max_tokens": 3500,
            "stream": True,
            "sampling_parameters": '{"ignore_eos": true}',
            "exclude_input_in_output": True,
            "return_finish_reason": True,
        }
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = "Basic " + base64.b64encode(api_key.encode()).decode()
        self._request = urllib.request.Request(
            f"{http_url}/v2/models/smollm2/generate_stream",
            data=json.dumps(body).encode(),
            method="POST",
            headers=headers,
        )
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with urllib.request.urlopen(self._request, timeout=600) as response:
                for raw in response:
                    line = raw.decode(errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        self.errors.append(event["error"])
                    else:
                        self.chunks.append(event.get("text_output", ""))
                        self.finish_reason = event.get("finish_reason") or self.finish_reason
                        self.first.set()
        except Exception as exc:  # noqa: BLE001 - a killed server ends the stream with a socket error
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()


# The second Ctrl-C must stop serve at once: with a grace period of minutes, "at once" and "after
# the grace period" cannot be mistaken for each other, whatever the machine's speed.
LONG_GRACE_S = 600
AT_ONCE_S = 30  # 5% of the grace period: ample for killing Triton, far from waiting it out


@pytest.mark.parametrize(
    "signals, exit_code, announced, api_key, grace",
    [
        pytest.param(
            [signal.SIGINT],
            130,
            "stopping on Ctrl-C (SIGINT): draining: new requests are refused, 1 request in flight may finish",
            None,
            2,
            id="sigint",
        ),
        pytest.param(
            [signal.SIGINT, signal.SIGINT],
            137,
            "stopping now: killing tritonserver",
            None,
            LONG_GRACE_S,
            id="sigint-twice",
        ),
        pytest.param(
            [signal.SIGTERM],
            143,
            "stopping on SIGTERM: draining: new requests are refused, 1 request in flight may finish",
            None,
            2,
            id="sigterm",
        ),
        pytest.param([signal.SIGKILL], -9, None, None, 2, id="sigkill"),
        # with --api-key, nginx (master + worker) runs in front of Triton: it must go too
        pytest.param(
            [signal.SIGINT],
            130,
            "stopping on Ctrl-C (SIGINT): draining: new requests are refused, 1 request in flight may finish",
            "tester:s3cret-key",
            2,
            id="sigint-api-key",
            marks=pytest.mark.skipif(
                not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed"
            ),
        ),
    ],
)
def test_stopping_during_a_long_stream_leaves_nothing_behind(tmp_path, signals, exit_code, announced, api_key, grace):
    repo = tmp_path / "repo-under-test"
    shutil.copytree(REPO_ROOT / "model_repository" / "local", repo)
    key_args = ["--api-key", api_key] if api_key else []
    proc = subprocess.Popen(
        serve_cmd(
            "--model-repository",
            str(repo),
            *ANY_FREE_PORTS,
            "--quiet",
            "--grace-period",
            str(grace),
            "--stop-timeout",
            str(max(120, grace)),
            *key_args,
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Lines(proc, "serve")
    stopped_in = None
    try:
        out.wait_for("press Ctrl-C to stop", timeout=300)
        http_url = out.wait_for("HTTP:", timeout=5).split("HTTP:", 1)[1].strip()
        stream = _LongStream(http_url, api_key)
        assert stream.first.wait(timeout=180), f"no token streamed: {stream.errors}\n{out.text()}"
        children = _descendants(proc.pid)
        assert any("tritonserver" in c for c in children.values()), children
        assert any("triton_python_backend_stub" in c for c in children.values()), children
        if api_key:
            assert sum("nginx" in c for c in children.values()) >= 2, children  # master and worker
        segments = _our_shm(proc.pid)
        assert segments, "the Python backend's shared memory should carry serve's prefix while it runs"

        proc.send_signal(signals[0])
        if announced and len(signals) == 1:
            out.wait_for(announced, timeout=60)
        for sig in signals[1:]:
            out.wait_for(
                f"within a grace period of {grace:g}s (what still runs then is cancelled; Ctrl-C again", timeout=60
            )
            proc.send_signal(sig)
        if len(signals) > 1:
            sent = time.monotonic()
            try:
                proc.wait(timeout=AT_ONCE_S)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"serve still ran {AT_ONCE_S}s after the second Ctrl-C (grace period {grace}s): "
                    f"it did not stop at once\n{out.text()}"
                )
            stopped_in = time.monotonic() - sent
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.text()
    assert proc.returncode == exit_code, output
    if announced:
        assert announced in output, output
        assert "tritonserver stopped" in output, output
    if signals == [signal.SIGINT] or signals == [signal.SIGTERM]:
        # the generation got the grace period, then was cancelled with a clear error
        assert "grace period of 2s over: cancelling" in output, output
        assert stream.done.wait(timeout=60)
        assert any("shutting down" in e for e in stream.errors), stream.errors
    if len(signals) > 1:
        # killed at once: well inside the grace period, with the generation cut short (not run to its end)
        assert stopped_in < AT_ONCE_S < grace, (stopped_in, output)
        assert stream.done.wait(timeout=60)
        assert stream.finish_reason is None, (
            f"the generation ran to its end ({stream.finish_reason}, {len(stream.chunks)} chunks): serve waited for it"
        )
    if signals[0] == signal.SIGKILL:
        # serve had no chance to clean up: the kernel's parent-death signal kills Triton, its stub follows
        deadline = time.monotonic() + 120
        while _survivors(children, str(repo)) and time.monotonic() < deadline:
            time.sleep(0.5)
        # its segments are stale now; the next server start removes them
        lifecycle.remove_stale_shm()
    assert not _survivors(children, str(repo)), f"processes outlived serve: {_survivors(children, str(repo))}"
    assert not _our_shm(proc.pid), f"shared memory left behind: {_our_shm(proc.pid)}"
    assert stream.done.wait(timeout=60), "the client's stream did not end"
