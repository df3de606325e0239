"""`python -m tritonllm client` for real: against the local model, and unchanged against models
shaped like Triton's vLLM backend and the TRT-LLM ensemble (served by a second real Triton with
echo models that return what they received), so every request shape is checked on the wire."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tritonllm._llm_io import GenerationSettings, ModelInterface, plan_inputs, tensor_shape
from tritonllm.client import read_prompts, run_requests
from tritonllm.serve import TritonServer

from tests.repository.trtllm_reference import TEMPLATES_DIR, templates_dir

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = REPO_ROOT / "prompts.txt"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonllm", "client", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- against the local model


def test_shipped_prompts_file_has_prompts():
    prompts = read_prompts(PROMPTS)
    assert len(prompts) >= 8
    assert all(p.strip() and not p.startswith("#") for p in prompts)


@pytest.mark.parametrize(
    "protocol, extra",
    [
        ("grpc", []),
        ("http", []),
        ("http", ["--stream"]),
    ],
)
def test_client_sends_the_prompts_file_and_writes_results(triton_server, tmp_path, protocol, extra):
    results = tmp_path / "results.jsonl"
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    proc = run_cli(
        "--url",
        url,
        "--protocol",
        protocol,
        "--model-name",
        triton_server.model_name,
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(results),
        "--max-tokens",
        "12",
        "--concurrency",
        "4",
        "--temperature",
        "0",
        *extra,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prompts = read_prompts(PROMPTS)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == len(prompts) and all(" OK " in ln for ln in lines), proc.stdout
    assert f"total: {len(prompts)}/{len(prompts)} succeeded, 0 failed" in proc.stdout
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    assert all(r["ok"] and r["text"].strip() and r["latency_s"] > 0 and r["ttft_s"] is not None for r in rows)
    if protocol == "grpc" or extra:
        assert max(r["chunks"] for r in rows) > 1  # streamed


def test_client_text_results_file(triton_server, tmp_path):
    results = tmp_path / "out.txt"
    prompts = tmp_path / "p.txt"
    prompts.write_text("# comment\n\nWhat is the capital of France?\nSay hi.\n")
    proc = run_cli(
        "--url",
        triton_server.grpc_url,
        "--model-name",
        triton_server.model_name,
        "--input-prompts",
        str(prompts),
        "--results-file",
        str(results),
        "--max-tokens",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    text = results.read_text()
    assert text.count("=== request") == 2 and "What is the capital of France?" in text and "Output:" in text


def test_client_tensor_style_against_the_local_model(triton_server, tmp_path):
    """The TRT-LLM request shape (separate tensors) also works on the local model."""
    results = tmp_path / "r.jsonl"
    proc = run_cli(
        "--url",
        triton_server.grpc_url,
        "--model-name",
        triton_server.model_name,
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(results),
        "--max-tokens",
        "6",
        "--sampling-style",
        "tensors",
        "--temperature",
        "0",
        "--top-k",
        "5",
        "--stop",
        "zzz",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_client_exits_1_when_requests_fail(triton_server, tmp_path):
    results = tmp_path / "r.jsonl"
    proc = run_cli(
        "--url",
        triton_server.http_url,
        "--protocol",
        "http",
        "--model-name",
        triton_server.model_name,
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(results),
        "--max-tokens",
        "100000",
    )
    assert proc.returncode == 1, proc.stdout
    assert "FAIL" in proc.stdout and "[400]" in proc.stdout and "max_tokens" in proc.stdout
    assert "0/10 succeeded, 10 failed" in proc.stdout
    assert all(not json.loads(line)["ok"] for line in results.read_text().splitlines())


def test_client_exits_2_for_an_unknown_model(triton_server, tmp_path):
    proc = run_cli(
        "--url",
        triton_server.grpc_url,
        "--model-name",
        "no-such-model",
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(tmp_path / "r.txt"),
    )
    assert proc.returncode == 2
    assert "no-such-model" in proc.stderr


def test_client_exits_2_when_the_server_is_unreachable(tmp_path):
    from tritonllm.serve import find_free_port

    port = find_free_port()
    proc = run_cli(
        "--url",
        f"http://127.0.0.1:{port}",
        "--protocol",
        "http",
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(tmp_path / "r.txt"),
        timeout=120,
    )
    assert proc.returncode == 2
    assert "cannot reach" in proc.stderr


# --------------------------------------------------------------------------- vLLM- and TRT-LLM-shaped models

ECHO_MODEL = textwrap.dedent('''
    import json
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        """Returns, as text_output, a JSON description of the tensors it received."""

        def initialize(self, args):
            self.config = json.loads(args["model_config"])

        def execute(self, requests):
            batched = self.config.get("max_batch_size", 0) > 0
            for request in requests:
                sender = request.get_response_sender()
                seen = {}
                for spec in self.config["input"]:
                    tensor = pb_utils.get_input_tensor_by_name(request, spec["name"])
                    if tensor is None:
                        continue
                    array = tensor.as_numpy()
                    values = [v.decode() if isinstance(v, bytes) else v.item() for v in array.reshape(-1)]
                    seen[spec["name"]] = {"dtype": str(array.dtype), "shape": list(array.shape), "value": values}
                text = json.dumps(seen, sort_keys=True)
                streaming = bool(seen.get("stream", {}).get("value", [False])[0])
                pieces = [text[: len(text) // 2], text[len(text) // 2:]] if streaming else [text]
                for piece in pieces:
                    data = [[piece.encode()]] if batched else [piece.encode()]
                    out = pb_utils.Tensor("text_output", np.array(data, dtype=np.object_))
                    sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
''')

# Inputs of Triton's vLLM backend (what its auto_complete_config adds).
VLLM_INPUTS = [
    ("text_input", "TYPE_STRING", "1", False),
    ("stream", "TYPE_BOOL", "1", True),
    ("sampling_parameters", "TYPE_STRING", "1", True),
    ("exclude_input_in_output", "TYPE_BOOL", "1", True),
    ("return_finish_reason", "TYPE_BOOL", "1", True),
    ("return_num_output_tokens", "TYPE_BOOL", "1", True),
]


# TRT-LLM-shaped models take the inputs of the UPSTREAM configs (the reference data's trtllm-templates/,
# TensorRT-LLM 1.x files, what the pinned 25.12 image ships), filled as the build Job fills them:
# the served BLS model (tensorrt_llm_bls) and the ensemble. Skipped when the reference is absent.
def upstream_trtllm_inputs(model: str) -> str:
    """The `input [...]` block of the filled upstream config of `model`, as config text."""
    from string import Template

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from tests.repository.trtllm_reference import make_app

    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp), "1.x")
        text = (app / "all_models" / "inflight_batcher_llm" / model / "config.pbtxt").read_text()
    values = {
        "triton_max_batch_size": "64",
        "logits_datatype": "TYPE_FP32",
        "decoupled_mode": "true",
        "prompt_embedding_table_data_type": "TYPE_FP16",
        "bls_instance_count": "1",
    }
    config = text_format.Parse(Template(text).safe_substitute(values), model_config_pb2.ModelConfig())
    only_inputs = model_config_pb2.ModelConfig()
    only_inputs.input.extend(config.input)
    return text_format.MessageToString(only_inputs)


def _tensors(kind: str, items) -> str:
    blocks = []
    for name, dtype, dims, optional in items:
        blocks.append(
            f'  {{ name: "{name}" data_type: {dtype} dims: [ {dims} ]' + (" optional: true" if optional else "") + " }"
        )
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def write_echo_repository(root: Path) -> None:
    text_output = [("text_output", "TYPE_STRING", "-1", False)]
    # vLLM-backend-shaped model: decoupled python model, max_batch_size 0
    (root / "vllm_model" / "1").mkdir(parents=True)
    (root / "vllm_model" / "1" / "model.py").write_text(ECHO_MODEL)
    (root / "vllm_model" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        + _tensors("input", VLLM_INPUTS)
        + _tensors("output", text_output)
    )
    if not TEMPLATES_DIR.is_dir():
        return  # the TRT-LLM-shaped tests skip (templates_dir() says why)
    # The served TRT-LLM model: a decoupled Python model with the upstream BLS inputs.
    bls_inputs = upstream_trtllm_inputs("tensorrt_llm_bls")
    (root / "trtllm_bls" / "1").mkdir(parents=True)
    (root / "trtllm_bls" / "1" / "model.py").write_text(ECHO_MODEL)
    (root / "trtllm_bls" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 64\nmodel_transaction_policy { decoupled: true }\n'
        + bls_inputs
        + _tensors("output", text_output)
    )
    # The upstream ensemble's inputs (no decoupled flag of its own, max_batch_size 64) over a decoupled step.
    ensemble_inputs = upstream_trtllm_inputs("ensemble")
    (root / "trtllm_echo" / "1").mkdir(parents=True)
    (root / "trtllm_echo" / "1" / "model.py").write_text(ECHO_MODEL)
    (root / "trtllm_echo" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 64\nmodel_transaction_policy { decoupled: true }\n'
        + ensemble_inputs
        + _tensors("output", text_output)
    )
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    names = [i.name for i in text_format.Parse(ensemble_inputs, model_config_pb2.ModelConfig()).input]
    maps = "".join(f'      input_map {{ key: "{n}" value: "{n}" }}\n' for n in names)
    (root / "ensemble" / "1").mkdir(parents=True)
    (root / "ensemble" / "config.pbtxt").write_text(
        'platform: "ensemble"\nmax_batch_size: 64\n'
        + ensemble_inputs
        + _tensors("output", text_output)
        + 'ensemble_scheduling {\n  step [\n    {\n      model_name: "trtllm_echo"\n      model_version: -1\n'
        + maps
        + '      output_map { key: "text_output" value: "text_output" }\n    }\n  ]\n}\n'
    )


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo_repository")
    write_echo_repository(root)
    server = TritonServer(root, http_port=0, grpc_port=0, metrics_port=0, log_file=root.parent / "echo.log")
    server.start()
    expected = {"vllm_model": "READY"}
    if TEMPLATES_DIR.is_dir():
        expected.update(trtllm_bls="READY", trtllm_echo="READY", ensemble="READY")
    assert server.models == expected, server.models
    yield server
    server.stop()


SETTINGS = GenerationSettings(
    max_tokens=17, temperature=0.25, top_p=0.5, top_k=5, stop=["END", "STOP"], seed=11, ignore_eos=True
)
TRANSPORTS = [("grpc", True), ("grpc", False), ("http", False), ("http", True)]


def _received(echo_server, model: str, protocol: str, stream: bool) -> tuple[dict, int]:
    url = echo_server.grpc_url if protocol == "grpc" else echo_server.http_url
    _, results = asyncio.run(run_requests(url, model, ["hello"], SETTINGS, protocol=protocol, stream=stream))
    result = results[0]
    assert result.ok, result.error
    return json.loads(result.text), result.chunks


@pytest.mark.parametrize("protocol, stream", TRANSPORTS)
def test_vllm_shaped_model_gets_sampling_parameters_json(echo_server, protocol, stream):
    seen, chunks = _received(echo_server, "vllm_model", protocol, stream)
    assert set(seen) == {"text_input", "stream", "sampling_parameters", "exclude_input_in_output"}
    assert seen["text_input"]["value"] == ["hello"]
    assert seen["stream"]["value"] == [stream]
    assert seen["exclude_input_in_output"]["value"] == [True]
    assert json.loads(seen["sampling_parameters"]["value"][0]) == {
        "max_tokens": 17,
        "temperature": 0.25,
        "top_p": 0.5,
        "top_k": 5,
        "seed": 11,
        "stop": ["END", "STOP"],
        "ignore_eos": True,
    }
    assert chunks == (2 if stream else 1)


@pytest.mark.parametrize("model", ["trtllm_bls", "ensemble"])
@pytest.mark.parametrize("protocol, stream", TRANSPORTS)
def test_trtllm_shaped_models_get_separate_tensors(echo_server, model, protocol, stream):
    templates_dir()  # skips with the reason when the upstream templates are absent
    seen, chunks = _received(echo_server, model, protocol, stream)
    # TensorRT-LLM 1.x input names (min_tokens, seed; v0.19.0 had min_length, random_seed).
    assert set(seen) == {
        "text_input",
        "max_tokens",
        "stop_words",
        "exclude_input_in_output",
        "top_k",
        "top_p",
        "temperature",
        "min_tokens",
        "seed",
        "stream",
    }
    assert seen["text_input"]["value"] == ["hello"] and seen["text_input"]["dtype"] == "object"
    assert seen["max_tokens"]["value"] == [17] and seen["max_tokens"]["dtype"] == "int32"
    assert seen["min_tokens"]["value"] == [17]  # ignore_eos, the TRT-LLM way
    assert seen["top_k"]["dtype"] == "int32" and seen["top_k"]["value"] == [5]
    assert seen["seed"]["dtype"] == "uint64" and seen["seed"]["value"] == [11]
    assert seen["temperature"]["dtype"] == "float32" and seen["temperature"]["value"][0] == pytest.approx(0.25)
    assert seen["top_p"]["value"][0] == pytest.approx(0.5)
    assert seen["stop_words"]["dtype"] == "object" and seen["stop_words"]["value"] == ["END", "STOP"]
    assert seen["stream"]["value"] == [stream]
    assert chunks == (2 if stream else 1)


def test_client_cli_runs_unchanged_against_the_ensemble(echo_server, tmp_path):
    templates_dir()
    results = tmp_path / "r.jsonl"
    proc = run_cli(
        "--url",
        echo_server.grpc_url,
        "--model-name",
        "ensemble",
        "--input-prompts",
        str(PROMPTS),
        "--results-file",
        str(results),
        "--max-tokens",
        "9",
        "--concurrency",
        "5",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == len(read_prompts(PROMPTS))
    for row in rows:
        seen = json.loads(row["text"])
        assert seen["text_input"]["value"] == [row["prompt"]] and seen["max_tokens"]["value"] == [9]


def test_required_trtllm_inputs_are_filled_and_unknown_ones_refused():
    config = {
        "name": "ensemble",
        "platform": "ensemble",
        "max_batch_size": 8,
        "input": [
            {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
            {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": [1]},
            {"name": "bad_words", "data_type": "TYPE_STRING", "dims": [-1]},
            {"name": "stop_words", "data_type": "TYPE_STRING", "dims": [-1]},
        ],
        "output": [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}],
    }
    iface = ModelInterface.from_config(config)
    values = plan_inputs(iface, "hi", GenerationSettings(max_tokens=5), stream=True)
    assert values == {"text_input": "hi", "max_tokens": 5, "bad_words": [""], "stop_words": [""]}
    assert tensor_shape(iface, "bad_words", [""]) == [1, 1]
    config["input"].append({"name": "beam_width", "data_type": "TYPE_INT32", "dims": [1]})
    with pytest.raises(ValueError, match="beam_width"):
        plan_inputs(ModelInterface.from_config(config), "hi", GenerationSettings(), stream=False)
    with pytest.raises(ValueError, match="top_k"):  # a setting the model has no input for
        plan_inputs(
            ModelInterface.from_config({**config, "input": config["input"][:2]}),
            "hi",
            GenerationSettings(top_k=3),
            stream=False,
        )
