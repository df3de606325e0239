"""TensorRT-LLM through the LLM API: the `llmapi` model repository (pure functions).

With `models[].trtllm.runtime: llmapi` a trtllm model is served by the `llmapi` Python model
that TensorRT-LLM ships for Triton (NVIDIA/TensorRT-LLM `triton_backend/all_models/llmapi/
tensorrt_llm/`, documented in triton-inference-server/tensorrtllm_backend `docs/llmapi.md`):
its `model.py` builds `tensorrt_llm.LLM(**model.yaml)` (PyTorch backend) and TensorRT-LLM
loads the Hugging Face checkpoint the pod staged from the weights mirror into /weights. No engine is built, so no TrtllmEngine
resource exists for such a model.

What we render per model (byte-identical for identical config):

    <served-name>/config.pbtxt     name, python backend, inputs/outputs the model reads/writes
    <served-name>/1/model.yaml     LLM() arguments from the stack config + `triton_config`

What the pod adds at start from the pinned image (never copied into this repository):

    <served-name>/1/upstream_model.py       the image's LLMAPI_MODEL_DIR/model.py
    <served-name>/1/helpers.py              the image's LLMAPI_MODEL_DIR/helpers.py

and from the ConfigMap, our streaming wrapper in front of upstream's model:

    <served-name>/1/model.py                model_repository/trtllm/llmapi_stream.py
    <served-name>/1/text_deltas.py          model_repository/trtllm/text_deltas.py

Upstream's model sends the whole text so far (`output.text`) on every streamed response; the
wrapper turns it into deltas, as every other served model streams (llmapi_stream.py says how).

Sources (TensorRT-LLM 1.1.0 is what the llmapi runtime's image, Triton 26.02, carries:
tensorrtllm_backend r26.02 dockerfile/Dockerfile.triton.trt_llm_backend installs tensorrt_llm==1.1.0
and copies triton_backend/all_models from TensorRT-LLM release/1.1; components/catalog/versions.py):
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
from pathlib import Path
from typing import Any

import yaml

from components.serving.builders.model_repository import served_model_name
from components.serving.builders.weights_mirror import WEIGHTS_DIR

# Inside nvcr.io/nvidia/tritonserver:<release>-trtllm-python-py3: TensorRT-LLM's Triton model
# templates live under /app/all_models (the inflight-batcher ones are used by build_engine.py).
LLMAPI_MODEL_DIR = "/app/all_models/llmapi/tensorrt_llm/1"
LLMAPI_CODE_FILES = ("model.py", "helpers.py")
UPSTREAM_MODEL_FILE = "upstream_model.py"  # the image's model.py, under the name the wrapper imports
# Our files for the model's version directory: ConfigMap key -> (source, name in 1/).
WRAPPER_DIR = Path(__file__).resolve().parents[3] / "model_repository" / "trtllm"
WRAPPER_FILES = {
    "llmapi_stream.py": (WRAPPER_DIR / "llmapi_stream.py", "model.py"),
    "text_deltas.py": (WRAPPER_DIR / "text_deltas.py", "text_deltas.py"),
}
REPOSITORY_DIR = "/llmapi/model_repository"  # emptyDir in the pod
CONFIG_MOUNT = "/llmapi/config"  # the ConfigMap with the rendered files


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
        # The snapshot staged from the weights mirror: TensorRT-LLM's LLM API loads a local Hugging Face
        # checkpoint directory, tokenizer included (release/1.1 tensorrt_llm/llmapi/llm_args.py: `model`
        # "The path to the model checkpoint or the model name from the Hugging Face Hub"; `tokenizer`
        # defaults to it).
        "model": WEIGHTS_DIR,
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
    decoupled = "true" if TRITON_CONFIG["decoupled"] else "false"
    lines = [
        f'name: "{served_model_name(model)}"',
        'backend: "python"',
        f"max_batch_size: {TRITON_CONFIG['max_batch_size']}",
        "",
        "model_transaction_policy {",
        f"  decoupled: {decoupled}",
        "}",
        "",
        # One instance on the CPU side: the LLM API places the model on the pod's GPUs itself.
        "instance_group [",
        "  {",
        "    count: 1",
        "    kind: KIND_CPU",
        "  }",
        "]",
        "",
        "input [",
    ]
    for i, (name, dtype, dims, optional) in enumerate(INPUTS):
        lines += ["  {", f'    name: "{name}"', f"    data_type: {dtype}", f"    dims: {_dims(dims)}"]
        if optional:
            lines.append("    optional: true")
        lines.append("  }" + ("," if i < len(INPUTS) - 1 else ""))
    lines += ["]", "", "output ["]
    for i, (name, dtype, dims) in enumerate(OUTPUTS):
        lines += [
            "  {",
            f'    name: "{name}"',
            f"    data_type: {dtype}",
            f"    dims: {_dims(dims)}",
            "  }" + ("," if i < len(OUTPUTS) - 1 else ""),
        ]
    lines += ["]", ""]
    return "\n".join(lines)


CONFIG_FILE_KEYS = {"config.pbtxt": "config.pbtxt", "model.yaml": "1/model.yaml"}


def model_files(model: Any) -> dict[str, str]:
    """Relative path -> text of the files we render (the upstream code is added in the pod)."""
    name = served_model_name(model)
    return {f"{name}/config.pbtxt": config_pbtxt(model), f"{name}/1/model.yaml": model_yaml(model)}


def configmap_data(model: Any) -> dict[str, str]:
    """ConfigMap data: flat keys (ConfigMap keys cannot hold '/'): the rendered files and the wrapper."""
    return {
        "config.pbtxt": config_pbtxt(model),
        "model.yaml": model_yaml(model),
        **{key: source.read_text() for key, (source, _) in WRAPPER_FILES.items()},
    }


def prepare_script(model: Any) -> str:
    """Shell run in the Triton container before the server: assemble the repository from the
    rendered files and the image's llmapi code; fail loudly if the image lacks it."""
    model_dir = f"{REPOSITORY_DIR}/{served_model_name(model)}"
    version_dir = f"{model_dir}/1"
    q = shlex.quote
    lines = ["set -eu", f"mkdir -p {q(version_dir)}"]
    for name in LLMAPI_CODE_FILES:
        src = f"{LLMAPI_MODEL_DIR}/{name}"
        lines.append(
            f'[ -f {q(src)} ] || {{ echo "the image has no {src}: not a TensorRT-LLM image with the '
            f'llmapi model" >&2; exit 1; }}'
        )
        target = UPSTREAM_MODEL_FILE if name == "model.py" else name
        lines.append(f"cp {q(src)} {q(version_dir + '/' + target)}")
    for key, (_, target) in WRAPPER_FILES.items():
        lines.append(f"cp {q(CONFIG_MOUNT + '/' + key)} {q(version_dir + '/' + target)}")
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
