"""How to talk to a Triton LLM model whatever serves it: the local llama.cpp model, Triton's
vLLM backend, or the TensorRT-LLM `ensemble`.

All three take `text_input` and return `text_output`, but they differ in how sampling is
passed: the vLLM backend takes a `sampling_parameters` JSON string, the TRT-LLM ensemble
takes separate tensors (`max_tokens`, `temperature`, `top_k`, `stop_words`, `random_seed`...),
and the local model accepts both. `ModelInterface` reads the model's config (inputs,
datatypes, dims, max_batch_size, decoupled) and `plan_inputs` builds the request from it,
so the client and the benchmark work unchanged against any of them.
Pure functions only (no network, no heavy imports) so tests can call them directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Triton config data types -> the KServe v2 datatype names the clients use
CONFIG_TO_WIRE = {
    "TYPE_STRING": "BYTES",
    "TYPE_BOOL": "BOOL",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_FP16": "FP16",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
}
NUMPY_DTYPES = {
    "BYTES": "object",
    "BOOL": "bool",
    "FP32": "float32",
    "FP64": "float64",
    "FP16": "float16",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
}

# logical setting -> candidate input names, first match wins (TRT-LLM ensemble names included)
# (`sampling_param_*`: TensorRT-LLM's `llmapi` model, components/serving/builders/llmapi.py)
TENSOR_NAMES = {
    "max_tokens": ("max_tokens", "request_output_len", "sampling_param_max_tokens"),
    "temperature": ("temperature", "sampling_param_temperature"),
    "top_p": ("top_p", "runtime_top_p", "sampling_param_top_p"),
    "top_k": ("top_k", "runtime_top_k", "sampling_param_top_k"),
    "stop": ("stop", "stop_words", "sampling_param_stop"),
    "seed": ("seed", "random_seed", "sampling_param_seed"),
    "min_tokens": ("min_tokens", "min_length"),
    "repetition_penalty": ("repetition_penalty",),
}


def _concurrent_requests(config: dict) -> int | None:
    value = ((config.get("parameters") or {}).get("max_concurrent_requests") or {}).get("string_value")
    if value is None:
        return None
    try:
        per_instance = int(value)
    except (TypeError, ValueError):
        return None
    instances = sum(int(group.get("count", 1) or 1) for group in config.get("instance_group") or [{}])
    return per_instance * max(1, instances)


class ContractError(ValueError):
    """The model cannot take the request as asked (missing input, unsupported setting...)."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str  # wire name: BYTES, INT32, ...
    dims: tuple[int, ...]
    optional: bool


@dataclass
class ModelInterface:
    name: str
    inputs: dict[str, InputSpec]
    outputs: set[str]
    max_batch_size: int = 0
    decoupled: bool = False
    platform: str = ""
    # requests the model generates at once over all its instances, when its config says so
    # (parameter `max_concurrent_requests` per instance, e.g. the local llama.cpp model: 1); None: unknown
    concurrent_requests: int | None = None

    @property
    def streamable(self) -> bool:
        """Can send several responses per request: decoupled models, and ensembles (the TRT-LLM
        ensemble carries no decoupled flag itself but streams when its tensorrt_llm step is decoupled)."""
        return self.decoupled or self.platform == "ensemble"

    @classmethod
    def from_config(cls, config: dict) -> ModelInterface:
        """From the model config JSON (HTTP GET /v2/models/<m>/config, or gRPC get_model_config as_json)."""
        if "config" in config and "input" not in config:
            config = config["config"]
        inputs = {}
        for item in config.get("input", []):
            dtype = item.get("data_type", "TYPE_STRING")
            inputs[item["name"]] = InputSpec(
                name=item["name"],
                datatype=CONFIG_TO_WIRE.get(dtype, dtype.replace("TYPE_", "")),
                dims=tuple(int(d) for d in item.get("dims", [])),
                optional=bool(item.get("optional", False)),
            )
        outputs = {item["name"] for item in config.get("output", [])}
        policy = config.get("model_transaction_policy") or {}
        return cls(
            name=config.get("name", ""),
            inputs=inputs,
            outputs=outputs,
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            decoupled=bool(policy.get("decoupled", False)),
            platform=str(config.get("platform", "") or ""),
            concurrent_requests=_concurrent_requests(config),
        )

    def concurrency_note(self, concurrency: int) -> str | None:
        """What to expect when more requests are in flight than the model generates at once."""
        if self.concurrent_requests is None or concurrency <= self.concurrent_requests:
            return None
        n = self.concurrent_requests
        return (
            f"note: model '{self.name}' generates {n} request{'' if n == 1 else 's'} at a time "
            f"(its config: max_concurrent_requests); at concurrency {concurrency} the others wait in "
            "Triton's queue, so throughput stays that of concurrency "
            f"{n} while time to first token grows with the queue"
        )

    def input_for(self, setting: str) -> InputSpec | None:
        for name in TENSOR_NAMES.get(setting, (setting,)):
            if name in self.inputs:
                # stop words are strings; the llmapi model's BOOL `stop` input cancels a request instead
                if setting == "stop" and self.inputs[name].datatype != "BYTES":
                    continue
                return self.inputs[name]
        return None

    def check_llm(self) -> None:
        if "text_input" not in self.inputs:
            raise ContractError(f"model '{self.name}' has no 'text_input' input; inputs: {sorted(self.inputs)}")
        if "text_output" not in self.outputs:
            raise ContractError(f"model '{self.name}' has no 'text_output' output; outputs: {sorted(self.outputs)}")


