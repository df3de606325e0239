"""How the autoscaling metrics respond to load, measured on a real local Triton + Prometheus.

One run, three phases against the local CPU model (one model instance, so
requests queue in Triton as they do in front of a saturated replica):

1. light steady load: Poisson arrivals at `--utilization` of what one replica
   serves (measured first), for `--light-seconds`; reports how often each metric
   reads above its HPA target (an HPA would add replicas the load does not need);
2. idle until every metric is back under its target;
3. a load step to `--step-clients` closed-loop clients; reports how long after the
   step each metric first reads above its target.

Each metric is read the way the HPA gets it: the prometheus-adapter metricsQuery
(<<.LabelMatchers>>/<<.GroupBy>> substituted) evaluated every second over the
recorded series. Compared: every metric `components/metrics.py` allows for a
Python-backend model with its default target (the chosen default first), and the
seeds' rule `avg(rate(nv_inference_queue_duration_us[1m])/1000)` with the seeds'
target of 10.

    python benchmarks/hpa_metric_response.py            # or: make bench-hpa
    python benchmarks/hpa_metric_response.py --light-seconds 120 --step-clients 4

Prints figures; asserts nothing. Traffic goes to 127.0.0.1 only and every loop is
bounded in time and count.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components import metrics  # noqa: E402
from components.config import MonitoringConfig  # noqa: E402
from tests.e2e.prometheus_fixture import LocalPrometheus, ScrapeTarget  # noqa: E402
from tritonllm.serve import DEFAULT_MODEL_REPOSITORY, TritonServer  # noqa: E402

MODEL = "smollm2"
POD = "triton-local-0"
PROMPTS = [
    "What is the capital of France?", "Name three primary colors.", "Say hello in Spanish.",
    "What is two plus two?", "Name a planet.", "Give one synonym for quick.", "What color is the sky?",
    "Name a fruit that is yellow.",
]


@dataclass(frozen=True)
class Candidate:
    label: str
    query: str
    target: float
    unit: str


def candidates() -> list[Candidate]:
    chosen = metrics.hpa_metric_for("python", None)
    ordered = [chosen] + [m for m in metrics.HPA_METRICS.values() if "python" in m.backends and m is not chosen]
    out = [
        Candidate(f"{m.name}{' (default)' if m is chosen else ''}",
                  metrics.render_metrics_query(metrics.ADAPTER_METRICS_QUERY, m.record, MODEL, [POD]),
                  m.default_target, m.unit)
        for m in ordered
    ]
    out.append(Candidate(f"seeds' {metrics.SEED_METRIC_NAME}",
                         metrics.render_metrics_query(metrics.SEED_METRICS_QUERY, "nv_inference_queue_duration_us",
                                                      MODEL, [POD]),
                         metrics.SEED_TARGET, "ms/s"))
    return out


class Load:
    """Bounded load against the local server's HTTP generate endpoint."""

    def __init__(self, http_url: str, max_tokens: int, timeout: float = 300.0) -> None:
        self.url = f"{http_url}/v2/models/{MODEL}/generate"
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.latencies: list[float] = []
        self.errors = 0
        self.lock = threading.Lock()

    def request(self, rng: random.Random) -> None:
        body = json.dumps({"text_input": rng.choice(PROMPTS), "max_tokens": self.max_tokens,
                           "temperature": 0.0}).encode()
        started = time.perf_counter()
        try:
            req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
            with self.lock:
                self.latencies.append(time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - counted and printed
            with self.lock:
                self.errors += 1

    def poisson(self, rate: float, seconds: float, seed: int = 7) -> int:
        """Open-loop arrivals at `rate`/s for `seconds`; returns how many were sent."""
        rng = random.Random(seed)
        threads, deadline, sent = [], time.monotonic() + seconds, 0
        next_at = time.monotonic() + rng.expovariate(rate)
        while next_at < deadline and sent < 10_000:
            time.sleep(max(0.0, next_at - time.monotonic()))
            thread = threading.Thread(target=self.request, args=(random.Random(rng.random()),), daemon=True)
            thread.start()
            threads.append(thread)
            sent += 1
            next_at += rng.expovariate(rate)
        for thread in threads:
            thread.join(timeout=self.timeout)
        return sent

    def closed_loop(self, clients: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds

        def client(i: int) -> None:
            rng = random.Random(i)
            while time.monotonic() < deadline:
                self.request(rng)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + self.timeout)


def series(prom: LocalPrometheus, query: str, start: float, end: float) -> list[tuple[float, float]]:
    result = prom.query_range(query, start, end, 1)
    return result[0][1] if result else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrape-interval", default=MonitoringConfig().scrape_interval,
                        help="Prometheus scrape and rule interval (default: the stack default, %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--utilization", type=float, default=0.3, help="light load as a share of one replica")
    parser.add_argument("--light-seconds", type=float, default=180)
    parser.add_argument("--step-clients", type=int, default=4)
    parser.add_argument("--step-seconds", type=float, default=120)
    parser.add_argument("--recover-timeout", type=float, default=150)
    args = parser.parse_args(argv)

    cands = candidates()
    print("metrics compared (as the HPA reads them through prometheus-adapter):")
    for c in cands:
        print(f"  {c.label}: target {c.target:g} {c.unit}\n    {c.query}")

    with TritonServer(DEFAULT_MODEL_REPOSITORY, http_port=0, grpc_port=0, metrics_port=0, host="127.0.0.1") as server:
        load = Load(server.http_url, args.max_tokens)
        # one replica's service time, requests one at a time
        for _ in range(4):
            load.request(random.Random(0))
        service = statistics.median(load.latencies)
        capacity = 1 / service
        print(f"\nservice time of one request (max_tokens {args.max_tokens}): {service:.2f} s "
              f"-> one replica serves {capacity:.2f} req/s")
        address = server.metrics_url.split("//", 1)[1].split("/", 1)[0]
        target = ScrapeTarget(address, {"namespace": MODEL, "pod": POD})
        with LocalPrometheus([target], metrics.rule_groups(), scrape_interval=args.scrape_interval) as prom:
            warm = prom.started_at + 65
            print(f"waiting {max(0, warm - time.time()):.0f} s for a full rule window of samples ...")
            time.sleep(max(0.0, warm - time.time()))

            # -- phase 1: light steady load
            load.latencies.clear()
            rate = args.utilization * capacity
            t0 = time.time()
            sent = load.poisson(rate, args.light_seconds)
            t1 = time.time()
            light_latency = statistics.median(load.latencies) if load.latencies else float("nan")
            print(f"\nlight load: {sent} requests as Poisson arrivals at {rate:.2f} req/s "
                  f"({args.utilization:.0%} of one replica) for {t1 - t0:.0f} s; median latency {light_latency:.2f} s "
                  f"({light_latency / service:.2f}x service time), errors {load.errors}")
            # judge the steady part: skip the first window while the rates fill
            steady_from = t0 + 60
            above = {}
            for c in cands:
                points = [v for ts, v in series(prom, c.query, steady_from, t1)]
                above[c.label] = (sum(v > c.target for v in points) / len(points)) if points else float("nan")
                mean = statistics.fmean(points) if points else float("nan")
                print(f"  {c.label:48s} mean {mean:10.3f} {c.unit:11s} above target {above[c.label]:6.1%} "
                      f"of {len(points)} s")

            # -- phase 2: idle until all metrics are under their targets
            deadline = time.monotonic() + args.recover_timeout
            while time.monotonic() < deadline:
                now = time.time()
                values = [prom.query(c.query, at=now) for c in cands]
                if all((not v) or v[0][1] <= c.target for v, c in zip(values, cands)):
                    break
                time.sleep(2)
            print(f"\nidle, all metrics under target at {time.time() - t1:.0f} s after the light load")

            # -- phase 3: load step
            load.latencies.clear()
            step_at = time.time()
            load.closed_loop(args.step_clients, args.step_seconds)
            step_end = time.time()
            time.sleep(2 * 15)  # let the last scrapes and rule evaluations land
            print(f"load step: {args.step_clients} closed-loop clients for {step_end - step_at:.0f} s, "
                  f"{len(load.latencies)} requests, median latency {statistics.median(load.latencies):.2f} s, "
                  f"errors {load.errors}")
            for c in cands:
                points = series(prom, c.query, step_at, step_end)
                crossed = next((ts - step_at for ts, v in points if v > c.target), None)
                peak = max((v for _, v in points), default=float("nan"))
                when = f"{crossed:6.1f} s" if crossed is not None else "  never"
                print(f"  {c.label:48s} crosses target after {when}   peak {peak:10.3f} {c.unit}")
    print("\nnote: add up to one HPA sync period (15 s) and the adapter's cache to each crossing time.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
