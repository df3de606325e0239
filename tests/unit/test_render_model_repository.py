"""vLLM model repositories rendered from the stack config: model.json and config.pbtxt."""

from __future__ import annotations

import json

import pytest

from components.config import ModelConfig, parse_stack_config
from components.serving.builders import model_repository as render
from components.serving.builders.weights_mirror import WEIGHTS_DIR
from tests.unit.harness import load_stack_config

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient (requirements-local.txt) ships Triton's ModelConfig"
)
from google.protobuf import text_format  # noqa: E402


def stack_models(stack: str) -> list[ModelConfig]:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(stack).items() if k.startswith("tritonllm:")}
    return parse_stack_config(raw, {"hfToken"}).models


def vllm_model(**overrides) -> ModelConfig:
    base = {
        "name": "llama-2-7b-chat",
        "backend": "vllm",
        "hfModelId": "meta-llama/Llama-2-7b-chat-hf",
        "nodePool": "g5",
        "vllm": {"maxModelLen": 4096, "dtype": "float16"},
    }
    base.update(overrides)
    return ModelConfig.model_validate(base)


def parse_config(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_the_shared_config_is_triton_vllm_backend():
    config = parse_config(render.VLLM_CONFIG_TEMPLATE.read_text())
    assert config.backend == "vllm"
    assert config.name == ""  # the directory name is the model name
    assert config.model_transaction_policy.decoupled
    assert config.max_batch_size == 0
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_MODEL]


@pytest.mark.parametrize(
    "overrides, reported",
    [
        ({}, True),  # the default metric, vllm_requests_in_flight, is computed from vllm:* histograms
        ({"autoscaling": {"metric": "triton_request_rate"}}, False),  # Triton core metrics only: off
        ({"autoscaling": {"metric": "triton_request_rate"}, "vllm": {"reportCustomMetrics": True}}, True),  # opt-in
    ],
)
def test_report_custom_metrics_follows_the_autoscaling_metric(overrides, reported):
    model = vllm_model(**overrides)
    config = parse_config(render.vllm_model_files(model)[f"{model.name}/config.pbtxt"])
    assert ("REPORT_CUSTOM_METRICS" in config.parameters) is reported
    if reported:
        assert config.parameters["REPORT_CUSTOM_METRICS"].string_value == "true"


def test_custom_metrics_cannot_be_turned_off_under_a_metric_that_needs_them():
    with pytest.raises(ValueError, match="reportCustomMetrics"):
        vllm_model(vllm={"reportCustomMetrics": False})


def test_the_vllm_health_check_is_on_with_the_explicit_mode_it_needs():
    """A dead vLLM engine must unload its model (ENABLE_VLLM_HEALTH_CHECK, only in explicit model-control
    mode per vllm_backend r25.12 docs/health_check.md) and every probe must then fail (model ready)."""
    from components.serving.builders import triton_manifests as tm

    config = parse_config(render.VLLM_CONFIG_TEMPLATE.read_text())
    assert config.parameters["ENABLE_VLLM_HEALTH_CHECK"].string_value == "true"
    model = vllm_model()
    command = tm.triton_command(model, "bucket")
    modes = [a for a in command if a.startswith("--model-control-mode=")]
    assert modes == ["--model-control-mode=explicit"]
    assert f"--load-model={model.name}" in command
    probes = tm.probes(model.name)
    assert {p["httpGet"]["path"] for p in probes.values()} == {f"/v2/models/{model.name}/ready"}


def test_model_json_carries_the_model_and_its_options():
    args = render.vllm_engine_args(vllm_model(tensorParallel=2, hfRevision="08751db2aca9bf2f7f80d2e516117a53d7450235"))
    # the weights mirror staged into the pod (docs/weights.md): a local directory, never the Hub, so the
    # commit lives in the mirror's S3 path and vLLM gets no revision to resolve
    assert args["model"] == WEIGHTS_DIR == "/weights"
    assert "revision" not in args and "tokenizer_revision" not in args
    assert args["tensor_parallel_size"] == 2 and args["pipeline_parallel_size"] == 1
    assert args["max_model_len"] == 4096 and args["dtype"] == "float16"
    assert args["gpu_memory_utilization"] == 0.9 and args["max_num_seqs"] == 256
    # REPORT_CUSTOM_METRICS only reports when vLLM logs stats.
    assert args["disable_log_stats"] is False


def test_max_model_len_is_left_to_vllm_when_unset_and_extra_args_pass_through():
    args = render.vllm_engine_args(vllm_model(vllm={"extraEngineArgs": {"enable_prefix_caching": True}}))
    assert "max_model_len" not in args
    assert args["enable_prefix_caching"] is True


@pytest.mark.parametrize("key", ["model", "tensor_parallel_size", "disable_log_stats"])
def test_extra_args_cannot_override_what_the_stack_config_owns(key):
    with pytest.raises(ValueError, match=key):
        render.vllm_engine_args(vllm_model(vllm={"extraEngineArgs": {key: "x"}}))


def test_trtllm_models_have_no_vllm_repository():
    model = ModelConfig.model_validate({"name": "m", "backend": "trtllm", "hfModelId": "a/b", "nodePool": "g6e"})
    with pytest.raises(ValueError, match="not vllm"):
        render.vllm_engine_args(model)


@pytest.mark.parametrize("stack", ["vllm"])
def test_every_rendered_config_parses_and_every_model_json_is_valid(stack, tmp_path):
    models = [m for m in stack_models(stack) if m.backend == "vllm"]
    assert [m.name for m in models] == ["llama-2-7b-chat", "mistral-7b-instruct"]
    for model in models:
        root = render.render_vllm_repository(model, tmp_path / model.name)
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert files == [f"{model.name}/1/model.json", f"{model.name}/config.pbtxt"]
        parse_config((root / model.name / "config.pbtxt").read_text())
        engine_args = json.loads((root / model.name / "1" / "model.json").read_text())
        assert engine_args["model"] == WEIGHTS_DIR


def test_rendering_is_byte_stable_and_replaces_stale_files(tmp_path):
    model = vllm_model()
    first = {
        p.name: p.read_bytes() for p in render.render_vllm_repository(model, tmp_path / "a").rglob("*") if p.is_file()
    }
    out = tmp_path / "b"
    (out / "stale").mkdir(parents=True)
    (out / "stale" / "old.txt").write_text("left over")
    second = {p.name: p.read_bytes() for p in render.render_vllm_repository(model, out).rglob("*") if p.is_file()}
    assert first == second


def test_served_name_and_prefix():
    model = vllm_model()
    assert render.served_model_name(model) == "llama-2-7b-chat"
    assert render.models_prefix(model) == "models/llama-2-7b-chat/"
