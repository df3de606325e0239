"""`models[]`: one served model, its backend options and their cross-checks."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.catalog import serving_metrics as metrics
from components.catalog import versions
from components.catalog.vllm_engine_args import VLLM_ENGINE_ARGS
from components.config.base import (
    DNS_LABEL,
    GATED_ORGS,
    QUANTITY,
    ConfigModel,
)
from components.config.llmapi import TrtllmOptions
from components.config.llmapi import config_problems as llmapi_config_problems
from components.config.multinode import MultiNodeConfig
from components.config.openai import OpenAiOptions
from components.config.openai import config_problems as openai_config_problems
from components.config.weights import WeightsOptions
from components.config.weights import config_problems as weights_config_problems

# A replica being removed finishes what it is generating for up to this long (docs/autoscaling.md,
# "Scale-down drains"): the gateway's default request timeout, so every request the gateway would wait for
# can finish. LLM streams of a few thousand tokens take one to three minutes.
DEFAULT_DRAIN_SECONDS = 300
# Scale to zero (models[].minReplicas: 0, docs/autoscaling.md "Scale to zero"). Idle this long, the model's
# replicas go (and Karpenter then removes their GPU nodes): a cold start is minutes, so not after a short lull.
DEFAULT_IDLE_SECONDS = 900
# How long the edge holds a request while a replica starts from zero: a Karpenter GPU node launch (1-2 min),
# the Triton image pull on a fresh node (several GB: minutes) and the model load (minutes for 7B+ weights).
DEFAULT_COLD_START_TIMEOUT_SECONDS = 900


class AutoscalingConfig(ConfigModel):
    """HPA on a Triton metric served by prometheus-adapter (with minReplicas 0: KEDA, on the same metric)."""

    metric: str | None = Field(None, description="Per-pod metric name; default depends on the backend")
    target: float | None = Field(None, gt=0, description="Per-pod target value of the metric")
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600, description="HPA scale-up window")
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600, description="HPA scale-down window")
    idle_seconds: int | None = Field(
        None,
        ge=60,
        le=86400,
        description="With minReplicas 0: how long the model goes without a request (at the gateway) and without "
        f"load on its metric before its last replica is removed (KEDA cooldownPeriod). Default {DEFAULT_IDLE_SECONDS}",
    )
    cold_start_timeout_seconds: int | None = Field(
        None,
        ge=60,
        le=3600,
        description="With minReplicas 0: how long a request that finds no replica is held at the edge while one "
        "starts (GPU node launch, image pull, model load); then it gets 504 Gateway Timeout (gRPC UNAVAILABLE). "
        f"Default {DEFAULT_COLD_START_TIMEOUT_SECONDS}",
    )

    @property
    def idle(self) -> int:
        return self.idle_seconds if self.idle_seconds is not None else DEFAULT_IDLE_SECONDS

    @property
    def cold_start_timeout(self) -> int:
        if self.cold_start_timeout_seconds is not None:
            return self.cold_start_timeout_seconds
        return DEFAULT_COLD_START_TIMEOUT_SECONDS


class VllmOptions(ConfigModel):
    """Engine arguments of Triton's vLLM backend (model.json)."""

    max_model_len: int | None = Field(None, ge=128, description="Context length; default the model's")
    gpu_memory_utilization: float = Field(0.9, gt=0.1, le=0.98, description="Share of GPU memory vLLM uses")
    dtype: Literal["auto", "float16", "bfloat16"] = Field("auto", description="Weights/activations dtype")
    max_num_seqs: int = Field(256, ge=1, description="Maximum concurrent sequences")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs")
    extra_engine_args: dict[str, Any] = Field(
        {},
        description="Further vLLM engine arguments, verbatim; checked against the engine-argument names of the "
        "vLLM in the vLLM image",
    )
    report_custom_metrics: bool | None = Field(
        None,
        description="REPORT_CUSTOM_METRICS (vllm:* metrics on Triton's /metrics); default: on only when the "
        "autoscaling metric needs it (the default vllm_requests_in_flight does)",
    )

    @field_validator("extra_engine_args")
    @classmethod
    def _known_engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        # AsyncEngineArgs(**model.json) raises TypeError on any other name, on the GPU node.
        unknown = sorted(k for k in value if k not in VLLM_ENGINE_ARGS)
        if unknown:
            raise ValueError(
                f"{unknown} {'is not an engine argument' if len(unknown) == 1 else 'are not engine arguments'} "
                f"of vLLM {versions.VLLM_VERSION} (the version in the vLLM image, {versions.TRITON_VLLM_IMAGE}); "
                "check the spelling against vLLM's EngineArgs (`vllm serve --help`, with _ for -)"
            )
        return value


