"""`serve` stops like a Triton replica chosen for removal: new requests refused, streams finished, then exit.

A real `python -m tritonllm serve` on free ports, real clients (an HTTP server-sent-events stream and a
gRPC stream with tritonclient, both started before the stop signal), then SIGTERM:

* the streams in flight run to their end (every token, finish reason "length"), though the signal came
  while they were generating or still queued;
* requests sent after the signal are refused, none of them generated. With `--api-key` the NGINX front
  (the gateway's local twin) is reloaded with what NGF renders for a backend without endpoints: HTTP 503
  (+ Retry-After) and gRPC status UNAVAILABLE, both retryable. Without it the local model refuses: its
  answer is UNAVAILABLE "draining", which Triton 2.51's generate endpoint reports as HTTP 400 and a gRPC
  stream carries as an in-stream error without a status. The OpenAI route answers 503 with Retry-After
  either way;
* serve then stops Triton without cancelling anything and exits 143 (SIGTERM, in order).

tests/e2e/test_local_serve.py covers the other side: a generation longer than the grace period is
cancelled with a clear error, a second signal stops at once, nothing is left behind.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.e2e.conftest import ANY_FREE_PORTS
from tests.e2e.test_local_serve import REPO_ROOT, _Lines, serve_cmd
from tritonllm.auth_front import nginx_binary

pytestmark = pytest.mark.e2e

MODEL = "smollm2"
STREAM_TOKENS = 120  # a few seconds of generation on this CPU model
QUEUED_TOKENS = 40
GRACE_S = 600  # far longer than both streams: nothing may be cancelled


class HttpStream(threading.Thread):
    """POST generate_stream and read the server-sent events to the end."""

    def __init__(self, http_url: str, max_tokens: int, api_key: str | None) -> None:
        super().__init__(daemon=True)
        self.headers = {"Content-Type": "application/json", **_auth(api_key)}
        self.url = f"{http_url}/v2/models/{MODEL}/generate_stream"
        self.body = {
            "text_input": "Tell me a long story about a lighthouse keeper.",
            "max_tokens": max_tokens,
            "stream": True,
            "sampling_parameters": json.dumps({"ignore_eos": True}),
            "exclude_input_in_output": True,
            "return_finish_reason": True,
            "return_num_output_tokens": True,
        }
        self.tokens = 0
        self.finish_reason: str | None = None
        self.errors: list[str] = []
        self.first = threading.Event()
        self.start()

    def run(self) -> None:
        request = urllib.request.Request(self.url, json.dumps(self.body).encode(), self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                for raw in response:
                    line = raw.decode(errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        self.errors.append(event["error"])
                        continue
                    self.tokens += int(np.asarray(event.get("num_output_tokens", 0)).sum())
                    self.finish_reason = event.get("finish_reason") or self.finish_reason
                    self.first.set()
        except Exception as exc:  # noqa: BLE001 - a cut stream lands here and fails the test
            self.errors.append(f"{type(exc).__name__}: {exc}")


class GrpcStream(threading.Thread):
    """One request on a gRPC ModelStreamInfer stream (tritonclient), read to its final response."""

    def __init__(
        self, grpc_url: str, prompt: str, max_tokens: int, api_key: str | None, new_connection: bool = False
    ) -> None:
        super().__init__(daemon=True)
        import tritonclient.grpc as grpcclient

        self.headers = {k.lower(): v for k, v in _auth(api_key).items()}
        self.status = ""
        # gRPC shares one connection between the channels of a process to the same target; a new client
        # (another process, another machine) has its own, which is what `new_connection` gives
        channel_args = [("grpc.use_local_subchannel_pool", 1)] if new_connection else None
        self.client = grpcclient.InferenceServerClient(grpc_url, channel_args=channel_args)
        self.inputs = []
        for name, value, dtype in (
            ("text_input", np.array([prompt.encode()], dtype=object), "BYTES"),
            ("max_tokens", np.array([max_tokens], dtype=np.int32), "INT32"),
            ("stream", np.array([True]), "BOOL"),
            ("sampling_parameters", np.array([json.dumps({"ignore_eos": True}).encode()], dtype=object), "BYTES"),
            ("return_finish_reason", np.array([True]), "BOOL"),
        ):
            tensor = grpcclient.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            self.inputs.append(tensor)
        self.pieces: list[str] = []
        self.finish_reason: str | None = None
        self.errors: list[str] = []
        self.done = threading.Event()
        self._answers: queue.Queue = queue.Queue()
        self.start()

    def run(self) -> None:
        self.client.start_stream(
            callback=lambda result, error: self._answers.put((result, error)), headers=self.headers or None
        )
        try:
            try:
                self.client.async_stream_infer(MODEL, self.inputs, enable_empty_final_response=True)
            except Exception:  # noqa: BLE001 - the stream already failed: its status comes through the callback
                pass
            while True:
                result, error = self._answers.get(timeout=300)
                if error is not None:
                    self.errors.append(str(error))
                    self.status = str(error.status() or "")
                    return
                response = result.get_response()
                text = result.as_numpy("text_output")
                if text is not None:
                    self.pieces += [t.decode() for t in text.reshape(-1)]
                reason = result.as_numpy("finish_reason")
                if reason is not None:
                    self.finish_reason = reason.reshape(-1)[0].decode()
                final = response.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()
            self.client.stop_stream()
            self.client.close()


def _auth(api_key: str | None) -> dict[str, str]:
    if not api_key:
        return {}
    import base64

    return {"Authorization": "Basic " + base64.b64encode(api_key.encode()).decode()}


def _post(url: str, body: dict, api_key: str | None, timeout: float = 300) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/json", **_auth(api_key)}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _pending(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = re.findall(rf'^nv_inference_pending_request_count\{{[^}}]*model="{MODEL}"[^}}]*\}} (\S+)$', text, re.M)
    return int(sum(float(v) for v in found))


@pytest.mark.parametrize(
    "api_key",
    [
        pytest.param(None, id="triton-direct"),
        pytest.param(
            "tester:drain-test-key-0123456789",
            id="nginx-front",
            marks=pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (apt-get install nginx)"),
        ),
    ],
)
def test_sigterm_drains_streams_in_flight_and_refuses_new_requests(api_key):
    key_args = ["--api-key", api_key] if api_key else []
    proc = subprocess.Popen(
        serve_cmd(*ANY_FREE_PORTS, "--quiet", "--grace-period", str(GRACE_S), "--stop-timeout", "120", *key_args),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Lines(proc, "serve")
    try:
        out.wait_for("press Ctrl-C to stop", timeout=300)
        url = {k: out.wait_for(f"{k}:", timeout=5).split(f"{k}:", 1)[1].strip() for k in ("HTTP", "gRPC", "OpenAI")}
        metrics_url = out.wait_for("metrics:", timeout=5).split("metrics:", 1)[1].strip()

        # in flight when the signal comes: one HTTP stream generating, one gRPC stream queued behind it
        generating = HttpStream(url["HTTP"], STREAM_TOKENS, api_key)
        assert generating.first.wait(timeout=180), f"no token streamed: {generating.errors}\n{out.text()}"
        queued = GrpcStream(url["gRPC"], "Count slowly from one to one hundred.", QUEUED_TOKENS, api_key)
        deadline = time.monotonic() + 30
        while _pending(metrics_url) < 1:
            assert time.monotonic() < deadline, "the gRPC request never queued behind the HTTP stream"
            time.sleep(0.05)
        assert generating.finish_reason is None, "the HTTP stream ended before the signal: make it longer"

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out.wait_for("stopping on SIGTERM: draining: new requests are refused", timeout=30)

        # after the signal: refused, retryable, nothing generated
        openai_status, openai_headers, openai_body = _post(
            f"{url['OpenAI']}/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 4}, api_key, timeout=30
        )
        late_grpc = GrpcStream(url["gRPC"], "Hello", 4, api_key, new_connection=True)
        http_status, http_headers, http_body = _post(
            f"{url['HTTP']}/v2/models/{MODEL}/generate", {"text_input": "Hello", "max_tokens": 4}, api_key
        )
        late_grpc.join(timeout=300)

        generating.join(timeout=300)
        queued.join(timeout=300)
        proc.wait(timeout=300)
        stopped_in = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.text()

    # the streams in flight ran to their end
    assert generating.errors == [] and generating.finish_reason == "length", (generating.errors, output)
    assert generating.tokens == STREAM_TOKENS, (generating.tokens, output)
    assert queued.errors == [] and queued.finish_reason == "length", (queued.errors, output)

    # the new requests were refused with a retryable answer
    assert openai_status == 503 and openai_headers.get("Retry-After") == "1", (openai_status, openai_body)
    assert "draining" in json.loads(openai_body)["error"]["message"]
    assert "draining" in json.loads(http_body)["error"], http_body
    assert late_grpc.pieces == [] and late_grpc.errors, late_grpc.errors
    if api_key:  # NGF's answer for a backend without endpoints: retryable statuses
        assert http_status == 503 and http_headers.get("Retry-After") == "1", (http_status, http_body)
        assert late_grpc.status == "StatusCode.UNAVAILABLE", (late_grpc.status, late_grpc.errors)
    else:  # the model's UNAVAILABLE refusal, as Triton 2.51 reports it
        assert http_status == 400, (http_status, http_body)
        assert any("draining" in e for e in late_grpc.errors), late_grpc.errors

    # then Triton stopped in order, nothing cancelled, well inside the grace period
    assert proc.returncode == 143, output
    assert "requests in flight finished" in output, output
    assert "cancelling" not in output and "were cancelled" not in output, output
    assert stopped_in < GRACE_S / 2, (stopped_in, output)
