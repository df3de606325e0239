"""TrtllmEngine's pure parts: the cache key, the Job manifest, and the build script (dry run and fill)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from components.catalog import versions
from components.config import StackConfig, parse_stack_config
from components.providers import engine_build as eb_provider
from components.serving.builders import engine_build as eb
from tests import hf_api
from tests.k8s_schema import validate_k8s_object
from tests.unit.harness import load_stack_config
from tests.weights_helpers import mirror_of

SCRIPT = eb.BUILD_SCRIPT


def stack_config(stack: str = "dev", **model_overrides) -> StackConfig:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(stack).items() if k.startswith("tritonllm:")}
    if model_overrides:
        model = dict(raw["models"][0])
        for key, value in model_overrides.items():
            model[key] = {**model.get(key, {}), **value} if isinstance(value, dict) else value
        raw["models"] = [model]
    return parse_stack_config(raw, {"hfToken"})


def dev_model(**overrides):
    cfg = stack_config("dev", **overrides)
    return cfg.models[0], cfg


def load_script_module():
    spec = importlib.util.spec_from_file_location("build_engine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the key


def key_for(**overrides) -> str:
    model, cfg = dev_model(**overrides)
    return eb_provider.resolve_engine(model, cfg.site_of(model)).key


@pytest.fixture
def hf(monkeypatch):
    """The faked Hugging Face revision API (tests/hf_api.py), fresh for this test."""
    fake = hf_api.FakeHfApi()
    monkeypatch.setattr(eb_provider, "http_get_json", fake)
    eb_provider._resolve.cache_clear()
    yield fake
    eb_provider._resolve.cache_clear()


def test_key_is_a_stable_sha256_of_the_parts(hf):
    model, cfg = dev_model()
    resolved = eb_provider.resolve_engine(model, cfg.site_of(model))
    parts = resolved.parts
    assert parts["gpu"] == "L40S-sm89"
    assert parts["image"] == versions.TRITON_TRTLLM_ENGINE_IMAGE
    assert parts["hf_model_id"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert parts["hf_commit"] == hf.sha_for("meta-llama/Llama-3.2-1B-Instruct", "main")
    assert len(resolved.key) == 64 and key_for() == resolved.key


@pytest.mark.parametrize(
    "override",
    [
        {"hfRevision": "9213176726f574b556790deb65791e0c5aa438b6"},
        {"hfModelId": "meta-llama/Llama-3.2-3B-Instruct"},
        {"tensorParallel": 2, "maxReplicas": 4},
        {"name": "llama-small"},
    ],
)
def test_anything_that_changes_the_engine_or_repository_changes_the_key(hf, override):
    assert key_for(**override) != key_for()


def _changed(field: str, info, current):
    """A different valid value for an EngineBuildOptions field."""
    from typing import get_args

    choices = get_args(info.annotation)
    if choices:
        return next(c for c in choices if c != current)
    if info.annotation is bool:
        return not current
    if info.annotation is float:
        return round(current - 0.05, 2)
    if info.annotation is int:
        return current + 1 if field != "max_input_len" else current - 1
    raise AssertionError(f"add a changed value for engine.{field} ({info.annotation}) to this test")


def test_every_engine_option_is_part_of_the_key(hf):
    """Iterates over every EngineBuildOptions field: an option left out of the key fails here."""
    from components.config import EngineBuildOptions

    model, cfg = dev_model()
    checked = []
    for field, info in EngineBuildOptions.model_fields.items():
        if field == "timeout_minutes":
            continue  # the build deadline shapes nothing that is built (tested below)
        start = model.engine.model_dump()
        if field == "paged_kv_cache":  # the options that need a paged cache off on both sides
            start.update(enable_kv_cache_reuse=False, enable_chunked_context=False)
        before = model.model_copy(update={"engine": EngineBuildOptions.model_validate(start)})
        after = model.model_copy(
            update={"engine": EngineBuildOptions.model_validate({**start, field: _changed(field, info, start[field])})}
        )
        assert (
            eb_provider.resolve_engine(after, cfg.site_of(after)).key
            != eb_provider.resolve_engine(before, cfg.site_of(before)).key
        ), f"engine.{field} does not change the engine key"
        checked.append(field)
    assert len(checked) == len(EngineBuildOptions.model_fields) - 1


def test_the_build_deadline_does_not_change_the_key(hf):
    assert key_for(engine={"timeoutMinutes": 30}) == key_for()


@pytest.mark.parametrize("what", ["build_engine.py", "bls_stream.py"])
def test_the_build_script_and_the_files_it_ships_are_part_of_the_key(hf, monkeypatch, tmp_path, what):
    base = key_for()
    source = eb.BUILD_SCRIPT if what == "build_engine.py" else eb.SHIPPED_FILES[what]
    copy = tmp_path / what
    copy.write_text(source.read_text() + "\n# changed\n")
    if what == "build_engine.py":
        monkeypatch.setattr(eb, "BUILD_SCRIPT", copy)
    else:
        monkeypatch.setattr(eb, "SHIPPED_FILES", {**eb.SHIPPED_FILES, what: copy})
    assert key_for() != base


def test_the_fill_values_are_part_of_the_key(hf, monkeypatch):
    base = key_for()
    real = eb.job_fill_values

    def other_values(model, sha):
        values = real(model, sha)
        values["tensorrt_llm"]["prompt_embedding_table_data_type"] = "TYPE_BF16"
        return values

    monkeypatch.setattr(eb, "job_fill_values", other_values)
    assert key_for() != base


def test_the_image_and_layout_are_part_of_the_key(hf, monkeypatch):
    base = key_for()
    monkeypatch.setattr(versions, "TRITON_TRTLLM_ENGINE_IMAGE", versions.TRITON_TRTLLM_ENGINE_IMAGE + "-other")
    assert key_for() != base
    monkeypatch.undo()
    monkeypatch.setattr(eb_provider, "http_get_json", hf)
    monkeypatch.setattr(versions, "TENSORRT_LLM_ENGINE_VERSION", "0.0.0")
    assert key_for() != base
    monkeypatch.undo()
    monkeypatch.setattr(eb_provider, "http_get_json", hf)
    monkeypatch.setattr(eb, "ENGINE_LAYOUT_VERSION", eb.ENGINE_LAYOUT_VERSION + 1)
    assert key_for() != base


# --------------------------------------------------------------------------- hfRevision -> commit


def test_a_branch_is_resolved_to_its_commit_and_a_moved_branch_changes_the_key(hf):
    model, cfg = dev_model()
    first = eb_provider.resolve_engine(model, cfg.site_of(model))
    url, headers = hf.calls[0]
    assert url == "https://huggingface.co/api/models/meta-llama/Llama-3.2-1B-Instruct/revision/main"
    assert first.revision_sha == hf.sha_for(model.hf_model_id, "main")
    hf.moves += 1  # someone pushed to main
    eb_provider._resolve.cache_clear()
    assert eb_provider.resolve_engine(model, cfg.site_of(model)).key != first.key


def test_a_commit_sha_is_used_as_is_without_a_request(hf):
    sha = "9213176726f574b556790deb65791e0c5aa438b6"
    model, cfg = dev_model(hfRevision=sha)
    assert eb_provider.resolve_engine(model, cfg.site_of(model)).revision_sha == sha
    assert hf.calls == []


def test_the_token_is_sent_for_gated_models(hf):
    hf.gated, hf.token = {"meta-llama/Llama-3.2-1B-Instruct"}, "hf_secret"
    model, cfg = dev_model()
    with pytest.raises(eb.RevisionError, match="HTTP 401.*hfToken"):
        eb_provider.resolve_engine(model, cfg.site_of(model))
    resolved = eb_provider.resolve_engine(model, cfg.site_of(model), "hf_secret")
    assert hf.calls[-1][1]["Authorization"] == "Bearer hf_secret"
    assert resolved.revision_sha == hf.sha_for(model.hf_model_id, "main")


def test_an_unreachable_api_names_the_key_and_the_fix(hf):
    import urllib.error

    hf.fail_with = urllib.error.URLError("no route to host")
    model, cfg = dev_model()
    with pytest.raises(
        eb.RevisionError,
        match=r"'main' of meta-llama/Llama-3.2-1B-Instruct: cannot resolve.*"
        r"pin hfRevision to a 40-character commit sha",
    ):
        eb_provider.resolve_engine(model, cfg.site_of(model))


def test_resolution_failures_are_config_errors_naming_the_key(hf):
    from components.config import ConfigError

    hf.gated, hf.token = {"meta-llama/Llama-3.2-1B-Instruct"}, "hf_secret"
    _, cfg = dev_model()
    with pytest.raises(ConfigError, match=r"models\[0\]\.hfRevision: 'main' of .*HTTP 401.*hfToken"):
        eb_provider.resolve_engines(cfg, None)
    assert set(eb_provider.resolve_engines(cfg, "hf_secret")) == {"llama-3-2-1b"}


def test_the_job_builds_the_resolved_commit(hf):
    manifest, model, key = job()
    args = manifest["spec"]["template"]["spec"]["initContainers"][1]["command"]
    assert args[args.index("--hf-revision") + 1] == hf.sha_for(model.hf_model_id, "main")


def test_gpu_family_is_part_of_the_key(hf):
    model, cfg = dev_model()
    g6 = cfg.model_copy(update={"node_pools": [cfg.node_pools[0].model_copy(update={"instance_families": ["g6"]})]})
    assert eb_provider.resolve_engine(model, g6.site_of(model)).parts["gpu"] == "L4-sm89"
    assert eb_provider.resolve_engine(model, g6.site_of(model)).key != key_for()


def test_mixed_gpu_pools_are_refused():
    model, cfg = dev_model()
    mixed = cfg.node_pools[0].model_copy(update={"instance_families": ["g5", "g6e"]})
    with pytest.raises(ValueError, match="mixes GPU models"):
        eb.gpu_architecture(mixed)


# --------------------------------------------------------------------------- the Job


def job(**kw):
    model, cfg = dev_model()
    resolved = eb_provider.resolve_engine(model, cfg.site_of(model))
    args = {
        "key": resolved.key,
        "namespace": model.name,
        "bucket": "models-bucket",
        "weights": mirror_of(model, resolved.revision_sha),
        "revision_sha": resolved.revision_sha,
        **kw,
    }
    return eb.engine_build_job_manifest(model, cfg.site_of(model), **args), model, resolved.key


def test_job_manifest_validates_against_the_kubernetes_schema():
    manifest, model, key = job(image_pull_secret="ngc-pull")
    validate_k8s_object(manifest)
    validate_k8s_object(eb.script_configmap_manifest(key, model.name))


def test_job_runs_on_the_serving_nodepool_with_gpus_and_a_deadline():
    manifest, model, key = job()
    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == model.engine.timeout_minutes * 60
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "g6e"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    stage, build = pod["initContainers"]
    assert stage["name"] == "stage-weights"  # the weights mirror first (tests/unit/test_weights_mirror.py)
    assert build["image"] == versions.TRITON_TRTLLM_ENGINE_IMAGE
    assert build["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert build["command"][:2] == ["python3", f"{eb.SCRIPT_DIR}/build_engine.py"]
    # No Hugging Face token in the build: it reads the staged mirror, offline.
    assert not {"HF_TOKEN", "HF_TOKEN_PATH"} & {e["name"] for e in build["env"]}
    assert "hf-token" not in {v["name"] for v in pod["volumes"]}
    upload = pod["containers"][0]
    assert upload["image"] == versions.AWS_CLI_IMAGE
    script = upload["command"][-1]
    # Everything first, the marker last: a half-uploaded engine is never "complete".
    assert script.index("aws s3 sync") < script.index(f"{key}/{eb.COMPLETE_MARKER}")
    assert f"s3://models-bucket/engines/{key}/" in script
    assert pod["serviceAccountName"] == eb.BUILDER_SERVICE_ACCOUNT
    assert manifest["metadata"]["name"] == f"engine-build-{key[:16]}"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "fp8"])
def test_the_build_is_offline_unless_its_convert_step_calibrates_from_the_hub(dtype):
    """FP8 runs TensorRT-LLM's quantize.py, whose default --calib_dataset cnn_dailymail is a Hub dataset
    (quantize_by_modelopt.py get_calib_dataloader: load_dataset("cnn_dailymail", name="3.0.0")), which
    the datasets library refuses to fetch under HF_HUB_OFFLINE=1: that build must stay online. The
    others read only the staged mirror, offline. Decided from the convert command the Job's own
    arguments make, so a local calibration set passed by build_engine.py would turn FP8 offline again."""
    model, cfg = dev_model(engine={"dtype": dtype})
    resolved = eb_provider.resolve_engine(model, cfg.site_of(model))
    manifest = eb.engine_build_job_manifest(
        model,
        cfg.site_of(model),
        key=resolved.key,
        namespace=model.name,
        bucket="b",
        weights=mirror_of(model, resolved.revision_sha),
        revision_sha=resolved.revision_sha,
    )
    build = manifest["spec"]["template"]["spec"]["initContainers"][1]
    script = load_script_module()
    convert = script.convert_command(script.parse_args(build["command"][2:]), "llama")
    quantizes = any(part.endswith("quantization/quantize.py") for part in convert)
    calib = convert[convert.index("--calib_dataset") + 1] if "--calib_dataset" in convert else None
    from_hub = quantizes and (calib is None or not calib.startswith("/"))
    env = {e["name"]: e.get("value") for e in build["env"]}
    assert from_hub == (dtype == "fp8") == eb.calibrates_from_hub(model)
    assert ("HF_HUB_OFFLINE" not in env) if from_hub else (env["HF_HUB_OFFLINE"] == "1")
    assert not {"HF_TOKEN", "HF_TOKEN_PATH"} & set(env)  # a public dataset: still no token


def test_script_ships_in_the_configmap_verbatim():
    model, cfg = dev_model()
    cm = eb.script_configmap_manifest("k" * 64, model.name)
    assert cm["data"]["build_engine.py"] == SCRIPT.read_text()
    # build_engine.py copies bls_stream.py from its own directory into the served model.
    module = load_script_module()
    assert set(cm["data"]) == {"build_engine.py", *module.SHIPPED_FILES}
    for name in module.SHIPPED_FILES:
        assert cm["data"][name] == (SCRIPT.parent / name).read_text()


# --------------------------------------------------------------------------- the build script


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_jobs_own_arguments_pass_the_scripts_dry_run():
    manifest, model, key = job()
    args = manifest["spec"]["template"]["spec"]["initContainers"][1]["command"][2:]
    result = run_script(*args, "--dry-run", "--model-family", "llama")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["cache_key"] == key
    steps = dict(line.split(": ", 1) for line in lines[1:])
    # No download: the Job's stage-weights container put the weights mirror there.
    assert steps["download"] == f"use the staged snapshot {eb.WEIGHTS_STAGE_DIR} (config.json required)"
    assert steps["convert"].startswith("python3 /app/examples/models/core/llama/convert_checkpoint.py")
    assert "--dtype bfloat16" in steps["convert"]
    build = steps["build"]
    for flag in (
        "--max_batch_size 64",
        "--max_input_len 2048",
        "--max_seq_len 4096",
        "--max_num_tokens 8192",
        "--kv_cache_type paged",
        "--multiple_profiles enable",
        "--use_paged_context_fmha enable",
    ):
        assert flag in build
    assert steps["template:tensorrt_llm_bls"].endswith("/work/out/model_repository/llama-3-2-1b")
    assert steps["template:ensemble"].endswith("/work/out/model_repository/ensemble")
    assert "prompt_embedding_table_data_type:TYPE_FP16" in steps["fill:tensorrt_llm"]
    for value in (
        "batch_scheduler_policy:max_utilization",
        "enable_kv_cache_reuse:true",
        "enable_chunked_context:true",
        "max_queue_delay_microseconds:0",
    ):
        assert value in steps["fill:tensorrt_llm"]
    assert "accumulate_tokens:true" in steps["fill:tensorrt_llm_bls"]
    assert "engine_dir:/staged/engine" in steps["fill:tensorrt_llm"]
    assert "decoupled_mode:true" in steps["fill:tensorrt_llm"]
    assert "tokenizer_dir:/staged/tokenizer" in steps["fill:preprocessing"]


def test_fp8_uses_the_quantization_example_and_tp_spreads_workers():
    result = run_script(
        "--dry-run",
        "--hf-model-id",
        "a/b",
        "--served-model-name",
        "m",
        "--dtype",
        "fp8",
        "--tp-size",
        "2",
        "--max-batch-size",
        "8",
        "--max-input-len",
        "512",
        "--max-seq-len",
        "1024",
        "--max-num-tokens",
        "2048",
        "--no-paged-kv-cache",
        "--no-multiple-profiles",
        "--no-enable-kv-cache-reuse",
        "--no-enable-chunked-context",
    )
    assert result.returncode == 0, result.stderr
    steps = dict(line.split(": ", 1) for line in result.stdout.splitlines()[1:])
    assert "quantization/quantize.py" in steps["convert"] and "--qformat fp8" in steps["convert"]
    assert "--tp_size 2" in steps["convert"]
    assert "--workers 2" in steps["build"] and "--kv_cache_type continuous" in steps["build"]
    assert "--multiple_profiles disable" in steps["build"] and "use_paged_context_fmha" not in steps["build"]
    assert "<model_type from config.json>" not in steps["convert"]  # fp8 does not depend on the family


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-input-len", "4096"], "must be below --max-seq-len"),
        (["--served-model-name", "Llama_3"], "DNS label"),
        (["--hf-model-id", "not-an-id"], "owner/name"),
        (["--max-batch-size", "0"], "--max-batch-size must be at least 1"),
        (["--model-family", "bloom"], "unknown"),
        (["--kv-cache-free-gpu-mem-fraction", "1.5"], "(0, 1]"),
        (["--work-dir", "relative/dir"], "absolute path"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(args, message):
    base = {
        "--hf-model-id": "a/b",
        "--served-model-name": "m",
        "--max-batch-size": "8",
        "--max-input-len": "512",
        "--max-seq-len": "1024",
        "--max-num-tokens": "2048",
    }
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = run_script("--dry-run", *[x for kv in base.items() for x in kv])
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_required_arguments_exit_2():
    assert run_script("--dry-run").returncode == 2


@pytest.fixture
def upstream_app(tmp_path, monkeypatch):
    """The build script with APP_DIR on an /app of the upstream templates (tests/repository/trtllm_reference.py)."""
    from tests.repository.trtllm_reference import make_app

    module = load_script_module()
    app = make_app(tmp_path, "1.x")
    monkeypatch.setattr(module, "APP_DIR", app)
    return module, app


def fake_run_args(tmp_path, *extra: str):
    return [
        "--hf-model-id",
        "meta-llama/Llama-3.2-1B-Instruct",
        "--served-model-name",
        "llama-3-2-1b",
        "--max-batch-size",
        "64",
        "--max-input-len",
        "2048",
        "--max-seq-len",
        "4096",
        "--max-num-tokens",
        "8192",
        "--work-dir",
        str(tmp_path / "work"),
        "--output-dir",
        str(tmp_path / "work" / "out"),
        "--cache-key",
        "abc",
        *extra,
    ]


def _fill_for_real(cmd):
    if cmd[1].endswith("fill_template.py"):
        subprocess.run([sys.executable, *cmd[1:]], check=True)


def test_a_template_placeholder_nobody_fills_stops_the_build(upstream_app, tmp_path, monkeypatch):
    module, app = upstream_app
    monkeypatch.setattr(module, "run", _fill_for_real)
    config = app / "all_models" / "inflight_batcher_llm" / "postprocessing" / "config.pbtxt"
    config.write_text(
        config.read_text() + "\ndynamic_batching { max_queue_delay_microseconds: ${new_required_knob} }\n"
    )
    args = module.parse_args(fake_run_args(tmp_path))
    module.paths(args)["repository"].mkdir(parents=True)
    with pytest.raises(SystemExit, match="new_required_knob"):
        module.fill_repository(args)


def test_every_version_directory_gets_a_file(upstream_app, tmp_path, monkeypatch):
    """S3 has no empty directories: a version dir without a file would vanish on upload."""
    module, app = upstream_app
    monkeypatch.setattr(module, "run", _fill_for_real)
    args = module.parse_args(fake_run_args(tmp_path))
    repository = module.paths(args)["repository"]
    repository.mkdir(parents=True)
    module.fill_repository(args)
    # The 1.x templates ship ensemble/ and tensorrt_llm/ without any version directory.
    assert not (app / "all_models" / "inflight_batcher_llm" / "ensemble" / "1").exists()
    for name in ("ensemble", "tensorrt_llm"):
        assert (repository / name / "1" / module.VERSION_PLACEHOLDER).is_file()
    assert not (repository / "preprocessing" / "1" / module.VERSION_PLACEHOLDER).exists()  # model.py is there


def test_unknown_model_types_name_the_fix(tmp_path):
    module = load_script_module()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bloom"}))
    with pytest.raises(SystemExit, match="CONVERTERS"):
        module.detect_family(tmp_path)


def test_unfilled_placeholders_ignores_string_parameters():
    module = load_script_module()
    text = 'max_batch_size: ${a}\nparameters { key: "x" value: { string_value: "${b}" } }\n'
    assert module.unfilled_placeholders(text) == ["a"]


def test_writer_policy_is_confined_to_the_engine_prefix(hf):
    from components.serving.builders.model_store import write_prefix_policy

    key = key_for()
    policy = write_prefix_policy("arn:aws:s3:::b", eb.engine_prefix(key))
    for statement in policy["Statement"]:
        for resource in statement["Resource"]:
            assert resource in ("arn:aws:s3:::b", f"arn:aws:s3:::b/engines/{key}/*")
