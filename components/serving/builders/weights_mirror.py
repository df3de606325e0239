"""The weights mirror: each model's Hugging Face snapshot, at the commit its hfRevision resolves to,
copied once into the model store, so that no pod reads weights from the internet (issue 20).

    s3://<bucket>/hf-mirror/<hfModelId>/<commit>/...        the snapshot's files (ALLOW_PATTERNS)
    s3://<bucket>/hf-mirror/<hfModelId>/<commit>/_COMPLETE  written last; its body is the mirror key

The key is a sha256 of everything that changes the mirrored bytes: the model id, the commit, the
file patterns, the layout version and the download script. As with the engine cache
(components/serving/builders/engine_build.py), `pulumi up` does nothing when S3 already has a
marker holding the key, and a Job only runs when it does not.

The copy runs in AWS: a Kubernetes Job in the `hf-mirror` namespace, whose init container downloads
with huggingface_hub (model_repository/weights/mirror_snapshot.py, in the serving image, which
carries huggingface_hub) and whose container uploads with the AWS CLI under a role that may write
the mirror prefixes only. The Hugging Face token is a Secret in that namespace, mounted as a file
into the download container only; no serving pod holds it.

Readers stage the mirror from S3 to an emptyDir (`stage_weights_script`, AWS CLI image): the vLLM
and llmapi pods before the server starts, the engine build Job before it converts.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.catalog import versions
from components.config import ModelConfig
from components.platform.builders import pod_security
from components.platform.builders.karpenter import gpu_tolerations, node_selector_for
from components.serving.builders.aws_cli import aws_cli_container, s3_config_lines

REPO_ROOT = Path(__file__).resolve().parents[3]
MIRROR_SCRIPT = REPO_ROOT / "model_repository" / "weights" / "mirror_snapshot.py"

# Bump when the layout under hf-mirror/<repo>/<commit>/ changes, so old mirrors are not trusted.
MIRROR_LAYOUT_VERSION = 1
MIRROR_PREFIX = "hf-mirror/"
COMPLETE_MARKER = "_COMPLETE"
# What every runtime reads from a Hugging Face repository: config and generation config, tokenizer
# files (tokenizer.json, tokenizer.model, merges/vocab .txt, .tiktoken, chat templates) and the
# safetensors weights with their index. vLLM 0.13.0 pulls "*.model", "*.py", "*.json" next to the
# weights (vllm/config/model.py maybe_pull_model_tokenizer_for_runai); "*.py" is a model's own code,
# only run with trust_remote_code. Mistral's versioned SentencePiece files (tokenizer.model.v3, .v7, ...)
# are what vLLM 0.13.0 looks for to pick mistral_common's tokenizer (vllm/tokenizers/registry.py
# resolve_tokenizer_args: allow_patterns ["tekken.json", "tokenizer.model.v*"]), and what transformers
# 4.57 MistralCommonTokenizer.from_pretrained reads from a local directory for its version (without
# one, a bare tokenizer.model loads as the v1 tokenizer).
ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.model",
    "tokenizer.model.v*",
    "*.tiktoken",
    "*.txt",
    "*.jinja",
    "*.py",
)
# Duplicates of the safetensors weights (Meta's original/ checkpoints, PyTorch pickles).
IGNORE_PATTERNS = ("original/*", "*.pth", "*.bin", "*.pt")

MIRROR_NAMESPACE = "hf-mirror"
MIRROR_SERVICE_ACCOUNT = "weights-mirror"
MIRROR_HF_TOKEN_SECRET = "hf-token"
HF_TOKEN_KEY = "HF_TOKEN"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
SCRIPT_DIR = "/opt/tritonllm"
WORK_DIR = "/work"
SNAPSHOT_DIR = f"{WORK_DIR}/snapshot"
JOB_NAME_PREFIX = "hf-mirror-"
FINISHED_JOB_TTL_SECONDS = 6 * 3600
# Where the readers stage the mirror (an emptyDir of the pod: the node's ephemeral storage, which is
# the instance-store RAID0 on GPU types with local NVMe: components/platform/builders/karpenter.py).
WEIGHTS_DIR = "/weights"
# aws s3 sync's transfer settings for multi-GB safetensors files (AWS CLI S3 configuration: defaults
# max_concurrent_requests 10, multipart_chunksize 8MB). Many concurrent byte-range GETs of 8 or 16 MB,
# aligned with the parts the upload wrote (the same setting on both sides), are what S3 serves fastest
# (AWS whitepaper "Optimizing Amazon S3 performance", use-byte-range-fetches.html).
S3_MAX_CONCURRENT_REQUESTS = 32
S3_MULTIPART_CHUNKSIZE = "16MB"

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mirror_key_parts(hf_model_id: str, commit: str) -> dict[str, Any]:
    """Everything the mirrored bytes depend on (and nothing else: not the timeout, not the bucket)."""
    if not COMMIT_SHA.match(commit):
        raise ValueError(f"{commit!r} of {hf_model_id} is not a 40-character commit sha")
    return {
        "layout_version": MIRROR_LAYOUT_VERSION,
        "hf_model_id": hf_model_id,
        "hf_commit": commit,
        "allow_patterns": list(ALLOW_PATTERNS),
        "ignore_patterns": list(IGNORE_PATTERNS),
        "files": {"mirror_snapshot.py": _sha256(MIRROR_SCRIPT)},
    }


def mirror_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def mirror_prefix(hf_model_id: str, commit: str) -> str:
    """hf-mirror/<org>/<name>/<commit>/ (a Hugging Face model id is `org/name` or `name`)."""
    return f"{MIRROR_PREFIX}{hf_model_id}/{commit}/"


@dataclass(frozen=True)
class ResolvedMirror:
    """One model's mirror: the commit its hfRevision names now, the key and the S3 prefix."""

    hf_model_id: str
    revision_sha: str
    parts: dict[str, Any]
    key: str

    @property
    def prefix(self) -> str:
        return mirror_prefix(self.hf_model_id, self.revision_sha)