class EngineBuildOptions(ConfigModel):
    """TensorRT-LLM engine build (convert_checkpoint + trtllm-build)."""

    dtype: Literal["float16", "bfloat16", "fp8"] = Field("bfloat16", description="Engine precision")
    max_batch_size: int = Field(64, ge=1, le=2048, description="trtllm-build --max_batch_size")
    max_input_len: int = Field(2048, ge=16, description="trtllm-build --max_input_len")
    max_seq_len: int = Field(4096, ge=32, description="trtllm-build --max_seq_len (input + output)")
    max_num_tokens: int = Field(8192, ge=64, description="trtllm-build --max_num_tokens")
    paged_kv_cache: bool = Field(True, description="Paged KV cache (needed for in-flight batching)")
    multiple_profiles: bool = Field(True, description="Build several TensorRT optimization profiles")
    kv_cache_free_gpu_mem_fraction: float = Field(0.9, gt=0, le=0.98, description="KV cache share of free GPU memory")
    # Serving settings filled into the tensorrt_llm model's config.pbtxt. Set explicitly because the
    # backend's own defaults changed across releases (TensorRT-LLM triton_backend docs/model_config.md).
    batch_scheduler_policy: Literal["max_utilization", "guaranteed_no_evict"] = Field(
        "max_utilization",
        description="tensorrt_llm batch_scheduler_policy: max_utilization packs more requests (may pause some "
        "when the KV cache is full); guaranteed_no_evict admits only what is sure to finish",
    )
    enable_kv_cache_reuse: bool = Field(
        True,
        description="tensorrt_llm enable_kv_cache_reuse: reuse KV blocks of shared prompt prefixes (needs pagedKvCache)",
    )
    enable_chunked_context: bool = Field(
        True,
        description="tensorrt_llm enable_chunked_context: split long prompts across iterations (needs pagedKvCache)",
    )
    max_queue_delay_microseconds: int = Field(
        0, ge=0, le=1_000_000, description="tensorrt_llm dynamic_batching max_queue_delay_microseconds"
    )
    bls_instance_count: int = Field(
        0,
        ge=0,
        le=2048,
        description="Instances of the served BLS model; each streams one request at a time (a Python process "
        "each, CPU memory). 0: maxBatchSize, as upstream advises",
    )
    model_family: Literal["auto", "llama", "qwen", "gemma", "phi", "gpt"] = Field(
        "auto",
        description="TensorRT-LLM checkpoint converter (examples/models/core/<family>/convert_checkpoint.py); "
        "auto: the build picks it from config.json's model_type, and preview guesses it from hfModelId's "
        "name for its checks. Set it when the name does not tell (the build refuses a family that "
        "config.json contradicts)",
    )
    timeout_minutes: int = Field(90, ge=5, le=600, description="Deadline for the build Job")

    @model_validator(mode="after")
    def _lengths(self) -> EngineBuildOptions:
        if self.max_input_len >= self.max_seq_len:
            raise ValueError(f"@maxInputLen: {self.max_input_len} must be below maxSeqLen ({self.max_seq_len})")
        for key, on in (
            ("enableKvCacheReuse", self.enable_kv_cache_reuse),
            ("enableChunkedContext", self.enable_chunked_context),
        ):
            if on and not self.paged_kv_cache:
                raise ValueError(f"@{key}: needs pagedKvCache true; set {key}: false or pagedKvCache: true")
        return self


