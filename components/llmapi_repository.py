"""TensorRT-LLM through the LLM API: the `llmapi` model repository (pure functions).

With `models[].trtllm.runtime: llmapi` a trtllm model is served by the `llmapi` Python model
that TensorRT-LLM ships for Triton (NVIDIA/TensorRT-LLM `triton_backend/all_models/llmapi/
tensorrt_llm/`, documented in triton-inference-server/tensorrtllm_backend `docs/llmapi.md`):
its `model.py` builds `tensorrt_llm.LLM(**model.yaml)` (PyTorch backend) and TensorRT-LLM
downloads and loads the Hugging Face weights itself. No engine is built, so no TrtllmEngine
resource exists for such a model.

What we render per model (byte-identical for identical config):

    <served-name>/config.pbtxt     name, python backend, inputs/outputs the model reads/writes
    <served-name>/1/model.yaml     LLM() arguments from the stack config + `triton_config`

What the pod adds at start from the pinned image (never copied into this repository):

    <served-name>/1/model.py, helpers.py   from LLMAPI_MODEL_DIR inside the Triton TRT-LLM image

Sources (TensorRT-LLM 1.1.0 is what Triton 25.12 carries, components/versions.py):
- model.py reads every model.yaml key except `triton_config` into `LLM(**args)` through
  `update_llm_args_with_extra_dict`; it reads `triton_config.max_batch_size` and `.decoupled`
  in initialize() (and copies them into the config in auto_complete_config). Upstream's
  launcher (triton_backend/scripts/launch_triton_server.py) starts tritonserver with
  `--disable-auto-complete-config`, so we write the same two values into config.pbtxt too;
- helpers.py maps the optional inputs `sampling_param_<arg>` to SamplingParams(<arg>=...),
  `streaming` to the streaming flag, `return_finish_reason` to the `finish_reason` output.
"""
from __future__ import annotations

import shlex
from typing import Any, Mapping

import yaml

from components import versions

# Inside nvcr.io/nvidia/tritonserver:<release>-trtllm-python-py3: TensorRT-LLM's Triton model
# templates live under /app/all_models (the inflight-batcher ones are used by build_engine.py).
LLMAPI_MODEL_DIR = "/app/all_models/llmapi/tensorrt_llm/1"
LLMAPI_CODE_FILES = ("model.py", "helpers.py")
REPOSITORY_DIR = "/llmapi/model_repository"  # emptyDir in the pod
CONFIG_MOUNT = "/llmapi/config"  # the ConfigMap with the rendered files

# --- LLM API argument names at TensorRT-LLM 1.1.0 (TorchLlmArgs / BaseLlmArgs fields).
# Derived from tensorrt_llm/llmapi/llm_args.py and the LLM API reference of the 1.1 line
# (nvidia.github.io/TensorRT-LLM/1.1.0rc2.post1/llm-api/reference.html). LLM() validates its
# arguments with a strict pydantic model (extra="forbid"), so a name outside this list makes
# the model fail to load on the GPU node; we refuse it at `pulumi preview` instead.
LLM_ARGS_1_1_0 = frozenset({
    # model and tokenizer
    "model", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code", "dtype", "revision",
    "tokenizer_revision", "backend", "load_format",
    # parallelism
    "tensor_parallel_size", "pipeline_parallel_size", "context_parallel_size", "gpus_per_node",
    "moe_cluster_parallel_size", "moe_tensor_parallel_size", "moe_expert_parallel_size", "enable_attention_dp",
    # capacity and scheduling
    "max_batch_size", "max_num_tokens", "max_seq_len", "max_input_len", "max_beam_width", "kv_cache_config",
    "enable_chunked_prefill", "scheduler_config", "peft_cache_config", "cuda_graph_config",
    "disable_overlap_scheduler", "attn_backend", "moe_config", "torch_compile_config", "enable_autotuner",
    "stream_interval", "garbage_collection_gen0_threshold",
    # features
    "enable_lora", "lora_config", "speculative_config", "guided_decoding_backend", "reasoning_parser",
    "gather_generation_logits", "num_postprocess_workers", "postprocess_tokenizer_dir",
    # statistics and logging
    "enable_iter_perf_stats", "enable_iter_req_stats", "print_iter_log", "iter_stats_max_iterations",
    "request_stats_max_iterations", "return_perf_metrics",
})
# KvCacheConfig fields at 1.1.0 (same source).
KV_CACHE_CONFIG_KEYS_1_1_0 = frozenset({
    "enable_block_reuse", "max_tokens", "max_attention_window", "sink_token_length", "free_gpu_memory_fraction",
    "host_cache_size", "onboard_blocks", "cross_kv_cache_fraction", "secondary_offload_min_priority",
    "event_buffer_max_size", "enable_partial_reuse", "copy_on_partial_reuse", "use_uvm", "dtype",
})
# Arguments the stack config owns: the pod's GPU request, the weights it loads and the keys
# of trtllm.llmapi depend on them, so extraLlmArgs may not override them.
MANAGED_LLM_ARGS = frozenset({
    "model", "revision", "tokenizer_revision", "backend", "tensor_parallel_size", "pipeline_parallel_size",
    "dtype", "max_batch_size", "max_num_tokens", "max_seq_len",
})
MANAGED_KV_CACHE_KEYS = frozenset({"free_gpu_memory_fraction", "enable_block_reuse", "dtype"})


