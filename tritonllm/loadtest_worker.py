"""The load generator `tritonllm loadtest` runs inside its Kubernetes Job (standard library only).

It runs next to `tritonllm/_llm_io.py` (the client's model I/O contract) in a plain Python
image: both files come from a ConfigMap. It reads the model's config from Triton, then walks a
load profile of closed-loop concurrency levels (steps or a ramp), each client streaming one
request at a time through `/v2/models/<model>/generate_stream`, and prints one JSON line per
finished request:

    {"event": "request", "step": 0, "concurrency": 4, "start": 12.5, "ttft": 0.21,
     "latency": 3.9, "responses": 64, "ok": true}

(`start` is seconds since the run began) plus `{"event": "step", ...}` lines when a level begins
and `{"event": "done"}` at the end. `tritonllm loadtest` reads these lines from the pod's log
(tritonllm.loadtest.parse_worker_log) and reports latency and throughput per level.

    python -m tritonllm.loadtest_worker --url http://triton.llama.svc:8000 --model llama \
        --levels 1,4,8 --level-seconds 120 --max-tokens 128 --prompts /etc/loadtest/prompts.txt
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request

from tritonllm._llm_io import ContractError, GenerationSettings, ModelInterface, generate_body, plan_inputs

DEFAULT_PROMPTS = ["Explain in detail how a transformer language model generates text, step by step."]


def emit(record: dict, lock: threading.Lock) -> None:
    with lock:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


def fetch_interface(url: str, model: str, timeout: float) -> ModelInterface:
    with urllib.request.urlopen(f"{url}/v2/models/{model}/config", timeout=timeout) as resp:
        return ModelInterface.from_config(json.loads(resp.read()))


def one_request(url: str, model: str, body: bytes, timeout: float) -> dict:
    """Stream one request (SSE); time to the first event, to the last, and the event count."""
    started = time.monotonic()
    ttft, responses, error = None, 0, None
    req = urllib.request.Request(
        f"{url}/v2/models/{model}/generate_stream", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    error = str(event["error"])
                    break
                responses += 1
                if ttft is None:
                    ttft = time.monotonic() - started
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "ttft": ttft,
        "latency": time.monotonic() - started,
        "responses": responses,
        "ok": error is None and responses > 0,
        **({"error": error[:200]} if error else {}),
    }


def run(args: argparse.Namespace) -> int:
    lock = threading.Lock()
    prompts = DEFAULT_PROMPTS
    if args.prompts:
        with open(args.prompts, encoding="utf-8") as fh:
            prompts = [line.strip() for line in fh if line.strip()] or DEFAULT_PROMPTS
    try:
        iface = fetch_interface(args.url, args.model, args.timeout)
        settings = GenerationSettings(max_tokens=args.max_tokens, ignore_eos=True)
        bodies = [json.dumps(generate_body(plan_inputs(iface, p, settings, stream=True))).encode() for p in prompts]
    except (urllib.error.URLError, OSError, ContractError, ValueError) as exc:
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"}, lock)
        return 2

    t0 = time.monotonic()
    levels = [int(v) for v in args.levels.split(",")]
    for step, concurrency in enumerate(levels):
        emit(
            {"event": "step", "step": step, "concurrency": concurrency, "start": round(time.monotonic() - t0, 3)}, lock
        )
        deadline = time.monotonic() + args.level_seconds

        def client(i: int, step: int = step, concurrency: int = concurrency, deadline: float = deadline) -> None:
            rng = random.Random(i * 7919 + step)
            while time.monotonic() < deadline:
                start = time.monotonic() - t0
                result = one_request(args.url, args.model, rng.choice(bodies), args.timeout)
                emit(
                    {
                        "event": "request",
                        "step": step,
                        "concurrency": concurrency,
                        "start": round(start, 3),
                        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()},
                    },
                    lock,
                )

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.level_seconds + args.timeout)
    emit({"event": "done", "elapsed": round(time.monotonic() - t0, 3)}, lock)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Triton HTTP base URL, e.g. http://triton.llama.svc:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--levels", required=True, help="comma-separated concurrency per step, e.g. 1,4,8")
    parser.add_argument("--level-seconds", type=float, required=True)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompts", default=None)
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, seconds")
    return parser


if __name__ == "__main__":
    sys.exit(run(build_parser().parse_args()))