# TensorRT-LLM checkpoint converters of the pinned release that cannot split a model into pipeline
# stages (model_repository/trtllm/build_engine.py CONVERTERS_WITHOUT_PIPELINE_PARALLEL has why).
CONVERTERS_WITHOUT_PIPELINE_PARALLEL = ("gemma", "phi")
# Hugging Face repository names of Qwen (v1), e.g. Qwen/Qwen-7B-Chat (Qwen1.5 and later: Qwen1.5-..., Qwen2-...).
QWEN_V1_NAME = re.compile(r"^qwen-", re.IGNORECASE)


def engine_family(model: Any) -> str | None:
    """The converter family of a model whose engine is built: engine.modelFamily, else a guess from
    hfModelId's name ("qwen-v1" for Qwen v1), None when the name does not tell."""
    if model.engine.model_family != "auto":
        return str(model.engine.model_family)
    name = model.hf_model_id.split("/", 1)[1].lower()
    if QWEN_V1_NAME.match(name):
        return "qwen-v1"
    if "gemma" in name:
        return "gemma"
    if re.match(r"^phi-?\d", name):
        return "phi"
    return None


def engine_family_problems(model: Any) -> list[str]:
    """What the engine build's checkpoint converter cannot do for this model ("@key: message" lines)."""
    if not model.builds_engine:
        return []
    family = engine_family(model)
    if family == "qwen-v1":
        return [
            f"@hfModelId: {model.hf_model_id} is Qwen (v1), which needs its repository's own Python code "
            "(trust_remote_code) and its qwen.tiktoken vocabulary; the engine build fetches and serves neither. "
            "Use Qwen1.5 or later (e.g. Qwen/Qwen2.5-7B-Instruct), or set engine.modelFamily if this is not Qwen v1"
        ]
    if family in CONVERTERS_WITHOUT_PIPELINE_PARALLEL and model.pipeline_parallel > 1 and model.engine.dtype != "fp8":
        guessed = model.engine.model_family == "auto"
        return [
            f"@pipelineParallel: {model.pipeline_parallel}, but TensorRT-LLM's {family} checkpoint converter "
            f"has no pipeline parallelism; use tensorParallel: {model.parallel_gpus} with pipelineParallel: 1"
            + (
                f" (the family is guessed from hfModelId: set engine.modelFamily if it is not {family})"
                if guessed
                else ""
            )
        ]
    return []


class ResourcesConfig(ConfigModel):
    """Triton container resources besides GPUs."""

    cpu: str = Field("4", pattern=QUANTITY, description="CPU request")
    memory: str = Field("24Gi", pattern=QUANTITY, description="Memory request and limit")
    shm_size: str = Field("8Gi", pattern=QUANTITY, description="/dev/shm size (Python backend, NCCL)")


