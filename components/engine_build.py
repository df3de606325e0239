"""TrtllmEngine: build a TensorRT-LLM engine as a Kubernetes Job and cache it in S3 by key.

An engine is compiled for one GPU architecture, so the build runs on the NodePool
that will serve it, inside the pinned Triton TRT-LLM image, with the build script
`model_repository/trtllm/build_engine.py` (shipped in a ConfigMap). The Job has two
steps: an init container (GPU) that downloads, converts, builds and fills the
inflight-batcher repository into an emptyDir, and a container (AWS CLI image) that
uploads it to `s3://<bucket>/engines/<key>/` and writes the completion marker last.

The key is a sha256 of everything that changes the uploaded bytes: model id and
the commit its revision resolves to (a branch such as `main` is resolved through the
Hugging Face API when the program runs), every build option, the build script and
the files shipped with it, the exact arguments and template fill values of the Job,
image (which carries the templates), GPU model/architecture, and the served name.
`pulumi up` rebuilds only when the key changes; when S3 already has the marker for a
key, no Job runs at all.

Pure builders (key, Job manifest, policies) are module functions; the dynamic
provider only applies the manifest it is given, waits, and cleans up. Cluster access:
the provider uses the `kubernetes` Python client with the cluster's kubeconfig, passed
as a secret input (the same credentials path pulumi-kubernetes uses: pulumi-eks's
kubeconfig runs `aws eks get-token`). S3 access uses boto3's default credentials,
like the ModelRepository provider.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pulumi
import pulumi.dynamic

from components import versions
from components.config import ModelConfig, NodePoolConfig, StackConfig
from components.karpenter import gpu_tolerations, node_selector_for

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "model_repository" / "trtllm" / "build_engine.py"
# Shipped next to the script in the ConfigMap (build_engine.SHIPPED_FILES).
SHIPPED_FILES = {"bls_stream.py": BUILD_SCRIPT.parent / "bls_stream.py"}

# Bump when the layout under engines/<key>/ changes, so old caches are not reused.
ENGINE_LAYOUT_VERSION = 2
ENGINES_PREFIX = "engines/"
COMPLETE_MARKER = "_COMPLETE"
# Fixed paths: the build fills config.pbtxt with STAGE_DIR paths, the Triton pod stages S3 there.
STAGE_DIR = "/staged"
WORK_DIR = "/work"
OUTPUT_DIR = "/work/out"
SCRIPT_DIR = "/opt/tritonllm"
BUILDER_SERVICE_ACCOUNT = "engine-builder"
GPU_RESOURCE = "nvidia.com/gpu"
# Scheduling a GPU node and pulling the ~20 GB image come on top of the build itself.
WAIT_MARGIN_SECONDS = 120
POLL_SECONDS = 15
LOG_TAIL_LINES = 60


# --------------------------------------------------------------------------- the cache key

def gpu_architecture(pool: NodePoolConfig) -> str:
    """The GPU an engine is built for, e.g. "L40S-sm89". Config validation keeps TRT-LLM pools to one GPU model."""
    models = pool.gpu_models
    if len(models) != 1:
        raise ValueError(f"nodePool {pool.name!r} mixes GPU models {[g.name for g in models]}; "
                         "TensorRT-LLM engines need one GPU model per pool")
    gpu = models[0]
    return f"{gpu.name}-sm{gpu.compute_capability.replace('.', '')}"


# --------------------------------------------------------------------------- Hugging Face revision

HF_API = "https://huggingface.co/api/models/{model_id}/revision/{revision}"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
HF_TIMEOUT_SECONDS = 20


class RevisionError(ValueError):
    pass


def _http_get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=HF_TIMEOUT_SECONDS) as response:  # noqa: S310 (https only)
        return json.loads(response.read().decode())


# Tests replace this (no network in unit tests).
http_get_json: Callable[[str, dict[str, str]], dict[str, Any]] = _http_get_json


@functools.lru_cache(maxsize=None)
def _resolve(model_id: str, revision: str, token: str | None) -> str:
    url = HF_API.format(model_id=model_id, revision=urllib.parse.quote(revision, safe=""))
    headers = {"Accept": "application/json", "User-Agent": "tritonllm"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        sha = http_get_json(url, headers).get("sha", "")
    except urllib.error.HTTPError as exc:
        hint = {401: "the model is gated or private: set the hfToken secret (pulumi config set --secret "
                     "tritonllm:hfToken hf_...) with a token that accepted the model's license",
                403: "the hfToken has no access to this model: accept its license on huggingface.co",
                404: "no such model or revision: check hfModelId and hfRevision"}.get(exc.code, "")
        raise RevisionError(f"{revision!r} of {model_id}: the Hugging Face API answered HTTP {exc.code}"
                            f"{'; ' + hint if hint else ''}") from None
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise RevisionError(f"{revision!r} of {model_id}: cannot resolve it to a commit ({exc}); pin hfRevision "
                            "to a 40-character commit sha to deploy without asking huggingface.co") from None
    if not COMMIT_SHA.match(str(sha)):
        raise RevisionError(f"{revision!r} of {model_id}: the Hugging Face API returned no commit sha ({sha!r}); "
                            "pin hfRevision to a 40-character commit sha")
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


# --------------------------------------------------------------------------- the cache key

def _load_build_script() -> Any:
    spec = importlib.util.spec_from_file_location("tritonllm_build_engine", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def job_fill_values(model: ModelConfig, revision_sha: str) -> dict[str, dict[str, str]]:
    """The template values the Job will fill, computed by the build script itself from the Job's arguments."""
    script = _load_build_script()
    return script.fill_values(script.parse_args(build_script_args(model, "", revision_sha)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def engine_key_parts(model: ModelConfig, cfg: StackConfig, revision_sha: str | None = None) -> dict[str, Any]:
    """Everything the uploaded engine + repository depend on (and nothing else, e.g. not the timeout).

    `revision_sha` is models[].hfRevision resolved to a commit (resolve_hf_revision); without it
    hfRevision must already be a commit sha.
    """
    sha = revision_sha or model.hf_revision
    if not COMMIT_SHA.match(sha):
        raise RevisionError(f"{model.hf_revision!r} of {model.hf_model_id} is not resolved to a commit sha")
    build = model.engine.model_dump(mode="json", exclude={"timeout_minutes"})
    return {
        "layout_version": ENGINE_LAYOUT_VERSION,
        "hf_model_id": model.hf_model_id,
        "hf_commit": sha,
        "tensor_parallel": model.tensor_parallel,
        "pipeline_parallel": model.pipeline_parallel,
        "build": build,
        # The exact command line and the values it fills into the templates.
        "script_args": build_script_args(model, "", sha),
        "fill_values": job_fill_values(model, sha),
        "files": {"build_engine.py": _sha256(BUILD_SCRIPT),
                  **{name: _sha256(path) for name, path in sorted(SHIPPED_FILES.items())}},
        # The image pins the TensorRT-LLM backend and the templates it ships (/app/all_models).
        "image": versions.TRITON_TRTLLM_IMAGE,
        "tensorrt_llm_version": versions.TENSORRT_LLM_VERSION,
        "gpu": gpu_architecture(cfg.node_pool(model.node_pool)),
        "served_model_name": model.name,
        "stage_dir": STAGE_DIR,
    }


def engine_cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class ResolvedEngine:
    revision_sha: str
    parts: dict[str, Any]
    key: str


def resolve_engine(model: ModelConfig, cfg: StackConfig, token: str | None = None) -> ResolvedEngine:
    """Resolve models[].hfRevision (sending the token, for gated models) and compute the key."""
    sha = resolve_hf_revision(model.hf_model_id, model.hf_revision, token)
    parts = engine_key_parts(model, cfg, sha)
    return ResolvedEngine(sha, parts, engine_cache_key(parts))


def resolve_engines(cfg: StackConfig, token: str | None) -> dict[str, ResolvedEngine]:
    """Every TRT-LLM model's engine, resolved when the program starts: a revision that cannot be
    resolved fails as a ConfigError naming models[i].hfRevision, before any resource exists."""
    from components.config import ConfigError

    resolved, problems = {}, []
    for i, model in enumerate(cfg.models):
        if model.backend != "trtllm":
            continue
        try:
            resolved[model.name] = resolve_engine(model, cfg, token)
        except RevisionError as exc:
            problems.append((f"models[{i}].hfRevision", str(exc)))
    if problems:
        raise ConfigError(problems)
    return resolved


def resolve_engine_output(model: ModelConfig, cfg: StackConfig,
                          hf_token: "pulumi.Input[str] | None") -> "pulumi.Output[ResolvedEngine]":
    """resolve_engine when the program runs (preview and up); the key is a hash, so not a secret."""
    return pulumi.Output.unsecret(pulumi.Output.from_input(hf_token).apply(
        lambda token: resolve_engine(model, cfg, token)))


def engine_prefix(key: str) -> str:
    return f"{ENGINES_PREFIX}{key}/"


def short_key(key: str) -> str:
    """The key as it appears in Kubernetes names and labels (63-character limits)."""
    return key[:16]


# --------------------------------------------------------------------------- the Job

def build_script_args(model: ModelConfig, key: str, revision_sha: str | None = None) -> list[str]:
    """The build script's arguments; the revision is the resolved commit, so the Job builds what the key names."""
    e = model.engine
    return [
        "--hf-model-id", model.hf_model_id, "--hf-revision", revision_sha or model.hf_revision,
        "--served-model-name", model.name, "--dtype", e.dtype,
        "--tp-size", str(model.tensor_parallel), "--pp-size", str(model.pipeline_parallel),
        "--gpus", str(model.gpus_per_pod),
        "--max-batch-size", str(e.max_batch_size), "--max-input-len", str(e.max_input_len),
        "--max-seq-len", str(e.max_seq_len), "--max-num-tokens", str(e.max_num_tokens),
        "--paged-kv-cache" if e.paged_kv_cache else "--no-paged-kv-cache",
        "--multiple-profiles" if e.multiple_profiles else "--no-multiple-profiles",
        "--kv-cache-free-gpu-mem-fraction", str(e.kv_cache_free_gpu_mem_fraction),
        "--batch-scheduler-policy", e.batch_scheduler_policy,
        "--enable-kv-cache-reuse" if e.enable_kv_cache_reuse else "--no-enable-kv-cache-reuse",
        "--enable-chunked-context" if e.enable_chunked_context else "--no-enable-chunked-context",
        "--max-queue-delay-microseconds", str(e.max_queue_delay_microseconds),
        "--bls-instance-count", str(e.bls_instance_count),
        "--work-dir", WORK_DIR, "--output-dir", OUTPUT_DIR, "--stage-dir", STAGE_DIR, "--cache-key", key,
    ]


def upload_script(bucket: str, key: str) -> str:
    """Shell for the upload container: engine + repository first, the completion marker last."""
    dest = f"s3://{bucket}/{engine_prefix(key)}"
    return "\n".join([
        "set -eu",
        f'test -f {OUTPUT_DIR}/build.json || {{ echo "the build left no {OUTPUT_DIR}/build.json" >&2; exit 1; }}',
        f"aws s3 sync {OUTPUT_DIR}/ {shlex.quote(dest)} --delete --exclude {COMPLETE_MARKER} --only-show-errors --no-progress",
        f"echo {shlex.quote(key)} > /tmp/{COMPLETE_MARKER}",
        f"aws s3 cp /tmp/{COMPLETE_MARKER} {shlex.quote(dest + COMPLETE_MARKER)} --only-show-errors",
        f'echo "uploaded to {dest}"',
    ])


def job_name(key: str) -> str:
    return f"engine-build-{short_key(key)}"


def script_configmap_name(key: str) -> str:
    return f"engine-build-script-{short_key(key)}"


def script_configmap_manifest(key: str, namespace: str, script_text: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": script_configmap_name(key), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "trtllm-engine-build",
                                "tritonllm.io/engine-key": short_key(key)}},
        "data": {"build_engine.py": script_text if script_text is not None else BUILD_SCRIPT.read_text(),
                 **{name: path.read_text() for name, path in SHIPPED_FILES.items()}},
    }


