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

import hashlib
import importlib.util
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.catalog import versions
from components.config import ModelConfig, ModelSite, NodePoolConfig
from components.platform.builders import pod_security
from components.platform.builders.karpenter import gpu_tolerations, node_selector_for
from components.serving.builders import weights_mirror
from components.serving.builders.aws_cli import aws_cli_container

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "model_repository" / "trtllm" / "build_engine.py"
# Shipped next to the script in the ConfigMap (build_engine.SHIPPED_FILES).
SHIPPED_FILES = {name: BUILD_SCRIPT.parent / name for name in ("bls_stream.py", "text_deltas.py")}

# Bump when the layout under engines/<key>/ changes, so old caches are not reused.
ENGINE_LAYOUT_VERSION = 2
ENGINES_PREFIX = "engines/"
COMPLETE_MARKER = "_COMPLETE"
# Fixed paths: the build fills config.pbtxt with STAGE_DIR paths, the Triton pod stages S3 there.
STAGE_DIR = "/staged"
WORK_DIR = "/work"
OUTPUT_DIR = "/work/out"
WEIGHTS_STAGE_SUBDIR = "hf"
WEIGHTS_STAGE_DIR = f"{WORK_DIR}/{WEIGHTS_STAGE_SUBDIR}"
SCRIPT_DIR = "/opt/tritonllm"
BUILDER_SERVICE_ACCOUNT = "engine-builder"
GPU_RESOURCE = "nvidia.com/gpu"
# Scheduling a GPU node and pulling the ~20 GB image come on top of the build itself.
WAIT_MARGIN_SECONDS = 120
# A finished build Job is removed by Kubernetes after this long (ttlSecondsAfterFinished). The provider
# deletes a succeeded one at once and keeps a failed one (its logs, and the TritonEngineBuildFailed alert,
# which reads kube_job_status_failed) until the next `pulumi up` replaces it or this expires.
FINISHED_JOB_TTL_SECONDS = 6 * 3600
# How many times a run replaces a failed Job of its key left by an earlier run before giving up.
REPLACE_ATTEMPTS = 5
POLL_SECONDS = 15
LOG_TAIL_LINES = 60


# --------------------------------------------------------------------------- the cache key


def gpu_architecture(pool: NodePoolConfig) -> str:
    """The GPU an engine is built for, e.g. "L40S-sm89". Config validation keeps TRT-LLM pools to one GPU model."""
    models = pool.gpu_models
    if len(models) != 1:
        raise ValueError(
            f"nodePool {pool.name!r} mixes GPU models {[g.name for g in models]}; "
            "TensorRT-LLM engines need one GPU model per pool"
        )
    gpu = models[0]
    return f"{gpu.name}-sm{gpu.compute_capability.replace('.', '')}"


# A Hugging Face commit: what an engine key names (hfRevision resolved to it).
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class RevisionError(ValueError):
    pass


# --------------------------------------------------------------------------- the cache key


