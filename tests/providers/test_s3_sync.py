"""The local half of the sync: scanning, hashing, the hash cache, errors, and the pure planner."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.providers import s3_sync
from components.providers.s3_sync import EMPTY_SHA256, Entry, LiveObject, TreeError, plan_sync, scan_tree, tree_hash

from .conftest import REPO_ROOT


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- scanning -------------------------------------------------------------------------------


def test_manifest_lists_files_and_empty_directories(tmp_path):
    write(tmp_path / "m/config.pbtxt", b"abc")
    write(tmp_path / "zero", b"")
    (tmp_path / "m/1").mkdir()
    (tmp_path / "only-dirs/a").mkdir(parents=True)

    manifest = scan_tree(tmp_path).manifest

    assert manifest == {
        "m/1/": Entry("m/1/", 0, EMPTY_SHA256),
        "m/config.pbtxt": Entry("m/config.pbtxt", 3, sha(b"abc")),
        "only-dirs/a/": Entry("only-dirs/a/", 0, EMPTY_SHA256),  # its parent is implied by it
        "zero": Entry("zero", 0, EMPTY_SHA256),
    }


def test_symlinks_are_followed(tmp_path):
    blobs = write(tmp_path / "blobs/abc123", b"weights")
    (tmp_path / "repo/m").mkdir(parents=True)
    (tmp_path / "repo/m/model.bin").symlink_to(blobs)  # the Hugging Face cache layout
    (tmp_path / "repo/shared").symlink_to(tmp_path / "blobs", target_is_directory=True)

    manifest = scan_tree(tmp_path / "repo").manifest

    assert manifest["m/model.bin"].sha256 == sha(b"weights")
    assert manifest["shared/abc123"].size == 7


def test_tree_hash_depends_on_paths_and_content_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        write(root / "x/1", b"one")
        write(root / "y", b"two")
    os.utime(b / "y", (1, 1))
    assert scan_tree(a).content_hash == scan_tree(b).content_hash

    write(b / "y", b"TWO")
    assert scan_tree(a).content_hash != scan_tree(b).content_hash
    (b / "y").rename(b / "z")
    write(b / "z", b"two")
    assert scan_tree(a).content_hash != scan_tree(b).content_hash  # same bytes, other name


def test_manifest_survives_pulumi_state_round_trip():
    manifest = {"a": Entry("a", 5, sha(b"12345"), "etag-a"), "d/": Entry("d/", 0, EMPTY_SHA256, "e")}
    as_state = [{**e, "size": float(e["size"])} for e in s3_sync.manifest_to_json(manifest)]  # numbers are doubles
    restored = s3_sync.manifest_from_json(as_state)
    assert restored == manifest and tree_hash(restored) == tree_hash(manifest)


# --- clear errors ------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(TreeError, match=r"does not exist"):
        scan_tree(tmp_path / "nope")


def test_empty_directory_is_refused(tmp_path):
    with pytest.raises(TreeError, match=r"is empty"):
        scan_tree(tmp_path)


def test_file_instead_of_directory(tmp_path):
    with pytest.raises(TreeError, match=r"is not a directory"):
        scan_tree(write(tmp_path / "f", b"x"))


def test_symlink_loop_to_an_ancestor(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/up").symlink_to(tmp_path / "a", target_is_directory=True)
    with pytest.raises(TreeError, match=r"symlink loop: .*a/b/up leads back to its ancestor .*a"):
        scan_tree(tmp_path)


def test_self_referencing_symlink(tmp_path):
    (tmp_path / "self").symlink_to(tmp_path / "self")
    with pytest.raises(TreeError, match=r"symlink loop at .*self: following it never reaches a file"):
        scan_tree(tmp_path)


def test_broken_symlink(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(TreeError, match=r"broken symlink .*dangling -> .*gone"):
        scan_tree(tmp_path)


def test_special_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(TreeError, match=r"pipe is a FIFO"):
        scan_tree(tmp_path)


def test_name_that_is_not_utf8(tmp_path):
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9"), "wb"):
        pass
    with pytest.raises(TreeError, match=r"not valid UTF-8"):
        scan_tree(tmp_path)


def drop_file_permission_override() -> None:
    """In a child about to exec: give up CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that
    even root obeys file modes (the tests may run as root, which reads anything)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file(tmp_path):
    secret = write(tmp_path / "m/secret.bin", b"x")
    secret.chmod(0)
    code = "import sys; from components.providers.s3_sync import scan_tree; scan_tree(sys.argv[1])"

    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            preexec_fn=drop_file_permission_override if os.geteuid() == 0 else None,
        )
    except subprocess.SubprocessError as exc:  # a container without CAP_SETPCAP
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE here: {exc}")

    assert result.returncode != 0
    assert f"TreeError: cannot read {secret}: permission denied" in result.stderr


