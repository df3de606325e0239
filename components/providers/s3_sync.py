"""Mirror a local directory tree to an S3 prefix: the logic behind `ModelRepository`.

The pieces, each usable on its own (tests and the benchmark call them directly):

- `scan_tree` walks a directory and returns its manifest: one `Entry` (relative
  path, size, sha256) per file, plus a zero-byte marker `dir/` per empty
  directory, since Triton needs e.g. an ensemble's empty version directory.
  Hashes are cached by file identity and timestamps (`HashCache`) so that a
  re-scan of an unchanged tree reads no file content.
- `tree_hash` is the content hash of a whole manifest: what the Pulumi resource
  takes as an input, so an unchanged tree shows no diff and costs no S3 request.
- `plan_sync` (pure) decides, from the new manifest, the manifest last uploaded
  and a listing of the prefix, what to upload, what to copy server-side (a
  renamed or duplicated file whose bytes are already in the bucket) and what to
  delete (removed files, and strays an interrupted run left behind).
- `sync_tree` lists, plans, transfers (parallel, multipart for large files,
  with retries), deletes, then lists again to record every object's ETag.
- `delete_prefix` removes every object version under the prefix, never a
  sibling prefix ("models/" does not match "models-2/").
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import random
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from components.serving.builders.model_store import normalize_prefix  # noqa: F401  (part of this module's API)

MiB = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MANIFEST_FORMAT = "tritonllm-tree-v1"
MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per request

# S3 error codes worth retrying: the service said "not now", not "no".
TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "BadDigest",  # body corrupted in flight
        "IncompleteBody",
        "XAmzContentSHA256Mismatch",
    }
)


class TreeError(Exception):
    """The local directory cannot be uploaded as it is (missing, loop, unreadable...)."""


class SyncError(Exception):
    """S3 refused or kept failing an operation after every retry."""


# --- manifest ----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Entry:
    """One object of the tree. `path` is relative, '/'-separated; a directory marker ends in '/'."""

    path: str
    size: int
    sha256: str
    etag: str | None = None  # the object's ETag once it is known to be in S3

    @property
    def is_dir_marker(self) -> bool:
        return self.path.endswith("/")

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "etag": self.etag}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        # Pulumi state stores numbers as doubles: sizes come back as floats.
        return cls(str(data["path"]), int(data["size"]), str(data["sha256"]), data.get("etag") or None)


Manifest = dict[str, Entry]


def manifest_to_json(manifest: Mapping[str, Entry]) -> list[dict[str, Any]]:
    return [manifest[path].to_json() for path in sorted(manifest)]


def manifest_from_json(data: Iterable[Mapping[str, Any]] | None) -> Manifest:
    entries = (Entry.from_json(item) for item in (data or []))
    return {entry.path: entry for entry in sorted(entries)}


def tree_hash(manifest: Mapping[str, Entry]) -> str:
    """Content hash of a whole tree: paths, sizes and file hashes (ETags excluded)."""
    digest = hashlib.sha256(MANIFEST_FORMAT.encode() + b"\n")
    for path in sorted(manifest):
        entry = manifest[path]
        digest.update(f"{entry.path}\0{entry.size}\0{entry.sha256}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def total_size(manifest: Mapping[str, Entry]) -> int:
    return sum(entry.size for entry in manifest.values())


# --- scanning and the hash cache ------------------------------------------------


def _stat_signature(st: os.stat_result) -> list[int]:
    # ctime cannot be set from user space, so a rewrite that restores mtime still shows.
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tritonllm" / "tree-hashes"


@dataclass
class HashCache:
    """sha256 of files by (size, mtime, ctime, inode, device), one JSON file per tree root.

    Racy entries are not stored (as in git's index): if a file was last changed
    less than one timestamp tick before its hash was finished, a same-size
    rewrite inside that tick would keep the same stat and look unchanged. The
    tick is the kernel's coarse clock (a few ms) where ctime has sub-second
    precision, and up to 2 s on file systems that store whole seconds.
    """

    file: Path | None
    entries: dict[str, list[Any]] = field(default_factory=dict)
    fresh: dict[str, list[Any]] = field(default_factory=dict)
    RACY_SECONDS_FINE = 0.05
    RACY_SECONDS_COARSE = 2.0

    @classmethod
    def load(cls, cache_dir: Path | None, root: Path) -> HashCache:
        if cache_dir is None:
            return cls(None)
        file = cache_dir / (hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".json")
        try:
            data = json.loads(file.read_text())
            entries = data["entries"] if data.get("root") == str(root) else {}
        except (OSError, ValueError, KeyError, TypeError):
            entries = {}  # a missing or corrupt cache only costs re-hashing
        return cls(file, entries if isinstance(entries, dict) else {})

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        cached = self.entries.get(rel)
        if isinstance(cached, list) and len(cached) == 6 and cached[:5] == _stat_signature(st):
            return str(cached[5])
        return None

    def remember(self, rel: str, st: os.stat_result, sha256: str, hashed_at_ns: int) -> None:
        coarse = st.st_ctime_ns % 1_000_000_000 == 0
        margin_ns = int((self.RACY_SECONDS_COARSE if coarse else self.RACY_SECONDS_FINE) * 1e9)
        if max(st.st_mtime_ns, st.st_ctime_ns) < hashed_at_ns - margin_ns:
            self.fresh[rel] = _stat_signature(st) + [sha256]

    def save(self, root: Path) -> None:
        # An unchanged tree writes nothing: a rename onto the old file can wait on the
        # file system journal while other writes are being flushed.
        if self.file is None or self.fresh == self.entries:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.file.parent, delete=False, suffix=".tmp") as tmp:
                json.dump({"root": str(root), "entries": self.fresh}, tmp)
            os.replace(tmp.name, self.file)
        except OSError:
            pass  # the cache is an optimisation; an unwritable cache dir must not fail a deploy


@dataclass(frozen=True)
class ScannedTree:
    root: Path
    manifest: Manifest
    # (size, mtime_ns) of each file when hashed: an upload checks the file still matches.
    stamps: dict[str, tuple[int, int]]

    @property
    def content_hash(self) -> str:
        return tree_hash(self.manifest)


def _check_name(path: Path, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise TreeError(
            f"{os.fsencode(path)!r}: the file name is not valid UTF-8, so it cannot be an S3 key; rename it"
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    for test, kind in kinds:
        if test(mode):
            return kind
    return "not a regular file"


def _walk(root: Path) -> tuple[list[tuple[str, Path, os.stat_result]], list[str]]:
    """Files (rel, path, stat) and empty directories (rel + '/') under root, following symlinks."""
    files: list[tuple[str, Path, os.stat_result]] = []
    empty_dirs: list[str] = []

    def walk_dir(directory: Path, rel: str, ancestors: dict[tuple[int, int], Path]) -> None:
        try:
            names = sorted(os.listdir(directory))
        except PermissionError:
            raise TreeError(f"cannot list directory {directory}: permission denied") from None
        except OSError as exc:
            raise TreeError(f"cannot list directory {directory}: {exc.strerror}") from None
        if not names and rel:
            empty_dirs.append(rel)
        for name in names:
            path = directory / name
            _check_name(path, name)
            try:
                st = os.stat(path)  # follows symlinks: Hugging Face snapshots are symlinks to blobs
            except FileNotFoundError:
                if os.path.islink(path):
                    raise TreeError(f"broken symlink {path} -> {os.readlink(path)}") from None
                raise TreeError(f"{path} disappeared while the directory was being scanned") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise TreeError(f"symlink loop at {path}: following it never reaches a file") from None
                raise TreeError(f"cannot stat {path}: {exc.strerror}") from None
            child = rel + name
            if stat.S_ISDIR(st.st_mode):
                identity = (st.st_dev, st.st_ino)
                if identity in ancestors:
                    raise TreeError(
                        f"symlink loop: {path} leads back to its ancestor {ancestors[identity]}; "
                        "remove the link or point it outside the tree"
                    )
                walk_dir(path, child + "/", {**ancestors, identity: path})
            elif stat.S_ISREG(st.st_mode):
                files.append((child, path, st))
            else:
                raise TreeError(
                    f"{path} is {_file_kind(st.st_mode)}; a model repository holds only files and directories"
                )

    root_stat = os.stat(root)
    walk_dir(root, "", {(root_stat.st_dev, root_stat.st_ino): root})
    return files, empty_dirs


def hash_file(path: Path, expected: os.stat_result | None = None) -> str:
    """sha256 of a file; TreeError if unreadable or if it changed while being read."""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            after = os.fstat(handle.fileno())
    except PermissionError:
        raise TreeError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise TreeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if expected is not None and (after.st_size, after.st_mtime_ns) != (expected.st_size, expected.st_mtime_ns):
        raise TreeError(f"{path} changed while it was being hashed; re-run when nothing is writing to the directory")
    return digest


def scan_tree(
    root: str | os.PathLike[str], *, cache_dir: Path | None = None, workers: int | None = None
) -> ScannedTree:
    """Manifest of every file and empty directory under `root`.

    `cache_dir` holds the hash cache (None disables it); unchanged files are not
    read again. Raises TreeError with the offending path for anything that
    cannot be uploaded faithfully.
    """
    root_path = Path(root).expanduser().absolute()
    if not root_path.exists():
        raise TreeError(f"model repository directory {root_path} does not exist")
    if not root_path.is_dir():
        raise TreeError(f"model repository path {root_path} is not a directory")
    started_ns = time.time_ns()
    files, empty_dirs = _walk(root_path)
    if not files and not empty_dirs:
        # Mirroring an empty tree would delete the whole prefix: far more likely a failed render.
        raise TreeError(f"model repository directory {root_path} is empty")
    cache = HashCache.load(cache_dir, root_path)

    def digest(item: tuple[str, Path, os.stat_result]) -> tuple[str, int]:
        """(sha256, when it was known); a cached hash was known when it was stored."""
        rel, path, st = item
        cached = cache.lookup(rel, st)
        if cached is not None:
            return cached, started_ns
        sha = hash_file(path, st)
        return sha, time.time_ns()

    # hashlib releases the GIL on large buffers: threads use every core.
    workers = workers or min(4, os.cpu_count() or 1)
    if len(files) > 1 and workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            digests = list(pool.map(digest, files))
    else:
        digests = [digest(item) for item in files]

    manifest: Manifest = {}
    stamps: dict[str, tuple[int, int]] = {}
    for (rel, _path, st), (sha, hashed_at_ns) in zip(files, digests, strict=True):
        manifest[rel] = Entry(rel, st.st_size, sha)
        stamps[rel] = (st.st_size, st.st_mtime_ns)
        cache.remember(rel, st, sha, hashed_at_ns)
    for rel in empty_dirs:
        manifest[rel] = Entry(rel, 0, EMPTY_SHA256)
    cache.save(root_path)
    return ScannedTree(root_path, dict(sorted(manifest.items())), stamps)


def content_hash(root: str | os.PathLike[str], *, cache_dir: Path | None = None) -> str:
    """The tree hash of a directory, using the default hash cache unless told otherwise."""
    return scan_tree(root, cache_dir=cache_dir if cache_dir is not None else default_cache_dir()).content_hash


# --- locations ------------------------------------------------------------------


def prefixes_overlap(a: str, b: str) -> bool:
    """True when one prefix contains the other ('m' and 'm/x'), not for siblings ('m' and 'm-2')."""
    a, b = a.strip("/") + "/", b.strip("/") + "/"
    return a.startswith(b) or b.startswith(a)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # normalized: no leading or trailing '/'
    region: str | None = None
    endpoint_url: str | None = None

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"


@dataclass(frozen=True)
class TransferSettings:
    """Transfer tuning. Defaults come from benchmarks/s3_upload.py (see the closing note of issue 4)."""

    # Files up to 64 MiB go in one PUT (no multipart round trips); larger ones in 16 MiB
    # parts: half the requests of s3transfer's 8 MiB, while 64 MiB parts cost moto
    # (and memory here) more than they save. 10 parts in flight keep one host's link busy.
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    max_concurrency: int = 10
    # botocore's attempts per request, the first included (standard mode retries 5xx,
    # throttling and connection errors with exponential backoff).
    max_attempts: int = 8
    # Whole-file attempts on top of that: a multipart upload whose retries ran out starts over.
    file_attempts: int = 3
    file_retry_base_seconds: float = 1.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


def s3_client(location: S3Location, settings: TransferSettings = TransferSettings()) -> Any:
    """A boto3 S3 client with retries and a connection pool sized for the transfer concurrency."""
    config = botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.max_concurrency + 2,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        tcp_keepalive=True,
        # A custom endpoint (moto, MinIO) rarely resolves bucket subdomains.
        s3={"addressing_style": "path" if location.endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client("s3", region_name=location.region, endpoint_url=location.endpoint_url, config=config)


# --- listing and planning --------------------------------------------------------


@dataclass(frozen=True)
class LiveObject:
    size: int
    etag: str


def list_prefix(client: Any, location: S3Location) -> dict[str, LiveObject]:
    """Current objects under the prefix, by path relative to it."""
    live: dict[str, LiveObject] = {}
    start = len(location.prefix) + 1
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
        for obj in page.get("Contents", []):
            live[obj["Key"][start:]] = LiveObject(int(obj["Size"]), obj["ETag"].strip('"'))
    return live


@dataclass(frozen=True)
class SyncPlan:
    unchanged: tuple[Entry, ...]  # with the ETag of the object already there
    uploads: tuple[Entry, ...]
    copies: tuple[tuple[Entry, Entry], ...]  # (entry, verified object already holding its bytes)
    deletes: tuple[str, ...]


def plan_sync(new: Mapping[str, Entry], old: Mapping[str, Entry], live: Mapping[str, LiveObject]) -> SyncPlan:
    """What to transfer so that the prefix holds exactly `new`.

    An object counts as present only if the last upload recorded it (`old`) and
    the listing still shows it with the same size and ETag; anything else under
    the prefix that `new` does not name is deleted.
    """
    verified: dict[str, Entry] = {}
    for path, entry in old.items():
        obj = live.get(path)
        if obj is not None and obj.size == entry.size and (entry.etag is None or entry.etag == obj.etag):
            verified[path] = replace(entry, etag=obj.etag)

    # Server-side copy sources: verified objects this plan will not overwrite.
    sources: dict[tuple[str, int], Entry] = {}
    for path, entry in verified.items():
        if path not in new or new[path].sha256 == entry.sha256:
            sources.setdefault((entry.sha256, entry.size), entry)

    unchanged: list[Entry] = []
    uploads: list[Entry] = []
    copies: list[tuple[Entry, Entry]] = []
    for path in sorted(new):
        entry = new[path]
        present = verified.get(path)
        if present is not None and present.sha256 == entry.sha256:
            unchanged.append(replace(entry, etag=present.etag))
        elif entry.size > 0 and (entry.sha256, entry.size) in sources:
            copies.append((entry, sources[(entry.sha256, entry.size)]))
        else:
            uploads.append(entry)
    deletes = tuple(sorted(path for path in live if path not in new))
    return SyncPlan(tuple(unchanged), tuple(uploads), tuple(copies), deletes)


def reconcile_manifest(recorded: Mapping[str, Entry], live: Mapping[str, LiveObject]) -> Manifest:
    """What the prefix really holds, as a manifest: `recorded` entries whose object still
    matches (size and ETag) keep their hash; any other object gets a placeholder hash that
    matches no file, so the next sync replaces it. Missing objects drop out."""
    result: Manifest = {}
    for path in sorted(live):
        obj = live[path]
        entry = recorded.get(path)
        if entry is not None and entry.size == obj.size and (entry.etag is None or entry.etag == obj.etag):
            result[path] = replace(entry, etag=obj.etag)
        else:
            result[path] = Entry(path, obj.size, f"unverified-etag:{obj.etag}", obj.etag)
    return result


# --- transfers ---------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same operation later can succeed."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in TRANSIENT_ERROR_CODES or int(status) >= 500
    return isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return f"{type(exc).__name__}: {exc}"


class _ByteCounter(BaseSubscriber):
    def __init__(self, stats: SyncStats):
        self._stats = stats

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._stats.add_bytes(bytes_transferred)


class _KnownSource(BaseSubscriber):
    """Tells s3transfer the copy source's size and ETag, sparing a HeadObject per copy.

    The ETag also guards a multipart copy: parts are copied only if it still matches.
    """

    def __init__(self, source: Entry):
        self._source = source

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._source.size)
        future.meta.provide_object_etag(f'"{self._source.etag}"')


@dataclass
class SyncStats:
    uploaded_files: int = 0
    copied_files: int = 0
    deleted_objects: int = 0
    bytes_uploaded: int = 0  # progress callbacks: retried bytes count again
    retried_files: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_uploaded += count


@dataclass(frozen=True)
class SyncResult:
    manifest: Manifest  # what is now under the prefix, with ETags
    plan: SyncPlan
    stats: SyncStats


def single_put_checksum(entry: Entry, settings: TransferSettings) -> dict[str, str]:
    """The manifest's sha256 as the object's checksum, for files sent in one PUT.

    S3 then rejects the upload unless the stored bytes hash to exactly what the
    manifest says, and botocore skips computing a CRC32 of its own. Multipart
    objects keep botocore's per-part CRC32: S3 has no full-object SHA-256 for them.
    """
    if entry.size >= settings.multipart_threshold:
        return {}
    return {"ChecksumSHA256": base64.b64encode(bytes.fromhex(entry.sha256)).decode()}


def _transfer(
    client: Any,
    location: S3Location,
    tree: ScannedTree,
    plan: SyncPlan,
    settings: TransferSettings,
    stats: SyncStats,
    sleep: Callable[[float], None],
) -> None:
    """Upload and copy everything the plan names, retrying transient failures per file."""
    config = TransferConfig(
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        max_request_concurrency=settings.max_concurrency,
    )
    counter = _ByteCounter(stats)
    work: list[tuple[str, Entry, Entry | None]] = [("upload", e, None) for e in plan.uploads]
    work += [("copy", e, source) for e, source in plan.copies]
    for attempt in range(1, settings.file_attempts + 1):
        failures: list[tuple[tuple[str, Entry, Entry | None], BaseException]] = []
        with TransferManager(client, config) as manager:
            submitted = []
            for item in work:
                kind, entry, source = item
                key = location.key(entry.path)
                extra: dict[str, Any] = {"Metadata": {"sha256": entry.sha256}}
                if kind == "upload":
                    body: Any = io.BytesIO(b"") if entry.is_dir_marker else str(tree.root / entry.path)
                    upload_args = {**extra, **single_put_checksum(entry, settings)}
                    future = manager.upload(body, location.bucket, key, extra_args=upload_args, subscribers=[counter])
                else:
                    assert source is not None
                    future = manager.copy(
                        {"Bucket": location.bucket, "Key": location.key(source.path)},
                        location.bucket,
                        key,
                        extra_args={**extra, "MetadataDirective": "REPLACE"},
                        subscribers=[_KnownSource(source)],
                    )
                submitted.append((item, future))
            for item, future in submitted:
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - classified below
                    failures.append((item, exc))
        permanent = [(item, exc) for item, exc in failures if not is_transient(exc)]
        if permanent or (failures and attempt == settings.file_attempts):
            (kind, entry, _), first_error = (permanent or failures)[0]
            raise SyncError(
                f"{kind} of {tree.root / entry.path} to s3://{location.bucket}/{location.key(entry.path)} failed "
                f"after {attempt} attempt(s): {_describe(first_error)}"
                + (f" (and {len(failures) - 1} more failure(s))" if len(failures) > 1 else "")
            ) from first_error
        stats.retried_files += len(failures)
        if not failures:
            break
        work = [item for item, _ in failures]
        # Full jitter backoff: many files failing at once should not retry in lockstep.
        sleep(random.uniform(0, settings.file_retry_base_seconds * 2 ** (attempt - 1)))
    stats.uploaded_files += len(plan.uploads)
    stats.copied_files += len(plan.copies)


def _check_unchanged_since_scan(tree: ScannedTree, entries: Iterable[Entry]) -> None:
    for entry in entries:
        if entry.is_dir_marker:
            continue
        path = tree.root / entry.path
        try:
            st = os.stat(path)
        except OSError:
            raise TreeError(
                f"{path} disappeared during the upload; re-run when nothing is writing to the directory"
            ) from None
        if (st.st_size, st.st_mtime_ns) != tree.stamps[entry.path]:
            raise TreeError(f"{path} changed during the upload; re-run when nothing is writing to the directory")


def _delete_keys(
    client: Any, bucket: str, objects: list[dict[str, str]], settings: TransferSettings, sleep: Callable[[float], None]
) -> int:
    """DeleteObjects in batches, retrying keys S3 reports as transiently failed."""
    deleted = 0
    for start in range(0, len(objects), DELETE_BATCH):
        pending = objects[start : start + DELETE_BATCH]
        for attempt in range(1, settings.file_attempts + 1):
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": pending, "Quiet": True})
            errors = response.get("Errors", [])
            deleted += len(pending) - len(errors)
            if not errors:
                break
            permanent = [e for e in errors if e.get("Code") not in TRANSIENT_ERROR_CODES]
            if permanent or attempt == settings.file_attempts:
                first = (permanent or errors)[0]
                raise SyncError(
                    f"deleting s3://{bucket}/{first.get('Key')} failed: {first.get('Code')}: {first.get('Message')}"
                    + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
                )
            failed = {(e.get("Key"), e.get("VersionId")) for e in errors}
            pending = [o for o in pending if (o["Key"], o.get("VersionId")) in failed]
            sleep(random.uniform(0, settings.file_retry_base_seconds * 2 ** (attempt - 1)))
    return deleted


def sync_tree(
    client: Any,
    location: S3Location,
    tree: ScannedTree,
    old: Mapping[str, Entry],
    settings: TransferSettings = TransferSettings(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    """Make the prefix hold exactly the scanned tree; return the manifest with ETags.

    `old` is the manifest of the previous sync (empty on create). Deletes run
    after uploads, so a reader never misses a file that exists in both trees.
    """
    for path in tree.manifest:
        if len(location.key(path).encode("utf-8")) > MAX_KEY_BYTES:
            raise TreeError(f"s3 key for {path!r} would exceed {MAX_KEY_BYTES} bytes; shorten the prefix or the path")
    stats = SyncStats()
    plan = plan_sync(tree.manifest, old, list_prefix(client, location))
    if plan.uploads or plan.copies:
        _transfer(client, location, tree, plan, settings, stats, sleep)
        _check_unchanged_since_scan(tree, plan.uploads)
    if plan.deletes:
        objects = [{"Key": location.key(path)} for path in plan.deletes]
        stats.deleted_objects = _delete_keys(client, location.bucket, objects, settings, sleep)

    # Only transfers change ETags; after deletes alone the plan already knows every ETag.
    if not (plan.uploads or plan.copies):
        return SyncResult({entry.path: entry for entry in plan.unchanged}, plan, stats)
    live = list_prefix(client, location)
    manifest: Manifest = {}
    for path, entry in tree.manifest.items():
        obj = live.get(path)
        if obj is None or obj.size != entry.size:
            found = "missing" if obj is None else f"{obj.size} bytes, expected {entry.size}"
            raise SyncError(f"after the upload s3://{location.bucket}/{location.key(path)} is {found}")
        manifest[path] = replace(entry, etag=obj.etag)
    return SyncResult(manifest, plan, stats)


def delete_prefix(
    client: Any,
    location: S3Location,
    settings: TransferSettings = TransferSettings(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Delete every version and delete marker under the prefix; returns how many were removed.

    Only keys starting with "<prefix>/" are touched. A bucket that no longer
    exists counts as already empty.
    """
    objects: list[dict[str, str]] = []
    paginator = client.get_paginator("list_object_versions")
    try:
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                objects.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return 0
        raise
    return _delete_keys(client, location.bucket, objects, settings, sleep)
