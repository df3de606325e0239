"""The preStop hook of a Triton pod whose main process is mpirun, run for real.

TRT-LLM pods over several GPUs (leader mode, multi-node leaders) and the LLM API runtime run
`mpirun ... tritonserver`, so the kubelet's SIGTERM reaches mpirun, not Triton. Here a real Open MPI
mpirun runs the real (CPU) tritonserver serving model_repository/local, as the container's PID 1 in a
PID namespace of its own with its own /proc (what a container sees), and a real HTTP stream is in
flight when the pod is "deleted":

* without the hook, the kubelet's SIGTERM to mpirun cuts the stream (mpirun kills its ranks within a
  few seconds: Open MPI's odls_base_sigkill_timeout), which is why the hook exists;
* with the hook rendered for the pods (components/serving/builders/triton_manifests.py
  mpi_drain_script), run as the kubelet runs a preStop exec (inside the container's namespaces), the
  rank-0 tritonserver drains (Triton's own SIGTERM handling) and the stream completes; only then does
  mpirun get the kubelet's SIGTERM.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from components.serving.builders import triton_manifests as tm
from tests.e2e.test_local_drain import HttpStream
from tritonllm import lifecycle
from tritonllm.serve import TritonDistribution, TritonServer, prepare_backend_directory, server_environment

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (shutil.which("mpirun") and shutil.which("unshare") and shutil.which("nsenter") and os.geteuid() == 0),
        reason="needs Open MPI's mpirun (apt-get install openmpi-bin), unshare/nsenter and root (a PID namespace)",
    ),
]

TOKENS = 600  # longer than the preStop delay (10 s): the stream must outlive it to tell drain from delay


class MpiPod:
    """`mpirun -n 1 tritonserver ...` as PID 1 of a new PID namespace with its own /proc."""

    def __init__(self) -> None:
        self.server = TritonServer(
            http_port=0, grpc_port=0, metrics_port=0, grace_period=200
        )  # --exit-timeout-secs 235
        dist = TritonDistribution.locate()
        backend_dir = prepare_backend_directory(dist)
        self.server._resolve_ports()
        command = ["mpirun", "--allow-run-as-root", "-n", "1", *self.server.command(dist, backend_dir)]
        self.process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "/bin/sh", "-c", "exec " + shlex.join(command)],
            env=server_environment(dist),
            cwd=str(self.server.model_repository),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def pid1(self) -> int:
        """mpirun: unshare's child, PID 1 inside the namespace."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
            if children.stdout.split():
                return int(children.stdout.split()[0])
            time.sleep(0.1)
        raise AssertionError("unshare started nothing")

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read() if self.process.stdout else ""
            try:
                with urllib.request.urlopen(f"{self.server.http_url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("tritonserver under mpirun did not become ready")

    def prestop(self, script: str) -> subprocess.CompletedProcess:
        """What the kubelet does for an exec preStop: run it inside the container's namespaces."""
        return subprocess.run(
            ["nsenter", "--target", str(self.pid1), "--pid", "--mount", "/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=600,
        )

    def close(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        out, _ = self.process.communicate(timeout=60)
        lifecycle.remove_shm(self.server.shm_prefix)
        return out


@pytest.fixture
def pod():
    pod = MpiPod()
    try:
        pod.wait_ready()
        yield pod
    finally:
        pod.close()


def test_sigterm_to_mpirun_cuts_the_stream_without_the_hook(pod):
    stream = HttpStream(pod.server.http_url, TOKENS, None)
    assert stream.first.wait(timeout=120), stream.errors
    os.kill(pod.pid1, signal.SIGTERM)  # the kubelet, with no preStop to run first
    stream.join(timeout=120)
    assert pod.process.wait(timeout=60) is not None
    assert stream.finish_reason is None and stream.tokens < TOKENS, (stream.tokens, stream.errors)


def test_the_prestop_hook_drains_rank_0_before_mpirun_is_signalled(pod):
    budget = tm.DrainBudget(200)
    stream = HttpStream(pod.server.http_url, TOKENS, None)
    assert stream.first.wait(timeout=120), stream.errors
    started = time.monotonic()
    hook = pod.prestop(tm.mpi_drain_script(budget))
    hook_seconds = time.monotonic() - started
    # The hook ends when rank 0 is gone; with one rank mpirun (PID 1) then exits too, and the kernel
    # ends what else runs in the namespace, the hook included (the kubelet treats that as the container
    # having stopped): either way the drain is over.
    if hook.returncode != 0:
        assert hook.returncode == -signal.SIGKILL, hook
        pod.process.wait(timeout=60)  # mpirun, PID 1, had exited: so has the "container"
    stream.join(timeout=2)  # over already: rank 0 only exited once it had answered everything
    assert not stream.is_alive(), "the hook returned while the stream was still running"
    assert stream.errors == [] and stream.finish_reason == "length" and stream.tokens == TOKENS, (
        stream.tokens,
        stream.errors,
    )
    assert budget.prestop_seconds <= hook_seconds < budget.prestop_seconds + budget.exit_timeout_seconds
    # then the kubelet's SIGTERM, if mpirun is still there: it has nothing left to cut
    if pod.process.poll() is None:
        os.kill(pod.pid1, signal.SIGTERM)
    pod.process.wait(timeout=60)
    output = pod.close()
    assert "tritonllm preStop: SIGTERM to rank-0 tritonserver" in output, output