def resolved_mirror(hf_model_id: str, commit: str) -> ResolvedMirror:
    parts = mirror_key_parts(hf_model_id, commit)
    return ResolvedMirror(hf_model_id, commit, parts, mirror_key(parts))


def short_key(key: str) -> str:
    return key[:16]


def resource_name(mirror: ResolvedMirror) -> str:
    """A Pulumi name per repository and commit (stable while the commit is)."""
    slug = re.sub(r"[^a-z0-9]+", "-", mirror.hf_model_id.lower()).strip("-")
    return f"hf-mirror-{slug}-{mirror.revision_sha[:12]}"


# --------------------------------------------------------------------------- shell for the AWS CLI image


def _s3_config_lines() -> list[str]:
    """The AWS CLI config with the transfer settings above (and the classic client, aws_cli.s3_config_lines)."""
    return s3_config_lines(
        {"max_concurrent_requests": str(S3_MAX_CONCURRENT_REQUESTS), "multipart_chunksize": S3_MULTIPART_CHUNKSIZE}
    )


def upload_script(bucket: str, mirror: ResolvedMirror, source_dir: str = SNAPSHOT_DIR) -> str:
    """The Job's upload container: any old marker removed, the snapshot, the marker (holding the key) last."""
    dest = f"s3://{bucket}/{mirror.prefix}"
    src = shlex.quote(source_dir.rstrip("/") + "/")
    return "\n".join(
        [
            "set -eu",
            *_s3_config_lines(),
            f'test -f {shlex.quote(source_dir)}/config.json || {{ echo "the download left no config.json in {source_dir}" >&2; exit 1; }}',
            # A marker of another key (same commit, other patterns or script) must not vouch for the prefix
            # while its files are rewritten: readers of that key would stage a half-new copy.
            f"aws s3 rm {shlex.quote(dest + COMPLETE_MARKER)} --only-show-errors",
            # huggingface_hub keeps its download metadata in <local_dir>/.cache: not part of the snapshot.
            f"aws s3 sync {src} {shlex.quote(dest)} --delete --exclude {COMPLETE_MARKER} --exclude '.cache/*' "
            "--only-show-errors --no-progress",
            f'echo {shlex.quote(mirror.key)} > "${{TMPDIR:-/tmp}}/{COMPLETE_MARKER}"',
            f'aws s3 cp "${{TMPDIR:-/tmp}}/{COMPLETE_MARKER}" {shlex.quote(dest + COMPLETE_MARKER)} --only-show-errors',
            f'echo "mirrored {mirror.hf_model_id}@{mirror.revision_sha} to {dest}"',
        ]
    )