def _load_build_script() -> Any:
    spec = importlib.util.spec_from_file_location("tritonllm_build_engine", BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the engine build script {BUILD_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_fill_values(model: ModelConfig, revision_sha: str) -> dict[str, dict[str, str]]:
    """The template values the Job will fill, computed by the build script itself from the Job's arguments."""
    script = _load_build_script()
    return script.fill_values(script.parse_args(build_script_args(model, "", revision_sha)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def engine_key_parts(model: ModelConfig, site: ModelSite, revision_sha: str | None = None) -> dict[str, Any]:
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
        "files": {
            "build_engine.py": _sha256(BUILD_SCRIPT),
            **{name: _sha256(path) for name, path in sorted(SHIPPED_FILES.items())},
        },
        # The image pins the TensorRT-LLM backend and the templates it ships (/app/all_models).
        "image": versions.TRITON_TRTLLM_ENGINE_IMAGE,
        "tensorrt_llm_version": versions.TENSORRT_LLM_ENGINE_VERSION,
        "gpu": gpu_architecture(site.node_pool),
        "served_model_name": model.name,
        "stage_dir": STAGE_DIR,
        # What the build reads: the weights mirror of this commit, with these file patterns.
        "weights_mirror": {
            "layout_version": weights_mirror.MIRROR_LAYOUT_VERSION,
            "allow_patterns": list(weights_mirror.ALLOW_PATTERNS),
            "ignore_patterns": list(weights_mirror.IGNORE_PATTERNS),
        },
    }


def engine_cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class ResolvedEngine:
    revision_sha: str
    parts: dict[str, Any]
    key: str


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
        "--hf-model-id",
        model.hf_model_id,
        "--hf-revision",
        revision_sha or model.hf_revision,
        "--served-model-name",
        model.name,
        "--dtype",
        e.dtype,
        "--tp-size",
        str(model.tensor_parallel),
        "--pp-size",
        str(model.pipeline_parallel),
        "--gpus",
        str(model.gpus_per_pod),
        "--max-batch-size",
        str(e.max_batch_size),
        "--max-input-len",
        str(e.max_input_len),
        "--max-seq-len",
        str(e.max_seq_len),
        "--max-num-tokens",
        str(e.max_num_tokens),
        "--paged-kv-cache" if e.paged_kv_cache else "--no-paged-kv-cache",
        "--multiple-profiles" if e.multiple_profiles else "--no-multiple-profiles",
        "--kv-cache-free-gpu-mem-fraction",
        str(e.kv_cache_free_gpu_mem_fraction),
        "--batch-scheduler-policy",
        e.batch_scheduler_policy,
        "--enable-kv-cache-reuse" if e.enable_kv_cache_reuse else "--no-enable-kv-cache-reuse",
        "--enable-chunked-context" if e.enable_chunked_context else "--no-enable-chunked-context",
        "--max-queue-delay-microseconds",
        str(e.max_queue_delay_microseconds),
        "--bls-instance-count",
        str(e.bls_instance_count),
        # auto: the build reads config.json's model_type; a set family is checked against it there
        *(["--model-family", e.model_family] if e.model_family != "auto" else []),
        # The snapshot the stage-weights init container copies from the weights mirror: no download.
        "--weights-dir",
        WEIGHTS_STAGE_DIR,
        "--work-dir",
        WORK_DIR,
        "--output-dir",
        OUTPUT_DIR,
        "--stage-dir",
        STAGE_DIR,
        "--cache-key",
        key,
    ]


def upload_script(bucket: str, key: str) -> str:
    """Shell for the upload container: engine + repository first, the completion marker last."""
    dest = f"s3://{bucket}/{engine_prefix(key)}"
    return "\n".join(
        [
            "set -eu",
            f'test -f {OUTPUT_DIR}/build.json || {{ echo "the build left no {OUTPUT_DIR}/build.json" >&2; exit 1; }}',
            f"aws s3 sync {OUTPUT_DIR}/ {shlex.quote(dest)} --delete --exclude {COMPLETE_MARKER} --only-show-errors --no-progress",
            f"echo {shlex.quote(key)} > /tmp/{COMPLETE_MARKER}",
            f"aws s3 cp /tmp/{COMPLETE_MARKER} {shlex.quote(dest + COMPLETE_MARKER)} --only-show-errors",
            f'echo "uploaded to {dest}"',
        ]
    )


# Every build Job's name starts with this (the serving alerts select the Jobs by it:
# components/observability/builders/alerts.py).
JOB_NAME_PREFIX = "engine-build-"


def job_name(key: str) -> str:
    return f"{JOB_NAME_PREFIX}{short_key(key)}"


def script_configmap_name(key: str) -> str:
    return f"engine-build-script-{short_key(key)}"


def script_configmap_manifest(key: str, namespace: str, script_text: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": script_configmap_name(key),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "trtllm-engine-build", "tritonllm.io/engine-key": short_key(key)},
        },
        "data": {
            "build_engine.py": script_text if script_text is not None else BUILD_SCRIPT.read_text(),
            **{name: path.read_text() for name, path in SHIPPED_FILES.items()},
        },
    }


# FP8 calibration data: build_engine.py runs TensorRT-LLM's examples/quantization/quantize.py without
# --calib_dataset, whose default "cnn_dailymail" is a Hugging Face dataset, and
# tensorrt_llm/quantization/quantize_by_modelopt.py get_calib_dataloader loads it with
# `load_dataset("cnn_dailymail", name="3.0.0", split="train")`. The datasets library (3.1.0 config.py:
# HF_DATASETS_OFFLINE defaults to huggingface_hub's HF_HUB_OFFLINE) refuses every download when
# HF_HUB_OFFLINE=1, so an offline FP8 build fails at calibration. It is a public dataset: no token.
CALIBRATION_DATASET = "cnn_dailymail"


def calibrates_from_hub(model: ModelConfig) -> bool:
    """Whether the engine build downloads its calibration set from the Hugging Face Hub (FP8 only)."""
    return model.engine.dtype == "fp8"


def engine_build_job_manifest(
    model: ModelConfig,
    site: ModelSite,
    *,
    key: str,
    namespace: str,
    bucket: str,
    weights: weights_mirror.ResolvedMirror,
    image_pull_secret: str | None = None,
    revision_sha: str | None = None,
) -> dict[str, Any]:
    """The Job that builds the engine for `key` (of `revision_sha`) on the model's NodePool and uploads it.

    Its first init container stages the model's weights mirror (`weights`) into the work volume; the
    build reads it there (--weights-dir), offline and without a Hugging Face token; an FP8 build also
    downloads its public calibration set from the Hub (CALIBRATION_DATASET)."""
    labels = {
        "app.kubernetes.io/name": "trtllm-engine-build",
        "app.kubernetes.io/instance": model.name,
        "tritonllm.io/model": model.name,
        "tritonllm.io/engine-key": short_key(key),
    }
    gpus = str(model.gpus_per_pod)  # a multi-node model builds all ranks on one node of its pool
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{WORK_DIR}/hf-cache"},
        {"name": "TRITON_IMAGE", "value": versions.TRITON_TRTLLM_ENGINE_IMAGE},
    ]
    if not calibrates_from_hub(model):
        env.insert(1, {"name": "HF_HUB_OFFLINE", "value": "1"})  # the weights are staged; nothing from the hub
    volume_mounts = [
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        *pod_security.writable_mounts(),
    ]
    env += pod_security.home_env()
    stage = weights_mirror.stage_weights_container(
        bucket, weights, site.region, volume="work", target_dir=WEIGHTS_STAGE_DIR
    )
    stage["volumeMounts"][0]["subPath"] = WEIGHTS_STAGE_SUBDIR  # /work/hf of the build's work volume
    pod_spec: dict[str, Any] = {
        "serviceAccountName": BUILDER_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,  # Pod Identity injects its own token; no API access
        "restartPolicy": "Never",
        "nodeSelector": node_selector_for(model.node_pool),
        "tolerations": gpu_tolerations(),
        "securityContext": pod_security.pod_security_context(),
        "initContainers": [
            stage,
            {
                "name": "build",
                "image": versions.TRITON_TRTLLM_ENGINE_IMAGE,
                "command": ["python3", f"{SCRIPT_DIR}/build_engine.py", *build_script_args(model, key, revision_sha)],
                "env": env,
                "resources": {
                    "requests": {"cpu": model.resources.cpu, "memory": model.resources.memory, GPU_RESOURCE: gpus},
                    "limits": {"memory": model.resources.memory, GPU_RESOURCE: gpus},
                },
                "volumeMounts": volume_mounts,
                "securityContext": pod_security.container_security_context(),
            },
        ],
        "containers": [
            aws_cli_container(
                "upload",
                upload_script(bucket, key),
                site.region,
                cpu="1",
                memory="1Gi",
                memory_limit="2Gi",
                mounts=[{"name": "work", "mountPath": WORK_DIR, "readOnly": True}],
            )
        ],
        "volumes": [
            {"name": "work", "emptyDir": {}},  # on the node's encrypted gp3 root volume
            {"name": "script", "configMap": {"name": script_configmap_name(key), "defaultMode": 0o555}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": model.resources.shm_size}},
            *pod_security.writable_volumes(),
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
            "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