def extra_llm_args_problems(extra: Mapping[str, Any]) -> list[str]:
    """Why `trtllm.llmapi.extraLlmArgs` would not load on TensorRT-LLM 1.1.0 (empty when it would)."""
    problems = []
    for key in sorted(extra):
        if key in MANAGED_LLM_ARGS:
            problems.append(f"{key!r} is set by the stack config (hfModelId, hfRevision, tensorParallel, "
                            "pipelineParallel, trtllm.llmapi.*); set it there instead")
        elif key not in LLM_ARGS_1_1_0:
            problems.append(f"{key!r} is not an LLM API argument of TensorRT-LLM {versions.TENSORRT_LLM_VERSION} "
                            "(the version in the pinned Triton image); check the spelling against TorchLlmArgs")
    kv = extra.get("kv_cache_config")
    if kv is not None:
        if not isinstance(kv, Mapping):
            problems.append("'kv_cache_config' must be a map of KvCacheConfig fields")
        else:
            for key in sorted(kv):
                if key in MANAGED_KV_CACHE_KEYS:
                    problems.append(f"'kv_cache_config.{key}' is set by trtllm.llmapi "
                                    "(kvCacheFreeGpuMemoryFraction, enableBlockReuse, kvCacheDtype); set it there")
                elif key not in KV_CACHE_CONFIG_KEYS_1_1_0:
                    problems.append(f"'kv_cache_config.{key}' is not a KvCacheConfig field of TensorRT-LLM "
                                    f"{versions.TENSORRT_LLM_VERSION}")
    return problems


# HPA metrics that cannot track an llmapi model: it is a decoupled Python model whose execute()
# returns at once (Triton's request duration covers only the hand-off, as for the vLLM backend),
# and it reports none of the TensorRT-LLM backend's nv_trt_llm_* metrics.
METRICS_NOT_FOR_LLMAPI = ("triton_requests_in_flight", "trtllm_waiting_requests", "trtllm_active_requests",
                          "trtllm_kv_cache_utilization")
LLMAPI_HPA_METRIC = "triton_request_rate"


def config_problems(model: Any) -> list[str]:
    """Misplaced or unusable trtllm/llmapi keys ("@key: message" lines), empty when fine."""
    problems: list[str] = []
    if model.backend != "trtllm":
        if "trtllm" in model.model_fields_set:
            problems.append("@trtllm: only used with backend trtllm; remove it")
        return problems
    if model.trtllm.runtime == "engine":
        if "llmapi" in model.trtllm.model_fields_set:
            problems.append("@trtllm.llmapi: only used with trtllm.runtime: llmapi; set runtime: llmapi or remove it")
        return problems
    if getattr(model, "multi_node", None) is not None:
        problems.append("@multiNode: multi-node serving is built for the engine runtime (mpirun + sshd over a "
                        "LeaderWorkerSet); use trtllm.runtime: engine, or one node per replica with llmapi")
    if "engine" in model.model_fields_set:
        problems.append("@engine: builds a TensorRT engine, which trtllm.runtime llmapi does not use; "
                        "move the options to trtllm.llmapi (dtype, maxBatchSize, maxNumTokens, ...)")
    if "engine_storage" in model.model_fields_set:
        problems.append("@engineStorage: trtllm.runtime llmapi stages no engine (the weights go to the "
                        "Hugging Face cache); remove it")
    metric = model.autoscaling.metric
    if metric is None or metric in METRICS_NOT_FOR_LLMAPI:
        problems.append(
            f"@autoscaling.metric: {metric or 'the trtllm default (triton_requests_in_flight)'} cannot track the "
            "llmapi model (a decoupled Python model: Triton times only the hand-off, and it reports no "
            f"nv_trt_llm_* metrics); set autoscaling.metric: {LLMAPI_HPA_METRIC} and calibrate its target "
            "with `tritonllm bench`")
    return problems


