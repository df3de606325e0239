"""What the vLLM backend's REPORT_CUSTOM_METRICS costs per observation, measured on a real Triton.

vllm_backend (`src/utils/metrics.py`, r25.12 and r26.01) reports vLLM's statistics through the Python
backend's custom-metrics API: every engine iteration it queues one `observe` per time-to-first-
token and per inter-token latency (one per decode step of every running request), and a logger
thread calls `pb_utils` `Metric.observe` for each, which is a round trip from the model's stub
process to Triton. That is the cost left on the pinned vLLM 0.13.0, where the backend's other
switch (`disable_frontend_multiprocessing`) has no effect (docs/autoscaling.md).

This loads a one-model repository into the local CPU Triton (the same Python backend stub the
vLLM backend runs in), has it call `observe` on a histogram N times in a loop exactly as the
backend's logger thread does, and prints the time per call and what it adds up to at a given
decode rate:

    python benchmarks/vllm_metrics_cost.py                  # or: make bench-vllm-metrics (~1 min)
    python benchmarks/vllm_metrics_cost.py --running 256 --step-ms 25

Loopback only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tritonllm.serve import TritonServer  # noqa: E402

CONFIG = textwrap.dedent("""\
    name: "observe"
    backend: "python"
    max_batch_size: 0
    input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
    output [ { name: "SECONDS" data_type: TYPE_FP64 dims: [ 1 ] } ]
    instance_group [ { count: 1 kind: KIND_CPU } ]
""")

MODEL = textwrap.dedent("""\
    import queue
    import threading
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            kind = getattr(pb_utils.MetricFamily, "HISTOGRAM", None)
            if kind is not None:
                family = pb_utils.MetricFamily(name="bench_latency_seconds", description="bench",
                                               kind=kind)
                # vllm_backend's time_per_output_token buckets
                self.metric = family.Metric(labels={"model": "observe", "version": "1"},
                                            buckets=[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                                     0.75, 1.0, 2.5])
                self.call = self.metric.observe
            else:  # older Triton: counters only
                family = pb_utils.MetricFamily(name="bench_latency_seconds_sum", description="bench",
                                               kind=pb_utils.MetricFamily.COUNTER)
                self.metric = family.Metric(labels={"model": "observe", "version": "1"})
                self.call = self.metric.increment
            self.family = family  # a Metric is only valid while its family lives
            self.kind = "histogram" if kind is not None else "counter"

        def execute(self, requests):
            responses = []
            for request in requests:
                n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
                # as VllmStatLogger: a queue drained by a logger thread calling observe()
                items = queue.Queue()
                for _ in range(n):
                    items.put_nowait(0.03)
                items.put_nowait(None)

                done = []

                errors = []

                def loop():
                    while True:
                        item = items.get()
                        if item is None:
                            return
                        try:
                            self.call(item)
                        except Exception as exc:  # noqa: BLE001 - reported below
                            errors.append(repr(exc))
                            return
                        done.append(1)

                started = time.perf_counter()
                thread = threading.Thread(target=loop)
                thread.start()
                thread.join()
                elapsed = time.perf_counter() - started
                if len(done) != n:
                    raise pb_utils.TritonModelException(
                        f"only {len(done)} of {n} observe() calls succeeded ({self.kind}): {errors[:1]}")
                out = pb_utils.Tensor("SECONDS", np.array([elapsed], dtype=np.float64))
                responses.append(pb_utils.InferenceResponse([out]))
            return responses
""")


def infer(url: str, n: int) -> float:
    body = json.dumps({"inputs": [{"name": "N", "datatype": "INT32", "shape": [1], "data": [n]}]}).encode()
    req = urllib.request.Request(
        f"{url}/v2/models/observe/infer", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return float(json.loads(resp.read())["outputs"][0]["data"][0])
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"observe model failed: {exc.read().decode(errors='replace')}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="observe() calls per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--running", type=int, default=256, help="running requests (vLLM max_num_seqs default)")
    parser.add_argument("--step-ms", type=float, default=25.0, help="decode step of the batch, ms")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tritonllm-observe-") as tmp:
        model = Path(tmp) / "observe"
        (model / "1").mkdir(parents=True)
        (model / "config.pbtxt").write_text(CONFIG)
        (model / "1" / "model.py").write_text(MODEL)
        with TritonServer(tmp, http_port=0, grpc_port=0, metrics_port=0, host="127.0.0.1") as server:
            infer(server.http_url, 100)  # warm up
            per_call = [infer(server.http_url, args.calls) / args.calls for _ in range(args.runs)]
            with urllib.request.urlopen(server.metrics_url, timeout=30) as resp:
                exported = [line for line in resp.read().decode().splitlines() if line.startswith("bench_latency")]
    median = statistics.median(per_call)
    per_second = args.running * 1000 / args.step_ms
    print(
        f"observe(): median {median * 1e6:.1f} us per call over {args.runs} x {args.calls} calls "
        f"(runs: {', '.join(f'{v * 1e6:.1f}' for v in per_call)} us); exported {len(exported)} series"
    )
    print(
        f"at {args.running} running requests and a {args.step_ms:g} ms decode step vLLM observes "
        f"{per_second:,.0f} inter-token latencies/s: {per_second * median:.1%} of one core in the stub "
        f"process, on the logger thread that shares the GIL with the thread sending responses"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
