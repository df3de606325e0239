"""TrtllmEngine: the dynamic resource that builds a TensorRT-LLM engine as a Kubernetes Job, and what
it asks of the outside world: the Hugging Face API (a revision resolved to its commit when the
program runs), the cluster (the Job, through the `kubernetes` client and the cluster's
kubeconfig, passed as a secret input) and S3 (the completion marker, boto3's default credentials).

The key, the Job manifest and the policies are pure builders in
`components/serving/builders/engine_build.py`; the provider only applies the manifest it is
given, waits, and cleans up.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi.dynamic

from components.config import ConfigError, ModelConfig, ModelSite, StackConfig
from components.providers import s3_sync
from components.serving.builders.engine_build import (
    COMMIT_SHA,
    COMPLETE_MARKER,
    FINISHED_JOB_TTL_SECONDS,
    LOG_TAIL_LINES,
    POLL_SECONDS,
    REPLACE_ATTEMPTS,
    WAIT_MARGIN_SECONDS,
    ResolvedEngine,
    RevisionError,
    engine_build_job_manifest,
    engine_cache_key,
    engine_key_parts,
    engine_prefix,
    script_configmap_manifest,
)
from components.serving.builders.weights_mirror import ResolvedMirror

# --------------------------------------------------------------------------- Hugging Face revision

HF_API = "https://huggingface.co/api/models/{model_id}/revision/{revision}"
HF_TIMEOUT_SECONDS = 20


def _http_get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=HF_TIMEOUT_SECONDS) as response:  # noqa: S310 (https only)
        return json.loads(response.read().decode())


# Tests replace this (no network in unit tests).
http_get_json: Callable[[str, dict[str, str]], dict[str, Any]] = _http_get_json


@functools.cache
def _resolve(model_id: str, revision: str, token: str | None) -> str:
    url = HF_API.format(model_id=model_id, revision=urllib.parse.quote(revision, safe=""))
    headers = {"Accept": "application/json", "User-Agent": "tritonllm"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        sha = http_get_json(url, headers).get("sha", "")
    except urllib.error.HTTPError as exc:
        hint = {
            401: "the model is gated or private: set the hfToken secret (pulumi config set --secret "
            "tritonllm:hfToken hf_...) with a token that accepted the model's license",
            403: "the hfToken has no access to this model: accept its license on huggingface.co",
            404: "no such model or revision: check hfModelId and hfRevision",
        }.get(exc.code, "")
        raise RevisionError(
            f"{revision!r} of {model_id}: the Hugging Face API answered HTTP {exc.code}{'; ' + hint if hint else ''}"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise RevisionError(
            f"{revision!r} of {model_id}: cannot resolve it to a commit ({exc}); pin hfRevision "
            "to a 40-character commit sha to deploy without asking huggingface.co"
        ) from None
    if not COMMIT_SHA.match(str(sha)):
        raise RevisionError(
            f"{revision!r} of {model_id}: the Hugging Face API returned no commit sha ({sha!r}); "
            "pin hfRevision to a 40-character commit sha"
        )
    return sha


def resolve_hf_revision(model_id: str, revision: str, token: str | None = None) -> str:
    """The commit sha a branch/tag names now (a sha is returned as is, without a request).

    A branch such as `main` is not an identity: the engine key must change when the branch
    moves, so the program asks the Hugging Face API (GET /api/models/{id}/revision/{rev}, the
    endpoint huggingface_hub's model_info uses) each time it runs, sending the token for gated models.
    """
    if COMMIT_SHA.match(revision):
        return revision
    return _resolve(model_id, revision, token or None)


def resolve_engine(model: ModelConfig, site: ModelSite, token: str | None = None) -> ResolvedEngine:
    """Resolve models[].hfRevision (sending the token, for gated models) and compute the key."""
    sha = resolve_hf_revision(model.hf_model_id, model.hf_revision, token)
    parts = engine_key_parts(model, site, sha)
    return ResolvedEngine(sha, parts, engine_cache_key(parts))


def resolve_engines(cfg: StackConfig, token: str | None) -> dict[str, ResolvedEngine]:
    """Every TRT-LLM model's engine, resolved when the program starts: a revision that cannot be
    resolved fails as a ConfigError naming models[i].hfRevision, before any resource exists."""
    resolved, problems = {}, []
    for i, model in enumerate(cfg.models):
        if not model.builds_engine:  # vLLM, and TRT-LLM through the LLM API: no engine
            continue
        try:
            resolved[model.name] = resolve_engine(model, cfg.site_of(model), token)
        except RevisionError as exc:
            problems.append((f"models[{i}].hfRevision", str(exc)))
    if problems:
        raise ConfigError(problems)
    return resolved


def resolve_engine_output(
    model: ModelConfig, site: ModelSite, hf_token: pulumi.Input[str] | None
) -> pulumi.Output[ResolvedEngine]:
    """resolve_engine when the program runs (preview and up); the key is a hash, so not a secret."""
    return pulumi.Output.unsecret(
        pulumi.Output.from_input(hf_token).apply(lambda token: resolve_engine(model, site, token))
    )


# --------------------------------------------------------------------------- provider logic (plain, testable)


class JobApi(Protocol):
    """What the provider needs from Kubernetes (KubernetesJobApi implements it; tests fake it)."""

    def apply_config_map(self, manifest: dict[str, Any]) -> None: ...
    def create_job(self, manifest: dict[str, Any]) -> bool: ...  # False: it already existed (adopted)
    def job_status(self, namespace: str, name: str) -> dict[str, Any]: ...
    def job_log_tail(self, namespace: str, name: str, lines: int) -> str: ...
    def delete_job(self, namespace: str, name: str) -> None: ...
    def delete_config_map(self, namespace: str, name: str) -> None: ...


class ObjectStore(Protocol):
    def exists(self, bucket: str, key: str) -> bool: ...
    def delete_prefix(self, bucket: str, prefix: str) -> int: ...


class EngineBuildError(RuntimeError):
    pass


def job_outcome(status: dict[str, Any]) -> str:
    """'succeeded', 'failed' or 'running' from a Job's status (conditions win over counters)."""
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "succeeded"
        if cond.get("type") == "Failed":
            return "failed"
    if status.get("succeeded"):
        return "succeeded"
    if status.get("failed"):
        return "failed"
    return "running"


def failure_reason(status: dict[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    return "the Job failed"


@dataclass
class BuildResult:
    built: bool  # False: S3 already had the engine for this key
    seconds: float


def ensure_engine(
    props: dict[str, Any],
    jobs_factory: Callable[[], JobApi],
    store: ObjectStore,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BuildResult:
    """Make sure s3://bucket/engines/<key>/ holds a complete engine: build it if the marker is missing."""
    bucket, key = props["bucket"], props["key"]
    marker = engine_prefix(key) + COMPLETE_MARKER
    started = clock()
    if store.exists(bucket, marker):
        return BuildResult(built=False, seconds=0.0)

    job = props["job"]
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]

    def marker_missing() -> str | None:
        if store.exists(bucket, marker):
            return None
        return f"build Job {namespace}/{name} succeeded but s3://{bucket}/{marker} is missing"

    # A failed build Job stays (its logs; the TritonEngineBuildFailed alert reads it): its pod has ended
    # and holds no GPU.
    run_job(
        jobs_factory(),
        job,
        props["script_config_map"],
        started=started,
        timeout_seconds=float(props["timeout_seconds"]),
        margin_seconds=WAIT_MARGIN_SECONDS,
        timeout_key="engine.timeoutMinutes",
        describe=f"TensorRT-LLM engine build {namespace}/{name} for key {key}",
        kind="build",
        error=EngineBuildError,
        check_success=marker_missing,
        kept_hint=(
            f"\n(the failed Job is kept for `kubectl -n {namespace} logs job/{name} -c build` until the next "
            f"`pulumi up` replaces it, or for {FINISHED_JOB_TTL_SECONDS // 3600} h)"
        ),
        clock=clock,
        sleep=sleep,
    )
    return BuildResult(built=True, seconds=round(clock() - started, 1))


def run_job(
    jobs: JobApi,
    job: dict[str, Any],
    config_map: dict[str, Any],
    *,
    started: float,
    timeout_seconds: float,
    margin_seconds: int,
    timeout_key: str,
    describe: str,
    kind: str,
    error: type[RuntimeError],
    check_success: Callable[[], str | None],
    kept_hint: str = "",
    log_tail_lines: int = LOG_TAIL_LINES,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run one of our Jobs to its end (the engine build, the weights mirror): apply its script ConfigMap,
    start or adopt the Job, poll until it succeeds; `error` with the reason and the log tail when it fails
    or runs past `timeout_seconds` (`timeout_key`) plus `margin_seconds`, or when `check_success` names what the
    succeeded Job did not leave. A failed Job stays for its logs (ttlSecondsAfterFinished removes it);
    a succeeded one, or one still running at the deadline, goes, and so does the ConfigMap."""
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    deadline = started + timeout_seconds + margin_seconds
    jobs.apply_config_map(config_map)
    outcome = "running"
    try:
        _start_job(jobs, job, kind, error, sleep)
        while True:
            status = jobs.job_status(namespace, name)
            outcome = job_outcome(status)
            if outcome == "succeeded":
                break
            if outcome == "failed" or clock() >= deadline:
                reason = (
                    failure_reason(status)
                    if outcome == "failed"
                    else f"no result within {int(deadline - started)}s ({timeout_key} plus {margin_seconds}s)"
                )
                tail = jobs.job_log_tail(namespace, name, log_tail_lines)
                raise error(
                    f"{describe} failed: {reason}\n"
                    f"--- last {log_tail_lines} log lines ---\n{tail or '(no logs: the pod never started?)'}"
                    + (kept_hint if outcome == "failed" else "")
                )
            sleep(POLL_SECONDS)
        missing = check_success()
        if missing:
            raise error(missing)
    finally:
        if outcome != "failed":
            jobs.delete_job(namespace, name)
        jobs.delete_config_map(namespace, config_map["metadata"]["name"])


def _start_job(
    jobs: JobApi, job: dict[str, Any], kind: str, error: type[RuntimeError], sleep: Callable[[float], None]
) -> None:
    """Create the Job. A Job of the same key that already exists is an interrupted run's, adopted
    and awaited, unless it failed: an earlier run kept that one for its logs, and it is replaced."""
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    for _ in range(REPLACE_ATTEMPTS):
        if jobs.create_job(job):
            return
        if job_outcome(jobs.job_status(namespace, name)) != "failed":
            return
        jobs.delete_job(namespace, name)
        sleep(1)  # the API server removes it (no finalizer on a Job deleted in the background) before we create
    raise error(f"could not replace the failed {kind} Job {namespace}/{name} kept from an earlier run")


_NO_UNKNOWN = object()


def engine_diff(olds: dict[str, Any], news: dict[str, Any], unknown: object = _NO_UNKNOWN) -> tuple[bool, list[str]]:
    """(changes, replaces): only the key, and the bucket it lives in, matter; an unknown value counts as changed."""
    changed = [p for p in ("key", "bucket") if news.get(p) is unknown or news.get(p) != olds.get(p)]
    return bool(changed), changed


class KubernetesJobApi:
    """JobApi on the official `kubernetes` client, configured from a kubeconfig dict."""

    def __init__(self, kubeconfig: dict[str, Any]):
        from kubernetes import client, config

        api_client = config.new_client_from_config_dict(kubeconfig)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self._exception = client.exceptions.ApiException

    def _ignore(self, status: int, fn: Callable[[], Any]) -> bool:
        try:
            fn()
            return True
        except self._exception as exc:
            if exc.status != status:
                raise
            return False

    def apply_config_map(self, manifest: dict[str, Any]) -> None:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        if not self._ignore(409, lambda: self.core.create_namespaced_config_map(ns, manifest)):
            self.core.replace_namespaced_config_map(name, ns, manifest)

    def create_job(self, manifest: dict[str, Any]) -> bool:
        ns = manifest["metadata"]["namespace"]
        return self._ignore(409, lambda: self.batch.create_namespaced_job(ns, manifest))

    def job_status(self, namespace: str, name: str) -> dict[str, Any]:
        job = self.batch.read_namespaced_job_status(name, namespace)
        return job.to_dict().get("status") or {}

    def job_log_tail(self, namespace: str, name: str, lines: int) -> str:
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        chunks = []
        for pod in pods:
            statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
            for st in statuses:
                if st.state and (st.state.terminated or st.state.running):
                    try:
                        text = self.core.read_namespaced_pod_log(
                            pod.metadata.name, namespace, container=st.name, tail_lines=lines
                        )
                    except self._exception as exc:
                        text = f"(logs unavailable: {exc.reason})"
                    chunks.append(f"[{pod.metadata.name}/{st.name}]\n{text.rstrip()}")
                elif st.state and st.state.waiting:
                    chunks.append(
                        f"[{pod.metadata.name}/{st.name}] waiting: {st.state.waiting.reason} "
                        f"{st.state.waiting.message or ''}".rstrip()
                    )
            if not statuses:
                chunks.append(f"[{pod.metadata.name}] phase {pod.status.phase}")
        return "\n".join(chunks)

    def delete_job(self, namespace: str, name: str) -> None:
        self._ignore(404, lambda: self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background"))

    def delete_config_map(self, namespace: str, name: str) -> None:
        self._ignore(404, lambda: self.core.delete_namespaced_config_map(name, namespace))


class S3ObjectStore:
    def __init__(self, region: str, endpoint_url: str | None = None):
        import boto3

        self.s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)

    def exists(self, bucket: str, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        # Every version and delete marker: the model bucket is versioned, and leftovers
        # would keep a non-force-destroy bucket from being deleted.
        return s3_sync.delete_prefix(self.s3, s3_sync.S3Location(bucket, prefix.rstrip("/")))


def parse_kubeconfig(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    import yaml

    return yaml.safe_load(value)


# --------------------------------------------------------------------------- the dynamic resource

# Outputs kept in state; the kubeconfig, the script and the manifests stay inputs only.
_STATE_KEYS = ("key", "bucket", "prefix", "region", "served_model_name")


class TrtllmEngineProvider(pulumi.dynamic.ResourceProvider):
    def _store(self, props: dict[str, Any]) -> ObjectStore:
        return S3ObjectStore(props["region"], props.get("s3_endpoint_url") or None)

    def _outs(self, props: dict[str, Any], result: BuildResult) -> dict[str, Any]:
        outs = {k: props[k] for k in _STATE_KEYS}
        outs.update(built=result.built, build_seconds=result.seconds)
        return outs

    def _ensure(self, props: dict[str, Any]) -> dict[str, Any]:
        result = ensure_engine(
            props, lambda: KubernetesJobApi(parse_kubeconfig(props["kubeconfig"])), self._store(props)
        )
        return self._outs(props, result)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["key"], outs=self._ensure(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        from pulumi.runtime import rpc

        changes, replaces = engine_diff(olds, news, rpc.UNKNOWN)
        return pulumi.dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._ensure(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The engine belongs to this resource: replacing or destroying it removes its prefix,
        # so `pulumi destroy` leaves the bucket empty.
        self._store(props).delete_prefix(props["bucket"], props["prefix"])


class TrtllmEngine(pulumi.dynamic.Resource, module="tritonllm", name="TrtllmEngine"):
    """A TensorRT-LLM engine + filled Triton repository in S3 under engines/<key>/.

    Outputs: key, bucket, prefix (engines/<key>/), built (False when the cache was hit).
    """

    key: pulumi.Output[str]
    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    built: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        model: ModelConfig,
        site: ModelSite,
        *,
        namespace: pulumi.Input[str],
        bucket: pulumi.Input[str],
        kubeconfig: pulumi.Input[Any],
        weights: ResolvedMirror,
        image_pull_secret: str | None = None,
        s3_endpoint_url: str | None = None,
        resolved: pulumi.Input[ResolvedEngine] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        if resolved is None:
            resolved = pulumi.Output.from_input(resolve_engine(model, site))
        resolved = pulumi.Output.from_input(resolved)
        key = resolved.apply(lambda r: r.key)
        manifests = pulumi.Output.all(namespace, bucket, resolved).apply(
            lambda a: {
                "job": engine_build_job_manifest(
                    model,
                    site,
                    key=a[2].key,
                    namespace=a[0],
                    bucket=a[1],
                    weights=weights,
                    image_pull_secret=image_pull_secret,
                    revision_sha=a[2].revision_sha,
                ),
                "script_config_map": script_configmap_manifest(a[2].key, a[0]),
            }
        )
        props = {
            "key": key,
            "key_parts": resolved.apply(lambda r: json.dumps(r.parts, sort_keys=True)),
            "bucket": bucket,
            "prefix": key.apply(engine_prefix),
            "region": site.region,
            "served_model_name": model.name,
            "timeout_seconds": model.engine.timeout_minutes * 60,
            "job": manifests.apply(lambda m: m["job"]),
            "script_config_map": manifests.apply(lambda m: m["script_config_map"]),
            "kubeconfig": pulumi.Output.secret(kubeconfig),
            "s3_endpoint_url": s3_endpoint_url,
            "built": None,
            "build_seconds": None,
        }
        super().__init__(TrtllmEngineProvider(), name, props, opts)
