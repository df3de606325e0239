"""Benchmark: ModelRepository's upload logic against `aws s3 sync`, on one local moto S3 server.

    make bench-s3                                   # 3 GiB, 3 repetitions
    .venv/bin/python benchmarks/s3_upload.py --aws .cache/venv-bench/bin/aws --size-gib 1 --repeat 3

It builds a synthetic model repository (a few large weight shards plus hundreds
of small config/tokenizer files), then, against the same moto server and in the
same run, times three scenarios for both tools, interleaved repetition by repetition:

  full upload    empty prefix -> everything. Ours: hash the tree with a cold hash
                 cache (what the Pulumi program does) + provider.create.
  unchanged      nothing changed. Ours: hash (warm cache) + provider.diff, which
                 says "no change", so the engine would never call update.
  one file       one shard rewritten in place (same size). Ours: hash + diff + update.

Before the timed runs, one untimed full upload warms moto's heap and the page
cache, and one untimed unchanged pass per tool warms the file-metadata cache;
full uploads alternate which tool goes first.

Bytes moved and request counts come from the server (request bodies of
PutObject/UploadPart), so both tools are measured the same way. It prints
medians and checks the targets: full upload no slower than `aws s3 sync`,
unchanged at least 10x faster, one-file change moving only that file's bytes.
Not a test: figures depend on the machine. moto keeps objects in temporary
files and assembles multipart uploads in memory, so it needs disk for two
copies of the tree and RAM for a few copies of the largest file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from components.providers import s3_sync
from components.providers.model_repository import ModelRepositoryProvider  # noqa: E402
from components.providers.s3_sync import MiB  # noqa: E402
from tests.providers.moto_counting_server import MotoServer, start_moto_server, stop_moto_server  # noqa: E402

GiB = 1024 * MiB
BUCKET = "bench-models"
OURS_PREFIX = "ours/llama"
AWS_PREFIX = "aws/llama"
UPLOAD_OPERATIONS = ("PutObject", "UploadPart")


# --- the synthetic repository -------------------------------------------------------------


def small_file_sizes(count: int) -> list[int]:
    """Configs, tokenizers, vocabularies: 200 B to 2 MiB, deterministic."""
    sizes = [200, 1_500, 12_000, 90_000, 600_000, 2 * MiB]
    return [sizes[i % len(sizes)] for i in range(count)]


def build_repository(root: Path, size_gib: float, large_files: int, small_files: int) -> dict[str, Any]:
    """Write the tree (reused when a previous run made the same one); returns its description."""
    spec = {"size_gib": size_gib, "large_files": large_files, "small_files": small_files, "version": 1}
    marker = root.with_name(root.name + ".spec.json")  # outside the tree: not uploaded
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return spec
    shutil.rmtree(root, ignore_errors=True)
    small_total = sum(small_file_sizes(small_files))
    shard = max(int((size_gib * GiB - small_total) / large_files), MiB)
    chunk = os.urandom(64 * MiB)
    for i in range(large_files):
        path = root / "llama" / "1" / f"model-{i + 1:05d}-of-{large_files:05d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            written = 0
            while written < shard:
                # A distinct header per 64 MiB block keeps every shard and block unique.
                block = (f"{i}:{written}".encode().ljust(64, b"\0") + chunk)[: min(64 * MiB, shard - written)]
                handle.write(block)
                written += len(block)
    for j, size in enumerate(small_file_sizes(small_files)):
        model = f"model-{j % 12:02d}"
        path = root / model / ("1" if j % 3 else "tokenizer") / f"file-{j:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    marker.write_text(json.dumps(spec))
    return spec


def tree_stats(root: Path) -> tuple[int, int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    large = sum(1 for p in files if p.stat().st_size >= 64 * MiB)
    return len(files), large, sum(p.stat().st_size for p in files)


def rewrite_in_place(path: Path, seed: int) -> None:
    """Change 1 MiB in the middle of a shard; the size stays, the mtime moves forward."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(MiB - 16) + seed.to_bytes(16, "big"))
    os.utime(path)


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    bytes_uploaded: int
    requests: int
    operations: dict[str, int]
    client_cpu: float  # this process's threads, or the aws CLI child process
    server_cpu: float  # the moto server


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_and_children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)

    def add(self, scenario: str, tool: str, sample: Sample) -> None:
        self.samples.setdefault((scenario, tool), []).append(sample)

    def median(self, scenario: str, tool: str) -> float:
        return statistics.median(s.seconds for s in self.samples[(scenario, tool)])


