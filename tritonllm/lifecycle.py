"""Process lifecycle of a local tritonserver: signals, stopping, and leaving nothing behind.

What `serve` starts, and how each piece is made to go away:

* `tritonserver` runs in its own session (so a terminal's Ctrl-C reaches `serve` only, which then
  stops Triton in order) with a parent-death signal of SIGKILL: if `serve` itself is killed, the
  kernel kills Triton (`prctl(PR_SET_PDEATHSIG)`, set between fork and exec).
* The Python backend forks one `triton_python_backend_stub` per model instance with `execv`, in
  Triton's process group, and the stub ignores SIGINT and SIGTERM on purpose (upstream
  triton-inference-server/python_backend src/pb_stub.cc: `SignalHandler` "Skip the SIGINT and
  SIGTERM"); it exits on Triton's finalize message or, 300 ms after its parent is gone
  (`ParentProcessActive`), by itself. A stub that outlives Triton is SIGKILLed here: it is found by
  its process group, as a descendant of Triton, and by its command line, which carries the
  shared-memory region name and so our unique prefix (stub_launcher.cc passes it as argv[2]).
* Shared memory: the Python backend names its /dev/shm regions after
  `--backend-config=python,shm-region-prefix-name=<prefix>`; the prefix holds serve's pid and HTTP
  port, so every segment left after Triton is gone is removed, and segments of a dead `serve`
  (killed with SIGKILL, so nothing of it could clean up) are removed by the next one.
* Draining, as a replica chosen for removal on EKS does (docs/autoscaling.md "Scale-down drains"):
  on the first Ctrl-C/SIGTERM `serve` first stops taking new requests and lets those in flight
  finish, then stops Triton. On EKS the gateway stops routing to the pod (its endpoint leaves the
  EndpointSlice) while its preStop hook runs; here the local model does the refusing: `serve` writes
  a drain file (env TRITONLLM_DRAIN_FILE, JSON {"admitted": N}, N = the requests queued in Triton at
  that moment) and from then on the model answers every request beyond those N with UNAVAILABLE
  (HTTP 503, gRPC UNAVAILABLE: retryable); the local OpenAI frontend answers 503 with Retry-After.
  The model writes `<drain file>.drained` once the admitted ones are done.
* Then SIGTERM: Triton stops accepting connections and waits for the open ones
  (upstream server src/main.cc StopEndpoints, src/http_server.cc HTTPServer::Stop), then for
  in-flight inferences (core src/server.cc InferenceServer::Stop), each up to
  `--exit-timeout-secs`. Triton alone would not refuse new gRPC requests while HTTP connections are
  still open (the gRPC graceful stop comes after the HTTP one, r25.12; not at all in 2.51, the local
  build): that is what the drain above is for. Triton cannot cancel a running generation itself,
  so the local model checks a stop file (env TRITONLLM_STOP_FILE) between tokens: `serve` creates
  it when the grace period ends and each generation still running ends with UNAVAILABLE
  "server is shutting down".
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

SHM_DIR = Path(os.environ.get("TRITONLLM_SHM_DIR", "/dev/shm"))
SHM_PREFIX_RE = re.compile(r"^tritonllm(\d+)x(\d+)_")
STOP_FILE_ENV = "TRITONLLM_STOP_FILE"
DRAIN_FILE_ENV = "TRITONLLM_DRAIN_FILE"

PR_SET_PDEATHSIG = 1

# Exit codes of `python -m tritonllm serve` (README "Stopping the local server").
EXIT_OK = 0
EXIT_SERVER_FAILED = 1  # tritonserver could not start, or exited on its own
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C, stopped in order
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM, stopped in order
EXIT_FORCED = 128 + signal.SIGKILL  # 137: a second Ctrl-C/SIGTERM, or Triton did not stop in time: killed


def shm_prefix(pid: int, http_port: int) -> str:
    """The Python backend's shared-memory prefix for one server: unique per serve process and port."""
    return f"tritonllm{pid}x{http_port}_"