def engine_build_job_manifest(
    model: ModelConfig,
    cfg: StackConfig,
    *,
    key: str,
    namespace: str,
    bucket: str,
    hf_token_secret: str | None,
    image_pull_secret: str | None = None,
    revision_sha: str | None = None,
) -> dict[str, Any]:
    """The Job that builds the engine for `key` (of `revision_sha`) on the model's NodePool and uploads it."""
    labels = {
        "app.kubernetes.io/name": "trtllm-engine-build",
        "app.kubernetes.io/instance": model.name,
        "tritonllm.io/model": model.name,
        "tritonllm.io/engine-key": short_key(key),
    }
    gpus = str(model.gpus_per_pod)  # a multi-node model builds all ranks on one node of its pool
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{WORK_DIR}/hf-cache"},
        {"name": "TRITON_IMAGE", "value": versions.TRITON_TRTLLM_IMAGE},
    ]
    if hf_token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hf_token_secret, "key": "HF_TOKEN"}}})
    volume_mounts = [
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": BUILDER_SERVICE_ACCOUNT,
        "restartPolicy": "Never",
        "nodeSelector": node_selector_for(model.node_pool),
        "tolerations": gpu_tolerations(),
        "initContainers": [{
            "name": "build",
            "image": versions.TRITON_TRTLLM_IMAGE,
            "command": ["python3", f"{SCRIPT_DIR}/build_engine.py", *build_script_args(model, key, revision_sha)],
            "env": env,
            "resources": {
                "requests": {"cpu": model.resources.cpu, "memory": model.resources.memory, GPU_RESOURCE: gpus},
                "limits": {GPU_RESOURCE: gpus},
            },
            "volumeMounts": volume_mounts,
        }],
        "containers": [{
            "name": "upload",
            "image": versions.AWS_CLI_IMAGE,
            "command": ["/bin/sh", "-c", upload_script(bucket, key)],
            "env": [{"name": "AWS_REGION", "value": cfg.region}, {"name": "AWS_DEFAULT_REGION", "value": cfg.region}],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "volumeMounts": [{"name": "work", "mountPath": WORK_DIR, "readOnly": True}],
        }],
        "volumes": [
            {"name": "work", "emptyDir": {}},  # on the node's encrypted gp3 root volume
            {"name": "script", "configMap": {"name": script_configmap_name(key), "defaultMode": 0o555}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": model.resources.shm_size}},
        ],
    }
    if image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": image_pull_secret}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(key), "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a failed build fails the same way again; report it instead
            "activeDeadlineSeconds": model.engine.timeout_minutes * 60,
            # Safety net if the provider dies before cleaning up.
            "ttlSecondsAfterFinished": 6 * 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


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

    jobs = jobs_factory()
    job, config_map = props["job"], props["script_config_map"]
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    deadline = started + float(props["timeout_seconds"]) + WAIT_MARGIN_SECONDS
    jobs.apply_config_map(config_map)
    try:
        jobs.create_job(job)  # an existing Job of the same key (an interrupted run) is adopted and awaited
        while True:
            status = jobs.job_status(namespace, name)
            outcome = job_outcome(status)
            if outcome == "succeeded":
                break
            if outcome == "failed" or clock() >= deadline:
                reason = failure_reason(status) if outcome == "failed" else (
                    f"no result within {int(deadline - started)}s (engine.timeoutMinutes plus {WAIT_MARGIN_SECONDS}s)")
                tail = jobs.job_log_tail(namespace, name, LOG_TAIL_LINES)
                raise EngineBuildError(
                    f"TensorRT-LLM engine build {namespace}/{name} for key {key} failed: {reason}\n"
                    f"--- last {LOG_TAIL_LINES} log lines ---\n{tail or '(no logs: the pod never started?)'}")
            sleep(POLL_SECONDS)
        if not store.exists(bucket, marker):
            raise EngineBuildError(f"build Job {namespace}/{name} succeeded but s3://{bucket}/{marker} is missing")
    finally:
        jobs.delete_job(namespace, name)
        jobs.delete_config_map(namespace, config_map["metadata"]["name"])
    return BuildResult(built=True, seconds=round(clock() - started, 1))


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
                            pod.metadata.name, namespace, container=st.name, tail_lines=lines)
                    except self._exception as exc:
                        text = f"(logs unavailable: {exc.reason})"
                    chunks.append(f"[{pod.metadata.name}/{st.name}]\n{text.rstrip()}")
                elif st.state and st.state.waiting:
                    chunks.append(f"[{pod.metadata.name}/{st.name}] waiting: {st.state.waiting.reason} "
                                  f"{st.state.waiting.message or ''}".rstrip())
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
        from components import s3_sync

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
        result = ensure_engine(props, lambda: KubernetesJobApi(parse_kubeconfig(props["kubeconfig"])),
                               self._store(props))
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
        cfg: StackConfig,
        *,
        namespace: pulumi.Input[str],
        bucket: pulumi.Input[str],
        kubeconfig: pulumi.Input[Any],
        hf_token_secret: str | None,
        image_pull_secret: str | None = None,
        s3_endpoint_url: str | None = None,
        resolved: "pulumi.Input[ResolvedEngine] | None" = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        if resolved is None:
            resolved = pulumi.Output.from_input(resolve_engine(model, cfg))
        resolved = pulumi.Output.from_input(resolved)
        key = resolved.apply(lambda r: r.key)
        manifests = pulumi.Output.all(namespace, bucket, resolved).apply(lambda a: {
            "job": engine_build_job_manifest(model, cfg, key=a[2].key, namespace=a[0], bucket=a[1],
                                             hf_token_secret=hf_token_secret, image_pull_secret=image_pull_secret,
                                             revision_sha=a[2].revision_sha),
            "script_config_map": script_configmap_manifest(a[2].key, a[0]),
        })
        props = {
            "key": key,
            "key_parts": resolved.apply(lambda r: json.dumps(r.parts, sort_keys=True)),
            "bucket": bucket,
            "prefix": key.apply(engine_prefix),
            "region": cfg.region,
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

