"""`models[].openai`: Triton's OpenAI-compatible frontend in the model's pod."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from components.catalog import versions
from components.config.base import (
    ConfigModel,
)


class OpenAiOptions(ConfigModel):
    """Triton's OpenAI-compatible frontend in the model's pod (components/serving/builders/openai.py)."""

    enabled: bool = Field(
        False,
        description="Serve /v1/chat/completions, /v1/completions and /v1/models from Triton's OpenAI "
        "frontend in the same pod, next to the KServe HTTP/gRPC APIs",
    )
    tokenizer: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][-\w.]*/[-\w.]+$",
        description="Hugging Face id of the tokenizer whose chat template the frontend applies: only hfModelId "
        "(the pods read the tokenizer staged with the weights mirror, never the Hub)",
    )
    default_max_tokens: int = Field(
        256, ge=1, le=131072, description="max_tokens when a request sets none (the frontend's own default is 16)"
    )


# Inputs the frontend puts on every request to a non-vLLM model (server python/openai
# engine/utils/triton.py `_create_trtllm_generate_request`, the same at r25.12, r26.01, r26.02 and
# r26.08), and those it adds when the request sets the matching OpenAI field. Triton rejects a
# request with an input the model's config lacks ("unexpected inference input"), so a model must
# declare all of them. The `llmapi` model (NVIDIA/TensorRT-LLM triton_backend/all_models/llmapi)
# declares `streaming` and `sampling_param_*` instead, so no readable frontend release serves it.
TRTLLM_REQUEST_INPUTS = ("text_input", "stream", "max_tokens", "return_num_input_tokens", "return_num_output_tokens")
TRTLLM_OPTIONAL_REQUEST_INPUTS = ("stop_words", "top_p", "frequency_penalty", "presence_penalty", "seed", "temperature")


def config_problems(model: Any) -> list[str]:
    """Why the OpenAI frontend cannot serve this model config ("@key: message" lines), empty if it can."""
    problems: list[str] = []
    if not model.openai.enabled:
        if "tokenizer" in model.openai.model_fields_set or "default_max_tokens" in model.openai.model_fields_set:
            problems.append("@openai: tokenizer/defaultMaxTokens are only used with openai.enabled: true")
        return problems
    if model.openai.tokenizer is not None and model.openai.tokenizer != model.hf_model_id:
        problems.append(
            f"@openai.tokenizer: the pods read no Hugging Face repository at start (the weights mirror, "
            f"docs/weights.md): the frontend applies the chat template of {model.hf_model_id}'s own tokenizer, "
            "staged with its weights; drop openai.tokenizer"
        )
    if model.backend == "trtllm" and model.trtllm.runtime == "llmapi":
        problems.append(
            f"@openai.enabled: Triton {versions.TRITON_TRTLLM_LLMAPI.release}'s OpenAI frontend cannot serve the "
            "llmapi model (nor can any release up to 26.08): it sends the "
            f"TRT-LLM ensemble's inputs ({', '.join(TRTLLM_REQUEST_INPUTS)}) while the llmapi model takes "
            "`streaming` and `sampling_param_*`; use trtllm.runtime: engine for the OpenAI API, or keep llmapi "
            "and use the KServe APIs (openai.enabled: false)"
        )
    elif getattr(model, "multi_node", None) is not None:
        problems.append(
            "@openai.enabled: a multiNode replica runs TensorRT-LLM in leader mode (mpirun over "
            f"the LeaderWorkerSet), which Triton {versions.TRITON_TRTLLM_ENGINE.release}'s OpenAI frontend does not "
            "support; use openai.enabled: false"
        )
    elif model.backend == "trtllm" and model.parallel_gpus > 1:
        problems.append(
            f"@openai.enabled: tensorParallel x pipelineParallel = {model.parallel_gpus} runs TensorRT-LLM in "
            f"leader mode (one tritonserver per rank), which Triton {versions.TRITON_TRTLLM_ENGINE.release}'s OpenAI "
            "frontend does not support; use one GPU per replica or openai.enabled: false"
        )
    return problems
