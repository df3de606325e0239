"""`python -m tritonllm serve`: a real Triton Inference Server on CPU.

The `tritonserver` binary and the Python backend come from the `nvidia-pytriton`
wheel (nothing is downloaded at run time). The Python backend runs models in a
separate "stub" process that embeds the Python interpreter; this module wires the
stub to the interpreter running it, so a model's `model.py` sees the same packages
(llama-cpp-python, numpy...) as this virtualenv.

Programmatic use (tests, benchmarks)::

    from tritonllm.serve import start_server
    with start_server(http_port=0, grpc_port=0, metrics_port=0) as server:  # 0 = pick free ports
        print(server.http_url, server.grpc_url, server.metrics_url)

Module-level imports stay light: `python -m tritonllm` imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from components.catalog.triton_server import ADMIN_KEY_HEADER, restricted_api_args
from tritonllm import lifecycle
from tritonllm.ports import LoopbackUrls, find_free_port, port_is_free

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_REPOSITORY = REPO_ROOT / "model_repository" / "local"
DEFAULT_CACHE_DIR = Path(os.environ.get("TRITONLLM_CACHE_DIR", REPO_ROOT / ".cache" / "tritonllm"))


class ServerError(RuntimeError):
    """Triton could not be started or stopped; the message says why, in words a user can act on."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class PortInUseError(ServerError):
    """One of the requested ports is already taken by another process."""


class ModelLoadError(ServerError):
    """Triton started but one or more models in the repository failed to load."""


class TritonNotInstalledError(ServerError):
    """The nvidia-pytriton wheel (which ships tritonserver) is not installed."""


class StartupInterrupted(ServerError):
    """A stop was requested (Ctrl-C, SIGTERM) while the server was starting; it has been stopped."""


# --------------------------------------------------------------------------- distribution


class TritonDistribution:
    """Paths inside the nvidia-pytriton wheel: the server binary, its libs and the Python backend."""

    def __init__(self, root: Path, libs: Path) -> None:
        self.root = root  # .../site-packages/pytriton/tritonserver
        self.libs = libs  # .../site-packages/nvidia_pytriton.libs
        self.binary = root / "bin" / "tritonserver"
        self.python_backend_lib = root / "backends" / "python" / "libtriton_python.so"

    def stub_for(self, version: str) -> Path:
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"

    @classmethod
    def locate(cls) -> TritonDistribution:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotInstalledError(
                "tritonserver not found: install the nvidia-pytriton wheel "
                "(pip install -r requirements-local.txt, or `make demo`)"
            )
        package_dir = Path(list(spec.submodule_search_locations)[0])
        dist = cls(package_dir / "tritonserver", package_dir.parent / "nvidia_pytriton.libs")
        if not dist.binary.is_file():
            raise TritonNotInstalledError(f"the nvidia-pytriton install has no tritonserver binary at {dist.binary}")
        return dist

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return version("nvidia-pytriton")
        except Exception:  # pragma: no cover - metadata missing only in broken installs
            return "unknown"


