"""The runnable examples of README.md and docs/ run as written against a real local server.

Every ```bash block marked `<!-- runnable -->` (tests/doc_blocks.py) is split into its commands
and each runs in bash, with what `tritonllm serve -- CMD` would give it:

* the server is the session's one Triton (tests/e2e/conftest.py) plus an OpenAI frontend, on free
  ports: `localhost:8000`, `:8001` and `127.0.0.1:9000` in the commands become those ports, and
  TRITON_HTTP_URL / TRITON_GRPC_URL / OPENAI_BASE_URL point at them, as `serve -- CMD` sets them;
* `.venv/bin/python` is this interpreter; the working directory is a temporary one whose
  `prompts.txt` holds two short prompts (the commands' own, shorter to run);
* a command that starts `tritonllm serve` is stood in for by that server, and `tritonllm bench`
  is not run (AIPerf needs its own 1.2 GB virtualenv: tests/e2e/test_local_bench.py runs it);
  both are still checked against the argument parser by tests/unit/test_docs.py;
* `export` lines of a block are run before each later command of the same block;
* curl fails on an HTTP error (`--fail-with-body`), so an error answer is not taken for success.

The shared server checks no API key: in the `serve --api-key` example the key is sent and
ignored (tests/e2e/test_local_api_key.py tests the key check itself).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests import doc_blocks

pytestmark = pytest.mark.e2e

NOT_RUN = {
    "serve": "the test's shared server stands in for it",
    "bench": "AIPerf needs its own virtualenv (tests/e2e/test_local_bench.py)",
}
PROMPTS = "What is the capital of France?\nName a primary color.\n"


def runnable_commands() -> list[doc_blocks.Command]:
    seen: set[str] = set()
    out = []
    for block in doc_blocks.all_blocks():
        if not block.runnable:
            continue
        for command in doc_blocks.commands(block):
            argv = doc_blocks.tritonllm_argv(command)
            if command.argv()[:1] == ["export"] or (argv and argv[0] in NOT_RUN):
                continue
            if command.text in seen:  # README repeats a few of the pages' examples
                continue
            seen.add(command.text)
            out.append(command)
    return out


def exports_before(command: doc_blocks.Command) -> list[str]:
    return [c.text for c in doc_blocks.commands(command.block) if c.line < command.line and c.argv()[:1] == ["export"]]


COMMANDS = runnable_commands()


@pytest.fixture(scope="module")
def servers(triton_server):
    from tritonllm.openai_frontend import start_frontend

    frontend = start_frontend(triton_server.http_url, port=0, metrics_url=triton_server.metrics_url)
    try:
        yield triton_server, frontend
    finally:
        frontend.stop()


def _local(script: str, triton_server, frontend) -> str:
    http = urlsplit(triton_server.http_url).netloc
    grpc = triton_server.grpc_url
    openai = urlsplit(frontend.base_url).netloc
    for host in ("localhost", "127.0.0.1"):
        script = script.replace(f"{host}:8000", http).replace(f"{host}:8001", grpc).replace(f"{host}:9000", openai)
    return script.replace(".venv/bin/python", sys.executable)


def run(command_text: str, prelude: list[str], servers, tmp_path) -> subprocess.CompletedProcess:
    triton_server, frontend = servers
    (tmp_path / "prompts.txt").write_text(PROMPTS)
    script = "\n".join(
        [
            "set -e -o pipefail",
            'curl() { command curl --fail-with-body "$@"; }',
            *prelude,
            command_text,
        ]
    )
    env = dict(
        os.environ,
        TRITON_HTTP_URL=triton_server.http_url,
        TRITON_GRPC_URL=triton_server.grpc_url,
        OPENAI_BASE_URL=frontend.base_url,
        PYTHONPATH=str(doc_blocks.REPO),
    )
    for name in ("TRITONLLM_API_KEY", "TRITONLLM_API_KEYS"):
        env.pop(name, None)
    return subprocess.run(
        ["bash", "-c", _local(script, triton_server, frontend)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def sse_events(stdout: str) -> list[str]:
    return [line[len("data:") :].strip() for line in stdout.splitlines() if line.startswith("data:")]


def test_the_docs_have_runnable_commands():
    assert len(COMMANDS) >= 8, [c.where for c in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_runnable_command(command, servers, tmp_path):
    proc = run(command.text, exports_before(command), servers, tmp_path)
    shown = f"{command.where}: {command.text}\nexit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, shown
    text = command.text
    body = re.search(r"-d '(\{.*\})'", text, flags=re.S)
    request = json.loads(body.group(1)) if body else {}
    if "/generate_stream" in text:
        events = [json.loads(e) for e in sse_events(proc.stdout)]
        # "stream": true is what makes it stream: several events, each a piece of the text
        assert request.get("stream") is True and len(events) > 2, shown
        assert all("text_output" in e for e in events), shown
    elif "/generate" in text:
        answer = json.loads(proc.stdout)
        # the answer alone: the local model echoes the prompt unless exclude_input_in_output is true
        assert answer["text_output"].strip() and not answer["text_output"].startswith(request["text_input"]), shown
    elif "/v1/chat/completions" in text and request.get("stream"):
        events = sse_events(proc.stdout)
        assert events[-1] == "[DONE]" and len(events) > 3, shown
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks), shown
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop", shown  # always "stop" (docs/openai.md)
    elif "/v1/chat/completions" in text:
        answer = json.loads(proc.stdout)
        assert answer["choices"][0]["message"]["content"].strip(), shown
        assert answer["choices"][0]["finish_reason"] == "stop", shown
    elif doc_blocks.tritonllm_argv(command)[:1] == ["client"]:
        assert "total: 2/2 succeeded, 0 failed" in proc.stdout, shown  # both prompts of prompts.txt
    elif doc_blocks.tritonllm_argv(command)[:1] == ["loadtest"]:
        assert "kind: Job" in proc.stdout and "kind: ConfigMap" in proc.stdout, shown


def test_generate_stream_without_stream_true_sends_one_event(servers, tmp_path):
    """What docs/local.md says of its streaming example: without "stream": true, one event."""
    (streaming,) = [c for c in COMMANDS if "/generate_stream" in c.text]
    assert '"stream": true, ' in streaming.text
    proc = run(streaming.text.replace('"stream": true, ', ""), [], servers, tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(e) for e in sse_events(proc.stdout)]
    assert len(events) == 1 and events[0]["text_output"].strip(), proc.stdout
