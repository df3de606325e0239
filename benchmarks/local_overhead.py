#!/usr/bin/env python3
"""What does Triton cost? The local model through a real Triton server vs. called in-process.

One run prints, for the same prompts and the same generation settings (greedy, a fixed number
of output tokens, chat template on):
  * time to first token (TTFT) and output tokens/s per request, median over all requests:
    in-process (the very `llm_engine` code the Triton model runs), through Triton over gRPC
    streaming, and through Triton over HTTP /generate_stream; and the relative overhead;
  * the warm model load time: in-process (GGUF -> ready llama.cpp context) and the Triton
    server from process start to every model READY, both with caches warm (second start).

Requests alternate between the three paths (order rotated per prompt) so that a busy machine
affects them alike. Targets from the issue: overhead <= 10 %, warm load < 10 s.

    .venv/bin/python benchmarks/local_overhead.py [--rounds 3] [--max-tokens 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
ENGINE_DIR = REPO_ROOT / "model_repository" / "local" / "smollm2" / "1"
sys.path.insert(0, str(ENGINE_DIR))

from llm_engine import GenerationRequest, LlamaEngine  # noqa: E402

from tritonllm.client import read_prompts  # noqa: E402
from tritonllm.serve import DEFAULT_MODEL_REPOSITORY, TritonServer  # noqa: E402

MODEL = "smollm2"
TARGET_OVERHEAD = 0.10
TARGET_WARM_LOAD_S = 10.0


class Sample:
    def __init__(self, ttft: float, total: float, tokens: int, last: float) -> None:
        self.ttft, self.total, self.tokens, self.last = ttft, total, tokens, last
        self.round = -1

    @property
    def decode_tps(self) -> float:
        """Output tokens/s after the first token (the streaming rate a user sees)."""
        return (self.tokens - 1) / (self.last - self.ttft) if self.last > self.ttft else float("nan")

    @property
    def e2e_tps(self) -> float:
        return self.tokens / self.total


def streamed_sample(started: float, first: float | None, last: float | None, total: float, tokens: int) -> Sample:
    """A Sample from the times (perf_counter) a stream started and sent its first and last text, and its length."""
    if first is None or last is None:
        raise RuntimeError(f"the stream ended after {total:.2f} s without any output text")
    return Sample(first - started, total, tokens, last - started)


def sampling(max_tokens: int) -> dict:
    return {
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "top_k": 0,
        "top_p": 1.0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
    }


# --------------------------------------------------------------------------- the three paths


def run_inprocess(engine: LlamaEngine, prompt: str, max_tokens: int) -> Sample:
    s = sampling(max_tokens)
    req = GenerationRequest(
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        repetition_penalty=1.0,
        ignore_eos=True,
        stream=True,
    )
    assert s["max_tokens"] == req.max_tokens
    started = time.perf_counter()
    first: float | None = None
    last: float | None = None
    tokens = 0
    for chunk in engine.generate(req):
        now = time.perf_counter()
        tokens += chunk.num_tokens
        if chunk.text:
            first = first or now
            last = now
    return streamed_sample(started, first, last, time.perf_counter() - started, tokens)


def run_grpc(client, prompt: str, max_tokens: int) -> Sample:
    import numpy as np
    import tritonclient.grpc as grpcclient

    def tensor(name, value, dtype):
        array = np.array([value], dtype=object if dtype == "BYTES" else None)
        t = grpcclient.InferInput(name, [1], dtype)
        t.set_data_from_numpy(array)
        return t

    inputs = [
        tensor("text_input", prompt.encode(), "BYTES"),
        tensor("stream", True, "BOOL"),
        tensor("sampling_parameters", json.dumps(sampling(max_tokens)).encode(), "BYTES"),
        tensor("exclude_input_in_output", True, "BOOL"),
        tensor("return_num_output_tokens", True, "BOOL"),
    ]
    events: queue.Queue = client._bench_queue
    started = time.perf_counter()
    client.async_stream_infer(MODEL, inputs, enable_empty_final_response=True)
    first: float | None = None
    last: float | None = None
    tokens = 0
    while True:
        result, error, at = events.get(timeout=300)
        if error is not None:
            raise RuntimeError(error)
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
        n = result.as_numpy("num_output_tokens")
        text = result.as_numpy("text_output")
        tokens += int(n.sum()) if n is not None else 0
        if text is not None and text.reshape(-1)[0]:
            first = first or at
            last = at
    return streamed_sample(started, first, last, time.perf_counter() - started, tokens)


def run_http(http_url: str, prompt: str, max_tokens: int) -> Sample:
    parts = urlsplit(http_url)
    if parts.hostname is None:
        raise ValueError(f"no host in the server's HTTP URL {http_url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    body = json.dumps(
        {
            "text_input": prompt,
            "stream": True,
            "exclude_input_in_output": True,
            "return_num_output_tokens": True,
            "sampling_parameters": json.dumps(sampling(max_tokens)),
        }
    )
    started = time.perf_counter()
    conn.request("POST", f"/v2/models/{MODEL}/generate_stream", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    first: float | None = None
    last: float | None = None
    tokens = 0
    while True:
        line = resp.readline()
        if not line:
            break
        if not line.startswith(b"data:"):
            continue
        at = time.perf_counter()
        event = json.loads(line[5:])
        if "error" in event:
            raise RuntimeError(event["error"])
        tokens += int(event.get("num_output_tokens", 0))
        if event.get("text_output"):
            first = first or at
            last = at
    total = time.perf_counter() - started
    conn.close()
    return streamed_sample(started, first, last, total, tokens)


# --------------------------------------------------------------------------- helpers


def median(values) -> float:
    return statistics.median(values)


def overhead(base: float, other: float, higher_is_worse: bool = True) -> float:
    return (other - base) / base if higher_is_worse else (base - other) / base


def measure_loads(repeats: int = 2) -> dict:
    """Warm load times: the second of `repeats` loads/starts (OS file cache and backend dir warm)."""
    inproc, triton_ready, triton_model = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        engine = LlamaEngine(warmup=False)
        inproc.append(time.perf_counter() - started)
        del engine
    for _ in range(repeats):
        server = TritonServer(DEFAULT_MODEL_REPOSITORY, http_port=0, grpc_port=0, metrics_port=0)
        server.start()
        triton_ready.append(server.startup_seconds)
        line = next((ln for ln in server.logs().splitlines() if "] loaded " in ln and MODEL in ln), "")
        triton_model.append(float(line.split(" in ")[1].split("s")[0]) if " in " in line else float("nan"))
        server.stop()
    return {"inprocess_load_s": inproc, "triton_ready_s": triton_ready, "triton_model_load_s": triton_model}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--prompts", default=str(REPO_ROOT / "prompts.txt"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=6, help="passes over the prompts file (gRPC in even rounds, HTTP in odd ones)"
    )
    parser.add_argument("--json", help="also write the raw samples and medians here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    prompts = read_prompts(args.prompts)

    print("warm load times (2 loads each, the second counts) ...", flush=True)
    loads = measure_loads()

    import tritonclient.grpc as grpcclient

    samples: dict[str, list[Sample]] = {"in-process": [], "triton-grpc": [], "triton-http": []}
    # (in-process, triton) samples of the same prompt, run back to back: they share the machine's load
    pairs: dict[str, list[tuple[Sample, Sample]]] = {"triton-grpc": [], "triton-http": []}
    with TritonServer(DEFAULT_MODEL_REPOSITORY, http_port=0, grpc_port=0, metrics_port=0) as server:
        engine = LlamaEngine()  # same defaults as the served model: n_ctx 4096, one thread per core
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client._bench_queue = queue.Queue()
        client.start_stream(
            callback=lambda result, error: client._bench_queue.put((result, error, time.perf_counter()))
        )
        paths = {
            "in-process": lambda p: run_inprocess(engine, p, args.max_tokens),
            "triton-grpc": lambda p: run_grpc(client, p, args.max_tokens),
            "triton-http": lambda p: run_http(server.http_url, p, args.max_tokens),
        }
        for name in paths:  # warm every path once (first-request costs are not steady state)
            paths[name](prompts[-1])
        # llama.cpp reuses the KV cache of the previous request's common prefix. The in-process
        # engine and Triton's engine must see the same sequence of prompts, so each round pairs
        # the in-process path with ONE Triton path (gRPC in even rounds, HTTP in odd ones), and
        # the pair's order alternates from prompt to prompt.
        print(
            f"{args.rounds} rounds x {len(prompts)} prompts, in-process vs one Triton path per round, "
            f"{args.max_tokens} output tokens each ...",
            flush=True,
        )
        for round_index in range(args.rounds):
            triton_path = "triton-grpc" if round_index % 2 == 0 else "triton-http"
            for i, prompt in enumerate(prompts):
                pair = ["in-process", triton_path] if (round_index + i) % 2 == 0 else [triton_path, "in-process"]
                got = {}
                for name in pair:
                    sample = paths[name](prompt)
                    if sample.tokens != args.max_tokens:
                        raise SystemExit(f"{name}: got {sample.tokens} tokens, expected {args.max_tokens}")
                    sample.round = round_index
                    samples[name].append(sample)
                    got[name] = sample
                pairs[triton_path].append((got["in-process"], got[triton_path]))
        client.stop_stream()
        client.close()

    def medians(ss: list[Sample]) -> dict:
        return {
            "ttft_ms": 1000 * median(s.ttft for s in ss),
            "decode_tok_s": median(s.decode_tps for s in ss),
            "e2e_tok_s": median(s.e2e_tps for s in ss),
            "n": len(ss),
        }

    med = {name: medians(ss) for name, ss in samples.items()}
    print()
    print(
        f"{'path':<13} {'TTFT p50':>10} {'overhead':>9} {'out tok/s p50':>14} {'overhead':>9} "
        f"{'e2e tok/s p50':>14} {'requests':>9}"
    )
    print(
        f"{'in-process':<13} {med['in-process']['ttft_ms']:>8.1f}ms {'':>9} {med['in-process']['decode_tok_s']:>14.1f} "
        f"{'':>9} {med['in-process']['e2e_tok_s']:>14.1f} {med['in-process']['n']:>9}"
    )
    results_ok = True
    for name in ("triton-grpc", "triton-http"):
        m = med[name]
        # overhead = median over back-to-back pairs of (Triton / in-process) - 1
        t_over = median(t.ttft / i.ttft for i, t in pairs[name]) - 1
        r_over = 1 - median(t.decode_tps / i.decode_tps for i, t in pairs[name])
        m.update(ttft_overhead=t_over, tok_s_overhead=r_over)
        ok = t_over <= TARGET_OVERHEAD and r_over <= TARGET_OVERHEAD
        results_ok &= ok
        print(
            f"{name:<13} {m['ttft_ms']:>8.1f}ms {t_over:>+8.1%} {m['decode_tok_s']:>14.1f} {r_over:>+8.1%} "
            f"{m['e2e_tok_s']:>14.1f} {m['n']:>9}  {'ok' if ok else 'OVER TARGET'}"
        )
    print(
        "(overhead: median over back-to-back request pairs of Triton vs in-process on the same prompt; "
        "positive = Triton slower)"
    )
    warm_ready = loads["triton_ready_s"][-1]
    print()
    print(
        f"warm load, in-process (GGUF -> llama.cpp context): {loads['inprocess_load_s'][-1]:.2f} s "
        f"(first {loads['inprocess_load_s'][0]:.2f} s)"
    )
    print(
        f"warm load, Triton start -> model READY:             {warm_ready:.2f} s "
        f"(first {loads['triton_ready_s'][0]:.2f} s; model initialize incl. warm-up "
        f"{loads['triton_model_load_s'][-1]:.2f} s)"
    )
    load_ok = warm_ready < TARGET_WARM_LOAD_S
    print(
        f"targets: Triton overhead <= {TARGET_OVERHEAD:.0%}: {'met' if results_ok else 'MISSED'}; "
        f"warm load < {TARGET_WARM_LOAD_S:.0f} s: {'met' if load_ok else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "max_tokens": args.max_tokens,
                    "rounds": args.rounds,
                    "prompts": prompts,
                    "medians": med,
                    "loads": loads,
                    "samples": {k: [vars(s) for s in v] for k, v in samples.items()},
                },
                indent=2,
            )
        )
    return 0 if (results_ok and load_ok) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