def prepare_backend_directory(dist: TritonDistribution, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Return a Triton `--backend-directory` whose python backend uses the stub for *this* Python.

    The wheel ships one stub per Python minor version; the python backend looks for
    `triton_python_backend_stub` next to `libtriton_python.so`, so we assemble that pair
    once per (pytriton version, Python version) in the cache and reuse it afterwards.
    """
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist.stub_for(py_version)
    if not stub.is_file():
        raise TritonNotInstalledError(
            f"nvidia-pytriton {dist.version()} ships no Python backend stub for Python {py_version}"
        )
    target = cache_dir / f"backends-v2-pytriton{dist.version()}-py{py_version}"
    marker = target / ".complete"
    if marker.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=cache_dir))
    try:
        # libtriton_python.so, triton_python_backend_utils.py (imported by every model), ...
        shutil.copytree(
            dist.python_backend_lib.parent,
            staging / "python",
            ignore=shutil.ignore_patterns("__pycache__", "triton_python_backend_stub"),
        )
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        (staging / "python" / "triton_python_backend_stub").chmod(0o755)
        (staging / ".complete").write_text(f"{dist.root}\n")
        try:
            staging.rename(target)
        except OSError:  # another process won the race; use its copy
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not marker.is_file():
        raise ServerError(f"could not prepare the Triton backend directory in {target}")
    return target


def server_environment(dist: TritonDistribution, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver so the Python backend stub embeds *this* interpreter and venv.

    * LD_LIBRARY_PATH: the libpython of the running interpreter first (the stub links
      `libpython3.X.so.1.0`), then the libraries bundled in the wheel.
    * PATH: the running interpreter's bin directory first. The embedded interpreter has no
      program name, so it looks `python3` up on PATH to find its prefix; finding the venv's
      `python3` there makes it read `pyvenv.cfg` and use the venv's site-packages.
    """
    import sysconfig

    env = dict(os.environ if base is None else base)
    lib_dirs = [d for d in (sysconfig.get_config_var("LIBDIR"), str(dist.libs)) if d]
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHOME", None)
    # llama.cpp's OpenMP threads: wait passively so a busy machine does not stall them (see llm_engine.py)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


# --------------------------------------------------------------------------- ports


# port_is_free and find_free_port live in tritonllm.ports (shared with the API-key front).


# --------------------------------------------------------------------------- server


def _http_json(
    url: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


# Error lines Triton logs on a machine without a GPU although nothing is wrong. Upstream
# triton-inference-server/core r24.10 (Triton 2.51, the nvidia-pytriton 0.7.0 build) src/server.cc:
# CudaBlockManager::Create fails without a CUDA driver and is logged as an error "as the server can
# still function properly".
CPU_ONLY_ERRORS = {
    "CudaDriverHelper has not been initialized.": "no GPU: Triton's CUDA block manager is off (its error 'CudaDriverHelper has not been initialized' "
    "is expected without a CUDA driver and harmless on CPU)",
}


def cpu_only_log_line(line: str) -> str:
    """The echoed form of a log line: a CPU-only 'error' becomes a note saying it is harmless."""
    if line.startswith("E"):
        for text, note in CPU_ONLY_ERRORS.items():
            if text in line:
                return f"note: {note}\n"
    return line


class TritonServer(LoopbackUrls):
    """One tritonserver process serving a model repository on CPU.

    Ports given as 0 are replaced by free ports at start(). Use as a context manager, or
    call start()/stop(). After start(), `http_url`, `grpc_url`, `metrics_url` and
    `models` (name -> state from the repository index) are available.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike = DEFAULT_MODEL_REPOSITORY,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        log_verbose: int = 0,
        log_file: str | os.PathLike | None = None,
        echo_logs: bool = False,
        startup_timeout: float = 180.0,
        extra_args: Sequence[str] = (),
        cache_dir: Path = DEFAULT_CACHE_DIR,
        grace_period: float = 5.0,
        stop_timeout: float = 30.0,
        admin_key: str | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        # With admin_key the model repository API (load/unload/index) answers only requests that send
        # it in the header components/catalog/triton_server.py names, as on EKS wherever model control
        # is explicit; this class's own index request sends it.
        self.admin_key = admin_key
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.log_verbose = log_verbose
        self.log_file = Path(log_file) if log_file else None
        self.echo_logs = echo_logs
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.cache_dir = cache_dir
        # stopping: requests in flight get `grace_period` seconds, then are cancelled; Triton then has
        # `stop_timeout` seconds to exit before it is killed (see tritonllm/lifecycle.py)
        self.grace_period = grace_period
        self.stop_timeout = stop_timeout
        self.interrupted: Callable[[], bool] = lambda: False  # polled during startup (serve: a signal came)
        self.shm_prefix = ""
        self.stop_file: Path | None = None
        self.drain_file: Path | None = None
        self.last_stop: StopOutcome | None = None
        self.process: subprocess.Popen | None = None
        self.models: dict[str, str] = {}
        self.startup_seconds: float | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=400)
        self._log_thread: threading.Thread | None = None
        self._log_handle: TextIO | None = None

    # ---- addresses
    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    def logs(self) -> str:
        """The last few hundred lines tritonserver printed."""
        return "".join(self._log_tail)

    # ---- lifecycle
    def _resolve_ports(self) -> None:
        taken: list[int] = []
        for attr in ("http_port", "grpc_port", "metrics_port"):
            if getattr(self, attr) == 0:
                setattr(self, attr, find_free_port(self._client_host, exclude=taken))
            taken.append(getattr(self, attr))
        ports = {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}
        if len(set(ports.values())) != 3:
            raise ServerError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        for name, port in ports.items():
            if not port_is_free(self.host, port):
                raise PortInUseError(
                    f"port {port} ({name}) on {self.host} is already in use: stop whatever listens there "
                    f"or choose another with --{name}-port (0 picks a free one)"
                )

    def command(self, dist: TritonDistribution, backend_dir: Path) -> list[str]:
        self.shm_prefix = lifecycle.shm_prefix(os.getpid(), self.http_port)
        # Triton's own bound on its orderly exit (connections, in-flight inferences, model unload)
        # outlasts ours, so it is never the one to give up half-way (exit(1) leaving stubs behind).
        exit_timeout = int(self.grace_period + self.stop_timeout) + 5
        return [
            str(dist.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-http=true",
            "--allow-grpc=true",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            # CPU only: nothing to pin or pool for a GPU (without these Triton warns that it cannot
            # allocate pinned memory because no CUDA driver is present)
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            "--allow-cpu-metrics=true",
            "--metrics-interval-ms=1000",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={exit_timeout}",
            "--log-info=true",
            f"--log-verbose={self.log_verbose}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *(restricted_api_args(self.admin_key) if self.admin_key else []),
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Start tritonserver and wait until it and every model are ready.

        Ports given as 0 are picked free; if another process takes one of them between the pick
        and Triton's bind, startup is retried (twice) with new ports.
        """
        auto = {name: getattr(self, name) == 0 for name in ("http_port", "grpc_port", "metrics_port")}
        for attempt in range(3):
            try:
                return self._start_once()
            except PortInUseError:
                if not any(auto.values()) or attempt == 2 or self.process is None:
                    raise
                self.process = None
                for name, was_auto in auto.items():
                    if was_auto:
                        setattr(self, name, 0)
        raise AssertionError("unreachable")

    def _start_once(self) -> TritonServer:
        if self.process is not None:
            raise ServerError("server already started")
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository {self.model_repository} does not exist")
        dist = TritonDistribution.locate()
        backend_dir = prepare_backend_directory(dist, self.cache_dir)
        self._resolve_ports()
        lifecycle.remove_stale_shm()  # left by a serve that was killed (SIGKILL) and could not clean up
        cmd = self.command(dist, backend_dir)
        self.stop_file = Path(tempfile.mkdtemp(prefix="tritonllm-stop-")) / "stop"
        self.drain_file = self.stop_file.parent / "drain"
        env = server_environment(dist)
        env[lifecycle.STOP_FILE_ENV] = str(self.stop_file)
        env[lifecycle.DRAIN_FILE_ENV] = str(self.drain_file)
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_file, "a", encoding="utf-8")
        started = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.model_repository),
            start_new_session=True,  # Ctrl-C reaches us, and we shut Triton down in order
            preexec_fn=lifecycle.parent_death_signal(os.getpid()),  # killed with us if we are killed
        )
        self.last_stop = None
        self._log_thread = threading.Thread(target=self._pump_logs, name="tritonserver-logs", daemon=True)
        self._log_thread.start()
        try:
            self._wait_ready(started)
        except BaseException:
            self.shutdown(grace=0, timeout=10)  # nothing is served yet: no grace
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _pump_logs(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self._log_tail.append(line)
            if self._log_handle:
                self._log_handle.write(line)
                self._log_handle.flush()
            if self.echo_logs:
                sys.stderr.write(cpu_only_log_line(line))
                sys.stderr.flush()

    def _failure(self) -> ServerError:
        """Turn the log of a server that exited during startup into a precise error."""
        if self._log_thread:
            self._log_thread.join(timeout=5)
        log = self.logs()
        code = self.process.returncode if self.process else None
        failed = [ln.strip() for ln in log.splitlines() if "failed to load" in ln or "Failed to start" in ln]
        if any("already in use" in ln.lower() for ln in log.splitlines()):
            return PortInUseError(
                f"tritonserver could not bind its ports ({self.http_port}/{self.grpc_port}/{self.metrics_port}): "
                "address already in use",
                log,
            )
        reasons = []
        for line in failed:
            match = re.search(r'"(failed to load \'[^\']+\' version \S+: .*)"\s*$', line)
            if match:  # Triton logs the reason as one quoted string with escaped newlines
                text = match.group(1).encode().decode("unicode_escape", errors="replace")
                head, *rest = [part.strip() for part in text.splitlines() if part.strip()]
                where = [part for part in rest if part != "At:"][:1]
                reasons.append(head + ("".join(f"\n    at {w}" for w in where)))
        if reasons or any("failed to load" in ln for ln in failed):
            details = "\n  ".join(reasons or failed[-5:])
            return ModelLoadError(f"a model in {self.model_repository} failed to load:\n  {details}", log)
        return ServerError(f"tritonserver exited during startup (exit code {code})", log)

    def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        deadline = started + self.startup_timeout
        ready_url = f"{self.http_url}/v2/health/ready"
        while True:
            if self.interrupted():
                raise StartupInterrupted("stopped while starting")
            if self.process.poll() is not None:
                raise self._failure()
            try:
                status, _ = _http_json(ready_url, timeout=2)
            except (OSError, ValueError):
                status = None
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise ServerError(f"tritonserver was not ready after {self.startup_timeout:.0f}s", self.logs())
            time.sleep(0.1)
        status, index = _http_json(
            f"{self.http_url}/v2/repository/index", method="POST", body={}, headers=self.admin_headers()
        )
        if status == 403:
            raise ServerError(
                "tritonserver refused the model repository index (its repository API is restricted, "
                f"{index!r}): pass the admin key (TritonServer(admin_key=...))",
                self.logs(),
            )
        self.models = {}
        if status == 200 and isinstance(index, list):
            self.models = {m["name"]: m.get("state", "UNKNOWN") for m in index}
            broken = {m["name"]: m.get("reason", "") for m in index if m.get("state") not in ("READY", None)}
            if broken:
                raise ModelLoadError(f"models not ready: {broken}", self.logs())

    def command_line(self) -> list[str]:
        """The arguments tritonserver was started with (empty before start)."""
        return list(self.process.args) if self.process is not None and isinstance(self.process.args, list) else []

    def admin_headers(self) -> dict[str, str]:
        """What a request to the restricted model repository API must carry (empty when unrestricted)."""
        return {ADMIN_KEY_HEADER: self.admin_key} if self.admin_key else {}

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def requests_in_flight(self) -> int | None:
        """Requests queued or generating, from /metrics (None: unknown, e.g. unreachable)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                return lifecycle.requests_in_flight(response.read().decode("utf-8", errors="replace"))
        except (OSError, ValueError):
            return None

    def _metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                return response.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None

    def begin_drain(self) -> int | None:
        """Stop taking new requests (the local model refuses them with UNAVAILABLE) while the ones
        generating or queued now are served: see tritonllm/lifecycle.py. Returns how many queued
        requests are still served, or None when the in-flight count is unknown (a model repository
        without the local model's gauge, which also ignores the drain file)."""
        if self.drain_file is not None and self.drain_file.exists():  # already begun
            return int(json.loads(self.drain_file.read_text())["admitted"])
        text = self._metrics_text()
        if self.drain_file is None or text is None or lifecycle.requests_in_flight(text) is None:
            return None
        admitted = lifecycle.pending_requests(text)
        staging = self.drain_file.with_suffix(".tmp")
        staging.write_text(json.dumps({"admitted": admitted}))
        staging.replace(self.drain_file)  # the model never reads half a file
        return admitted

    def drained(self) -> bool:
        """Nothing admitted before the drain is left: the model said so, or nothing is in flight."""
        if self.drain_file is not None and Path(f"{self.drain_file}.drained").exists():
            return True
        return self.requests_in_flight() == 0

    def _wait_drained(self, deadline: float, forced: Callable[[], bool]) -> bool:
        assert self.process is not None
        while not self.drained():
            if forced() or self.process.poll() is not None or time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop Triton in order (see shutdown()) and return its exit code."""
        return self.shutdown(timeout=timeout).returncode

    def shutdown(
        self,
        grace: float | None = None,
        timeout: float | None = None,
        forced: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] = lambda message: None,
    ) -> StopOutcome:
        """Stop Triton and leave nothing behind; idempotent.

        1. Drain: new requests are refused (HTTP 503 / gRPC UNAVAILABLE) while the ones in flight
           finish, for up to `grace` seconds (begin_drain; a model repository without the local
           model's gauge skips this and relies on Triton's own wait in 2.).
        2. SIGTERM: Triton refuses new connections, lets requests still in flight finish; once
           `grace` seconds have passed since 1., generations still running are cancelled (the stop file).
        3. After `timeout` more seconds, or at once when `forced()` turns true: SIGKILL.
        Always: every process of this server (Triton's process group and descendants, anything
        whose command line carries our shm prefix) is killed and reaped, and our /dev/shm
        segments and stop file are removed.
        """
        grace = self.grace_period if grace is None else grace
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self.process
        if proc is None:
            return StopOutcome(None)
        if self.last_stop is not None:
            return self.last_stop
        outcome = StopOutcome(None)
        if proc.poll() is None and not forced():
            deadline = time.monotonic() + grace
            if grace <= 0:
                self._cancel_generations()
                outcome.cancelled = True
            elif (self.drain_file is not None and self.drain_file.exists()) or (self.requests_in_flight() or 0) > 0:
                if self.begin_drain() is not None:
                    outcome.drained = self._wait_drained(deadline, forced)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            left = max(0.0, deadline - time.monotonic())
            if not self._wait_exit(left, forced) and not forced() and not outcome.cancelled:
                if not outcome.drained:
                    say(f"grace period of {grace:g}s over: cancelling the generations still running")
                self._cancel_generations()
                outcome.cancelled = not outcome.drained
            if proc.poll() is None and not self._wait_exit(timeout, forced) and not forced():
                say(f"tritonserver did not exit within {timeout:g}s: killing it")
        if proc.poll() is None:
            if forced():
                say("stopping now: killing tritonserver and its Python backend stubs")
            outcome.forced = True
        outcome.leftovers = self._kill_everything(proc)
        outcome.returncode = proc.returncode
        outcome.removed_shm = [p.name for p in lifecycle.remove_shm(self.shm_prefix)]
        if self.stop_file is not None:
            shutil.rmtree(self.stop_file.parent, ignore_errors=True)
        if self._log_thread:
            self._log_thread.join(timeout=5)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        self.last_stop = outcome
        return outcome

    def _cancel_generations(self) -> None:
        if self.stop_file is not None:
            with contextlib.suppress(OSError):
                self.stop_file.write_text("stop\n")

    def _wait_exit(self, seconds: float, forced: Callable[[], bool]) -> bool:
        """Wait up to `seconds` for Triton to exit; return early (False) when forced() turns true."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while self.process.poll() is None:
            if forced() or time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _kill_everything(self, proc: subprocess.Popen) -> list[int]:
        """SIGKILL whatever of this server still runs, reap Triton, wait for the rest; return survivors."""
        # pgid == Triton's pid (its own session); its pid as a tree root only while not yet reaped
        pids = lifecycle.ours(proc.pid if proc.returncode is None else None, proc.pid, [self.shm_prefix])
        lifecycle.kill_all(pids)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        # stubs orphaned by Triton's death are reparented and reaped by init; a second sweep
        # catches one forked while we looked
        pids |= lifecycle.ours(None, proc.pid, [self.shm_prefix])
        lifecycle.kill_all(pids)
        return sorted(lifecycle.wait_gone(pids, timeout=15))

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


class StopOutcome:
    """How a server stopped: Triton's exit code, whether generations were cancelled or Triton killed."""

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        self.drained = False  # everything in flight when the stop began finished in the grace period
        self.cancelled = False
        self.forced = False
        self.leftovers: list[int] = []
        self.removed_shm: list[str] = []


@contextlib.contextmanager
def start_server(
    model_repository: str | os.PathLike = DEFAULT_MODEL_REPOSITORY,
    http_port: int = 0,
    grpc_port: int = 0,
    metrics_port: int = 0,
    **kwargs,
) -> Iterator[TritonServer]:
    """Start a real tritonserver, wait until every model is READY, yield it, stop it."""
    server = TritonServer(
        model_repository, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, **kwargs
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository",
        default=str(DEFAULT_MODEL_REPOSITORY),
        help="Triton model repository to serve (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to expose; default %(default)s)")
    parser.add_argument(
        "--http-port", type=int, default=8000, help="HTTP/REST port, 0 = any free port (default %(default)s)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=8001, help="gRPC port, 0 = any free port (default %(default)s)"
    )
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default %(default)s)")
    parser.add_argument("--log-verbose", type=int, default=0, help="tritonserver --log-verbose level")
    parser.add_argument("--log-file", help="also append the server log to this file")
    parser.add_argument("--quiet", action="store_true", help="do not echo the server log to stderr")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for readiness")
    parser.add_argument(
        "--grace-period",
        type=float,
        default=5.0,
        help="on Ctrl-C/SIGTERM the server drains: new requests are refused (HTTP 503, gRPC UNAVAILABLE) and "
        "requests in flight get this many seconds to finish before they are cancelled (default %(default)s; "
        "a second Ctrl-C stops at once)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds tritonserver then gets to exit before it is killed (default %(default)s)",
    )
    parser.add_argument(
        "--openai-port",
        type=int,
        default=9000,
        help="OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models), "
        "0 = any free port, -1 = off (default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="NAME:SECRET",
        help="require this API key (repeatable; default $TRITONLLM_API_KEYS, comma-separated): nginx checks it "
        "in front of Triton like the EKS gateway does (401 / gRPC UNAUTHENTICATED without it)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS, gRPC over TLS and HTTPS on the OpenAI port, with a server certificate from a CA "
        "generated like the EKS gateway's (clients verify with --ca-cert <tls-dir>/ca.pem)",
    )
    parser.add_argument(
        "--tls-dir",
        default=str(DEFAULT_CACHE_DIR / "tls"),
        help="where --tls writes ca.pem, server.pem and server.key (new ones at every start; default %(default)s)",
    )
    parser.add_argument(
        "run",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="optional command to run once the server is ready (it gets TRITON_HTTP_URL, TRITON_GRPC_URL, "
        "TRITON_METRICS_URL in its environment); the server stops when it exits and its exit code is returned",
    )


def _print(msg: str) -> None:
    print(msg, flush=True)


def _in_flight_words(count: int | None) -> str:
    if count is None:
        return "the requests in flight"
    return f"{count} request{'' if count == 1 else 's'} in flight"


def _stop_front(front, forced: bool) -> None:
    """Stop the API-key front (nginx: master and worker in their own process group), after Triton."""
    if front is None or front.process is None:
        return
    pgid = front.process.pid  # start_new_session: the group is the master's pid
    if forced:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    front.stop()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # a worker the master left behind
        os.killpg(pgid, signal.SIGKILL)


def _stop(
    server: TritonServer,
    signals: lifecycle.StopSignals,
    child: subprocess.Popen | None = None,
    front=None,
    frontend=None,
) -> int:
    """Orderly stop after a signal, announced at once; a second signal makes it immediate.

    Like a replica chosen for removal on EKS: new requests are refused first (HTTP 503 / gRPC
    UNAVAILABLE), requests in flight get the grace period, then Triton stops (TritonServer.shutdown)."""
    how = lifecycle.signal_name(signals.first)
    again = "Ctrl-C again" if signals.first == signal.SIGINT else "a second SIGTERM"
    if signals.forced:
        _print(f"stopping now ({how} twice)")
    else:
        count = server.requests_in_flight() if server.is_running() else 0
        # First what the gateway does for a replica being removed: stop routing new requests to it
        # (NGINX front: 503 / UNAVAILABLE; OpenAI port: 503), and the local model's own refusal; what
        # NGINX and Triton already have in flight runs on.
        if front is not None:
            front.drain()
        if frontend is not None:
            frontend.drain()
        if count != 0 and server.is_running():
            server.begin_drain()
        if count == 0:
            _print(f"stopping on {how}: no request in flight, stopping tritonserver ({again} stops at once)")
        else:
            _print(
                f"stopping on {how}: draining: new requests are refused, {_in_flight_words(count)} may finish "
                f"within a grace period of {server.grace_period:g}s (what still runs then is cancelled; "
                f"{again} stops at once)"
            )
    if child is not None and child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signals.first or signal.SIGTERM)
    outcome = server.shutdown(forced=lambda: signals.forced, say=_print)
    _stop_front(front, outcome.forced)
    if child is not None and child.poll() is None:
        try:
            child.wait(timeout=0 if signals.forced else 10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _report_stop(outcome)
    return lifecycle.EXIT_FORCED if outcome.forced else signals.exit_code()


def _report_stop(outcome: StopOutcome) -> None:
    details = []
    if outcome.drained:
        details.append("requests in flight finished")
    if outcome.cancelled:
        details.append("generations still running were cancelled")
    if outcome.forced:
        details.append("killed")
    if outcome.leftovers:
        details.append(f"WARNING: processes {outcome.leftovers} did not exit")
    _print(f"tritonserver stopped (exit code {outcome.returncode}" + "".join(f"; {d}" for d in details) + ")")


def main(args: argparse.Namespace) -> int:
    """Exit codes: see tritonllm/lifecycle.py (0, 1, 130 Ctrl-C, 143 SIGTERM, 137 forced; CMD's own with -- CMD)."""
    command = list(args.run or [])
    if command and command[0] == "--":
        command = command[1:]
    from tritonllm import auth_front

    try:
        api_keys = auth_front.api_keys_from(getattr(args, "api_key", None))
    except auth_front.FrontError as exc:
        _print(f"error: {exc}")
        return 2
    tls_files = None
    if getattr(args, "tls", False):
        from tritonllm import tls_certs

        hosts = ("localhost", "127.0.0.1", *([args.host] if args.host not in ("0.0.0.0", "", "127.0.0.1") else []))
        tls_files = tls_certs.local_certificates(Path(args.tls_dir), hosts)
    fronted = bool(api_keys) or tls_files is not None
    server = TritonServer(
        args.model_repository,
        # With API keys or TLS Triton listens on loopback ports only the front (nginx) knows.
        http_port=0 if fronted else args.http_port,
        grpc_port=0 if fronted else args.grpc_port,
        metrics_port=args.metrics_port,
        host="127.0.0.1" if fronted else args.host,
        log_verbose=args.log_verbose,
        log_file=args.log_file,
        echo_logs=not args.quiet,
        startup_timeout=args.startup_timeout,
        grace_period=args.grace_period,
        stop_timeout=args.stop_timeout,
    )
    from tritonllm import openai_frontend

    try:  # a taken --openai-port is reported before Triton starts, as its own ports are
        openai_frontend.check_port(args.host, getattr(args, "openai_port", -1))
    except openai_frontend.FrontendStartError as exc:
        _print(f"error: {exc}")
        return lifecycle.EXIT_SERVER_FAILED
    front = None
    signals = lifecycle.StopSignals().install()
    server.interrupted = lambda: signals.requested
    _print(f"starting tritonserver on {server.model_repository} ...")
    try:
        try:
            server.start()
        except StartupInterrupted:
            code = server.last_stop.returncode if server.last_stop else None
            _print(f"stopped on {lifecycle.signal_name(signals.first)} while starting (tritonserver exit code {code})")
            return signals.exit_code()
        except ServerError as exc:
            if args.quiet and exc.log_tail:
                sys.stderr.write(exc.log_tail[-4000:])
            _print(f"error: {exc}")
            return lifecycle.EXIT_SERVER_FAILED
        urls: TritonServer | auth_front.ApiKeyFront = server
        openai_port = getattr(args, "openai_port", -1)
        openai_public = None
        try:
            # With TLS the OpenAI frontend listens on loopback and the front terminates TLS on its port.
            frontend = openai_frontend.start_for_serve(server, args, api_keys=api_keys, loopback=tls_files is not None)
        except openai_frontend.FrontendStartError as exc:
            _print(f"error: {exc}")
            return lifecycle.EXIT_SERVER_FAILED
        if frontend is not None and tls_files is not None:
            from tritonllm.ports import find_free_port

            openai_public = (openai_port or find_free_port(args.host), frontend.port)
        if fronted:
            try:
                front = auth_front.ApiKeyFront(
                    api_keys,
                    triton_http=server.http_port,
                    triton_grpc=server.grpc_port,
                    host=args.host,
                    http_port=args.http_port,
                    grpc_port=args.grpc_port,
                    tls=tls_files,
                    openai=openai_public,
                )
                urls = front.start()
            except auth_front.FrontError as exc:
                _print(f"error: {exc}")
                return lifecycle.EXIT_SERVER_FAILED
            if api_keys:
                _print(
                    f"API keys required ({', '.join(name for name, _ in api_keys)}): "
                    "clients pass --api-key NAME:SECRET or set TRITONLLM_API_KEY"
                )
            if tls_files is not None:
                _print(
                    f"TLS: clients verify the server against the CA certificate {tls_files.ca_cert}\n"
                    f"      (--ca-cert {tls_files.ca_cert}; curl --cacert {tls_files.ca_cert}; "
                    f"SSL_CERT_FILE={tls_files.ca_cert} for the openai SDK)"
                )
        openai_url = (front.openai_base_url if front is not None and openai_public else None) or (
            frontend.base_url if frontend else None
        )
        models = ", ".join(f"{name} ({state})" for name, state in sorted(server.models.items())) or "none"
        _print(
            f"Triton is ready after {server.startup_seconds:.1f}s\n"
            f"  HTTP:    {urls.http_url}\n"
            f"  gRPC:    {urls.grpc_url}\n"
            f"  metrics: {server.metrics_url}\n"
            + (f"  OpenAI:  {openai_url}\n" if openai_url else "")
            + f"  models:  {models}"
        )
        if command:
            env = dict(
                os.environ,
                TRITON_HTTP_URL=urls.http_url,
                TRITON_GRPC_URL=urls.grpc_url,
                TRITON_METRICS_URL=server.metrics_url,
                **({"OPENAI_BASE_URL": openai_url} if openai_url else {}),
            )
            if api_keys:
                env.setdefault("TRITONLLM_API_KEY", ":".join(api_keys[0]))
            if tls_files is not None:
                env["TRITONLLM_CA_CERT"] = str(tls_files.ca_cert)
            _print(f"running: {' '.join(command)}")
            try:
                child = subprocess.Popen(command, env=env)
            except OSError as exc:
                _print(f"error: {exc}")
                return 127
            while child.poll() is None and not signals.wait(0.2):
                pass
            if signals.requested:
                return _stop(server, signals, child, front, frontend)
            code = child.returncode
            outcome = server.shutdown(forced=lambda: signals.forced, say=_print)
            _stop_front(front, outcome.forced)
            _report_stop(outcome)
            return code
        first = sorted(server.models)[0] if server.models else "MODEL"
        key_flag = ' -u "$TRITONLLM_API_KEY"' if api_keys else ""
        if tls_files is not None:
            key_flag += f" --cacert {tls_files.ca_cert}"
        _print(
            f"try:  curl -s{key_flag} -X POST {urls.http_url}/v2/models/{first}/generate "
            '-d \'{"text_input": "What is Triton?", "max_tokens": 32, "exclude_input_in_output": true}\'\n'
            "      (exclude_input_in_output: the answer only, without the prompt echoed before it)\n"
            "press Ctrl-C to stop"
        )
        while server.is_running() and not signals.wait(0.2):
            pass
        if signals.requested:
            return _stop(server, signals, front=front, frontend=frontend)
        code = server.process.returncode if server.process is not None else None
        _print(f"error: tritonserver exited unexpectedly (exit code {code})")
        if args.quiet:
            sys.stderr.write(server.logs()[-4000:])
        _report_stop(server.shutdown(grace=0, timeout=0))
        return lifecycle.EXIT_SERVER_FAILED
    finally:
        if "frontend" in locals() and frontend is not None:
            frontend.stop()
        if server.process is not None and server.last_stop is None:  # an unexpected error: still clean up
            server.shutdown(grace=0, timeout=10)
        if front is not None and front.workdir is not None:  # not stopped above (an error path)
            _stop_front(front, forced=True)
        signals.restore()
