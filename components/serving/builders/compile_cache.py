"""vLLM's torch.compile cache, shared by a model's replicas through the model store (issue 20, "< 30 s
on a node that already has the image").

vLLM's V1 engine runs torch.compile (Dynamo, then Inductor and Triton) at every start unless its cache
directory already holds the artefacts for the same inputs; copying the directory to another machine
skips the compilation (docs.vllm.ai design/torch_compile, "Compilation Cache"). Our pods start with an
empty $HOME, so every replica compiled from scratch. Here:

    s3://<bucket>/compile-cache/<model>/<key>/...        the pod's COMPILE_CACHE_DIR, as vLLM left it
    s3://<bucket>/compile-cache/<model>/<key>/_COMPLETE  written last; its body is the key

* `restore-compile-cache` (init container, AWS CLI image): when the marker holds the key, sync the
  prefix into COMPILE_CACHE_DIR; otherwise, or on any error, do nothing: vLLM compiles as before.
* `save-compile-cache` (native sidecar: an init container with restartPolicy Always, Kubernetes 1.33
  GA): waits until the model is ready, then, unless the marker already holds the key, uploads the
  directory and writes the marker last; then sleeps until SIGTERM, on which it exits 0 at once.

Where vLLM 0.13.0 (the 26.01 vLLM image's) puts what it compiles (read from the wheel):
* vllm/envs.py: VLLM_CACHE_ROOT defaults to $XDG_CACHE_HOME/vllm or ~/.cache/vllm, and is in
  compile_factors()'s ignored list, so moving it does not change vLLM's own cache key.
* vllm/compilation/backends.py VllmBackend.__call__: the cache directory is
  VLLM_CACHE_ROOT/torch_compile_cache/<sha256(env, config, code, compiler hashes)[:10]>/rank_<r>_<dp>/<prefix>;
  logs "Using cache directory: ..." then, per compile range, "Directly load the compiled graph(s) for
  compile range ... from the cache, took ... s" on a hit, or "Compiling a graph for compile range ...
  takes ... s" on a miss; "torch.compile takes ... s in total" (monitor.py) either way.
* vllm/compilation/compiler_interface.py: with torch 2.9 (vLLM 0.13.0 pins torch==2.9.0) the default
  InductorStandaloneAdaptor (VLLM_USE_STANDALONE_COMPILE=1) saves each graph as a binary artefact in
  that directory and leaves TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR alone (their defaults are
  /tmp/torchinductor_<user> and ~/.triton/cache); the older InductorAdaptor points both at
  subdirectories of the vLLM cache directory. We set both under COMPILE_CACHE_DIR too, so the Triton
  kernels vLLM JIT-compiles outside torch.compile (attention, MoE) are kept as well.
* backends.py CompilerManager: vllm_compile_cache.py (read back with ast.literal_eval) maps each compile range
  and subgraph to a handle holding the artefact's absolute path, so every replica must use the same
  directory: COMPILE_CACHE_DIR, the same in every pod.
* vLLM compiles everything before it serves ("we guarantee all the compilation finishes before we serve any
  requests", docs/design/torch_compile.md), so once the model is ready the directory is complete.
* VLLM_DISABLE_COMPILE_CACHE=1 (and `force_disable_caches`) turns the cache off (is_compile_cache_enabled);
  we never set it.
* Not cached: CUDA graph capture (vllm/v1/worker/gpu_model_runner.py capture_model runs at every start,
  "Graph capturing finished in ... secs"), and with torch < 2.10 Dynamo's bytecode transform
  ("Dynamo bytecode transform time"): VLLM_USE_AOT_COMPILE defaults to 1 only from torch 2.10.

vLLM keys its cache itself (configs, env, code, compiler): a stale entry is never used, only missed. Our
key (compile_cache_key) decides which prefix a replica reads; it covers what we control that changes
the artefacts, so a replica is not handed a directory of misses (or kernels built for another GPU).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from typing import Any

from components.config import ModelConfig
from components.config.node_pools import NodePoolConfig
from components.serving.builders.aws_cli import aws_cli_container
from components.serving.builders.model_store import also_read_prefix, normalize_prefix

# Bump when what lives under compile-cache/<model>/<key>/ changes (directories, env), so old caches are not read.
COMPILE_CACHE_LAYOUT_VERSION = 1
COMPILE_CACHE_PREFIX = "compile-cache/"
COMPLETE_MARKER = "_COMPLETE"
VOLUME = "compile-cache"
COMPILE_CACHE_DIR = "/compile-cache"
# Compiled graphs and kernels of a 7-8B model are tens to hundreds of MB; the limit leaves room for larger ones.
VOLUME_SIZE = "8Gi"
RESTORE_CONTAINER = "restore-compile-cache"
SAVE_CONTAINER = "save-compile-cache"
# How often the sidecar asks whether the model is ready.
READY_POLL_SECONDS = 5
# Inductor's cross-process file locks: never useful on another machine.
SYNC_EXCLUDES = ("*.lock", "*/locks/*")


def wanted(model: ModelConfig, pool: NodePoolConfig) -> bool:
    """Whether the model's pods share a compile cache: models[].compileCache, else on for a vLLM model that
    compiles (not enforceEager: vLLM sets -O0, no torch.compile) on a pool of one GPU model (a pod cannot
    tell which GPU its node has before it starts, so a mixed pool would share kernels across architectures)."""
    if model.compile_cache is not None:
        return model.compile_cache
    return model.backend == "vllm" and not model.vllm.enforce_eager and len(pool.gpu_models) == 1


def compile_cache_key(
    *,
    image: str,
    model_json: str,
    gpus_per_replica: int,
    tensor_parallel: int,
    instance_types: Sequence[str],
    layout_version: int = COMPILE_CACHE_LAYOUT_VERSION,
) -> str:
    """sha256 over what we control that changes the compiled artefacts: the serving image (vLLM, torch,
    Triton, CUDA), the rendered engine arguments (model.json), the GPUs per replica and tensor parallelism
    (one rank directory per GPU), the node pool's instance types (the GPU architecture) and the layout."""
    factors = {
        "image": image,
        "model_json": model_json,
        "gpus_per_replica": gpus_per_replica,
        "tensor_parallel": tensor_parallel,
        "instance_types": sorted(instance_types),
        "layout": layout_version,
    }
    return hashlib.sha256(json.dumps(factors, sort_keys=True).encode()).hexdigest()


