"""Issue 13 against the real local server: what a newcomer meets after `make demo`.

The client infers the protocol from the URL and names the served models when the one asked for is
not there; it says so when the concurrency exceeds what the local model generates at once; serve's
banner `curl` returns the answer without the prompt echoed; the CPU-only CUDA error is explained;
and `make demo` gives the same text on every run.

Issue 22, against a real closed port and the real Triton's gRPC port: a refused connection is
"nothing listens at host:port" (no protocol hint), an http:// URL of the gRPC port is recognised by
the HTTP/2 SETTINGS frame it answers with, and a setting the server refuses stops the run after the
first request, said once (never "[None]")."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ANY_FREE_PORTS
from tritonllm.client_core import probe
from tritonllm.ports import find_free_port

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
        [
            sys.executable,
            "-m",
            "tritonllm",
            "serve",
            *ANY_FREE_PORTS,
        ],
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
        tries = [ln for ln in lines if ln.startswith("try:")]
        assert tries, f"serve printed no 'try:' line (exit code {proc.wait(timeout=30)}):\n{banner}"
        curl = tries[0].split("try:", 1)[1].strip()
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


# --------------------------------------------------------------------------- issue 22: client hints


def test_probe_tells_nothing_listening_from_a_grpc_port_from_an_http_port(triton_server):
    closed = find_free_port()
    assert probe("127.0.0.1", closed) == "refused"
    grpc_host, grpc_port = triton_server.grpc_url.rsplit(":", 1)
    assert probe(grpc_host, int(grpc_port)) == "http2"
    http_host, http_port = triton_server.http_url.split("://", 1)[1].rsplit(":", 1)
    assert probe(http_host, int(http_port)) == "listening"


@pytest.mark.parametrize(
    "url_form, extra",
    [
        pytest.param("127.0.0.1:{port}", [], id="grpc"),
        pytest.param("http://127.0.0.1:{port}", [], id="http"),
        pytest.param("http://127.0.0.1:{port}/v1", ["--api", "openai"], id="openai"),
    ],
)
def test_a_closed_port_is_nothing_listening_not_a_protocol_hint(two_prompts, tmp_path, url_form, extra):
    port = find_free_port()  # free now: nothing listens there
    proc = client(
        "--url",
        url_form.format(port=port),
        *extra,
        "--input-prompts",
        str(two_prompts),
        "--results-file",
        str(tmp_path / "r"),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"nothing listens at 127.0.0.1:{port} (connection refused)" in proc.stderr, proc.stderr
    assert "use --url" not in proc.stderr and "if that is" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["http-url", "protocol-http"])
def test_http_to_the_grpc_port_is_recognised_by_its_http2_preface(triton_server, two_prompts, tmp_path, how):
    grpc = triton_server.grpc_url  # host:port
    args = ["--url", f"http://{grpc}"] if how == "http-url" else ["--url", grpc, "--protocol", "http"]
    proc = client(*args, "--input-prompts", str(two_prompts), "--results-file", str(tmp_path / "r"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{grpc} is a gRPC port (it answers in HTTP/2), not an HTTP one: for gRPC use --url {grpc}" in proc.stderr
    assert "Bad status line" not in proc.stderr and "\\x00" not in proc.stderr, proc.stderr


def _refusals(triton_server) -> float:
    """Requests the local model refused as invalid, once the counter has settled."""

    def read() -> float:
        with urllib.request.urlopen(triton_server.metrics_url, timeout=30) as resp:
            text = resp.read().decode()
        found = re.findall(r"^tritonllm_request_failure_total\{([^}]*)\} ([0-9.eE+-]+)$", text, re.M)
        return sum(
            float(v) for labels, v in found if 'model="smollm2"' in labels and 'reason="invalid_argument"' in labels
        )

    value = read()
    for _ in range(20):
        time.sleep(0.5)
        again = read()
        if again == value:
            return value
        value = again
    return value


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_setting_the_server_refuses_stops_the_run_after_the_first_request(triton_server, tmp_path, protocol):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("One.\nTwo.\nThree.\nFour.\n")
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    before = _refusals(triton_server)
    proc = client(
        "--url",
        url,
        "--max-tokens",
        "100000",
        "--concurrency",
        "2",
        "--input-prompts",
        str(prompts),
        "--results-file",
        str(tmp_path / "r.jsonl"),
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "[None]" not in output and "FAIL" not in proc.stdout, output
    assert output.count("'max_tokens' must be between 1 and 4096") == 1, output  # said once
    assert "error: the server refused the first request" in proc.stderr, proc.stderr
    assert "the other 3 requests carry the same settings, so they were not sent" in proc.stderr, proc.stderr
    assert _refusals(triton_server) - before == 1  # one request reached the model, not four
    (row,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert not row["ok"] and "max_tokens" in row["error"] and row["status"] == ("400" if protocol == "http" else "")
