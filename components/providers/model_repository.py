"""ModelRepository: a local directory mirrored to an S3 prefix, as a Pulumi dynamic resource.

Its inputs carry the content hash of the local directory (computed when the program runs,
cached by file stat), so `pulumi up` with nothing changed sees equal inputs, never calls
`update`, and sends no S3 request. The provider's work is in `s3_sync`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pulumi
import pulumi.dynamic
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from components.providers import s3_sync

# Changing where the objects live means a new resource; the rest is an in-place update.
REPLACE_KEYS = ("bucket", "prefix")
UPDATE_KEYS = ("content_hash", "region", "endpoint_url")
INPUT_KEYS = ("bucket", "prefix", "source_dir", "content_hash", "region", "endpoint_url")


def _is_unknown(value: Any) -> bool:
    # The provider host hands unknowns over as `Unknown` objects; the raw wire sentinel is a string.
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def repository_diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> pulumi.dynamic.DiffResult:
    """Diff of a ModelRepository: equal content hash and location means no change, no S3 call.

    During preview any input may be unknown; an unknown location is reported as
    a replacement, an unknown hash as an update, never an error. Replacing onto
    a prefix that contains or is contained by the old one deletes first, since
    deleting the old prefix afterwards would remove the new objects.
    """

    def changed(key: str) -> bool:
        return _is_unknown(news.get(key)) or (news.get(key) or None) != (olds.get(key) or None)

    replaces = [key for key in REPLACE_KEYS if changed(key)]
    updates = [key for key in UPDATE_KEYS if changed(key)]
    if not replaces and not updates:
        return pulumi.dynamic.DiffResult(changes=False, replaces=[], delete_before_replace=False)
    delete_first = False
    if replaces:
        old_bucket, new_bucket = olds.get("bucket"), news.get("bucket")
        old_prefix, new_prefix = olds.get("prefix"), news.get("prefix")
        same_bucket = _is_unknown(new_bucket) or new_bucket == old_bucket
        delete_first = same_bucket and (
            _is_unknown(new_prefix)
            or not old_prefix
            or not new_prefix
            or s3_sync.prefixes_overlap(old_prefix, new_prefix)
        )
    return pulumi.dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=delete_first)


def _location(props: Mapping[str, Any]) -> s3_sync.S3Location:
    return s3_sync.S3Location(
        bucket=str(props["bucket"]),
        prefix=s3_sync.normalize_prefix(str(props["prefix"])),
        region=props.get("region") or None,
        endpoint_url=props.get("endpoint_url") or None,
    )


def _outputs(props: Mapping[str, Any], location: s3_sync.S3Location, manifest: s3_sync.Manifest) -> dict[str, Any]:
    return {
        **{key: props.get(key) for key in INPUT_KEYS},
        "prefix": location.prefix,
        # The hash of what is really under the prefix: if files changed after the
        # program hashed them, the next diff sees it and uploads again.
        "content_hash": s3_sync.tree_hash(manifest),
        "manifest": s3_sync.manifest_to_json(manifest),
        "s3_uri": location.uri,
        "file_count": sum(1 for entry in manifest.values() if not entry.is_dir_marker),
        "total_bytes": s3_sync.total_size(manifest),
    }


class ModelRepositoryProvider(pulumi.dynamic.ResourceProvider):
    """create/update mirror the directory; delete removes the prefix; read detects drift.

    `settings` and `cache_dir` exist for tests and the benchmark; a deployed
    provider uses the defaults. The provider holds no clients: it is pickled
    into the state and must stay importable as `components.model_store`.
    """

    serialize_as_secret_always = False  # it captures nothing secret; keep the state readable

    def __init__(self, settings: s3_sync.TransferSettings | None = None, cache_dir: str | None = None):
        super().__init__()
        self.settings = settings
        self.cache_dir = cache_dir

    def _settings(self) -> s3_sync.TransferSettings:
        return self.settings or s3_sync.TransferSettings()

    def _cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else s3_sync.default_cache_dir()

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        for key in ("bucket", "prefix", "source_dir", "content_hash"):
            if not news.get(key):
                failures.append(pulumi.dynamic.CheckFailure(key, f"{key} is required"))
        prefix = news.get("prefix")
        if prefix and not _is_unknown(prefix):
            try:
                news = {**news, "prefix": s3_sync.normalize_prefix(str(prefix))}
            except ValueError as exc:
                failures.append(pulumi.dynamic.CheckFailure("prefix", str(exc)))
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return repository_diff(olds, news)

    def _sync(self, props: Mapping[str, Any], old: s3_sync.Manifest) -> dict[str, Any]:
        location = _location(props)
        settings = self._settings()
        tree = s3_sync.scan_tree(props["source_dir"], cache_dir=self._cache_dir())
        client = s3_sync.s3_client(location, settings)
        result = s3_sync.sync_tree(client, location, tree, old, settings)
        return _outputs(props, location, result.manifest)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._sync(props, {})
        return pulumi.dynamic.CreateResult(f"{outs['bucket']}/{outs['prefix']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._sync(news, s3_sync.manifest_from_json(olds.get("manifest"))))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        location = _location(props)
        settings = self._settings()
        s3_sync.delete_prefix(s3_sync.s3_client(location, settings), location, settings)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        if not props.get("bucket") or not props.get("prefix"):
            raise ValueError(
                f"cannot read ModelRepository {id_!r} without its state: import is not supported, "
                "declare the resource and run `pulumi up` (identical objects are re-uploaded once)"
            )
        location = _location(props)
        client = s3_sync.s3_client(location, self._settings())
        try:
            live = s3_sync.list_prefix(client, location)
        except client.exceptions.NoSuchBucket:
            live = {}
        manifest = s3_sync.reconcile_manifest(s3_sync.manifest_from_json(props.get("manifest")), live)
        return pulumi.dynamic.ReadResult(id_, _outputs(props, location, manifest))


class ModelRepository(pulumi.dynamic.Resource, module="tritonllm", name="ModelRepository"):
    """A local directory mirrored to s3://bucket/prefix/ (type `pulumi-python:dynamic/tritonllm:ModelRepository`).

    The directory is hashed when the program runs; a TreeError (missing
    directory, symlink loop, unreadable file...) stops the program with the path at fault.
    """

    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    s3_uri: pulumi.Output[str]
    content_hash: pulumi.Output[str]
    file_count: pulumi.Output[int]
    total_bytes: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        bucket: pulumi.Input[str],
        prefix: str,
        source_dir: str | os.PathLike[str],
        region: pulumi.Input[str] | None = None,
        endpoint_url: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        root = Path(source_dir).expanduser().absolute()
        props = {
            "bucket": bucket,
            "prefix": s3_sync.normalize_prefix(prefix),
            "source_dir": str(root),
            "content_hash": s3_sync.content_hash(root),
            "region": region,
            "endpoint_url": endpoint_url,
            "manifest": None,
            "s3_uri": None,
            "file_count": None,
            "total_bytes": None,
        }
        super().__init__(ModelRepositoryProvider(), name, props, opts)


# --- the component -------------------------------------------------------------------