def _require_llmapi(model: Any) -> None:
    if not model.uses_llmapi:
        raise ValueError(f"model {model.name!r} does not use trtllm.runtime llmapi")


def llm_args(model: Any) -> dict[str, Any]:
    """The LLM() keyword arguments for the model (model.yaml without `triton_config`)."""
    _require_llmapi(model)
    opts = model.trtllm.llmapi
    kv_cache: dict[str, Any] = {
        "free_gpu_memory_fraction": opts.kv_cache_free_gpu_memory_fraction,
        "enable_block_reuse": opts.enable_block_reuse,
    }
    if opts.kv_cache_dtype != "auto":
        kv_cache["dtype"] = opts.kv_cache_dtype
    args: dict[str, Any] = {
        "model": model.hf_model_id,
        "revision": model.hf_revision,
        "tokenizer_revision": model.hf_revision,
        "backend": "pytorch",  # as upstream's model.yaml: the PyTorch backend, no TensorRT engine
        "tensor_parallel_size": model.tensor_parallel,
        "pipeline_parallel_size": model.pipeline_parallel,
        "dtype": opts.dtype,
        "max_batch_size": opts.max_batch_size,
        "max_num_tokens": opts.max_num_tokens,
    }
    if opts.max_seq_len is not None:
        args["max_seq_len"] = opts.max_seq_len
    extra = dict(opts.extra_llm_args)
    kv_cache.update(extra.pop("kv_cache_config", None) or {})
    args["kv_cache_config"] = kv_cache
    args.update(extra)
    return args


# Triton batching stays off (upstream model.yaml: "The current implementation does not support
# batching"): the LLM API batches in flight itself. Decoupled, so streaming works as for the
# other backends (the project's model contract).
TRITON_CONFIG = {"max_batch_size": 0, "decoupled": True}


def model_yaml(model: Any) -> str:
    return yaml.safe_dump({**llm_args(model), "triton_config": dict(TRITON_CONFIG)}, sort_keys=False)


# (name, data type, dims, optional) of every input the llmapi model.py/helpers.py reads.
INPUTS: tuple[tuple[str, str, tuple[int, ...], bool], ...] = (
    ("text_input", "TYPE_STRING", (-1,), False),
    ("streaming", "TYPE_BOOL", (1,), True),
    ("sampling_param_temperature", "TYPE_FP32", (1,), True),
    ("sampling_param_top_k", "TYPE_INT32", (1,), True),
    ("sampling_param_top_p", "TYPE_FP32", (1,), True),
    ("sampling_param_frequency_penalty", "TYPE_FP32", (1,), True),
    ("sampling_param_presence_penalty", "TYPE_FP32", (1,), True),
    ("sampling_param_max_tokens", "TYPE_INT32", (1,), True),
    ("sampling_param_stop", "TYPE_STRING", (-1,), True),
    ("sampling_param_seed", "TYPE_UINT64", (1,), True),
    ("sampling_param_exclude_input_from_output", "TYPE_BOOL", (1,), True),
    ("return_finish_reason", "TYPE_BOOL", (1,), True),
    ("stop", "TYPE_BOOL", (1,), True),  # cancels the request with the same id
)
OUTPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("text_output", "TYPE_STRING", (-1,)),
    ("finish_reason", "TYPE_STRING", (-1,)),
)