def parent_death_signal(expected_parent: int, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` when the thread that forked it exits.

    (PDEATHSIG follows the forking *thread*: start servers from a thread that outlives them,
    e.g. the main thread.) If the parent died before prctl took effect, the child exits at once.
    """

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no allocation-heavy work
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except Exception:  # noqa: BLE001 - not Linux: the explicit cleanup below still runs
            return
        if os.getppid() != expected_parent:
            os._exit(1)

    return preexec


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str


def process_table(proc_dir: Path = Path("/proc")) -> dict[int, Proc]:
    """Every live (non-zombie) process: pid -> Proc. Processes that vanish while reading are skipped."""
    table: dict[int, Proc] = {}
    for entry in proc_dir.iterdir() if proc_dir.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 3 or fields[0] == "Z":
            continue
        table[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), fields[0], cmdline)
    return table


def descendants(root: int, table: dict[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def ours(root: int | None, pgid: int | None, markers: Iterable[str], table: dict[int, Proc] | None = None) -> set[int]:
    """Processes that belong to one server: Triton's descendants, its process group, and any
    process whose command line carries one of `markers` (the shm prefix, the model repository)."""
    table = process_table() if table is None else table
    markers = [m for m in markers if m]
    found = descendants(root, table) if root else set()
    if root and root in table:
        found.add(root)
    for p in table.values():
        if (pgid and p.pgid == pgid) or any(m in p.cmdline for m in markers):
            found.add(p.pid)
    found.discard(os.getpid())
    return found


def kill_all(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of `pids` is alive (zombies count as gone); return those still alive."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = {p for p in pending if is_alive(p)}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return pending


# --------------------------------------------------------------------------- shared memory


def shm_entries(prefix: str, shm_dir: Path = SHM_DIR) -> list[Path]:
    if not prefix or not shm_dir.is_dir():
        return []
    return sorted(p for p in shm_dir.iterdir() if p.name.startswith(prefix))


def remove_shm(prefix: str, shm_dir: Path = SHM_DIR) -> list[Path]:
    removed = []
    for path in shm_entries(prefix, shm_dir):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def stale_shm(shm_dir: Path = SHM_DIR, alive: Callable[[int], bool] = is_alive) -> list[Path]:
    """Segments named by a `serve`/TritonServer process that no longer exists."""
    if not shm_dir.is_dir():
        return []
    stale = []
    for path in shm_dir.iterdir():
        match = SHM_PREFIX_RE.match(path.name)
        if match and not alive(int(match.group(1))):
            stale.append(path)
    return sorted(stale)


def remove_stale_shm(shm_dir: Path = SHM_DIR) -> list[Path]:
    removed = []
    for path in stale_shm(shm_dir):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- metrics


def requests_in_flight(metrics_text: str, model: str | None = None) -> int | None:
    """Requests queued in Triton plus those the local model is generating, from /metrics text.

    `nv_inference_pending_request_count` counts requests waiting for a model instance; the local
    model's `tritonllm_requests_executing` gauge counts generations under way. None without that
    gauge (another model repository: Triton reports no count of running requests).
    """
    total, seen = 0.0, False
    for match in _METRIC_LINE.finditer(metrics_text):
        labels = match.group("labels") or ""
        if model and f'model="{model}"' not in labels:
            continue
        try:
            total += float(match.group("value"))
        except ValueError:
            continue
        seen = seen or match.group(0).startswith("tritonllm_requests_executing")
    return int(round(total)) if seen else None


def pending_requests(metrics_text: str, model: str | None = None) -> int:
    """Requests queued in Triton (not yet handed to a model instance), from /metrics text."""
    total = 0.0
    for match in _PENDING_LINE.finditer(metrics_text):
        if model and f'model="{model}"' not in (match.group("labels") or ""):
            continue
        try:
            total += float(match.group("value"))
        except ValueError:
            continue
    return int(round(total))


_PENDING_LINE = re.compile(r"^nv_inference_pending_request_count(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)", re.MULTILINE)

_METRIC_LINE = re.compile(
    r"^(?:nv_inference_pending_request_count|tritonllm_requests_executing)"
    r"(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)",
    re.MULTILINE,
)


# --------------------------------------------------------------------------- signals


@dataclass
class StopSignals:
    """Records SIGINT/SIGTERM for a main loop that polls: the first asks for an orderly stop,
    the second for an immediate one. The handler only records (printing from a signal handler
    can fail with a reentrant-call error); the main thread reports."""

    received: list[int] = field(default_factory=list)
    _previous: dict[int, object] = field(default_factory=dict)
    _event: threading.Event = field(default_factory=threading.Event)

    def install(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum, _frame) -> None:
        self.received.append(signum)
        self._event.set()

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def forced(self) -> bool:
        return len(self.received) >= 2

    @property
    def first(self) -> int | None:
        return self.received[0] if self.received else None

    def exit_code(self) -> int:
        if self.forced:
            return EXIT_FORCED
        return EXIT_TERMINATED if self.first == signal.SIGTERM else EXIT_INTERRUPTED

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True as soon as a signal has been received."""
        return self._event.wait(timeout)


def signal_name(signum: int | None) -> str:
    names: dict[int | None, str] = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
    return names.get(signum, str(signum))
