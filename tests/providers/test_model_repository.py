"""ModelRepository's provider against a real moto S3 server.

Each test drives the provider the way the Pulumi engine does (check, diff,
create/update/delete/read with property dicts) and checks both what is in the
bucket and what the server received (its request counters), so "only that
file's bytes moved" and "no request at all" are measured, not assumed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import botocore.awsrequest
import pytest
from pulumi.output import UNKNOWN  # what the provider host passes for an unknown input
from pulumi.runtime import rpc

from components.providers import s3_sync
from components.providers.model_repository import ModelRepositoryProvider, repository_diff
from components.providers.s3_sync import MiB, TransferSettings

from .conftest import MotoServer

# Small parts so that a 12 MiB file is a 3-part upload (S3's minimum part is 5 MiB).
SETTINGS = TransferSettings(
    multipart_threshold=5 * MiB,
    multipart_chunksize=5 * MiB,
    max_concurrency=4,
    max_attempts=3,
    file_attempts=3,
    file_retry_base_seconds=0.01,
)
BIG_SIZE = 12 * MiB
NON_ASCII = "modèle-ü/配置 a+b %20.txt"
TRANSFER_OPERATIONS = {"PutObject", "UploadPart", "CopyObject", "UploadPartCopy", "CreateMultipartUpload"}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_tree(root: Path) -> Path:
    """A small Triton-like repository: configs, a multipart-sized file, an empty version dir, odd names."""
    write(root / "llama/config.pbtxt", b'name: "llama"\nbackend: "vllm"\n')
    write(root / "llama/1/model.json", b'{"model": "meta-llama/Llama-2-7b-chat-hf"}\n')
    write(root / "llama/1/weights.bin", os.urandom(BIG_SIZE))
    (root / "ensemble/1").mkdir(parents=True)  # Triton needs the (empty) version directory
    write(root / "ensemble/config.pbtxt", b'name: "ensemble"\nplatform: "ensemble"\n')
    write(root / "empty.txt", b"")
    write(root / NON_ASCII, "ünïcödé\n".encode())
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "repo")


@pytest.fixture
def provider(cache_dir: Path) -> ModelRepositoryProvider:
    return ModelRepositoryProvider(SETTINGS, str(cache_dir))


def inputs(bucket: str, tree: Path, server: MotoServer, cache_dir: Path, prefix: str = "repos/llama") -> dict[str, Any]:
    """What the program passes: the content hash is computed when the program runs."""
    return {
        "bucket": bucket,
        "prefix": prefix,
        "source_dir": str(tree),
        "content_hash": s3_sync.content_hash(tree, cache_dir=cache_dir),
        "region": "us-east-1",
        "endpoint_url": server.url,
    }


def objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def local_files(root: Path, prefix: str) -> dict[str, bytes]:
    """What the prefix should hold: every file, plus a marker for each empty directory."""
    expected = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file():
            expected[f"{prefix}/{rel}"] = path.read_bytes()
        elif path.is_dir() and not any(path.iterdir()):
            expected[f"{prefix}/{rel}/"] = b""
    return expected


def uploaded_bytes(server: MotoServer) -> int:
    return sum(r["bytes"] for r in server.requests() if r["operation"] in ("PutObject", "UploadPart"))


def transfers(server: MotoServer) -> list[dict[str, Any]]:
    return [r for r in server.requests() if r["operation"] in TRANSFER_OPERATIONS]


def create(provider: ModelRepositoryProvider, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    checked = provider.check({}, props)
    assert checked.failures == []
    result = provider.create(checked.inputs)
    assert result.outs is not None
    return result.id, result.outs


def deploy_again(
    provider: ModelRepositoryProvider, id_: str, outs: dict[str, Any], news: dict[str, Any]
) -> dict[str, Any]:
    """What `pulumi up` does for an existing resource: diff, then update only if it changed."""
    diff = provider.diff(id_, outs, news)
    assert diff.changes is True and not diff.replaces
    updated = provider.update(id_, outs, news).outs
    assert updated is not None
    return updated


# --- create ---------------------------------------------------------------------------


def test_first_upload_mirrors_the_tree(provider, tree, bucket, s3, moto_server, cache_dir):
    props = inputs(bucket, tree, moto_server, cache_dir)
    id_, outs = create(provider, props)

    assert id_ == f"{bucket}/repos/llama"
    assert objects(s3, bucket) == local_files(tree, "repos/llama")
    assert outs["s3_uri"] == f"s3://{bucket}/repos/llama/"
    assert outs["content_hash"] == props["content_hash"]
    assert outs["file_count"] == 6
    assert outs["total_bytes"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    manifest = s3_sync.manifest_from_json(outs["manifest"])
    assert all(entry.etag for entry in manifest.values())
    head = s3.head_object(Bucket=bucket, Key="repos/llama/llama/config.pbtxt")
    assert head["Metadata"]["sha256"] == hashlib.sha256((tree / "llama/config.pbtxt").read_bytes()).hexdigest()


def test_single_put_uploads_send_the_manifest_sha256_as_checksum(
    provider, tree, bucket, moto_server, cache_dir, monkeypatch
):
    # S3 rejects a PUT whose body does not match x-amz-checksum-sha256 (moto does not check it).
    sent: dict[str, dict[str, bytes]] = {}

    def record(request: Any, **_: Any) -> None:
        sent[request.url.split(f"/{bucket}/repos/llama/", 1)[1]] = dict(request.headers)

    hook_clients(monkeypatch, "before-send.s3.PutObject", record)
    create(provider, inputs(bucket, tree, moto_server, cache_dir))

    digest = hashlib.sha256((tree / "llama/config.pbtxt").read_bytes()).digest()
    headers = sent["llama/config.pbtxt"]
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(digest)
    assert "x-amz-checksum-crc32" not in headers  # no second checksum pass over the file


def test_file_changed_after_hashing_fails_the_upload(tree, bucket, s3, moto_server):
    location = s3_sync.S3Location(bucket, "repos/llama", "us-east-1", moto_server.url)
    scanned = s3_sync.scan_tree(tree)
    write(tree / "llama/config.pbtxt", b'name: "LLAMA"\nbackend: "vllm"\n')  # same size, other bytes

    with pytest.raises((s3_sync.SyncError, s3_sync.TreeError), match=r"llama/config.pbtxt"):
        s3_sync.sync_tree(s3_sync.s3_client(location, SETTINGS), location, scanned, {}, SETTINGS, sleep=lambda _: None)


def test_empty_directories_and_zero_byte_files(provider, tree, bucket, s3, moto_server, cache_dir):
    _, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))

    marker = s3.head_object(Bucket=bucket, Key="repos/llama/ensemble/1/")
    empty = s3.head_object(Bucket=bucket, Key="repos/llama/empty.txt")
    assert marker["ContentLength"] == 0 and empty["ContentLength"] == 0
    paths = [e["path"] for e in outs["manifest"]]
    assert "ensemble/1/" in paths and "empty.txt" in paths


def test_non_ascii_names_round_trip(provider, tree, bucket, s3, moto_server, cache_dir):
    create(provider, inputs(bucket, tree, moto_server, cache_dir))

    body = s3.get_object(Bucket=bucket, Key=f"repos/llama/{NON_ASCII}")["Body"].read()
    assert body == "ünïcödé\n".encode()
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="repos/llama/modèle-ü/")["Contents"]}
    assert listed == {f"repos/llama/{NON_ASCII}"}


def test_large_file_goes_multipart_in_parts(provider, tree, bucket, s3, moto_server, cache_dir):
    create(provider, inputs(bucket, tree, moto_server, cache_dir))

    ops = moto_server.operations()
    assert ops["CreateMultipartUpload"] == 1 and ops["CompleteMultipartUpload"] == 1
    assert ops["UploadPart"] == 3  # 12 MiB in 5 MiB parts
    etag = s3.head_object(Bucket=bucket, Key="repos/llama/llama/1/weights.bin")["ETag"].strip('"')
    assert etag.endswith("-3")
    part_bytes = sum(r["bytes"] for r in moto_server.requests() if r["operation"] == "UploadPart")
    assert part_bytes == BIG_SIZE


# --- re-runs ---------------------------------------------------------------------------


def test_unchanged_rerun_makes_no_s3_request(provider, tree, bucket, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    moto_server.reset()

    news = provider.check(outs, inputs(bucket, tree, moto_server, cache_dir)).inputs
    diff = provider.diff(id_, outs, news)

    assert diff.changes is False and not diff.replaces  # so the engine never calls update
    assert moto_server.requests() == []


def test_one_file_changed_moves_only_its_bytes(provider, tree, bucket, s3, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    moto_server.reset()

    model_json = write(tree / "llama/1/model.json", b'{"model": "mistralai/Mistral-7B-Instruct-v0.2"}\n')
    outs = deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))

    moved = transfers(moto_server)
    assert [(r["operation"], r["path"]) for r in moved] == [("PutObject", f"/{bucket}/repos/llama/llama/1/model.json")]
    assert uploaded_bytes(moto_server) == model_json.stat().st_size
    assert objects(s3, bucket) == local_files(tree, "repos/llama")
    assert outs["content_hash"] == s3_sync.content_hash(tree, cache_dir=cache_dir)


def test_changed_large_file_is_the_only_upload(provider, tree, bucket, s3, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    moto_server.reset()

    with open(tree / "llama/1/weights.bin", "r+b") as handle:  # same size, one byte differs
        handle.seek(BIG_SIZE // 2)
        flipped = bytes([handle.read(1)[0] ^ 0xFF])
        handle.seek(BIG_SIZE // 2)
        handle.write(flipped)
    deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))

    assert {r["path"] for r in transfers(moto_server)} == {f"/{bucket}/repos/llama/llama/1/weights.bin"}
    assert uploaded_bytes(moto_server) == BIG_SIZE
    assert objects(s3, bucket) == local_files(tree, "repos/llama")


def test_removed_file_is_deleted_and_nothing_uploaded(provider, tree, bucket, s3, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    moto_server.reset()

    (tree / "llama/1/model.json").unlink()
    outs = deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))

    assert transfers(moto_server) == []
    assert moto_server.operations()["DeleteObjects"] == 1
    assert objects(s3, bucket) == local_files(tree, "repos/llama")
    assert "llama/1/model.json" not in {e["path"] for e in outs["manifest"]}


def test_renamed_files_are_copied_server_side(provider, tree, bucket, s3, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    moto_server.reset()

    (tree / "llama").rename(tree / "llama-2-7b")  # a model renamed: every file in it moves
    deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))

    ops = moto_server.operations()
    assert uploaded_bytes(moto_server) == 0  # no file content left the machine
    assert ops["CopyObject"] == 2 and ops["UploadPartCopy"] == 3  # two small files, one 3-part file
    assert ops["HeadObject"] == 0  # size and ETag came from the manifest
    assert objects(s3, bucket) == local_files(tree, "repos/llama")


def test_empty_directory_marker_follows_the_directory(provider, tree, bucket, s3, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))

    write(tree / "ensemble/1/.keep", b"")  # no longer empty: the marker goes
    (tree / "llama/2").mkdir()  # a new empty directory: a marker comes
    deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))

    keys = set(objects(s3, bucket))
    assert "repos/llama/ensemble/1/" not in keys and "repos/llama/ensemble/1/.keep" in keys
    assert "repos/llama/llama/2/" in keys


def test_update_repairs_drift_that_read_reports(provider, tree, bucket, s3, moto_server, cache_dir):
    props = inputs(bucket, tree, moto_server, cache_dir)
    id_, outs = create(provider, props)
    s3.delete_object(Bucket=bucket, Key="repos/llama/llama/config.pbtxt")  # someone deleted a file
    s3.put_object(Bucket=bucket, Key="repos/llama/stray.txt", Body=b"left by an interrupted run")

    refreshed = provider.read(id_, outs).outs
    assert refreshed["content_hash"] != props["content_hash"]
    moto_server.reset()
    deploy_again(provider, id_, refreshed, props)

    assert [r["path"] for r in transfers(moto_server)] == [f"/{bucket}/repos/llama/llama/config.pbtxt"]
    assert objects(s3, bucket) == local_files(tree, "repos/llama")


def test_read_without_drift_keeps_the_state(provider, tree, bucket, moto_server, cache_dir):
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    refreshed = provider.read(id_, outs)
    assert refreshed.id == id_ and refreshed.outs == outs


# --- failures --------------------------------------------------------------------------


def slow_down_response(request: Any) -> botocore.awsrequest.AWSResponse:
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    class Raw:
        def stream(self, **_: Any):
            yield body

    return botocore.awsrequest.AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Raw())


class FailFirst:
    """botocore before-send hook: answer the first `times` requests whose URL contains all `url_parts`."""

    def __init__(self, *url_parts: str, times: int, response=slow_down_response):
        self.url_parts, self.left, self.response, self.fired = url_parts, times, response, 0

    def __call__(self, request: Any, **_: Any):
        if self.left > 0 and all(part in request.url for part in self.url_parts):
            self.left -= 1
            self.fired += 1
            return self.response(request)
        return None


def hook_clients(monkeypatch: pytest.MonkeyPatch, event: str, hook: Any) -> None:
    """Register a botocore event hook on every client the provider creates."""
    real = s3_sync.s3_client

    def client_with_hook(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register(event, hook)
        return client

    monkeypatch.setattr(s3_sync, "s3_client", client_with_hook)


def test_transient_failure_is_retried(provider, tree, bucket, s3, moto_server, cache_dir, monkeypatch):
    hook = FailFirst("/llama/config.pbtxt", times=1)
    hook_clients(monkeypatch, "before-send.s3.PutObject", hook)

    create(provider, inputs(bucket, tree, moto_server, cache_dir))

    assert hook.fired == 1
    assert objects(s3, bucket) == local_files(tree, "repos/llama")


def test_failures_beyond_botocore_retries_restart_the_file(tree, bucket, s3, moto_server, cache_dir):
    # botocore gives up after max_attempts (3) on a part; the whole-file retry starts the upload over.
    hook = FailFirst("/weights.bin?", "&partNumber=2", times=SETTINGS.max_attempts)
    location = s3_sync.S3Location(bucket, "repos/llama", "us-east-1", moto_server.url)
    client = s3_sync.s3_client(location, SETTINGS)
    client.meta.events.register("before-send.s3.UploadPart", hook)
    slept: list[float] = []

    result = s3_sync.sync_tree(client, location, s3_sync.scan_tree(tree), {}, SETTINGS, sleep=slept.append)

    assert hook.fired == SETTINGS.max_attempts and result.stats.retried_files == 1 and len(slept) == 1
    assert result.stats.uploaded_files == 7  # 6 files and the empty directory's marker
    assert objects(s3, bucket) == local_files(tree, "repos/llama")


def test_permanent_failure_is_not_retried(tree, bucket, moto_server, cache_dir):
    def access_denied(request: Any) -> botocore.awsrequest.AWSResponse:
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

        class Raw:
            def stream(self, **_: Any):
                yield body

        return botocore.awsrequest.AWSResponse(request.url, 403, {}, Raw())

    hook = FailFirst("/llama/config.pbtxt", times=100, response=access_denied)
    location = s3_sync.S3Location(bucket, "repos/llama", "us-east-1", moto_server.url)
    client = s3_sync.s3_client(location, SETTINGS)
    client.meta.events.register("before-send.s3.PutObject", hook)

    with pytest.raises(s3_sync.SyncError, match=r"upload of .*llama/config.pbtxt .*AccessDenied"):
        s3_sync.sync_tree(client, location, s3_sync.scan_tree(tree), {}, SETTINGS, sleep=lambda _: None)
    assert hook.fired == 1


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_only_its_own_prefix(provider, tree, bucket, s3, moto_server, cache_dir):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    id_, outs = create(provider, inputs(bucket, tree, moto_server, cache_dir))
    write(tree / "llama/config.pbtxt", b"v2")  # a second version under the prefix
    outs = deploy_again(provider, id_, outs, inputs(bucket, tree, moto_server, cache_dir))
    siblings = {"repos/llama-2/config.pbtxt": b"a", "repos/llamax": b"b", "repos/README": b"c", "other/llama/x": b"d"}
    for key, body in siblings.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    provider.delete(id_, outs)

    assert objects(s3, bucket) == siblings
    versions = s3.list_object_versions(Bucket=bucket, Prefix="repos/llama/")
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_delete_of_a_missing_bucket_succeeds(provider, moto_server):
    props = {
        "bucket": "no-such-bucket-here",
        "prefix": "repos/x",
        "region": "us-east-1",
        "endpoint_url": moto_server.url,
    }
    provider.delete("no-such-bucket-here/repos/x", props)


# --- diff and check ------------------------------------------------------------------------

OLD = {"bucket": "b", "prefix": "repos/llama", "content_hash": "h1", "region": "us-west-2", "endpoint_url": None}


def test_diff_unchanged():
    assert repository_diff(OLD, dict(OLD)).changes is False


def test_diff_ignores_source_dir_and_provider_changes():
    news = {**OLD, "source_dir": "/elsewhere", "__provider": "new-code"}
    assert repository_diff({**OLD, "source_dir": "/here", "__provider": "old"}, news).changes is False


@pytest.mark.parametrize(
    ("change", "replaces", "delete_first"),
    [
        ({"content_hash": UNKNOWN}, [], False),  # directory known only at deploy time
        ({"content_hash": "h2"}, [], False),
        ({"region": "eu-west-1"}, [], False),
        ({"bucket": UNKNOWN}, ["bucket"], True),  # bucket being replaced: may be the same name
        ({"bucket": "other"}, ["bucket"], False),
        ({"prefix": UNKNOWN}, ["prefix"], True),
        ({"prefix": "repos/llama/v2"}, ["prefix"], True),  # new prefix inside the old one
        ({"prefix": "repos"}, ["prefix"], True),  # old prefix inside the new one
        ({"prefix": "repos/llama-2"}, ["prefix"], False),  # a sibling: create first, then delete
        ({"bucket": UNKNOWN, "content_hash": UNKNOWN}, ["bucket"], True),
    ],
)
def test_diff_with_changed_or_unknown_inputs(change, replaces, delete_first):
    result = repository_diff(OLD, {**OLD, **change})
    assert result.changes is True
    assert result.replaces == replaces
    assert result.delete_before_replace is delete_first


def test_the_raw_wire_sentinel_counts_as_unknown_too():
    assert repository_diff(OLD, {**OLD, "bucket": rpc.UNKNOWN}).delete_before_replace is True


def test_provider_diff_and_check_accept_unknowns(provider):
    news = {"bucket": UNKNOWN, "prefix": UNKNOWN, "source_dir": "/x", "content_hash": UNKNOWN, "region": "r"}
    checked = provider.check(OLD, news)
    assert checked.failures == []
    assert provider.diff("b/repos/llama", OLD, checked.inputs).replaces == ["bucket", "prefix"]


@pytest.mark.parametrize("prefix", ["", "/", "a//b", "a/../b", "./a"])
def test_check_rejects_prefixes_that_could_delete_too_much(provider, prefix):
    news = {"bucket": "b", "prefix": prefix, "source_dir": "/x", "content_hash": "h"}
    assert [f.property for f in provider.check({}, news).failures] == ["prefix"]


def test_check_normalizes_the_prefix(provider):
    news = {"bucket": "b", "prefix": "/repos/llama/", "source_dir": "/x", "content_hash": "h"}
    assert provider.check({}, news).inputs["prefix"] == "repos/llama"