def _dims(dims: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def config_pbtxt(model: Any) -> str:
    """config.pbtxt of the llmapi model under the served name; max_batch_size and the
    transaction policy equal model.yaml's triton_config (see the module docstring)."""
    _require_llmapi(model)
    from components.model_repository_render import served_model_name

    decoupled = "true" if TRITON_CONFIG["decoupled"] else "false"
    lines = [f'name: "{served_model_name(model)}"', 'backend: "python"',
             f"max_batch_size: {TRITON_CONFIG['max_batch_size']}", "",
             "model_transaction_policy {", f"  decoupled: {decoupled}", "}", "",
             # One instance on the CPU side: the LLM API places the model on the pod's GPUs itself.
             "instance_group [", "  {", "    count: 1", "    kind: KIND_CPU", "  }", "]", "", "input ["]
    for i, (name, dtype, dims, optional) in enumerate(INPUTS):
        lines += ["  {", f'    name: "{name}"', f"    data_type: {dtype}", f"    dims: {_dims(dims)}"]
        if optional:
            lines.append("    optional: true")
        lines.append("  }" + ("," if i < len(INPUTS) - 1 else ""))
    lines += ["]", "", "output ["]
    for i, (name, dtype, dims) in enumerate(OUTPUTS):
        lines += ["  {", f'    name: "{name}"', f"    data_type: {dtype}", f"    dims: {_dims(dims)}",
                  "  }" + ("," if i < len(OUTPUTS) - 1 else "")]
    lines += ["]", ""]
    return "\n".join(lines)


CONFIG_FILE_KEYS = {"config.pbtxt": "config.pbtxt", "model.yaml": "1/model.yaml"}


def model_files(model: Any) -> dict[str, str]:
    """Relative path -> text of the files we render (the upstream code is added in the pod)."""
    from components.model_repository_render import served_model_name

    name = served_model_name(model)
    return {f"{name}/config.pbtxt": config_pbtxt(model), f"{name}/1/model.yaml": model_yaml(model)}


def configmap_data(model: Any) -> dict[str, str]:
    """ConfigMap data: flat keys (ConfigMap keys cannot hold '/')."""
    return {"config.pbtxt": config_pbtxt(model), "model.yaml": model_yaml(model)}


def prepare_script(model: Any) -> str:
    """Shell run in the Triton container before the server: assemble the repository from the
    rendered files and the image's llmapi code; fail loudly if the image lacks it."""
    from components.model_repository_render import served_model_name

    model_dir = f"{REPOSITORY_DIR}/{served_model_name(model)}"
    version_dir = f"{model_dir}/1"
    q = shlex.quote
    lines = ["set -eu", f"mkdir -p {q(version_dir)}"]
    for name in LLMAPI_CODE_FILES:
        src = f"{LLMAPI_MODEL_DIR}/{name}"
        lines.append(f'[ -f {q(src)} ] || {{ echo "the image has no {src}: not a TensorRT-LLM image with the '
                     f'llmapi model" >&2; exit 1; }}')
        lines.append(f"cp {q(src)} {q(version_dir)}/")
    lines.append(f"cp {q(CONFIG_MOUNT + '/config.pbtxt')} {q(model_dir + '/config.pbtxt')}")
    lines.append(f"cp {q(CONFIG_MOUNT + '/model.yaml')} {q(version_dir + '/model.yaml')}")
    return "\n".join(lines)


# Appended to tritonserver's arguments, as upstream's launch_triton_server.py does.
TRITONSERVER_EXTRA_ARGS = ("--disable-auto-complete-config",)


def launcher(model: Any) -> list[str]:
    """What tritonserver runs under. Upstream's launch_triton_server.py runs it under
    `mpirun -n 1` by default; for TP x PP > 1 every rank runs `trtllm-llmapi-launch`, which
    starts the server on rank 0 and turns the other ranks into LLM API workers (tensorrtllm_backend
    docs/llmapi.md "multi-node"; TensorRT-LLM tensorrt_llm/llmapi/trtllm-llmapi-launch)."""
    _require_llmapi(model)
    world = model.parallel_gpus
    cmd = ["mpirun", "--allow-run-as-root", "-n", str(world)]
    return cmd + (["trtllm-llmapi-launch"] if world > 1 else [])
