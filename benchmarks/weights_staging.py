"""Benchmark: a pod's weights staging (the stage-weights script, `aws s3 sync` from the model store's
mirror) against a plain download of the same files, on this machine (issue 20).

    make bench-weights                                        # 1 GiB snapshot, 3 repetitions
    .venv/bin/python benchmarks/weights_staging.py --aws .cache/venv-bench/bin/aws --size-mib 1024 --repeat 3

It makes one Hugging Face checkpoint of real files (config, tokenizer, safetensors shards with their index:
tests/fake_hf_hub.py make_snapshot), mirrors it into a local moto S3 server with the mirror Job's upload
script, and then times, interleaved repetition by repetition, into a fresh directory each time:

  staging (ours)     components/serving/builders/weights_mirror.py stage_weights_script: the marker check,
                     then `aws s3 sync` with 32 concurrent requests and 16 MB byte ranges
  staging, no ranges the same script with whole-object GETs (files in parallel, one request each): moto
                     copies the whole object for every ranged GET, real S3 does not
  S3 single stream   one GetObject per file, one after the other (a plain copy from the same mirror)
  hub download       huggingface_hub snapshot_download from a local stand-in for the Hub (what vLLM and
                     llmapi pods did at start before the mirror), when huggingface_hub is installed

and prints the median seconds and MiB/s of each. Not a test: the figures depend on the machine, and the
servers here are single Python processes on loopback (moto keeps objects in temporary files), so they
measure our path's overheads and its parallelism against a single stream, not S3's or the Hub's bandwidth
(published anchors are in docs/weights.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import boto3  # noqa: E402
import botocore.config  # noqa: E402

from components.serving.builders import weights_mirror as wm  # noqa: E402
from tests.fake_hf_hub import FakeHub, make_snapshot  # noqa: E402
from tests.providers.moto_counting_server import start_moto_server, stop_moto_server  # noqa: E402

MiB = 1 << 20
BUCKET = "bench-weights"
REPO = "bench/llama-like"
COMMIT = "c0ffee" + "0" * 34


def mirrored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in mirrored_files(root):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def run_script(script: str, aws: str, endpoint: str, tmp: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(aws).parent}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": endpoint,
        "TMPDIR": str(tmp),
    }
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"script failed ({result.returncode}): {result.stderr[-2000:]}")


def single_stream_get(endpoint: str, prefix: str, target: Path) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel == wm.COMPLETE_MARKER:
                continue
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"]
            with path.open("wb") as f:
                shutil.copyfileobj(body, f, length=8 * MiB)


def hub_download(target: Path, home: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=REPO,
        revision=COMMIT,
        local_dir=str(target),
        cache_dir=str(home),
        allow_patterns=list(wm.ALLOW_PATTERNS),
        ignore_patterns=list(wm.IGNORE_PATTERNS),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aws", default=str(REPO_ROOT / ".cache/venv-bench/bin/aws"), help="aws CLI (v1 from PyPI)")
    parser.add_argument("--size-mib", type=int, default=1024, help="total size of the safetensors shards")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per method (medians are printed)")
    args = parser.parse_args(argv)
    aws = args.aws if Path(args.aws).exists() else shutil.which("aws")
    if not aws:
        parser.error(f"{args.aws} not found; `make bench-weights` installs awscli into .cache/venv-bench")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)

    work = Path(tempfile.mkdtemp(prefix="bench-weights-"))
    server = start_moto_server()
    hub = None
    try:
        source = work / "hub-repo"
        make_snapshot(source, shard_bytes=args.size_mib * MiB // args.shards, shards=args.shards)
        expected = tree_digest_filtered(source)
        total = sum(p.stat().st_size for p in mirrored_files_filtered(source))
        mirror = wm.resolved_mirror(REPO, COMMIT)
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        # The mirror as the Job leaves it: the upload script on the files the mirror keeps.
        kept = work / "kept"
        for p in mirrored_files_filtered(source):
            dest = kept / p.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        run_script(wm.upload_script(BUCKET, mirror, str(kept)), aws, server.url, work)
        shutil.rmtree(kept)

        ours = wm.stage_weights_script(BUCKET, mirror, "/target")
        # The same script with whole-object GETs (no byte ranges): moto answers each ranged GET by copying the
        # whole object under a lock (moto 5.2.5 s3/models.py FakeKey.value, s3/responses.py
        # _handle_range_header), which real S3 does not; this row shows what that costs here.
        chunk = f"multipart_chunksize = {wm.S3_MULTIPART_CHUNKSIZE}"
        whole = ours.replace(chunk, chunk + "\n  multipart_threshold = 64GB")
        assert whole != ours
        methods: dict[str, Callable[[Path], None]] = {
            "staging (ours)": lambda t: run_script(ours.replace("/target", str(t)), aws, server.url, work),
            "staging, no ranges": lambda t: run_script(whole.replace("/target", str(t)), aws, server.url, work),
            "S3 single stream": lambda t: single_stream_get(server.url, mirror.prefix, t),
        }
        hub = FakeHub(source, REPO, COMMIT).start()
        # huggingface_hub reads these when it is first imported (constants.py).
        os.environ.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        try:
            import huggingface_hub  # noqa: F401

            methods["hub download"] = lambda t: hub_download(t, work / "hf-home")
        except ImportError:
            print("huggingface_hub not installed: no 'hub download' row (pip install -r requirements-test.txt)")

        print(f"snapshot: {len(mirrored_files_filtered(source))} files, {total / MiB:.0f} MiB; aws: {aws}")
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        for rep in range(args.repeat):
            order = list(methods) if rep % 2 == 0 else list(reversed(methods))
            for name in order:
                target = work / f"out-{rep}-{name.split()[0]}"
                shutil.rmtree(work / "hf-home", ignore_errors=True)
                started = time.perf_counter()
                methods[name](target)
                elapsed = time.perf_counter() - started
                if tree_digest(target) != expected:
                    raise RuntimeError(f"{name}: the copied files differ from the snapshot")
                seconds[name].append(elapsed)
                shutil.rmtree(target)
                print(f"  repetition {rep + 1}: {name:<18} {elapsed:7.2f} s", flush=True)
        print()
        print(f"{'method':<18} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB/s':>8}")
        for name, values in seconds.items():
            median = statistics.median(values)
            print(f"{name:<18} {median:>9.2f} {min(values):>7.2f} {max(values):>7.2f} {total / MiB / median:>8.0f}")
        ours_median = statistics.median(seconds["staging (ours)"])
        for name in seconds:
            if name != "staging (ours)":
                print(f"staging (ours) vs {name}: {statistics.median(seconds[name]) / ours_median:.2f}x the speed")
    finally:
        if hub is not None:
            hub.stop()
        stop_moto_server(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def mirrored_files_filtered(root: Path) -> list[Path]:
    """The files of `root` the mirror keeps (ALLOW_PATTERNS less IGNORE_PATTERNS, as huggingface_hub filters)."""
    from fnmatch import fnmatch

    out = []
    for p in mirrored_files(root):
        rel = p.relative_to(root).as_posix()
        if any(fnmatch(rel, a) for a in wm.ALLOW_PATTERNS) and not any(fnmatch(rel, i) for i in wm.IGNORE_PATTERNS):
            out.append(p)
    return out


def tree_digest_filtered(root: Path) -> str:
    h = hashlib.sha256()
    for p in mirrored_files_filtered(root):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