class ModelConfig(ConfigModel):
    """One served model: a TritonLLM deployment of its own."""

    name: str = Field(..., pattern=DNS_LABEL, description="Served model name (required)")
    backend: Literal["vllm", "trtllm"] = Field(..., description="Triton backend (required): vllm or trtllm")
    hf_model_id: str = Field(
        ..., pattern=r"^[A-Za-z0-9][-\w.]*/[-\w.]+$", description="Hugging Face repo id (required)"
    )
    hf_revision: str = Field(
        "main",
        description="Hugging Face branch, tag or commit; TRT-LLM engines are keyed on the commit it "
        "resolves to when the program runs (a moved branch rebuilds)",
    )
    gated: bool | None = Field(None, description="Needs a Hugging Face token; guessed from the org when unset")
    tensor_parallel: int = Field(1, ge=1, le=64, description="Tensor-parallel degree")
    pipeline_parallel: int = Field(1, ge=1, le=16, description="Pipeline-parallel degree")
    gpus: int | None = Field(None, ge=1, description="GPUs per replica; default tensorParallel x pipelineParallel")
    node_pool: str = Field(..., description="Name of the nodePools entry that serves it (required)")
    min_replicas: int = Field(
        1,
        ge=0,
        description="HPA minimum replicas; 0 scales the model to zero when idle (KEDA and its HTTP add-on hold the "
        "next request at the edge while a replica starts: docs/autoscaling.md)",
    )
    max_replicas: int = Field(5, ge=1, description="HPA maximum replicas")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="See models[].autoscaling.*")
    drain_seconds: int = Field(
        DEFAULT_DRAIN_SECONDS,
        ge=10,
        le=3600,
        description="Scale-down drain: how long a replica chosen for removal lets its requests in flight finish "
        "after it stops taking new ones (Triton --exit-timeout-secs; the pod's preStop and "
        "terminationGracePeriodSeconds follow). At least gateway.requestTimeoutSeconds (docs/autoscaling.md)",
    )
    vllm: VllmOptions = Field(default_factory=VllmOptions, description="vLLM engine arguments (backend vllm)")
    engine: EngineBuildOptions = Field(
        default_factory=EngineBuildOptions, description="TensorRT-LLM build options (backend trtllm)"
    )
    engine_storage: Literal["efs", "local"] = Field(
        "local", description="Where TRT-LLM engines are staged before Triton starts"
    )
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="See models[].resources.*")
    openai: OpenAiOptions = Field(default_factory=OpenAiOptions, description="OpenAI-compatible API (docs/openai.md)")
    trtllm: TrtllmOptions = Field(
        default_factory=TrtllmOptions, description="TensorRT-LLM runtime choice (backend trtllm)"
    )
    weights: WeightsOptions = Field(
        default_factory=WeightsOptions,
        description="How the pods read the weights mirror (vLLM, llmapi); see models[].weights.*",
    )
    compile_cache: bool | None = Field(
        None,
        description="Share vLLM's torch.compile cache between the model's replicas through the model store: "
        "the first ready replica saves it, later ones restore it and skip the compilation (docs/coldstart.md "
        '"Compile cache"). Default: on for a vLLM model that compiles (not vllm.enforceEager) on a node pool '
        "of one GPU model; vLLM only",
    )
    multi_node: MultiNodeConfig | None = Field(
        None,
        description="Serve one replica across several nodes (TRT-LLM: tensorParallel within a node, "
        "pipelineParallel across nodes); see models[].multiNode.*",
    )

    @model_validator(mode="after")
    def _replicas(self) -> ModelConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"@minReplicas: {self.min_replicas} exceeds maxReplicas ({self.max_replicas})")
        try:
            metrics.hpa_metric_for(self.backend, self.autoscaling.metric)
        except ValueError as exc:
            raise ValueError(f"@autoscaling.metric: {exc}") from None
        chosen = metrics.hpa_metric_for(self.backend, self.autoscaling.metric)
        scale_to_zero_problems = self._scale_to_zero_problems()
        if scale_to_zero_problems:
            raise ValueError("\n".join(scale_to_zero_problems))
        if chosen.needs_vllm_custom_metrics and self.vllm.report_custom_metrics is False:
            raise ValueError(
                f"@vllm.reportCustomMetrics: false, but the autoscaling metric {chosen.name!r} is computed from "
                "the vLLM backend's custom metrics; remove the key or pick autoscaling.metric "
                "triton_request_rate"
            )
        if self.name in metrics.COMPOSING_MODELS:
            raise ValueError(
                f"@name: {self.name!r} is the name of a TensorRT-LLM ensemble's composing model, which the "
                "request-rate rules do not count; choose another name"
            )
        problems = (
            llmapi_config_problems(self)
            + openai_config_problems(self)
            + engine_family_problems(self)
            + weights_config_problems(self)
            + self._compile_cache_problems()
        )
        if problems:
            raise ValueError("\n".join(problems))
        if self.gpus is not None and self.gpus < self.parallel_gpus:
            raise ValueError(
                f"@gpus: {self.gpus} is below tensorParallel x pipelineParallel ({self.parallel_gpus}); "
                "raise gpus or drop the key"
            )
        return self

    def _compile_cache_problems(self) -> list[str]:
        problems: list[str] = []
        if self.compile_cache and self.backend != "vllm":
            problems.append(
                f"@compileCache: true, but model {self.name!r} runs TensorRT-LLM ({self.runtime}), which does not "
                "run torch.compile; only vLLM models have a compile cache: drop the key or set it to false"
            )
        elif self.compile_cache and self.vllm.enforce_eager:
            problems.append(
                "@compileCache: true, but vllm.enforceEager is true, so vLLM compiles nothing (it sets -O0: "
                "vllm/config/vllm.py, 0.13.0); drop compileCache or set vllm.enforceEager: false"
            )
        return problems

    def _scale_to_zero_problems(self) -> list[str]:
        if self.min_replicas == 0:
            if self.multi_node is not None:
                return [
                    "@minReplicas: 0 is not available for multiNode models (a LeaderWorkerSet group, not a "
                    "Deployment KEDA scales); set minReplicas: 1 or more"
                ]
            return []
        return [
            f"@autoscaling.{key}: only applies to models that scale to zero (minReplicas: 0); drop the key or set "
            "minReplicas: 0"
            for key, field in (
                ("idleSeconds", "idle_seconds"),
                ("coldStartTimeoutSeconds", "cold_start_timeout_seconds"),
            )
            if field in self.autoscaling.model_fields_set
        ]

    @property
    def scales_to_zero(self) -> bool:
        """minReplicas 0: KEDA owns the replica count and the HTTP add-on's interceptor holds requests at zero."""
        return self.min_replicas == 0

    @property
    def parallel_gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def nodes_per_replica(self) -> int:
        return self.multi_node.nodes if self.multi_node else 1

    @property
    def gpus_per_pod(self) -> int:
        """GPUs each pod requests: the whole replica, or one node's share of a multi-node replica."""
        return self.gpus_per_replica // self.nodes_per_replica

    @property
    def gpus_per_replica(self) -> int:
        return self.gpus or self.parallel_gpus

    @property
    def uses_llmapi(self) -> bool:
        """TRT-LLM through the LLM API: no engine build, weights loaded by TensorRT-LLM in the pod."""
        return self.backend == "trtllm" and self.trtllm.runtime == "llmapi"

    @property
    def builds_engine(self) -> bool:
        return self.backend == "trtllm" and self.trtllm.runtime == "engine"

    @property
    def runtime(self) -> str:
        """The serving runtime, which picks the Triton image (components/catalog/versions.py):
        vllm, or the trtllm runtime (llmapi or engine)."""
        return "vllm" if self.backend == "vllm" else self.trtllm.runtime

    @property
    def reports_vllm_custom_metrics(self) -> bool:
        """Whether Triton's vLLM backend reports its vllm:* metrics (REPORT_CUSTOM_METRICS) for this model.

        Its explicit `vllm.reportCustomMetrics`, else whatever its autoscaling metric needs; never for
        TensorRT-LLM models.
        """
        if self.backend != "vllm":
            return False
        if self.vllm.report_custom_metrics is not None:
            return self.vllm.report_custom_metrics
        return metrics.hpa_metric_for(self.backend, self.autoscaling.metric).needs_vllm_custom_metrics

    @property
    def is_gated(self) -> bool:
        if self.gated is not None:
            return self.gated
        return self.hf_model_id.split("/")[0] in GATED_ORGS