@dataclass
class GenerationSettings:
    """What the user asked for; None means "the model's default"."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False
    exclude_input_in_output: bool = True
    apply_chat_template: bool | None = None
    extra_sampling: dict[str, Any] = field(default_factory=dict)  # passed through in sampling_parameters

    def sampling_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("max_tokens", "temperature", "top_p", "top_k", "seed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.ignore_eos:
            out["ignore_eos"] = True
        out.update(self.extra_sampling)
        return out


def choose_style(iface: ModelInterface, style: str = "auto") -> str:
    if style not in ("auto", "json", "tensors"):
        raise ContractError(f"unknown sampling style {style!r} (auto, json, tensors)")
    if style == "auto":
        return "json" if "sampling_parameters" in iface.inputs else "tensors"
    if style == "json" and "sampling_parameters" not in iface.inputs:
        raise ContractError(f"model '{iface.name}' has no 'sampling_parameters' input")
    return style


def plan_inputs(
    iface: ModelInterface, prompt: str, settings: GenerationSettings, stream: bool, style: str = "auto"
) -> dict[str, Any]:
    """Logical request: input name -> Python value (str, bool, int, float, or list of str)."""
    iface.check_llm()
    style = choose_style(iface, style)
    values: dict[str, Any] = {"text_input": prompt}
    for name in ("stream", "streaming"):  # streaming: the llmapi model's name for it
        if name in iface.inputs:
            values[name] = bool(stream and iface.streamable)
    if "exclude_input_in_output" in iface.inputs:
        values["exclude_input_in_output"] = settings.exclude_input_in_output
    elif "sampling_param_exclude_input_from_output" in iface.inputs:
        values["sampling_param_exclude_input_from_output"] = settings.exclude_input_in_output
    if settings.apply_chat_template is not None:
        if "apply_chat_template" not in iface.inputs:
            raise ContractError(f"model '{iface.name}' has no 'apply_chat_template' input")
        values["apply_chat_template"] = settings.apply_chat_template

    if style == "json":
        sampling = settings.sampling_dict()
        if sampling:
            values["sampling_parameters"] = json.dumps(sampling)
    else:
        wanted = {
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
            "seed": settings.seed,
            "stop": list(settings.stop) or None,
        }
        if settings.ignore_eos:
            wanted["min_tokens"] = settings.max_tokens
        leftover = dict(settings.extra_sampling)
        for setting, value in wanted.items():
            if value is None:
                continue
            spec = iface.input_for(setting)
            if spec is None:
                key = "ignore_eos" if setting == "min_tokens" else setting
                leftover[key] = True if setting == "min_tokens" else value
                continue
            values[spec.name] = value
        if leftover:
            if "sampling_parameters" not in iface.inputs:
                raise ContractError(
                    f"model '{iface.name}' has no input for {', '.join(sorted(leftover))}; inputs: {sorted(iface.inputs)}"
                )
            values["sampling_parameters"] = json.dumps(leftover)

    # required inputs nobody asked for: TRT-LLM ensembles of some versions require these
    for spec in iface.inputs.values():
        if spec.optional or spec.name in values:
            continue
        if spec.name in ("bad_words", "stop_words"):
            values[spec.name] = [""]
        elif spec.name in ("max_tokens", "request_output_len"):
            values[spec.name] = settings.max_tokens or 128
        else:
            raise ContractError(f"model '{iface.name}' requires input '{spec.name}', which this client cannot fill")
    return values


def tensor_shape(iface: ModelInterface, name: str, value: Any) -> list[int]:
    spec = iface.inputs[name]
    n = len(value) if isinstance(value, list) else 1
    dims = [n if d == -1 else d for d in spec.dims] or [1]
    if -1 not in spec.dims and isinstance(value, list) and n != 1 and dims == [1]:
        dims = [n]
    return ([1] + dims) if iface.max_batch_size > 0 else dims


def to_numpy(iface: ModelInterface, name: str, value: Any):
    """A numpy array shaped and typed as the model config says (for tritonclient InferInput)."""
    import numpy as np

    spec = iface.inputs[name]
    items = value if isinstance(value, list) else [value]
    if spec.datatype == "BYTES":
        items = [v.encode("utf-8") if isinstance(v, str) else v for v in items]
    array = np.array(items, dtype=NUMPY_DTYPES.get(spec.datatype, "object"))
    return array.reshape(tensor_shape(iface, name, value))


def generate_body(values: dict[str, Any]) -> dict[str, Any]:
    """JSON body for Triton's /generate and /generate_stream (inputs by name, scalars as scalars)."""
    return dict(values)


def text_from_generate_json(obj: Any) -> str:
    """text_output of one /generate or /generate_stream event ('' when absent)."""
    if not isinstance(obj, dict):
        return ""
    value = obj.get("text_output", "")
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)
