"""`models[].trtllm`: TensorRT-LLM's runtime choice and the LLM API (`llmapi`) options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from components.catalog import versions
from components.config.base import (
    ConfigModel,
)


class LlmApiOptions(ConfigModel):
    """TensorRT-LLM LLM API (PyTorch backend) arguments: the `llmapi` model's model.yaml."""

    dtype: Literal["auto", "float16", "bfloat16"] = Field("auto", description="LLM(dtype=...): weights/activations")
    max_batch_size: int = Field(64, ge=1, le=2048, description="LLM(max_batch_size=...)")
    max_num_tokens: int = Field(8192, ge=64, description="LLM(max_num_tokens=...): tokens per scheduler iteration")
    max_seq_len: int | None = Field(None, ge=32, description="LLM(max_seq_len=...); default the model's context")
    kv_cache_free_gpu_memory_fraction: float = Field(
        0.9, gt=0, le=0.98, description="kv_cache_config.free_gpu_memory_fraction: KV cache share of free GPU memory"
    )
    enable_block_reuse: bool = Field(
        True, description="kv_cache_config.enable_block_reuse: reuse KV blocks of shared prompt prefixes"
    )
    kv_cache_dtype: Literal["auto", "fp8"] = Field(
        "auto", description="kv_cache_config.dtype: fp8 halves KV memory (Ada/Hopper GPUs, compute 8.9+)"
    )
    extra_llm_args: dict[str, Any] = Field(
        {}, description="Further LLM() arguments, verbatim; checked against the pinned TensorRT-LLM's argument names"
    )

    @field_validator("extra_llm_args")
    @classmethod
    def _known_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = extra_llm_args_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value


class TrtllmOptions(ConfigModel):
    """How a trtllm model runs: a prebuilt TensorRT engine, or the LLM API (no engine build)."""

    runtime: Literal["engine", "llmapi"] = Field(
        "engine",
        description="engine: build a TensorRT engine (engine.*) and serve the inflight-batcher ensemble; "
        "llmapi: serve Triton's `llmapi` Python model (PyTorch backend, weights loaded by TensorRT-LLM, no build)",
    )
    llmapi: LlmApiOptions = Field(default_factory=LlmApiOptions, description="LLM API arguments (runtime llmapi)")


# --- LLM API argument names at TensorRT-LLM 1.1.0 (TorchLlmArgs / BaseLlmArgs fields).
# Derived from tensorrt_llm/llmapi/llm_args.py and the LLM API reference of the 1.1 line
# (nvidia.github.io/TensorRT-LLM/1.1.0rc2.post1/llm-api/reference.html). LLM() validates its
# arguments with a strict pydantic model (extra="forbid"), so a name outside this list makes
# the model fail to load on the GPU node; we refuse it at `pulumi preview` instead.
# The version these lists were derived for: it must equal the TensorRT-LLM of the llmapi image
# (versions.TENSORRT_LLM_LLMAPI_VERSION; tests/unit/test_versions.py), so moving that pin means
# deriving them again from the new release's llm_args.py.
LLM_ARGS_VERSION = "1.1.0"
LLM_ARGS_1_1_0 = frozenset(
    {
        # model and tokenizer
        "model",
        "tokenizer",
        "tokenizer_mode",
        "skip_tokenizer_init",
        "trust_remote_code",
        "dtype",
        "revision",
        "tokenizer_revision",
        "backend",
        "load_format",
        # parallelism
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "context_parallel_size",
        "gpus_per_node",
        "moe_cluster_parallel_size",
        "moe_tensor_parallel_size",
        "moe_expert_parallel_size",
        "enable_attention_dp",
        # capacity and scheduling
        "max_batch_size",
        "max_num_tokens",
        "max_seq_len",
        "max_input_len",
        "max_beam_width",
        "kv_cache_config",
        "enable_chunked_prefill",
        "scheduler_config",
        "peft_cache_config",
        "cuda_graph_config",
        "disable_overlap_scheduler",
        "attn_backend",
        "moe_config",
        "torch_compile_config",
        "enable_autotuner",
        "stream_interval",
        "garbage_collection_gen0_threshold",
        # features
        "enable_lora",
        "lora_config",
        "speculative_config",
        "guided_decoding_backend",
        "reasoning_parser",
        "gather_generation_logits",
        "num_postprocess_workers",
        "postprocess_tokenizer_dir",
        # statistics and logging
        "enable_iter_perf_stats",
        "enable_iter_req_stats",
        "print_iter_log",
        "iter_stats_max_iterations",
        "request_stats_max_iterations",
        "return_perf_metrics",
    }
)
# KvCacheConfig fields at 1.1.0 (same source).
KV_CACHE_CONFIG_KEYS_1_1_0 = frozenset(
    {
        "enable_block_reuse",
        "max_tokens",
        "max_attention_window",
        "sink_token_length",
        "free_gpu_memory_fraction",
        "host_cache_size",
        "onboard_blocks",
        "cross_kv_cache_fraction",
        "secondary_offload_min_priority",
        "event_buffer_max_size",
        "enable_partial_reuse",
        "copy_on_partial_reuse",
        "use_uvm",
        "dtype",
    }
)
# Arguments the stack config owns: the pod's GPU request, the weights it loads and the keys
# of trtllm.llmapi depend on them, so extraLlmArgs may not override them.
MANAGED_LLM_ARGS = frozenset(
    {
        "model",
        "tokenizer",
        "revision",
        "tokenizer_revision",
        "backend",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "dtype",
        "max_batch_size",
        "max_num_tokens",
        "max_seq_len",
    }
)
MANAGED_KV_CACHE_KEYS = frozenset({"free_gpu_memory_fraction", "enable_block_reuse", "dtype"})


