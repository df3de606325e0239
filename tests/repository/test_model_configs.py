"""Every config.pbtxt under model_repository/ parses against Triton's ModelConfig protobuf.

The glob covers every repository in the tree (local/, vllm/, trtllm/, and any added later).
Templates may hold `${name}` placeholders (as the TRT-LLM templates do); they are replaced by a
neutral value before parsing: `1` outside quotes, the placeholder name inside quotes. The
protobuf is the one tritonclient ships (`tritonclient.grpc.model_config_pb2`), i.e. Triton's
own schema: an unknown field, a wrong enum or a type error fails the test.

Beyond parsing, models that speak the LLM contract (a `text_input` input, or the vLLM backend,
whose inputs the backend completes itself) are checked for the shared contract: names,
datatypes, optional extras and the decoupled transaction policy that streaming needs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
CONFIGS = sorted(MODEL_REPOSITORY.rglob("config.pbtxt"))

CONTRACT_TYPES = {
    "text_input": "TYPE_STRING",
    "max_tokens": "TYPE_INT32",
    "stream": "TYPE_BOOL",
    "temperature": "TYPE_FP32",
    "top_p": "TYPE_FP32",
    "top_k": "TYPE_INT32",
    "stop": "TYPE_STRING",
    "sampling_parameters": "TYPE_STRING",
    "exclude_input_in_output": "TYPE_BOOL",
    "apply_chat_template": "TYPE_BOOL",
}
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def _model_config_pb2():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def fill_placeholders(text: str) -> str:
    """Replace template placeholders: quoted ones by their name, bare ones by 1."""
    text = re.sub(r'"([^"\n]*)"', lambda m: '"' + PLACEHOLDER.sub(lambda p: p.group(1), m.group(1)) + '"', text)
    return PLACEHOLDER.sub("1", text)


def parse_config(path: Path):
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    config = pb2.ModelConfig()
    text_format.Parse(fill_placeholders(path.read_text(encoding="utf-8")), config)
    return config


def _id(path: Path) -> str:
    return str(path.relative_to(MODEL_REPOSITORY))


def test_the_tree_has_model_configurations():
    assert MODEL_REPOSITORY / "local" / "smollm2" / "config.pbtxt" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_parses_against_triton_model_config(path: Path):
    config = parse_config(path)
    assert config.backend or config.platform, f"{_id(path)}: neither backend nor platform is set"
    if config.name:
        # Triton requires a model's name, when given, to be its directory's name
        assert config.name == path.parent.name, f"{_id(path)}: name {config.name!r} != directory {path.parent.name!r}"
    input_names = [i.name for i in config.input]
    output_names = [o.name for o in config.output]
    assert len(set(input_names)) == len(input_names), f"duplicate inputs in {_id(path)}"
    assert len(set(output_names)) == len(output_names), f"duplicate outputs in {_id(path)}"
    for tensor in list(config.input) + list(config.output):
        assert tensor.data_type != 0, f"{_id(path)}: {tensor.name} has no data_type"
        assert len(tensor.dims) > 0 or config.max_batch_size > 0, f"{_id(path)}: {tensor.name} has no dims"


def _parsed_or_none(path: Path):
    """For selecting files at collection time: an unparsable file is reported by the parse test."""
    try:
        return parse_config(path)
    except Exception:  # noqa: BLE001
        return None


def _is_llm(config) -> bool:
    return config is not None and (any(i.name == "text_input" for i in config.input) or config.backend == "vllm")


LLM_CONFIGS = [p for p in CONFIGS if _is_llm(_parsed_or_none(p))]
PYTHON_CONFIGS = [p for p in CONFIGS if getattr(_parsed_or_none(p), "backend", "") == "python"]


@pytest.mark.parametrize("path", LLM_CONFIGS, ids=_id)
def test_llm_models_follow_the_shared_contract(path: Path):
    pb2 = _model_config_pb2()
    config = parse_config(path)
    inputs = {i.name: i for i in config.input}
    outputs = {o.name: o for o in config.output}
    for name, expected in CONTRACT_TYPES.items():
        if name in inputs:
            actual = pb2.DataType.Name(inputs[name].data_type)
            assert actual == expected, f"{_id(path)}: input {name} is {actual}, the contract says {expected}"
            if name != "text_input":
                assert inputs[name].optional, f"{_id(path)}: input {name} must be optional"
    if inputs:  # the vLLM backend completes its own inputs/outputs at load time
        assert "text_input" in inputs and not inputs["text_input"].optional
        assert "text_output" in outputs, f"{_id(path)}: no text_output output"
        assert pb2.DataType.Name(outputs["text_output"].data_type) == "TYPE_STRING"
    if config.platform != "ensemble":
        assert config.model_transaction_policy.decoupled, f"{_id(path)}: must be decoupled to stream"


@pytest.mark.parametrize("path", PYTHON_CONFIGS, ids=_id)
def test_python_backend_models_have_a_version_with_model_py(path: Path):
    versions = [d for d in path.parent.iterdir() if d.is_dir() and d.name.isdigit()]
    assert versions, f"{_id(path)}: no numeric version directory"
    for version in versions:
        assert (version / "model.py").is_file(), f"{version}: no model.py"


def test_local_model_parameters_are_understood_by_the_engine():
    import sys

    config = parse_config(MODEL_REPOSITORY / "local" / "smollm2" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    sys.path.insert(0, str(MODEL_REPOSITORY / "local" / "smollm2" / "1"))
    try:
        from llm_engine import EngineDefaults
    finally:
        sys.path.pop(0)
    defaults = EngineDefaults.from_parameters(params)
    assert defaults.max_tokens == int(params["default_max_tokens"])
    assert defaults.temperature == float(params["default_temperature"])
    assert defaults.apply_chat_template is (params["default_apply_chat_template"] == "true")
    known = {"gguf_path", "n_ctx", "n_threads", "n_batch", "REPORT_CUSTOM_METRICS", "max_concurrent_requests"} | {
        f"default_{f}" for f in EngineDefaults.__dataclass_fields__
    }
    assert set(params) <= known, f"parameters the model ignores: {set(params) - known}"
    assert int(params["n_ctx"]) >= 1024


def test_placeholder_filling_keeps_templates_parseable():
    text = 'name: "${model_name}"\nmax_batch_size: ${triton_max_batch_size}\nbackend: "python"\n'
    assert fill_placeholders(text) == 'name: "model_name"\nmax_batch_size: 1\nbackend: "python"\n'
