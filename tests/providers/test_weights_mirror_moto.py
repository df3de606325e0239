"""The weights mirror's S3 path for real, against the moto server: a snapshot of real files (config,
tokenizer, safetensors shards) downloaded by the mirror Job's own script (model_repository/weights/
mirror_snapshot.py, huggingface_hub against a local stand-in for the Hub), uploaded by the Job's upload
script (`aws s3 sync`), found complete by the provider (no Job on the next run), and staged by the
serving pods' stage-weights script into a directory, byte for byte.

Needs the `aws` CLI (awscli from PyPI: `make bench-weights` installs it into .cache/venv-bench) and
huggingface_hub (requirements-test.txt).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.providers import weights_mirror as provider
from components.serving.builders import weights_mirror as wm
from tests.fake_hf_hub import FakeHub, make_snapshot
from tests.providers.conftest import REPO_ROOT, MotoServer

pytest.importorskip("huggingface_hub", reason="huggingface_hub (requirements-test.txt) runs the mirror's download")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/tiny-llama"
TOKEN = "hf_test_token_never_printed_0042"
MIRRORED = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
]


def aws_cli() -> str:
    for candidate in (REPO_ROOT / ".cache/venv-bench/bin/aws", shutil.which("aws")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.skip("no aws CLI (make bench-weights installs awscli into .cache/venv-bench)")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    make_snapshot(tmp_path / "hub-repo", shard_bytes=3 << 20)
    server = FakeHub(tmp_path / "hub-repo", REPO, COMMIT, token=TOKEN).start()
    yield server
    server.stop()


def run_sh(script: str, server: MotoServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    aws = aws_cli()
    env = {
        **os.environ,
        "PATH": f"{Path(aws).parent}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": server.url,
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)


def download(hub: FakeHub, tmp_path: Path, out: Path, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    if token is not None:
        (tmp_path / "token").write_text(token)
        env["HF_TOKEN_PATH"] = str(tmp_path / "token")  # as the Job mounts it: a file
    args = wm.download_args(wm.resolved_mirror(REPO, COMMIT), str(out))
    return subprocess.run(
        [sys.executable, str(wm.MIRROR_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_download_upload_skip_and_stage_for_real(
    hub: FakeHub, tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str
) -> None:
    mirror = wm.resolved_mirror(REPO, COMMIT)
    snapshot = tmp_path / "snapshot"

    # 1. The Job's download container: huggingface_hub against the stand-in hub, with the token as a file.
    done = download(hub, tmp_path, snapshot)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert all(sent for method, path, sent in hub.requests)  # every request carried the token
    assert (
        sorted(
            p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file() and ".cache" not in p.parts
        )
        == MIRRORED
    )

    # 2. The Job's upload container: aws s3 sync to moto, the marker holding the key last.
    up = run_sh(wm.upload_script(bucket, mirror, str(snapshot)), moto_server, tmp_path)
    assert up.returncode == 0, up.stderr
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=mirror.prefix)["Contents"]
    keys = sorted(o["Key"][len(mirror.prefix) :] for o in listed)
    assert keys == sorted([*MIRRORED, wm.COMPLETE_MARKER])  # no .cache/, no .bin, no original/
    marker = s3.get_object(Bucket=bucket, Key=mirror.prefix + wm.COMPLETE_MARKER)["Body"].read().decode()
    assert marker.strip() == mirror.key

    # 3. The provider on the next `pulumi up`: the marker holds the key, so no Job at all.
    def no_jobs() -> Any:
        raise AssertionError("a Job was started although S3 holds the snapshot")

    store = provider.S3MarkerStore("us-east-1", moto_server.url)
    props = {"bucket": bucket, "key": mirror.key, "prefix": mirror.prefix}
    assert provider.ensure_mirror(props, no_jobs, store) == provider.MirrorResult(copied=False, seconds=0.0)

    # 4. A serving pod's stage-weights container: the snapshot from moto into its directory, byte for byte.
    staged = tmp_path / "weights"
    stage = run_sh(wm.stage_weights_script(bucket, mirror, str(staged)), moto_server, tmp_path)
    assert stage.returncode == 0, stage.stderr
    assert "tritonllm: weights staged from" in stage.stdout
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == MIRRORED
    for name in MIRRORED:
        assert digest(staged / name) == digest(hub.root / name), name


def test_a_marker_of_another_key_means_copy_again_and_refuse_to_stage(
    hub: FakeHub, tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = wm.resolved_mirror(REPO, COMMIT)
    s3.put_object(Bucket=bucket, Key=mirror.prefix + wm.COMPLETE_MARKER, Body=b"0" * 64 + b"\n")
    store = provider.S3MarkerStore("us-east-1", moto_server.url)
    assert not provider.is_complete(store, bucket, mirror.prefix, mirror.key)
    # The stage script refuses a mirror that is not this key's (an interrupted or older copy).
    stage = run_sh(wm.stage_weights_script(bucket, mirror, str(tmp_path / "w")), moto_server, tmp_path)
    assert stage.returncode == 1
    assert "no complete mirror of acme/tiny-llama@" in stage.stderr
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_an_interrupted_upload_leaves_no_marker_of_another_key(
    tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str
) -> None:
    """Re-mirroring a commit (a new key: other patterns or script) rewrites its prefix in place: the old
    marker goes first, so readers of the old key never stage a half-rewritten copy. The sync is made to
    fail part-way (a FIFO among the files: the CLI skips it and exits 2, after uploading the rest)."""
    mirror = wm.resolved_mirror(REPO, COMMIT)
    s3.put_object(Bucket=bucket, Key=mirror.prefix + wm.COMPLETE_MARKER, Body=b"0" * 64 + b"\n")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    os.mkfifo(snapshot / "pipe")
    up = run_sh(wm.upload_script(bucket, mirror, str(snapshot)), moto_server, tmp_path)
    assert up.returncode != 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=mirror.prefix).get("Contents", [])}
    assert mirror.prefix + "config.json" in keys  # the sync ran
    assert mirror.prefix + wm.COMPLETE_MARKER not in keys


def test_gated_model_without_token_fails_without_printing_secrets(hub: FakeHub, tmp_path: Path) -> None:
    done = download(hub, tmp_path, tmp_path / "snapshot", token=None)
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr and "gated or private" in done.stderr
    wrong = download(hub, tmp_path, tmp_path / "snapshot2", token="hf_wrong_token_777")
    assert wrong.returncode == 1
    assert "hf_wrong_token_777" not in wrong.stdout + wrong.stderr


def test_upload_refuses_an_empty_download(tmp_path: Path, moto_server: MotoServer, s3: Any, bucket: str) -> None:
    mirror = wm.resolved_mirror(REPO, COMMIT)
    (tmp_path / "empty").mkdir()
    up = run_sh(wm.upload_script(bucket, mirror, str(tmp_path / "empty")), moto_server, tmp_path)
    assert up.returncode == 1
    assert "left no config.json" in up.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=mirror.prefix)  # and no marker