def extra_llm_args_problems(extra: Mapping[str, Any]) -> list[str]:
    """Why `trtllm.llmapi.extraLlmArgs` would not load on the llmapi image's TensorRT-LLM (empty when it would)."""
    problems = []
    for key in sorted(extra):
        if key in MANAGED_LLM_ARGS:
            problems.append(
                f"{key!r} is set by the stack config (hfModelId, hfRevision, tensorParallel, "
                "pipelineParallel, trtllm.llmapi.*); set it there instead"
            )
        elif key not in LLM_ARGS_1_1_0:
            problems.append(
                f"{key!r} is not an LLM API argument of TensorRT-LLM {versions.TENSORRT_LLM_LLMAPI_VERSION} "
                f"(the version in the llmapi runtime's image, {versions.TRITON_TRTLLM_LLMAPI_IMAGE}); "
                "check the spelling against TorchLlmArgs"
            )
    kv = extra.get("kv_cache_config")
    if kv is not None:
        if not isinstance(kv, Mapping):
            problems.append("'kv_cache_config' must be a map of KvCacheConfig fields")
        else:
            for key in sorted(kv):
                if key in MANAGED_KV_CACHE_KEYS:
                    problems.append(
                        f"'kv_cache_config.{key}' is set by trtllm.llmapi "
                        "(kvCacheFreeGpuMemoryFraction, enableBlockReuse, kvCacheDtype); set it there"
                    )
                elif key not in KV_CACHE_CONFIG_KEYS_1_1_0:
                    problems.append(
                        f"'kv_cache_config.{key}' is not a KvCacheConfig field of TensorRT-LLM "
                        f"{versions.TENSORRT_LLM_LLMAPI_VERSION}"
                    )
    return problems


# HPA metrics that cannot track an llmapi model: it is a decoupled Python model whose execute()
# returns at once (Triton's request duration covers only the hand-off, as for the vLLM backend),
# and it reports none of the TensorRT-LLM backend's nv_trt_llm_* metrics.
METRICS_NOT_FOR_LLMAPI = (
    "triton_requests_in_flight",
    "trtllm_waiting_requests",
    "trtllm_active_requests",
    "trtllm_kv_cache_utilization",
)
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
        problems.append(
            "@multiNode: multi-node serving is built for the engine runtime (mpirun + sshd over a "
            "LeaderWorkerSet); use trtllm.runtime: engine, or one node per replica with llmapi"
        )
    if "engine" in model.model_fields_set:
        problems.append(
            "@engine: builds a TensorRT engine, which trtllm.runtime llmapi does not use; "
            "move the options to trtllm.llmapi (dtype, maxBatchSize, maxNumTokens, ...)"
        )
    if "engine_storage" in model.model_fields_set:
        problems.append(
            "@engineStorage: trtllm.runtime llmapi stages no engine (the weights are staged from "
            "the weights mirror to the pod's local disk); remove it"
        )
    metric = model.autoscaling.metric
    if metric is None or metric in METRICS_NOT_FOR_LLMAPI:
        problems.append(
            f"@autoscaling.metric: {metric or 'the trtllm default (triton_requests_in_flight)'} cannot track the "
            "llmapi model (a decoupled Python model: Triton times only the hand-off, and it reports no "
            f"nv_trt_llm_* metrics); set autoscaling.metric: {LLMAPI_HPA_METRIC} and calibrate its target "
            "with `tritonllm bench`"
        )
    return problems