def measure(server: MotoServer, action: Callable[[], Any]) -> tuple[Sample, Any]:
    server.reset()
    server_cpu, client_cpu = process_cpu_seconds(server.process.pid), own_and_children_cpu()
    started = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - started
    client_cpu = own_and_children_cpu() - client_cpu
    server_cpu = process_cpu_seconds(server.process.pid) - server_cpu
    requests = server.requests()
    operations: dict[str, int] = {}
    for r in requests:
        operations[r["operation"]] = operations.get(r["operation"], 0) + 1
    moved = sum(r["bytes"] for r in requests if r["operation"] in UPLOAD_OPERATIONS)
    return Sample(seconds, moved, len(requests), operations, client_cpu, server_cpu), value


# What `pulumi up` runs for ModelRepository: the program hashes the tree (ModelRepository's
# constructor), then the engine calls the provider: create, or diff and update only on a change.
RESOURCE_ID = f"{BUCKET}/{OURS_PREFIX}"


def program_inputs(props: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    return {**props, "content_hash": s3_sync.content_hash(props["source_dir"], cache_dir=cache_dir)}


def provider_outs(outs: dict[str, Any] | None) -> dict[str, Any]:
    """The outputs of a create or update (ModelRepositoryProvider always returns them)."""
    if outs is None:
        raise RuntimeError("ModelRepositoryProvider returned no outputs")
    return outs


def ours_full_upload(provider: ModelRepositoryProvider, props: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    return provider_outs(provider.create(program_inputs(props, cache_dir)).outs)


def ours_unchanged(
    provider: ModelRepositoryProvider, props: dict[str, Any], cache_dir: Path, outs: dict[str, Any]
) -> None:
    if provider.diff(RESOURCE_ID, outs, program_inputs(props, cache_dir)).changes:
        raise RuntimeError("diff reported a change on an unchanged tree")


def ours_update(
    provider: ModelRepositoryProvider, props: dict[str, Any], cache_dir: Path, outs: dict[str, Any]
) -> dict[str, Any]:
    news = program_inputs(props, cache_dir)
    if not provider.diff(RESOURCE_ID, outs, news).changes:
        raise RuntimeError("diff missed a changed file")
    return provider_outs(provider.update(RESOURCE_ID, outs, news).outs)


def aws_sync(aws: str, root: Path, server: MotoServer) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [aws, "s3", "sync", str(root), f"s3://{BUCKET}/{AWS_PREFIX}/", "--endpoint-url", server.url, "--no-progress"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"aws s3 sync failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def check_resources(root: Path, size_gib: float) -> None:
    free = shutil.disk_usage(root.parent if root.parent.exists() else REPO_ROOT).free
    need = int(size_gib * GiB * 3.5)  # the tree, moto's copies for both tools, slack
    if free < need:
        raise SystemExit(f"need about {need / GiB:.1f} GiB free disk, have {free / GiB:.1f} GiB; lower --size-gib")


# --- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    work = Path(args.workdir).absolute()
    root, cache_dir = work / "repo", work / "hash-cache"
    work.mkdir(parents=True, exist_ok=True)
    check_resources(root, args.size_gib)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(variable, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

    started = time.perf_counter()
    build_repository(root, args.size_gib, args.large_files, args.small_files)
    files, large, total = tree_stats(root)
    print(
        f"repository: {files} files ({large} shards >= 64 MiB), {total / GiB:.2f} GiB at {root} "
        f"(ready in {time.perf_counter() - started:.0f} s)"
    )
    overrides = {
        "multipart_chunksize": args.chunk_mib and args.chunk_mib * MiB,
        "multipart_threshold": args.threshold_mib and args.threshold_mib * MiB,
        "max_concurrency": args.concurrency,
    }
    settings = s3_sync.TransferSettings(**{k: v for k, v in overrides.items() if v})
    print(
        f"ModelRepository: multipart above {settings.multipart_threshold // MiB} MiB in "
        f"{settings.multipart_chunksize // MiB} MiB parts, {settings.max_concurrency} concurrent requests; "
        "aws s3 sync: its defaults (above 8 MiB in 8 MiB parts, 10 concurrent)"
    )

    server = start_moto_server()
    results = Results()
    provider = ModelRepositoryProvider(settings, str(cache_dir))
    location = s3_sync.S3Location(BUCKET, OURS_PREFIX, "us-east-1", server.url)
    client = s3_sync.s3_client(location)
    aws_location = s3_sync.S3Location(BUCKET, AWS_PREFIX, "us-east-1", server.url)
    props = {
        "bucket": BUCKET,
        "prefix": OURS_PREFIX,
        "source_dir": str(root),
        "region": "us-east-1",
        "endpoint_url": server.url,
    }
    try:
        client.create_bucket(Bucket=BUCKET)
        aws_version = partial(subprocess.run, [args.aws, "--version"], capture_output=True)
        startup = [measure(server, aws_version)[0].seconds for _ in range(3)]

        # Untimed warm-up: the first large upload into a fresh moto pays for its heap growth
        # (several GiB) and for reading the tree from disk; neither tool should get that bill.
        started = time.perf_counter()
        s3_sync.sync_tree(client, location, s3_sync.scan_tree(root), {})
        s3_sync.delete_prefix(client, location)
        print(f"  warm-up upload (untimed): {time.perf_counter() - started:.1f} s", flush=True)

        outs: dict[str, Any] = {}
        for rep in range(args.repeat):

            def ours() -> Sample:
                nonlocal outs
                s3_sync.delete_prefix(client, location)
                shutil.rmtree(cache_dir, ignore_errors=True)  # cold: the program hashes every byte
                sample, outs = measure(server, partial(ours_full_upload, provider, props, cache_dir))
                return sample

            def theirs() -> Sample:
                s3_sync.delete_prefix(client, aws_location)
                return measure(server, partial(aws_sync, args.aws, root, server))[0]

            # Alternate who goes first, so neither always runs right after the other's clean-up.
            if rep % 2 == 0:
                sample, aws_sample = ours(), theirs()
            else:
                aws_sample, sample = theirs(), ours()
            results.add("full upload", "ModelRepository", sample)
            results.add("full upload", "aws s3 sync", aws_sample)
            print(
                f"  full upload {rep + 1}/{args.repeat}: ModelRepository {sample.seconds:.2f} s, "
                f"aws s3 sync {aws_sample.seconds:.2f} s",
                flush=True,
            )

        # One untimed pass of each first: after moto's multi-GiB run the kernel may have
        # evicted the tree's inodes, and re-reading them (both tools stat every file) would
        # time the disk, not the tools.
        ours_unchanged(provider, props, cache_dir, outs)
        aws_sync(args.aws, root, server)
        for _ in range(args.repeat):
            sample, _ = measure(server, partial(ours_unchanged, provider, props, cache_dir, outs))
            results.add("unchanged", "ModelRepository", sample)
            sample, _ = measure(server, partial(aws_sync, args.aws, root, server))
            results.add("unchanged", "aws s3 sync", sample)

        shards = sorted((root / "llama" / "1").iterdir())
        changed_sizes = []
        for rep in range(args.repeat):
            shard = shards[rep % len(shards)]
            rewrite_in_place(shard, rep)
            changed_sizes.append(shard.stat().st_size)
            sample, outs = measure(server, partial(ours_update, provider, props, cache_dir, outs))
            results.add("one file changed", "ModelRepository", sample)
            sample, _ = measure(server, partial(aws_sync, args.aws, root, server))
            results.add("one file changed", "aws s3 sync", sample)
        peak_rss = server.peak_rss_bytes()
    finally:
        stop_moto_server(server)

    return report(results, startup, changed_sizes, total, peak_rss)


def report(results: Results, startup: list[float], changed_sizes: list[int], total: int, peak_rss: int) -> int:
    print()
    print(
        f"{'scenario':<18} {'tool':<16} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB uploaded':>13} "
        f"{'requests':>9} {'client cpu s':>13} {'server cpu s':>13}"
    )
    for (scenario, tool), samples in results.samples.items():
        seconds = [s.seconds for s in samples]
        moved = statistics.median(s.bytes_uploaded for s in samples) / MiB
        requests = statistics.median(s.requests for s in samples)
        client_cpu = statistics.median(s.client_cpu for s in samples)
        server_cpu = statistics.median(s.server_cpu for s in samples)
        print(
            f"{scenario:<18} {tool:<16} {statistics.median(seconds):>9.3f} {min(seconds):>7.3f} "
            f"{max(seconds):>7.3f} {moved:>13.1f} {requests:>9.0f} {client_cpu:>13.2f} {server_cpu:>13.2f}"
        )
    print(
        f"(aws CLI start-up alone, `aws --version`: median {statistics.median(startup):.3f} s; "
        f"moto server peak RSS {peak_rss / GiB:.2f} GiB)"
    )

    full = results.median("full upload", "aws s3 sync") / results.median("full upload", "ModelRepository")
    unchanged = results.median("unchanged", "aws s3 sync") / results.median("unchanged", "ModelRepository")
    ours_changed = results.samples[("one file changed", "ModelRepository")]
    unchanged_requests = max(s.requests for s in results.samples[("unchanged", "ModelRepository")])
    # Only the changed shard's bytes move (the manifest is in the state; no re-upload of anything else).
    exact = all(s.bytes_uploaded == size for s, size in zip(ours_changed, changed_sizes, strict=True))
    checks = [
        (f"full upload: ModelRepository {full:.2f}x the speed of aws s3 sync (target >= 1.0)", full >= 1.0),
        (f"unchanged: {unchanged:.0f}x faster, {unchanged_requests} S3 requests (target >= 10x)", unchanged >= 10),
        (
            f"one file changed: uploaded exactly the changed file's bytes each time ({changed_sizes[0] / MiB:.0f} MiB "
            f"of {total / MiB:.0f} MiB)",
            exact,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"[{'ok' if ok else 'MISSED'}] {text}")

    # On a shared machine wall time swings with other tenants' load; CPU seconds
    # (client + server) measure the work each tool makes the machine do.
    def cpu(tool: str) -> float:
        samples = results.samples[("full upload", tool)]
        return statistics.median(s.client_cpu + s.server_cpu for s in samples)

    print(
        f"full upload CPU (client + moto): ModelRepository {cpu('ModelRepository'):.1f} s, "
        f"aws s3 sync {cpu('aws s3 sync'):.1f} s ({cpu('aws s3 sync') / cpu('ModelRepository'):.2f}x)"
    )
    return 0 if all(ok for _, ok in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aws", default=str(REPO_ROOT / ".cache/venv-bench/bin/aws"), help="aws CLI (v1 from PyPI)")
    parser.add_argument("--size-gib", type=float, default=3.0, help="total size of the synthetic repository")
    parser.add_argument("--large-files", type=int, default=4, help="weight shards sharing most of the size")
    parser.add_argument("--small-files", type=int, default=300, help="small files (200 B to 2 MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per scenario (medians are printed)")
    parser.add_argument("--workdir", default=str(REPO_ROOT / ".cache/bench-s3"), help="where the tree and cache live")
    parser.add_argument("--chunk-mib", type=int, help="override ModelRepository's multipart part size")
    parser.add_argument("--threshold-mib", type=int, help="override ModelRepository's multipart threshold")
    parser.add_argument("--concurrency", type=int, help="override ModelRepository's request concurrency")
    args = parser.parse_args(argv)
    if not Path(args.aws).exists():
        parser.error(f"{args.aws} not found; `make bench-s3` installs awscli into .cache/venv-bench")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