def stage_weights_script(bucket: str, mirror: ResolvedMirror, target_dir: str = WEIGHTS_DIR) -> str:
    """A reader's init container: check the marker holds this key, then copy the snapshot to `target_dir`."""
    src = f"s3://{bucket}/{mirror.prefix}"
    target = shlex.quote(target_dir.rstrip("/") + "/")
    return "\n".join(
        [
            "set -eu",
            *_s3_config_lines(),
            "start=$(date +%s)",
            f"marker=$(aws s3 cp {shlex.quote(src + COMPLETE_MARKER)} - 2>/dev/null || true)",
            f'[ "$marker" = {shlex.quote(mirror.key)} ] || {{ echo "no complete mirror of '
            f'{mirror.hf_model_id}@{mirror.revision_sha} at {src}: the HfSnapshotMirror Job did not finish" >&2; exit 1; }}',
            f"aws s3 sync {shlex.quote(src)} {target} --exclude {COMPLETE_MARKER} --only-show-errors --no-progress",
            # One line the coldstart report reads (issue 20, "weights staged").
            f'echo "tritonllm: weights staged from {src} to {target_dir} in $(( $(date +%s) - start ))s '
            f'($(du -sm {target} | cut -f1) MiB)"',
        ]
    )


def stage_weights_container(
    bucket: str, mirror: ResolvedMirror, region: str, *, volume: str, target_dir: str = WEIGHTS_DIR
) -> dict[str, Any]:
    """The init container that stages the mirror into `volume` at `target_dir` (AWS CLI image, restricted)."""
    return aws_cli_container(
        "stage-weights",
        stage_weights_script(bucket, mirror, target_dir),
        region,
        cpu="2",
        memory="1Gi",
        memory_limit="2Gi",
        mounts=[{"name": volume, "mountPath": target_dir}],
    )


# --------------------------------------------------------------------------- the Job


def job_name(key: str) -> str:
    return f"{JOB_NAME_PREFIX}{short_key(key)}"


def script_configmap_name(key: str) -> str:
    return f"hf-mirror-script-{short_key(key)}"


def _labels(mirror: ResolvedMirror) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "hf-mirror",
        "app.kubernetes.io/part-of": "tritonllm",
        "tritonllm.io/mirror-key": short_key(mirror.key),
    }


def script_configmap_manifest(mirror: ResolvedMirror, namespace: str = MIRROR_NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": script_configmap_name(mirror.key), "namespace": namespace, "labels": _labels(mirror)},
        "data": {"mirror_snapshot.py": MIRROR_SCRIPT.read_text()},
    }


def download_args(mirror: ResolvedMirror, local_dir: str = SNAPSHOT_DIR) -> list[str]:
    args = ["--repo-id", mirror.hf_model_id, "--revision", mirror.revision_sha, "--local-dir", local_dir]
    for pattern in ALLOW_PATTERNS:
        args += ["--allow", pattern]
    for pattern in IGNORE_PATTERNS:
        args += ["--ignore", pattern]
    return args