# --- the hash cache ---------------------------------------------------------------------------


@pytest.fixture
def no_racy_window(monkeypatch):
    # Files made by a test are seconds old at most; let the cache trust them.
    monkeypatch.setattr(s3_sync.HashCache, "RACY_SECONDS_FINE", 0.0)
    monkeypatch.setattr(s3_sync.HashCache, "RACY_SECONDS_COARSE", 0.0)


def test_unchanged_rescan_reads_no_file(tmp_path, no_racy_window, monkeypatch):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    write(root / "a", b"1")
    write(root / "b/c", b"2")
    first = scan_tree(root, cache_dir=cache)

    def no_reading(*args, **kwargs):
        raise AssertionError("a file was read although the cache knew it")

    monkeypatch.setattr(s3_sync, "hash_file", no_reading)
    assert scan_tree(root, cache_dir=cache).manifest == first.manifest


def test_unchanged_rescan_writes_no_cache_file(tmp_path, no_racy_window):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    write(root / "a", b"1")
    scan_tree(root, cache_dir=cache)
    [cache_file] = cache.iterdir()
    written = cache_file.stat().st_mtime_ns
    os.utime(cache_file, ns=(written - 10**9, written - 10**9))

    scan_tree(root, cache_dir=cache)
    assert cache_file.stat().st_mtime_ns == written - 10**9
    write(root / "b", b"2")
    scan_tree(root, cache_dir=cache)
    assert cache_file.stat().st_mtime_ns != written - 10**9


def test_cache_sees_a_rewrite_that_restores_mtime(tmp_path, no_racy_window):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    path = write(root / "weights", b"aaaa")
    scan_tree(root, cache_dir=cache)
    before = path.stat()

    write(path, b"bbbb")  # same size; mtime put back as it was, ctime cannot be
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert scan_tree(root, cache_dir=cache).manifest["weights"].sha256 == sha(b"bbbb")


def test_freshly_written_files_are_not_trusted_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(s3_sync.HashCache, "RACY_SECONDS_FINE", 60.0)  # "fresh" regardless of machine speed
    root, cache = tmp_path / "repo", tmp_path / "cache"
    write(root / "new", b"x")
    scan_tree(root, cache_dir=cache)  # "new" changed less than a tick before it was hashed: not cached
    reads = []
    real = s3_sync.hash_file
    monkeypatch.setattr(s3_sync, "hash_file", lambda *a, **k: reads.append(a[0]) or real(*a, **k))

    scan_tree(root, cache_dir=cache)
    assert reads == [root / "new"]


def fake_stat(ctime_ns: int) -> os.stat_result:
    # mode, ino, dev, nlink, uid, gid, size, 3 x seconds, 3 x float seconds, atime_ns, mtime_ns, ctime_ns
    return os.stat_result((0o100644, 7, 1, 1, 0, 0, 10, 0, 0, 0, 0.0, 0.0, 0.0, 0, ctime_ns, ctime_ns))


