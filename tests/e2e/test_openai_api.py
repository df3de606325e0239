"""The OpenAI-compatible API of `tritonllm serve`, driven by the official `openai` SDK (pinned).

The frontend (tritonllm/openai_frontend.py) runs against the session's real Triton (one per
session, tests/e2e/conftest.py). Every failure case is followed by a good request: the server
keeps serving. Expected error shapes are those of Triton's own frontend (server r25.12
python/openai): 400 `{"detail": "Unknown model: ..."}`, FastAPI's 422 for a body that does not
parse or validate, 500 with the model's message for what the model rejects. Next to upstream's
`detail` every error body carries OpenAI's `{"error": {"message", "type", "param", "code"}}` (same
status codes): the SDK puts that message in its exception, so the reason shows, not a bare
"Error code: 500" (issue 22).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ANY_FREE_PORTS

pytestmark = pytest.mark.e2e

openai = pytest.importorskip("openai", reason="the openai SDK is a test dependency (requirements-test.txt)")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frontend(triton_server):
    from tritonllm.openai_frontend import start_frontend

    fe = start_frontend(triton_server.http_url, port=0, metrics_url=triton_server.metrics_url)
    try:
        yield fe
    finally:
        fe.stop()


@pytest.fixture(scope="module")
def client(frontend):
    # max_retries=0: a 5xx must surface as it is, not be retried by the SDK
    return openai.OpenAI(base_url=frontend.base_url, api_key="unused", max_retries=0, timeout=120)


def _still_serving(client, model: str) -> None:
    reply = client.completions.create(model=model, prompt="One, two,", max_tokens=3, temperature=0)
    assert reply.choices[0].text and reply.usage.completion_tokens >= 1


def _post(frontend, path: str, raw: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{frontend.base_url}{path}", data=raw, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_models(client, triton_server):
    listing = client.models.list()
    assert [m.id for m in listing.data] == [triton_server.model_name]
    assert listing.data[0].owned_by == "Triton Inference Server"
    assert client.models.retrieve(triton_server.model_name).id == triton_server.model_name
    with pytest.raises(openai.NotFoundError, match="Unknown model: no-such-model"):
        client.models.retrieve("no-such-model")


def test_chat_completion(client, triton_server):
    reply = client.chat.completions.create(
        model=triton_server.model_name,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.id.startswith("cmpl-")
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason == "stop"
    usage = reply.usage
    # the chat template wraps the question: more prompt tokens than words; at most max_tokens generated
    assert usage.prompt_tokens > 7 and 1 <= usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_completion(client, triton_server):
    reply = client.completions.create(
        model=triton_server.model_name, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert reply.object == "text_completion" and reply.choices[0].text
    # raw completion: no chat template, so the prompt is just its own tokens
    assert 4 <= reply.usage.prompt_tokens <= 8 and 1 <= reply.usage.completion_tokens <= 6


def test_same_prompt_greedy_is_deterministic(client, triton_server):
    texts = {
        client.completions.create(model=triton_server.model_name, prompt="1, 2, 3,", max_tokens=5, temperature=0)
        .choices[0]
        .text
        for _ in range(2)
    }
    assert len(texts) == 1


def test_chat_streaming_with_usage(client, triton_server):
    stream = client.chat.completions.create(
        model=triton_server.model_name,
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) >= 2  # tokens arrive as they are produced, not in one piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 1 <= usage.completion_tokens <= 16
    streamed = "".join(c.choices[0].delta.content for c in text_chunks)
    # the same request without streaming gives the same greedy text and the same usage
    whole = client.chat.completions.create(
        model=triton_server.model_name,
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=16,
        temperature=0,
    )
    assert whole.choices[0].message.content == streamed
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)


def test_completion_streaming(client, triton_server):
    chunks = list(
        client.completions.create(
            model=triton_server.model_name, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True
        )
    )
    assert len([c for c in chunks if c.choices and c.choices[0].text]) >= 2
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for


def test_bad_model_name_is_a_clear_400(client, triton_server):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400 and err.value.response.json() == {
        "detail": "Unknown model: gpt-4o",  # upstream's shape, kept
        "error": {"message": "Unknown model: gpt-4o", "type": "invalid_request_error", "param": None, "code": None},
    }
    assert str(err.value) == "Error code: 400 - Unknown model: gpt-4o"  # what the SDK shows
    assert err.value.type == "invalid_request_error"
    _still_serving(client, triton_server.model_name)


def test_malformed_body_is_a_4xx(client, frontend, triton_server):
    status, body = _post(frontend, "/chat/completions", b'{"model": "smollm2", "messages": [')
    assert status == 422 and body["detail"][0]["type"] == "json_invalid"
    status, body = _post(frontend, "/chat/completions", json.dumps({"model": triton_server.model_name}).encode())
    assert status == 422 and body["detail"][0]["loc"] == ["body", "messages"]
    # through the SDK: a value out of range, and a field the API does not have, named in the exception
    with pytest.raises(
        openai.UnprocessableEntityError, match="temperature: Input should be less than or equal to 2"
    ) as err:
        client.completions.create(model=triton_server.model_name, prompt="x", temperature=5)
    assert err.value.param == "temperature" and err.value.response.json()["detail"][0]["loc"] == ["body", "temperature"]
    with pytest.raises(openai.UnprocessableEntityError, match="no_such_field: Extra inputs are not permitted"):
        client.completions.create(model=triton_server.model_name, prompt="x", extra_body={"no_such_field": 1})
    _still_serving(client, triton_server.model_name)


def test_oversize_max_tokens_is_a_clear_error(client, triton_server):
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as err:
            result = client.chat.completions.create(
                model=triton_server.model_name,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=1_000_000,
                stream=stream,
            )
            list(result) if stream else None
        # the model's own message names the limit (the status is the upstream frontend's 500), in the
        # exception the SDK raises as well as in upstream's `detail`
        assert "max_tokens" in err.value.response.json()["detail"] and "4096" in err.value.response.json()["detail"]
        assert re.fullmatch(r"Error code: 500 - 'max_tokens' must be between 1 and 4096 .*", str(err.value)), err.value
        assert err.value.type == "server_error"
        _still_serving(client, triton_server.model_name)


def test_unsupported_options_are_400(client, triton_server):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=triton_server.model_name, prompt="x", n=2)
    assert "only single choice" in err.value.response.json()["detail"] and "only single choice" in str(err.value)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=triton_server.model_name, prompt="x", seed=3)
    assert "seed is not supported" in err.value.response.json()["detail"] and "seed is not supported" in str(err.value)
    _still_serving(client, triton_server.model_name)


def test_concurrent_streams(client, triton_server):
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        chunks = list(
            client.chat.completions.create(
                model=triton_server.model_name,
                messages=[{"role": "user", "content": f"Say the number {i}."}],
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        return chunks[-1].usage.completion_tokens

    with ThreadPoolExecutor(6) as pool:
        counts = list(pool.map(one, range(6)))
    assert all(1 <= c <= 6 for c in counts)


def test_health_and_metrics(frontend):
    base = frontend.base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        assert "nv_inference_request_success" in resp.read().decode()


def test_client_speaks_openai(frontend, triton_server, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\nOne, two, three,\n")
    results = tmp_path / "out.jsonl"
    for endpoint, stream in (("chat", "--stream"), ("completions", "--no-stream")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tritonllm",
                "client",
                "--api",
                "openai",
                "--url",
                frontend.base_url,
                "--openai-endpoint",
                endpoint,
                stream,
                "--model-name",
                triton_server.model_name,
                "--input-prompts",
                str(prompts),
                "--results-file",
                str(results),
                "--max-tokens",
                "8",
                "--concurrency",
                "2",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        assert len(rows) == 2 and all(r["ok"] and r["text"] for r in rows), rows
        assert rows[0]["protocol"] == f"openai-{endpoint}"
        if stream == "--stream":
            assert any(r["chunks"] >= 2 for r in rows)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "client",
            "--api",
            "openai",
            "--url",
            frontend.base_url,
            "--model-name",
            "nope",
            "--input-prompts",
            str(prompts),
            "--results-file",
            str(results),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_client_stops_after_a_first_request_the_api_refuses(frontend, triton_server, tmp_path):
    """A 400 for what every request asks (the local model has no seed input): said once, nothing more sent."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("One.\nTwo.\nThree.\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "client",
            "--api",
            "openai",
            "--url",
            frontend.base_url,
            "--seed",
            "3",
            "--model-name",
            triton_server.model_name,
            "--input-prompts",
            str(prompts),
            "--results-file",
            str(tmp_path / "r.txt"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "error: the server refused the first request [400]: seed is not supported by model smollm2" in proc.stderr
    assert output.count("seed is not supported") == 1 and "FAIL" not in proc.stdout, output
    assert "the other 2 requests carry the same settings, so they were not sent" in proc.stderr


def test_serve_starts_the_openai_api(tmp_path):
    """`tritonllm serve -- CMD` gives CMD the OpenAI base URL, and the routes answer there."""
    probe = (
        "import os, openai; c = openai.OpenAI(base_url=os.environ['OPENAI_BASE_URL'], api_key='x', "
        "max_retries=0); print('OPENAI-OK', c.completions.create(model='smollm2', prompt='Hi', max_tokens=2)"
        ".usage.completion_tokens)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "serve",
            *ANY_FREE_PORTS,
            "--quiet",
            "--",
            sys.executable,
            "-c",
            probe,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OpenAI:  http://127.0.0.1:" in proc.stdout
    assert re.search(r"^OPENAI-OK [12]$", proc.stdout, re.M), proc.stdout[-2000:]


def test_bench_openai_preset_runs_aiperf_in_openai_mode(frontend, triton_server, tmp_path):
    from tritonllm.bench import aiperf_executable, setup_aiperf
    from tritonllm.bench_core import PRESETS

    assert PRESETS["openai-chat"].api == "openai"
    aiperf = aiperf_executable() or setup_aiperf(quiet=True)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "bench",
            "--preset",
            "openai-chat",
            "--url",
            frontend.base_url,
            "--model-name",
            triton_server.model_name,
            "--concurrency",
            "2",
            "--request-count",
            "3",
            "--input-tokens",
            "32",
            "--output-tokens",
            "8",
            "--aiperf",
            str(aiperf),
            "--output-dir",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["api"] == "openai" and summary["url"] == frontend.base_url
    (run,) = summary["runs"]
    m = run["metrics"]
    assert run["ok"] and m["completed_requests"] == 3 and m["error_requests"] == 0
    # ignore_eos reached the model through the OpenAI API: every request ran to its 8 tokens. AIPerf counts
    # them by re-tokenizing the streamed text on the client (aiperf records/inference_result_parser.py;
    # endpoint use_server_token_count is off by default), and 8 sampled tokens can re-tokenize into 7
    # (seen once in 1 of 3 requests: avg 7.67), so one token per request is re-tokenization, not the model.
    assert 8 - 1 <= m["output_sequence_length_avg"] <= 8, m
    assert 0 < m["ttft_ms_p50"] < m["request_latency_ms_p50"]  # streamed over server-sent events
    assert m["itl_ms_p50"] > 0 and m["output_tokens_per_s"] > 0
    # what AIPerf sent was an OpenAI chat request, to the frontend's path
    inputs = json.loads((Path(run["artifact_dir"]) / "inputs.json").read_text())
    payload = inputs["data"][0]["payloads"][0]
    assert payload["model"] == triton_server.model_name and payload["messages"][0]["role"] == "user"


def test_api_keys_guard_the_openai_port(triton_server):
    """`serve --api-key`: the OpenAI port checks the same HTTP Basic credentials as the gateway."""
    import base64

    from tritonllm.openai_frontend import start_frontend

    key = "ci:0123456789abcdef"
    fe = start_frontend(triton_server.http_url, port=0, api_keys=[tuple(key.split(":", 1))])
    try:
        anonymous = openai.OpenAI(base_url=fe.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        wrong = openai.OpenAI(
            base_url=fe.base_url,
            api_key="unused",
            max_retries=0,
            default_headers={"Authorization": "Basic " + base64.b64encode(b"ci:nope").decode()},
        )
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model=triton_server.model_name, prompt="x", max_tokens=1)
        keyed = openai.OpenAI(
            base_url=fe.base_url,
            api_key="unused",
            max_retries=0,
            default_headers={"Authorization": "Basic " + base64.b64encode(key.encode()).decode()},
        )
        assert keyed.completions.create(model=triton_server.model_name, prompt="Hi", max_tokens=2).usage
        # tritonllm client --api openai with --api-key
        from tritonllm import openai_client

        assert openai_client.auth_headers(key) == {"authorization": "Basic " + base64.b64encode(key.encode()).decode()}
    finally:
        fe.stop()