def mirror_job_manifest(
    mirror: ResolvedMirror,
    model: ModelConfig,
    *,
    bucket: str,
    region: str,
    timeout_minutes: int,
    namespace: str = MIRROR_NAMESPACE,
    hf_token_secret: str | None = None,
    image_pull_secret: str | None = None,
) -> dict[str, Any]:
    """The Job that mirrors `mirror` (for `model`, whose node pool and image it uses) into the bucket.

    It runs on the model's own NodePool without a GPU: the node it brings up is the one the model's
    first replica lands on, and the serving image the download runs in is then already on it.
    """
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{WORK_DIR}/hf-home"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        # The download runs in an NGC image on a GPU node without a GPU request. CUDA images set
        # NVIDIA_VISIBLE_DEVICES=all, which the NVIDIA container runtime honours for unprivileged
        # containers by default (nvidia-container-toolkit accept-nvidia-visible-devices-envvar-when-unprivileged):
        # `void` exposes no GPU and mounts no driver, so the download never touches a serving pod's GPUs.
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        *pod_security.home_env(),
    ]
    # Where a Triton image's container may write, as in every pod of that image: the work volume, /tmp,
    # $HOME and a small /dev/shm (Python's multiprocessing, which huggingface_hub's thread pool does not need).
    mounts: list[dict[str, Any]] = [
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        *pod_security.writable_mounts(),
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "work", "emptyDir": {}},
        {"name": "script", "configMap": {"name": script_configmap_name(mirror.key), "defaultMode": 0o555}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        *pod_security.writable_volumes(),
    ]
    if hf_token_secret:
        # A file, not an environment variable: huggingface_hub reads $HF_TOKEN_PATH when HF_TOKEN is unset
        # (huggingface_hub constants.py), and the script never prints it.
        env.append({"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/{HF_TOKEN_KEY}"})
        mounts.append({"name": "hf-token", "mountPath": HF_TOKEN_DIR, "readOnly": True})
        volumes.append(
            {"name": "hf-token", "secret": {"secretName": hf_token_secret, "optional": False, "defaultMode": 0o440}}
        )
    pod_spec: dict[str, Any] = {
        "serviceAccountName": MIRROR_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,  # Pod Identity injects its own token; no API access
        "restartPolicy": "Never",
        "nodeSelector": node_selector_for(model.node_pool),
        "tolerations": gpu_tolerations(),
        "securityContext": pod_security.pod_security_context(),
        "initContainers": [
            {
                "name": "download",
                "image": versions.triton_image(model.runtime),
                "command": ["python3", f"{SCRIPT_DIR}/mirror_snapshot.py", *download_args(mirror)],
                "env": env,
                "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
                "volumeMounts": mounts,
                "securityContext": pod_security.container_security_context(),
            }
        ],
        "containers": [
            aws_cli_container(
                "upload",
                upload_script(bucket, mirror),
                region,
                cpu="2",
                memory="1Gi",
                memory_limit="2Gi",
                mounts=[{"name": "work", "mountPath": WORK_DIR, "readOnly": True}],
            )
        ],
        "volumes": volumes,
    }
    if image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": image_pull_secret}]
    labels = _labels(mirror)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(mirror.key), "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 1,  # one retry: a dropped connection to the hub is not the model's fault
            "activeDeadlineSeconds": timeout_minutes * 60,
            "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def namespace_manifest() -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "tritonllm", **pod_security.restricted_namespace_labels()}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MIRROR_NAMESPACE, "labels": labels}}


def service_account_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": MIRROR_SERVICE_ACCOUNT, "namespace": MIRROR_NAMESPACE},
        "automountServiceAccountToken": False,
    }


def hf_token_secret_manifest() -> dict[str, Any]:
    """Metadata and type only: the resource adds stringData from the Pulumi secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": MIRROR_HF_TOKEN_SECRET, "namespace": MIRROR_NAMESPACE},
    }


def mirrors_by_key(
    models: list[ModelConfig], resolved: dict[str, ResolvedMirror]
) -> dict[str, tuple[ResolvedMirror, ModelConfig]]:
    """One mirror per distinct key (two models of one repository and commit share it), with the first
    model (in config order) that uses it: its node pool and image run the Job."""
    out: dict[str, tuple[ResolvedMirror, ModelConfig]] = {}
    for model in models:
        mirror = resolved.get(model.name)
        if mirror is not None and mirror.key not in out:
            out[mirror.key] = (mirror, model)
    return out
