"""Issue 13 against the real local server: what a newcomer meets after `make demo`.

The client infers the protocol from the URL and names the served models when the one asked for is
not there; it says so when the concurrency exceeds what the local model generates at once; serve's
banner `curl` returns the answer without the prompt echoed; the CPU-only CUDA error is explained;
and `make demo` gives the same text on every run."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


def client(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonllm", "client", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def two_prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("Name three primary colors.\nWhat is photosynthesis?\n")
    return path


def test_an_http_url_is_called_over_http_without_protocol(triton_server, two_prompts, tmp_path):
    proc = client(
        "--url",
        triton_server.http_url,
        "--model-name",
        "smollm2",
        "--input-prompts",
        str(two_prompts),
        "--max-tokens",
        "4",
        "--results-file",
        str(tmp_path / "r.jsonl"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"at {triton_server.http_url} (http," in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["protocol"] for r in rows] == ["http", "http"] and all(r["ok"] for r in rows)


def test_grpc_to_the_http_port_says_what_to_change(triton_server, two_prompts, tmp_path):
    host_port = triton_server.http_url.split("://", 1)[1]
    proc = client(
        "--url", host_port, "--input-prompts", str(two_prompts), "--results-file", str(tmp_path / "r"), timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"use --url http://{host_port}" in proc.stderr, proc.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_unknown_model_lists_the_served_ones(triton_server, two_prompts, tmp_path, protocol):
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    proc = client(
        "--url",
        url,
        "--model-name",
        "llama-2-7b-chat",
        "--input-prompts",
        str(two_prompts),
        "--results-file",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"model 'llama-2-7b-chat' is not served at {url}; it serves: smollm2 (READY)" in proc.stderr, proc.stderr


def test_concurrency_above_what_the_model_generates_at_once_is_explained(triton_server, two_prompts, tmp_path):
    common = [
        "--url",
        triton_server.grpc_url,
        "--input-prompts",
        str(two_prompts),
        "--max-tokens",
        "4",
        "--results-file",
        str(tmp_path / "r"),
    ]
    concurrent = client(*common, "--concurrency", "2")
    assert concurrent.returncode == 0, concurrent.stdout + concurrent.stderr
    assert "note: model 'smollm2' generates 1 request at a time" in concurrent.stdout
    assert "at concurrency 2 the others wait in Triton's queue" in concurrent.stdout
    single = client(*common, "--concurrency", "1")
    assert single.returncode == 0 and "note:" not in single.stdout


def test_banner_curl_answers_without_the_prompt_and_cpu_noise_is_explained(tmp_path):
    """Run the banner's curl command as printed; start without --quiet to see the echoed log."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tritonllm", "serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "log").open("w"),
        text=True,
    )
    try:
        lines = []
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if "press Ctrl-C to stop" in line or len(lines) > 50:
                break
        banner = "".join(lines)
        curl = next(ln for ln in lines if ln.startswith("try:")).split("try:", 1)[1].strip()
        assert '"exclude_input_in_output": true' in curl
        answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=300)
        body = json.loads(answer.stdout)
        text = body["text_output"]
        assert text.strip() and not text.startswith("What is Triton?"), body
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, banner + rest
    log = (tmp_path / "log").read_text()
    assert "Unable to allocate pinned system memory" not in log  # --pinned-memory-pool-byte-size=0
    errors = [ln for ln in log.splitlines() if re.match(r"E\d{4} ", ln)]
    assert not errors, errors
    assert "note: no GPU: Triton's CUDA block manager is off" in log and "harmless on CPU" in log


def test_make_demo_gives_the_same_text_twice(tmp_path):
    texts = []
    for run in ("first", "second"):
        results = tmp_path / f"{run}.txt"
        # -o: do not (re)install; the venv running this test is the one the demo uses
        proc = subprocess.run(
            ["make", "-s", "-o", ".venv/.installed", "demo", f"DEMO_RESULTS={results}", f"PY={sys.executable}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "total: 10/10 succeeded, 0 failed" in proc.stdout, proc.stdout
        texts.append(results.read_text())
    answers = [block.split("\n\n", 1)[0] for block in texts[0].split("Output:\n")[1:]]
    assert len(answers) == 10 and all(a.strip() for a in answers), texts[0]
    strip = lambda t: re.sub(r"\(ok, [0-9.]+s\)", "(ok)", t)  # noqa: E731 - latencies differ, text must not
    assert strip(texts[0]) == strip(texts[1])
