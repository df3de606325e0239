"""The shared compile cache's restore and save scripts for real: bash and the AWS CLI against the moto server,
a tiny local HTTP server standing in for Triton's readiness endpoint, a cache directory of real files.

Needs the `aws` CLI (awscli from PyPI: `make bench-weights` installs it into .cache/venv-bench).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.serving.builders import compile_cache as cc
from tests.providers.conftest import MotoServer
from tests.providers.test_weights_mirror_moto import aws_cli

MODEL = "llama-2-7b-chat"
KEY = "a" * 64
OTHER_KEY = "b" * 64
READY_PATH = f"/v2/models/{MODEL}/ready"
# The restore container runs its script with /bin/sh, which is bash in the AWS CLI image (amazonlinux:2023, aws/aws-cli 2.31.39 docker/Dockerfile).
RESTORE_SHELL = "/bin/bash"

# What vLLM 0.13.0 leaves in the directory (vllm/compilation/backends.py, compiler_interface.py), in small.
CACHE_FILES = {
    "vllm/torch_compile_cache/0123456789/rank_0_0/backbone/vllm_compile_cache.py": b"{(None, 0, 'x'): 1}\n",
    "vllm/torch_compile_cache/0123456789/rank_0_0/backbone/cache_key_factors.json": b'{"code_hash": "c"}\n',
    "vllm/torch_compile_cache/0123456789/rank_0_0/backbone/artifact_compile_range_1_8192_subgraph_0": os.urandom(
        9 << 20  # over the CLI's 8 MB multipart threshold: a multipart upload
    ),
    "inductor/fxgraph/ab/abcdef/0": os.urandom(4096),
    "triton/XYZ/kernel.cubin": os.urandom(2048),
}
LOCK_FILES = ("inductor/locks/abc.lock",)


def make_cache(root: Path) -> Path:
    for rel, data in CACHE_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel in LOCK_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    return root


def files_of(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def script_env(server: MotoServer, tmp_path: Path) -> dict[str, str]:
    aws = aws_cli()
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{Path(aws).parent}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": server.url,
        "TMPDIR": str(tmp_path / "tmp"),
    }


def restore(bucket: str, key: str, dest: Path, server: MotoServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    dest.mkdir(parents=True, exist_ok=True)
    script = cc.restore_script(bucket, MODEL, key, cache_dir=str(dest))
    return subprocess.run(
        [RESTORE_SHELL, "-c", script], env=script_env(server, tmp_path), capture_output=True, text=True, timeout=300
    )


class Readiness:
    """Triton's readiness endpoint in small: 503 until `ready` is set, then 200."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.asked = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked += 1
                ok = self.path == READY_PATH and outer.ready.is_set()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def triton() -> Iterator[Readiness]:
    server = Readiness()
    yield server
    server.stop()