def model_prefix(model_name: str) -> str:
    """compile-cache/<model>: every key of one model (what its pod role may write)."""
    return normalize_prefix(COMPILE_CACHE_PREFIX + model_name)


def key_prefix(model_name: str, key: str) -> str:
    return f"{model_prefix(model_name)}/{key}/"


def env() -> list[dict[str, str]]:
    """The Triton container's environment: vLLM's cache root, Inductor's and Triton's caches, all in the volume."""
    return [
        {"name": "VLLM_CACHE_ROOT", "value": f"{COMPILE_CACHE_DIR}/vllm"},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{COMPILE_CACHE_DIR}/inductor"},
        {"name": "TRITON_CACHE_DIR", "value": f"{COMPILE_CACHE_DIR}/triton"},
    ]


def volume() -> dict[str, Any]:
    return {"name": VOLUME, "emptyDir": {"sizeLimit": VOLUME_SIZE}}


def mount(read_only: bool = False) -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": COMPILE_CACHE_DIR, **({"readOnly": True} if read_only else {})}


def restore_script(bucket: str, model_name: str, key: str, cache_dir: str = COMPILE_CACHE_DIR) -> str:
    """Init container shell: sync the cache of `key` into `cache_dir` when its marker holds the key. Never fails."""
    src = f"s3://{bucket}/{key_prefix(model_name, key)}"
    marker = shlex.quote(src + COMPLETE_MARKER)
    dest = shlex.quote(cache_dir)
    say = 'say() { echo "tritonllm compile cache: $*"; }'
    return "\n".join(
        [
            "set -u",
            say,
            "start=$(date +%s)",
            f"marker=$(aws s3 cp {marker} - 2>/dev/null || true)",
            f'if [ "$marker" != {shlex.quote(key)} ]; then',
            f'  say "no complete cache for key {key} at {src}: vLLM compiles at start"',
            "  exit 0",
            "fi",
            f"if aws s3 sync {shlex.quote(src)} {dest}/ --exclude {COMPLETE_MARKER} --only-show-errors --no-progress; then",
            f'  say "restored {src} to {cache_dir} in $(( $(date +%s) - start ))s ($(du -sm {dest} | cut -f1) MiB)"',
            "else",
            # A partial copy is not trusted: vLLM starts from an empty directory and compiles.
            f"  rm -rf {dest}/* {dest}/.[!.]* 2>/dev/null || true",
            f'  say "could not restore {src}: vLLM compiles at start"',
            "fi",
            "exit 0",
        ]
    )


def save_script(
    bucket: str,
    model_name: str,
    key: str,
    *,
    ready_url_port: int,
    ready_path: str,
    cache_dir: str = COMPILE_CACHE_DIR,
    poll_seconds: int = READY_POLL_SECONDS,
) -> str:
    """Native sidecar (bash): once the model is ready, upload `cache_dir` unless the marker already holds the
    key, marker last; then idle. SIGTERM/SIGINT end it with 0 at once, mid-upload too (no marker then).

    Readiness is read with bash's /dev/tcp: the AWS CLI image we pin (aws/aws-cli tag 2.31.39
    docker/Dockerfile: amazonlinux:2023 plus less, groff, findutils and jq; the CLI itself is a frozen
    binary with its own Python) installs neither curl nor a Python we could call, and bash is the base
    image's shell. Only bash and coreutils are used.
    """
    dest = f"s3://{bucket}/{key_prefix(model_name, key)}"
    marker = shlex.quote(dest + COMPLETE_MARKER)
    excludes = " ".join(f"--exclude {shlex.quote(p)}" for p in SYNC_EXCLUDES)
    request = f"GET {ready_path} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    return f"""set -u