def test_racy_window_is_a_tick_or_two_seconds_on_whole_second_file_systems():
    second = 1_000_000_000
    hashed_at = 1_700_000_000 * second
    cache = s3_sync.HashCache(None)
    cache.remember("fine", fake_stat(hashed_at - second // 2), "a", hashed_at)  # sub-second ctime, 0.5 s old
    cache.remember("coarse", fake_stat(hashed_at - second), "b", hashed_at)  # whole-second ctime, 1 s old
    cache.remember("coarse-old", fake_stat(hashed_at - 3 * second), "c", hashed_at)
    assert sorted(cache.fresh) == ["coarse-old", "fine"]


def test_corrupt_cache_only_costs_rehashing(tmp_path, no_racy_window):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    write(root / "a", b"1")
    first = scan_tree(root, cache_dir=cache)
    for file in cache.iterdir():
        file.write_text("{not json")
    assert scan_tree(root, cache_dir=cache).manifest == first.manifest


# --- the planner ---------------------------------------------------------------------------------


def entry(path: str, data: bytes, etag: str | None = None) -> Entry:
    return Entry(path, len(data), sha(data), etag)


def live_of(*entries: Entry) -> dict[str, LiveObject]:
    return {e.path: LiveObject(e.size, e.etag or "") for e in entries}


def test_plan_first_upload_uploads_everything():
    new = {"a": entry("a", b"1"), "d/": entry("d/", b"")}
    plan = plan_sync(new, {}, {})
    assert [e.path for e in plan.uploads] == ["a", "d/"] and not plan.copies and not plan.deletes


def test_plan_trusts_only_objects_whose_etag_still_matches():
    old = {"a": entry("a", b"1", "e1"), "b": entry("b", b"2", "e2")}
    live = live_of(old["a"]) | {"b": LiveObject(1, "overwritten")}
    plan = plan_sync({"a": entry("a", b"1"), "b": entry("b", b"2")}, old, live)
    assert [e.path for e in plan.unchanged] == ["a"] and [e.path for e in plan.uploads] == ["b"]


def test_plan_deletes_strays_and_removed_files():
    old = {"a": entry("a", b"1", "e1"), "gone": entry("gone", b"2", "e2")}
    live = live_of(*old.values()) | {"stray": LiveObject(3, "e3")}
    plan = plan_sync({"a": entry("a", b"1")}, old, live)
    assert plan.deletes == ("gone", "stray") and not plan.uploads


def test_plan_never_copies_from_an_object_it_overwrites():
    # Swapping two files: each new content is the other's old object, which is being overwritten.
    old = {"x": entry("x", b"AAAA", "ex"), "y": entry("y", b"BBBB", "ey")}
    new = {"x": entry("x", b"BBBB"), "y": entry("y", b"AAAA")}
    plan = plan_sync(new, old, live_of(*old.values()))
    assert not plan.copies and [e.path for e in plan.uploads] == ["x", "y"]


def test_plan_copies_renames_and_duplicates_from_stable_objects():
    old = {"old-name": entry("old-name", b"weights", "e1"), "keep": entry("keep", b"tok", "e2")}
    new = {"new-name": entry("new-name", b"weights"), "keep": entry("keep", b"tok"), "dup": entry("dup", b"tok")}
    plan = plan_sync(new, old, live_of(*old.values()))
    assert {(e.path, src.path) for e, src in plan.copies} == {("new-name", "old-name"), ("dup", "keep")}
    assert plan.deletes == ("old-name",) and not plan.uploads


def test_reconcile_reports_missing_and_foreign_objects():
    recorded = {"a": entry("a", b"1", "e1"), "b": entry("b", b"2", "e2")}
    live = {"a": LiveObject(1, "e1"), "c": LiveObject(9, "e9")}
    actual = s3_sync.reconcile_manifest(recorded, live)
    assert actual["a"] == recorded["a"] and "b" not in actual
    assert actual["c"].sha256.startswith("unverified-etag:")
    assert tree_hash(actual) != tree_hash(recorded)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("m", "m/x", True),
        ("m/x", "m", True),
        ("m", "m", True),
        ("m", "m-2", False),
        ("m/x", "m/y", False),
    ],
)
def test_prefixes_overlap(a, b, overlap):
    assert s3_sync.prefixes_overlap(a, b) is overlap