def start_save(
    bucket: str, key: str, cache: Path, triton: Readiness, server: MotoServer, tmp_path: Path
) -> subprocess.Popen[str]:
    script = cc.save_script(
        bucket, MODEL, key, ready_url_port=triton.port, ready_path=READY_PATH, cache_dir=str(cache), poll_seconds=1
    )
    return subprocess.Popen(
        ["/bin/bash", "-c", script],
        env=script_env(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a failed test ends the script's children too
    )


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    """The process's output lines until one contains `text`; fails (never hangs) when none does in time, since
    the save script idles silently afterwards."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    if not hasattr(process, "_pump"):
        process._pump = lines  # type: ignore[attr-defined]
        threading.Thread(target=pump, daemon=True).start()
    lines = process._pump  # type: ignore[attr-defined]
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if text in line:
            return seen
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"no {text!r} in {seen}")


def stop(process: subprocess.Popen[str]) -> tuple[int, float]:
    """SIGTERM, as the kubelet sends it; the exit code and how long it took. Nothing of the script may outlive
    it (its own process group: a `sleep` or an `aws` left behind would hold the container)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    took = time.monotonic() - started
    deadline = time.monotonic() + 2
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("a child of the save script outlived its TERM")
        time.sleep(0.05)
    return code, took


def keys_under(s3: Any, bucket: str, key: str) -> list[str]:
    prefix = cc.key_prefix(MODEL, key)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"][len(prefix) :] for o in listed)


def test_restore_without_a_cache_does_nothing_and_does_not_fail(
    tmp_path: Path, moto_server: MotoServer, bucket: str
) -> None:
    dest = tmp_path / "cache"
    done = restore(bucket, KEY, dest, moto_server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no complete cache for key" in done.stdout
    assert files_of(dest) == {}


def test_restore_with_an_unreachable_store_does_not_fail(tmp_path: Path, moto_server: MotoServer) -> None:
    done = restore("no-such-bucket-here", KEY, tmp_path / "cache", moto_server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "vLLM compiles at start" in done.stdout


def test_save_waits_for_readiness_uploads_then_marks_and_restore_is_byte_for_byte(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str, triton: Readiness
) -> None:
    cache = make_cache(tmp_path / "saved")
    saver = start_save(bucket, KEY, cache, triton, moto_server, tmp_path)
    try:
        # Not ready: the sidecar keeps asking and writes nothing.
        deadline = time.monotonic() + 30
        while triton.asked < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert triton.asked >= 3
        assert keys_under(s3, bucket, KEY) == []
        moto_server.reset()
        triton.ready.set()
        lines = wait_for_line(saver, "saved ")
        assert any("model ready" in line for line in lines)
    finally:
        code, seconds = stop(saver)
    assert code == 0 and seconds < 5

    # Every file but Inductor's locks, and the marker holding the key, written last.
    assert keys_under(s3, bucket, KEY) == sorted([*CACHE_FILES, cc.COMPLETE_MARKER])
    marker = s3.get_object(Bucket=bucket, Key=cc.key_prefix(MODEL, KEY) + cc.COMPLETE_MARKER)["Body"].read()
    assert marker.decode() == KEY
    writes = [r for r in moto_server.requests() if r["method"] in ("PUT", "POST")]
    assert writes[-1]["path"].endswith(f"/{KEY}/{cc.COMPLETE_MARKER}")
    assert sum(r["path"].endswith(cc.COMPLETE_MARKER) for r in writes) == 1

    # A new replica restores it, byte for byte (no marker, no locks).
    dest = tmp_path / "restored"
    done = restore(bucket, KEY, dest, moto_server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "restored s3://" in done.stdout
    expected = {rel: hashlib.sha256(data).hexdigest() for rel, data in CACHE_FILES.items()}
    assert files_of(dest) == expected


def test_a_second_save_does_nothing(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str, triton: Readiness
) -> None:
    triton.ready.set()
    first = start_save(bucket, KEY, make_cache(tmp_path / "first"), triton, moto_server, tmp_path)
    wait_for_line(first, "saved ")
    stop(first)
    before = {k: s3.head_object(Bucket=bucket, Key=cc.key_prefix(MODEL, KEY) + k)["ETag"] for k in CACHE_FILES}

    second_cache = make_cache(tmp_path / "second")
    (second_cache / "triton/XYZ/kernel.cubin").write_bytes(b"another replica's bytes")
    moto_server.reset()
    second = start_save(bucket, KEY, second_cache, triton, moto_server, tmp_path)
    wait_for_line(second, "nothing to save")
    code, _ = stop(second)
    assert code == 0
    assert not [r for r in moto_server.requests() if r["method"] in ("PUT", "POST")]
    after = {k: s3.head_object(Bucket=bucket, Key=cc.key_prefix(MODEL, KEY) + k)["ETag"] for k in CACHE_FILES}
    assert after == before


def test_an_empty_cache_directory_is_not_saved(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str, triton: Readiness
) -> None:
    triton.ready.set()
    (tmp_path / "empty" / "vllm").mkdir(parents=True)
    saver = start_save(bucket, KEY, tmp_path / "empty", triton, moto_server, tmp_path)
    wait_for_line(saver, "is empty: nothing to save")
    stop(saver)
    assert keys_under(s3, bucket, KEY) == []


def test_a_failed_restore_leaves_an_empty_directory_and_does_not_fail(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str
) -> None:
    prefix = cc.key_prefix(MODEL, KEY)
    for rel, data in CACHE_FILES.items():
        s3.put_object(Bucket=bucket, Key=prefix + rel, Body=data)
    s3.put_object(Bucket=bucket, Key=prefix + cc.COMPLETE_MARKER, Body=KEY.encode())
    # The connection drops at the end of the copy: the real CLI copies, then the sync reports a failure.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "aws").write_text(
        f'#!/bin/sh\n"{aws_cli()}" "$@" || exit $?\n[ "$1 $2" = "s3 sync" ] && {{ echo "connection reset" >&2; exit 1; }}\n'
        "exit 0\n"
    )
    (shim / "aws").chmod(0o755)
    dest = tmp_path / "cache"
    env = {**script_env(moto_server, tmp_path), "PATH": f"{shim}:{os.environ['PATH']}"}
    script = cc.restore_script(bucket, MODEL, KEY, cache_dir=str(dest))
    dest.mkdir()
    done = subprocess.run([RESTORE_SHELL, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "could not restore" in done.stdout
    assert files_of(dest) == {}  # no partial cache: vLLM compiles from scratch


def test_a_marker_of_another_key_is_ignored(tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str) -> None:
    prefix = cc.key_prefix(MODEL, KEY)
    for rel, data in CACHE_FILES.items():
        s3.put_object(Bucket=bucket, Key=prefix + rel, Body=data)
    # A marker at our key's prefix that holds another key (an older layout, a half-written copy): not ours.
    s3.put_object(Bucket=bucket, Key=prefix + cc.COMPLETE_MARKER, Body=OTHER_KEY.encode())
    # And a complete cache of another key: never read for ours.
    other = cc.key_prefix(MODEL, OTHER_KEY)
    s3.put_object(Bucket=bucket, Key=other + "vllm/x", Body=b"x")
    s3.put_object(Bucket=bucket, Key=other + cc.COMPLETE_MARKER, Body=OTHER_KEY.encode())
    dest = tmp_path / "cache"
    done = restore(bucket, KEY, dest, moto_server, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no complete cache for key" in done.stdout
    assert files_of(dest) == {}


def test_term_ends_the_sidecar_at_once_while_waiting_and_while_idle(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str, triton: Readiness
) -> None:
    cache = make_cache(tmp_path / "cache")
    waiting = start_save(bucket, KEY, cache, triton, moto_server, tmp_path)
    deadline = time.monotonic() + 30
    while triton.asked < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    code, seconds = stop(waiting)
    assert (code, seconds < 2) == (0, True)
    assert keys_under(s3, bucket, KEY) == []  # stopped before ready: nothing written

    triton.ready.set()
    idle = start_save(bucket, KEY, cache, triton, moto_server, tmp_path)
    wait_for_line(idle, "saved ")
    time.sleep(0.5)  # in its hour-long sleep now
    code, seconds = stop(idle)
    assert (code, seconds < 2) == (0, True)
