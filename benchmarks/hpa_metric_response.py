"""How each backend's default autoscaling signal responds to load, against the seeds' metric.

TensorRT-LLM and vLLM need GPUs, so they cannot run here. Instead two simulated replicas (one
per backend) export on loopback the series their real backends export, moving the way the
pinned backends move them (components/catalog/serving_metrics.py cites the sources), and a real Prometheus
scrapes them with the project's recording rules, at the scrape interval you give. Each signal
is read as the HPA gets it: the prometheus-adapter metricsQuery over the recorded series,
sampled every second.

Simulated replica: continuous batching with `--batch` slots (TensorRT-LLM max_batch_size, vLLM
max_num_seqs), one decode step every `--step-ms` for every running request, `--tokens` output
tokens per request; requests beyond the batch wait. What each backend exports:

* TensorRT-LLM (streaming ensemble "llama"): Triton counters of the ensemble and tensorrt_llm
  at the final response, preprocessing at arrival, postprocessing once per token; Triton's queue
  time ~0.1 ms per request (the backend enqueues into its executor at once); the gauge
  nv_trt_llm_request_metrics{request_type="active"} = running requests, every iteration.
* vLLM (REPORT_CUSTOM_METRICS on): Triton counters at the hand-off (arrival), queue ~0.1 ms;
  vllm:time_to_first_token_seconds at each first token, vllm:time_per_output_token_seconds at
  every decode step of every running request, vllm:e2e_request_latency_seconds at completion.

Phases: light steady load (Poisson arrivals at `--utilization` of one replica's capacity): share
of time each signal reads above its target (an HPA would add replicas the load does not need);
then idle until every signal is under target; then a step to 2 x batch closed-loop clients: time
from the step until each signal first reads above its target. Compared per backend: the default
signal (target: the default, half the batch for TensorRT-LLM), the previous default (Triton
request durations for TensorRT-LLM, vLLM's e2e latency for vLLM; same target) and the seeds'
rule avg(rate(nv_inference_queue_duration_us[1m])/1000) with the seeds' target of 10.

    python benchmarks/hpa_metric_response.py             # or: make bench-hpa  (~5 min at 5 s scrapes)
    python benchmarks/hpa_metric_response.py --scrape-interval 15s --light-seconds 240 --step-seconds 180

Prints a table; asserts nothing. Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.observability.builders import metrics
from tests.e2e.prometheus_fixture import LocalPrometheus, ScrapeTarget  # noqa: E402

SERVED = "llama"
QUEUE_US = 100  # Triton queue time per request in front of an engine that takes requests at once


@dataclass
class Request:
    arrived: float
    tokens_left: int
    first_token_at: float | None = None
    last_token_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Replica:
    """One simulated Triton pod: continuous batching, counters and gauges as `backend` exports them."""

    def __init__(self, backend: str, batch: int, tokens: int, step_s: float) -> None:
        self.backend, self.batch, self.tokens, self.step_s = backend, batch, tokens, step_s
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []
        self.c: dict[str, float] = collections.defaultdict(float)  # exported series text -> value
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._set_gauges()

    def _inc(self, name: str, model: str, value: float = 1.0) -> None:
        self.c[f'{name}{{model="{model}",version="1"}}'] += value

    def _set_gauges(self) -> None:
        if self.backend == "trtllm":
            for kind, value in (
                ("active", len(self.running)),
                ("scheduled", len(self.running)),
                ("waiting", 0),
                ("max", self.batch),
            ):
                self.c[f'nv_trt_llm_request_metrics{{model="tensorrt_llm",request_type="{kind}",version="1"}}'] = value

    def submit(self) -> Request:
        now = time.monotonic()
        req = Request(now, self.tokens)
        with self.lock:
            self.waiting.append(req)
            if self.backend == "trtllm":
                self._inc("nv_inference_request_success", "preprocessing")
                for model in ("preprocessing", "tensorrt_llm", SERVED):
                    self._inc("nv_inference_queue_duration_us", model, QUEUE_US)
            else:  # the vLLM backend's execute() returns at the hand-off: Triton counts it now
                for name, value in (
                    ("nv_inference_request_success", 1),
                    ("nv_inference_queue_duration_us", QUEUE_US),
                    ("nv_inference_request_duration_us", 2 * QUEUE_US),
                ):
                    self._inc(name, SERVED, value)
        return req

    def run(self) -> None:
        while not self.stop.is_set():
            time.sleep(self.step_s)
            now = time.monotonic()
            with self.lock:
                while self.waiting and len(self.running) < self.batch:
                    self.running.append(self.waiting.popleft())
                finished = []
                for req in self.running:
                    if req.first_token_at is None or req.last_token_at is None:  # prefill: the first token this step
                        req.first_token_at = req.last_token_at = now
                        if self.backend == "vllm":
                            self._inc("vllm:time_to_first_token_seconds_sum", SERVED, now - req.arrived)
                            self._inc("vllm:time_to_first_token_seconds_count", SERVED)
                    else:
                        if self.backend == "vllm":
                            self._inc("vllm:time_per_output_token_seconds_sum", SERVED, now - req.last_token_at)
                            self._inc("vllm:time_per_output_token_seconds_count", SERVED)
                        req.last_token_at = now
                    req.tokens_left -= 1
                    if self.backend == "trtllm":  # one postprocessing request per streamed response
                        self._inc("nv_inference_request_success", "postprocessing")
                        self._inc("nv_inference_queue_duration_us", "postprocessing", 5)
                    if req.tokens_left == 0:
                        finished.append(req)
                for req in finished:
                    self.running.remove(req)
                    e2e = now - req.arrived
                    if self.backend == "trtllm":  # statistics reported at the final response
                        for model in ("tensorrt_llm", SERVED):
                            self._inc("nv_inference_request_success", model)
                            self._inc("nv_inference_request_duration_us", model, e2e * 1e6)
                    else:
                        self._inc("vllm:e2e_request_latency_seconds_sum", SERVED, e2e)
                        self._inc("vllm:e2e_request_latency_seconds_count", SERVED)
                    req.done.set()
                self._set_gauges()

    def exposition(self) -> bytes:
        with self.lock:
            return "".join(f"{k} {v!r}\n" for k, v in sorted(self.c.items())).encode()

    @property
    def capacity(self) -> float:
        """Requests per second one replica completes with a full batch."""
        return self.batch / ((self.tokens + 1) * self.step_s)


def serve(replica: Replica) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = replica.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class Signal:
    backend: str
    label: str
    query: str
    target: float


def signals(batch: dict[str, int], window: str) -> list[Signal]:
    out: list[Signal] = []
    for backend in ("trtllm", "vllm"):
        default = metrics.hpa_metric_for(backend, None)
        target = batch[backend] / 2 if backend == "trtllm" else default.default_target
        if target is None:
            raise ValueError(f"{default.name}, the {backend} default, has no default target")
        q = metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, default.record, backend, [f"{backend}-0"])
        out.append(Signal(backend, f"{default.name} (default)", q, target))
        previous = (
            f'max by (pod) (sum by (pod, model) (rate(nv_inference_request_duration_us{{pod="trtllm-0"}}'
            f"[{window}])) / 1e6)"
            if backend == "trtllm"
            else f'sum by (pod) (rate(vllm:e2e_request_latency_seconds_sum{{pod="vllm-0"}}[{window}]))'
        )
        out.append(Signal(backend, "previous default (at completion)", previous, target))
        seed = metrics.render_metrics_query(
            metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us", backend, [f"{backend}-0"]
        )
        out.append(Signal(backend, f"seeds' {metrics.SEED_METRIC_NAME}", seed, metrics.SEED_TARGET))
    return out


def poisson(replica: Replica, rate: float, seconds: float, rng: random.Random) -> int:
    deadline, sent = time.monotonic() + seconds, 0
    next_at = time.monotonic() + rng.expovariate(rate)
    while next_at < deadline and sent < 100_000:
        time.sleep(max(0.0, next_at - time.monotonic()))
        replica.submit()
        sent += 1
        next_at += rng.expovariate(rate)
    return sent


def closed_loop(replica: Replica, clients: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            replica.submit().done.wait(timeout=seconds + 60)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:  # requests still running at the deadline finish on their own (daemon threads)
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 5)


def values(prom: LocalPrometheus, query: str, start: float, end: float) -> list[tuple[float, float]]:
    result = prom.query_range(query, start, end, 1)
    return result[0][1] if result else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scrape-interval",
        default="5s",
        help="scrape and rule interval (5s-60s; default 5s keeps the run short; the stack default is 15s)",
    )
    parser.add_argument("--trtllm-batch", type=int, default=64, help="TensorRT-LLM max_batch_size (target: half)")
    parser.add_argument("--vllm-batch", type=int, default=16, help="vLLM max_num_seqs (target: the default 8)")
    parser.add_argument(
        "--tokens",
        type=int,
        default=600,
        help="output tokens per request (30 s generations, longer than the 20 s window as real ones are than 1 m)",
    )
    parser.add_argument("--step-ms", type=float, default=50, help="decode step, ms")
    parser.add_argument("--utilization", type=float, default=0.3, help="light load as a share of one replica")
    parser.add_argument("--light-seconds", type=float, default=120)
    parser.add_argument("--step-seconds", type=float, default=60)
    args = parser.parse_args(argv)

    window = metrics.window_for(args.scrape_interval)
    scrape_s = metrics.duration_seconds(args.scrape_interval)
    batch = {"trtllm": args.trtllm_batch, "vllm": args.vllm_batch}
    replicas = {b: Replica(b, batch[b], args.tokens, args.step_ms / 1000) for b in batch}
    servers = {b: serve(r) for b, r in replicas.items()}
    for r in replicas.values():
        threading.Thread(target=r.run, daemon=True).start()
    sigs = signals(batch, window)
    print(
        f"simulated replicas: {args.tokens} tokens/request, {args.step_ms:g} ms/step "
        f"({(args.tokens + 1) * args.step_ms / 1000:.2f} s per request); scrape {args.scrape_interval}, "
        f"rule window {window}"
    )
    for s in sigs:
        print(f"  [{s.backend}] {s.label}: target {s.target:g}\n      {s.query}")

    targets = [
        ScrapeTarget(f"127.0.0.1:{srv.server_address[1]}", {"namespace": b, "pod": f"{b}-0"})
        for b, srv in servers.items()
    ]
    results: dict[str, dict[str, str]] = collections.defaultdict(dict)
    try:
        with LocalPrometheus(
            targets, metrics.rule_groups(args.scrape_interval), scrape_interval=args.scrape_interval
        ) as prom:
            time.sleep(max(0.0, prom.started_at + 5 * scrape_s + 2 - time.time()))  # a full window of samples

            # -- light steady load on both replicas at once
            t0 = time.time()
            threads = [
                threading.Thread(
                    target=poisson,
                    args=(r, args.utilization * r.capacity, args.light_seconds, random.Random(7)),
                    daemon=True,
                )
                for r in replicas.values()
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.light_seconds + 30)
            t1 = time.time()
            # skip the first requests' generation and one window while the rates fill
            steady_from = t0 + (args.tokens + 1) * args.step_ms / 1000 + metrics.duration_seconds(window)
            for s in sigs:
                points = [v for _, v in values(prom, s.query, steady_from, t1)]
                share = sum(v > s.target for v in points) / len(points) if points else float("nan")
                results[s.backend + s.label]["light"] = (
                    f"{share:6.1%} (mean {statistics.fmean(points):.2f})" if points else "  no data"
                )

            # -- idle until every signal is under its target
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = time.time()
                if all(not r or r[0][1] <= s.target for s, r in ((s, prom.query(s.query, at=now)) for s in sigs)):
                    break
                time.sleep(1)

            # -- load step: 2 x batch closed-loop clients on both replicas
            step_at = time.time()
            threads = [
                threading.Thread(target=closed_loop, args=(r, 2 * r.batch, args.step_seconds), daemon=True)
                for r in replicas.values()
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.step_seconds + 30)
            step_end = time.time()
            time.sleep(2 * scrape_s + 1)
            for s in sigs:
                series = values(prom, s.query, step_at, step_end)
                crossed = next((ts - step_at for ts, v in series if v > s.target), None)
                peak = max((v for _, v in series), default=float("nan"))
                results[s.backend + s.label]["step"] = f"{crossed:6.1f} s" if crossed is not None else "   never"
                results[s.backend + s.label]["peak"] = f"{peak:.2f}"
    finally:
        for r in replicas.values():
            r.stop.set()
        for srv in servers.values():
            srv.shutdown()

    print(
        f"\n| backend | signal | target | step to 2x batch: crosses target after | peak | light load "
        f"({args.utilization:.0%} of a replica): time above target |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for s in sigs:
        row = results[s.backend + s.label]
        print(
            f"| {s.backend} | {s.label} | {s.target:g} | {row.get('step', '-')} | {row.get('peak', '-')} | "
            f"{row.get('light', '-')} |"
        )
    print(
        f"\nAdd the adapter's relist/HPA sync delays (HPA sync {metrics.HPA_SYNC_SECONDS} s) to each crossing time. "
        f"A request takes {(args.tokens + 1) * args.step_ms / 1000:.1f} s here; signals that move at completion lag "
        "by one request duration, which is tens of seconds to minutes for real generations."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