say() {{ echo "tritonllm compile cache: $*"; }}
# Every background job (a TERM can come before `$!` is read), then exit 0.
on_term() {{ kill $(jobs -p) 2>/dev/null; say "stopping"; exit 0; }}
trap on_term TERM INT
# Run a command in the background and wait for it, so a TERM is handled at once (bash runs traps only
# between foreground commands, but interrupts `wait`).
run() {{ "$@" & wait $!; }}
ready() {{
  {{ exec 3<>/dev/tcp/127.0.0.1/{ready_url_port}; }} 2>/dev/null || return 1
  printf '{request}' >&3
  status=
  read -r -t 5 status <&3 || true
  exec 3<&- 3>&-
  case "$status" in "HTTP/1."?" 200"*) return 0 ;; esac
  return 1
}}
# Whether a directory holds a regular file anywhere below it (bash globbing).
has_files() {{
  shopt -s globstar nullglob dotglob
  local f
  for f in "$1"/**; do [ -f "$f" ] && return 0; done
  return 1
}}
until ready; do run sleep {poll_seconds}; done
say "model ready"
current=
if run aws s3 cp {marker} "${{TMPDIR:-/tmp}}/current{COMPLETE_MARKER}" --only-show-errors 2>/dev/null; then
  current=$(cat "${{TMPDIR:-/tmp}}/current{COMPLETE_MARKER}")
fi
if [ "$current" = {shlex.quote(key)} ]; then
  say "cache for key {key} already at {dest}: nothing to save"
elif ! has_files {shlex.quote(cache_dir)}; then
  say "{cache_dir} is empty: nothing to save"
elif run aws s3 sync {shlex.quote(cache_dir)}/ {shlex.quote(dest)} {excludes} --only-show-errors --no-progress \\
  && printf '%s' {shlex.quote(key)} > "${{TMPDIR:-/tmp}}/{COMPLETE_MARKER}" \\
  && run aws s3 cp "${{TMPDIR:-/tmp}}/{COMPLETE_MARKER}" {marker} --only-show-errors; then
  say "saved {cache_dir} to {dest} ($(du -sm {shlex.quote(cache_dir)} | cut -f1) MiB)"
else
  say "could not save to {dest}: the next replica compiles too"
fi
while :; do run sleep 3600; done
"""


def restore_container(bucket: str, model_name: str, key: str, region: str) -> dict[str, Any]:
    return aws_cli_container(
        RESTORE_CONTAINER,
        restore_script(bucket, model_name, key),
        region,
        cpu="250m",
        memory="128Mi",
        memory_limit="512Mi",
        mounts=[mount()],
    )


def save_container(
    bucket: str, model_name: str, key: str, region: str, *, ready_port: int, ready_path: str
) -> dict[str, Any]:
    """The saving sidecar: an init container with restartPolicy Always (a native sidecar), started before
    the Triton container and stopped after it, so it never holds the pod's drain."""
    container = aws_cli_container(
        SAVE_CONTAINER,
        save_script(bucket, model_name, key, ready_url_port=ready_port, ready_path=ready_path),
        region,
        cpu="50m",
        memory="128Mi",
        memory_limit="512Mi",
        mounts=[mount(read_only=True)],
    )
    container["command"] = ["/bin/bash", "-c", container["command"][2]]
    container["restartPolicy"] = "Always"
    return container


def cache_access_policy(
    document: dict[str, Any], bucket_arn: str, model_name: str, kms_key_arn: str | None = None
) -> dict[str, Any]:
    """`document` (the pod role's policy) plus read and write of compile-cache/<model>/ only: GetObject and the
    prefix-limited ListBucket (restore, the marker), PutObject and AbortMultipartUpload (a failed large part
    upload of `aws s3 sync`) under it. No DeleteObject: nothing is ever removed by a pod."""
    prefix = model_prefix(model_name)
    document = also_read_prefix(document, bucket_arn, prefix, "CompileCache")
    statements = [
        *document["Statement"],
        {
            "Sid": "WriteCompileCache",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": [f"{bucket_arn}/{prefix}/*"],
        },
    ]
    if kms_key_arn:
        # SSE-KMS uploads generate a data key (the read statement already allows kms:Decrypt).
        statements.append(
            {
                "Sid": "EncryptCompileCache",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey"],
                "Resource": [kms_key_arn],
            }
        )
    return {**document, "Statement": statements}
