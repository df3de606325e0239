"""HfSnapshotMirror: the dynamic resource that copies one Hugging Face snapshot (repository at a
commit) into the model store with a Kubernetes Job, once per key, and what it asks of the outside
world: the Hugging Face API (the revision resolved to a commit when the program runs, as for the
engine cache), the cluster (the Job) and S3 (the completion marker).

The key, the Job and the scripts are pure builders in components/serving/builders/weights_mirror.py;
the provider reads the marker, runs the Job when the marker does not hold the key, waits, cleans up.
It reuses the engine build provider's Job handling (components/providers/engine_build.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi.dynamic

from components.config import ConfigError, StackConfig
from components.providers.engine_build import (
    JobApi,
    KubernetesJobApi,
    S3ObjectStore,
    parse_kubeconfig,
    resolve_hf_revision,
    run_job,
)
from components.serving.builders.engine_build import RevisionError
from components.serving.builders.weights_mirror import (
    COMPLETE_MARKER,
    ResolvedMirror,
    resolved_mirror,
)

LOG_TAIL_LINES = 40
# Scheduling a node and pulling the serving image come on top of the copy itself.
WAIT_MARGIN_SECONDS = 600


def resolve_mirror(hf_model_id: str, hf_revision: str, token: str | None = None) -> ResolvedMirror:
    """hfRevision resolved to its commit now (Hugging Face API, with the token for gated models), and the key."""
    return resolved_mirror(hf_model_id, resolve_hf_revision(hf_model_id, hf_revision, token))


def resolve_mirrors(cfg: StackConfig, token: str | None) -> dict[str, ResolvedMirror]:
    """Every model's mirror, resolved when the program starts: a revision that cannot be resolved
    fails as a ConfigError naming models[i].hfRevision, before any resource exists."""
    resolved, problems = {}, []
    for i, model in enumerate(cfg.models):
        try:
            resolved[model.name] = resolve_mirror(model.hf_model_id, model.hf_revision, token)
        except RevisionError as exc:
            problems.append((f"models[{i}].hfRevision", str(exc)))
    if problems:
        raise ConfigError(problems)
    return resolved


class MarkerStore(Protocol):
    def read_text(self, bucket: str, key: str) -> str | None: ...
    def delete_prefix(self, bucket: str, prefix: str) -> int: ...


class MirrorError(RuntimeError):
    pass


@dataclass
class MirrorResult:
    copied: bool  # False: S3 already held this key's snapshot
    seconds: float


def is_complete(store: MarkerStore, bucket: str, prefix: str, key: str) -> bool:
    """The snapshot under `prefix` is complete for `key`: its marker exists and holds the key."""
    body = store.read_text(bucket, prefix + COMPLETE_MARKER)
    return body is not None and body.strip() == key


def ensure_mirror(
    props: dict[str, Any],
    jobs_factory: Callable[[], JobApi],
    store: MarkerStore,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MirrorResult:
    """Make sure s3://bucket/<prefix> holds the snapshot of `key`: run the Job unless the marker says so."""
    bucket, key, prefix = props["bucket"], props["key"], props["prefix"]
    started = clock()
    if is_complete(store, bucket, prefix, key):
        return MirrorResult(copied=False, seconds=0.0)
    job = props["job"]
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]

    def key_missing() -> str | None:
        if is_complete(store, bucket, prefix, key):
            return None
        return f"mirror Job {namespace}/{name} succeeded but s3://{bucket}/{prefix}{COMPLETE_MARKER} does not hold key {key}"

    run_job(
        jobs_factory(),
        job,
        props["script_config_map"],
        started=started,
        timeout_seconds=float(props["timeout_seconds"]),
        margin_seconds=WAIT_MARGIN_SECONDS,
        timeout_key="modelStore.mirror.timeoutMinutes",
        describe=f"weights mirror {namespace}/{name} of {props['hf_model_id']}@{props['hf_commit']}",
        kind="mirror",
        error=MirrorError,
        check_success=key_missing,
        log_tail_lines=LOG_TAIL_LINES,
        clock=clock,
        sleep=sleep,
    )
    return MirrorResult(copied=True, seconds=round(clock() - started, 1))


_NO_UNKNOWN = object()


def mirror_diff(olds: dict[str, Any], news: dict[str, Any], unknown: object = _NO_UNKNOWN) -> tuple[bool, list[str]]:
    """(changes, replaces): only the key, and where it lives, matter; an unknown value counts as changed."""
    changed = [p for p in ("key", "bucket", "prefix") if news.get(p) is unknown or news.get(p) != olds.get(p)]
    return bool(changed), changed


class S3MarkerStore(S3ObjectStore):
    def read_text(self, bucket: str, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


_STATE_KEYS = ("key", "bucket", "prefix", "region", "hf_model_id", "hf_commit")


class HfSnapshotMirrorProvider(pulumi.dynamic.ResourceProvider):
    def _store(self, props: dict[str, Any]) -> S3MarkerStore:
        return S3MarkerStore(props["region"], props.get("s3_endpoint_url") or None)

    def _ensure(self, props: dict[str, Any]) -> dict[str, Any]:
        result = ensure_mirror(
            props, lambda: KubernetesJobApi(parse_kubeconfig(props["kubeconfig"])), self._store(props)
        )
        outs = {k: props[k] for k in _STATE_KEYS}
        outs.update(copied=result.copied, copy_seconds=result.seconds)
        return outs

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["key"], outs=self._ensure(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        from pulumi.runtime import rpc

        changes, replaces = mirror_diff(olds, news, rpc.UNKNOWN)
        return pulumi.dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._ensure(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The snapshot belongs to this resource: `pulumi destroy` leaves the bucket empty.
        self._store(props).delete_prefix(props["bucket"], props["prefix"])


class HfSnapshotMirror(pulumi.dynamic.Resource, module="tritonllm", name="HfSnapshotMirror"):
    """One Hugging Face snapshot in S3 under hf-mirror/<repo>/<commit>/.

    Outputs: key, bucket, prefix, copied (False when S3 already held it).
    """

    key: pulumi.Output[str]
    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    copied: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        mirror: ResolvedMirror,
        *,
        bucket: pulumi.Input[str],
        region: str,
        job: pulumi.Input[dict[str, Any]],
        script_config_map: dict[str, Any],
        timeout_seconds: int,
        kubeconfig: pulumi.Input[Any],
        s3_endpoint_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "key": mirror.key,
            "key_parts": json.dumps(mirror.parts, sort_keys=True),
            "hf_model_id": mirror.hf_model_id,
            "hf_commit": mirror.revision_sha,
            "bucket": bucket,
            "prefix": mirror.prefix,
            "region": region,
            "timeout_seconds": timeout_seconds,
            "job": job,
            "script_config_map": script_config_map,
            "kubeconfig": pulumi.Output.secret(kubeconfig),
            "s3_endpoint_url": s3_endpoint_url,
            "copied": None,
            "copy_seconds": None,
        }
        super().__init__(HfSnapshotMirrorProvider(), name, props, opts)
