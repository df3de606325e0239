"""TrtllmEngine's pure parts: the cache key, the Job manifest, and the build script (dry run and fill)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from components import engine_build as eb
from components import versions
from components.config import StackConfig, parse_stack_config
from tests.k8s_schema import validate_k8s_object
from tests.unit.harness import load_stack_config

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
    return eb.engine_cache_key(eb.engine_key_parts(model, cfg))


def test_key_is_a_stable_sha256_of_the_parts():
    model, cfg = dev_model()
    parts = eb.engine_key_parts(model, cfg)
    assert parts["gpu"] == "L40S-sm89"
    assert parts["image"] == versions.TRITON_TRTLLM_IMAGE
    assert parts["hf_model_id"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert len(key_for()) == 64 and key_for() == key_for()


@pytest.mark.parametrize("override", [
    {"hfRevision": "9213176726f574b556790deb65791e0c5aa438b6"},
    {"hfModelId": "meta-llama/Llama-3.2-3B-Instruct"},
    {"engine": {"dtype": "float16"}},
    {"engine": {"maxBatchSize": 32}},
    {"engine": {"maxNumTokens": 4096}},
    {"engine": {"pagedKvCache": False}},
    {"engine": {"multipleProfiles": False}},
    {"engine": {"kvCacheFreeGpuMemFraction": 0.8}},
    {"tensorParallel": 2, "maxReplicas": 4},
    {"name": "llama-small"},
])
def test_anything_that_changes_the_engine_or_repository_changes_the_key(override):
    assert key_for(**override) != key_for()


def test_the_build_deadline_does_not_change_the_key():
    assert key_for(engine={"timeoutMinutes": 30}) == key_for()


def test_gpu_family_is_part_of_the_key():
    model, cfg = dev_model()
    g6 = cfg.model_copy(update={"node_pools": [cfg.node_pools[0].model_copy(update={"instance_families": ["g6"]})]})
    assert eb.engine_key_parts(model, g6)["gpu"] == "L4-sm89"
    assert eb.engine_cache_key(eb.engine_key_parts(model, g6)) != key_for()


def test_mixed_gpu_pools_are_refused():
    model, cfg = dev_model()
    mixed = cfg.node_pools[0].model_copy(update={"instance_families": ["g5", "g6e"]})
    with pytest.raises(ValueError, match="mixes GPU models"):
        eb.gpu_architecture(mixed)


# --------------------------------------------------------------------------- the Job

def job(**kw):
    model, cfg = dev_model()
    key = eb.engine_cache_key(eb.engine_key_parts(model, cfg))
    args = {"key": key, "namespace": model.name, "bucket": "models-bucket", "hf_token_secret": "hf-token", **kw}
    return eb.engine_build_job_manifest(model, cfg, **args), model, key


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
    build = pod["initContainers"][0]
    assert build["image"] == versions.TRITON_TRTLLM_IMAGE
    assert build["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert build["command"][:2] == ["python3", f"{eb.SCRIPT_DIR}/build_engine.py"]
    token_env = next(e for e in build["env"] if e["name"] == "HF_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    upload = pod["containers"][0]
    assert upload["image"] == versions.AWS_CLI_IMAGE
    script = upload["command"][-1]
    # Everything first, the marker last: a half-uploaded engine is never "complete".
    assert script.index("aws s3 sync") < script.index(f"{key}/{eb.COMPLETE_MARKER}")
    assert f"s3://models-bucket/engines/{key}/" in script
    assert pod["serviceAccountName"] == eb.BUILDER_SERVICE_ACCOUNT
    assert manifest["metadata"]["name"] == f"engine-build-{key[:16]}"


def test_no_token_secret_means_no_token_env():
    manifest, _, _ = job(hf_token_secret=None)
    env = manifest["spec"]["template"]["spec"]["initContainers"][0]["env"]
    assert "HF_TOKEN" not in {e["name"] for e in env}


def test_script_ships_in_the_configmap_verbatim():
    model, cfg = dev_model()
    cm = eb.script_configmap_manifest("k" * 64, model.name)
    assert cm["data"]["build_engine.py"] == SCRIPT.read_text()


# --------------------------------------------------------------------------- the build script

def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_jobs_own_arguments_pass_the_scripts_dry_run():
    manifest, model, key = job()
    args = manifest["spec"]["template"]["spec"]["initContainers"][0]["command"][2:]
    result = run_script(*args, "--dry-run", "--model-family", "llama")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["cache_key"] == key
    steps = dict(line.split(": ", 1) for line in lines[1:])
    assert "repo_id='meta-llama/Llama-3.2-1B-Instruct'" in steps["download"]
    assert steps["convert"].startswith("python3 /app/examples/models/core/llama/convert_checkpoint.py")
    assert "--dtype bfloat16" in steps["convert"]
    build = steps["build"]
    for flag in ("--max_batch_size 64", "--max_input_len 2048", "--max_seq_len 4096", "--max_num_tokens 8192",
                 "--kv_cache_type paged", "--multiple_profiles enable", "--use_paged_context_fmha enable"):
        assert flag in build
    assert steps["template:ensemble"].endswith("/work/out/model_repository/llama-3-2-1b")
    assert "engine_dir:/staged/engine" in steps["fill:tensorrt_llm"]
    assert "decoupled_mode:true" in steps["fill:tensorrt_llm"]
    assert "tokenizer_dir:/staged/tokenizer" in steps["fill:preprocessing"]


def test_fp8_uses_the_quantization_example_and_tp_spreads_workers():
    result = run_script("--dry-run", "--hf-model-id", "a/b", "--served-model-name", "m", "--dtype", "fp8",
                        "--tp-size", "2", "--max-batch-size", "8", "--max-input-len", "512", "--max-seq-len", "1024",
                        "--max-num-tokens", "2048", "--no-paged-kv-cache", "--no-multiple-profiles")
    assert result.returncode == 0, result.stderr
    steps = dict(line.split(": ", 1) for line in result.stdout.splitlines()[1:])
    assert "quantization/quantize.py" in steps["convert"] and "--qformat fp8" in steps["convert"]
    assert "--tp_size 2" in steps["convert"]
    assert "--workers 2" in steps["build"] and "--kv_cache_type continuous" in steps["build"]
    assert "--multiple_profiles disable" in steps["build"] and "use_paged_context_fmha" not in steps["build"]
    assert "<model_type from config.json>" not in steps["convert"]  # fp8 does not depend on the family


@pytest.mark.parametrize("args, message", [
    (["--max-input-len", "4096"], "must be below --max-seq-len"),
    (["--served-model-name", "Llama_3"], "DNS label"),
    (["--hf-model-id", "not-an-id"], "owner/name"),
    (["--max-batch-size", "0"], "--max-batch-size must be at least 1"),
    (["--model-family", "bloom"], "unknown"),
    (["--kv-cache-free-gpu-mem-fraction", "1.5"], "(0, 1]"),
    (["--work-dir", "relative/dir"], "absolute path"),
])
def test_bad_arguments_exit_2_with_a_reason(args, message):
    base = {"--hf-model-id": "a/b", "--served-model-name": "m", "--max-batch-size": "8", "--max-input-len": "512",
            "--max-seq-len": "1024", "--max-num-tokens": "2048"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    result = run_script("--dry-run", *[x for kv in base.items() for x in kv])
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_required_arguments_exit_2():
    assert run_script("--dry-run").returncode == 2


# A stand-in for the image's /app: templates shaped like the inflight batcher's (own text,
# same placeholder kinds) and a fill_template.py with the same contract (asserts each key exists).
FAKE_TEMPLATES = {
    "ensemble": """
        name: "ensemble"
        platform: "ensemble"
        max_batch_size: ${triton_max_batch_size}
        input [ { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] } ]
        output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] },
                 { name: "generation_logits" data_type: ${logits_datatype} dims: [ -1, -1, -1 ] } ]
        ensemble_scheduling { step [ { model_name: "tensorrt_llm" model_version: -1
          input_map { key: "input_ids" value: "text_input" } output_map { key: "output_ids" value: "text_output" } } ] }
    """,
    "preprocessing": """
        name: "preprocessing"
        backend: "python"
        max_batch_size: ${triton_max_batch_size}
        parameters { key: "tokenizer_dir" value: { string_value: "${tokenizer_dir}" } }
        parameters { key: "add_special_tokens" value: { string_value: "${add_special_tokens}" } }
        instance_group [ { count: ${preprocessing_instance_count} kind: KIND_CPU } ]
    """,
    "tensorrt_llm": """
        name: "tensorrt_llm"
        backend: "${triton_backend}"
        max_batch_size: ${triton_max_batch_size}
        model_transaction_policy { decoupled: ${decoupled_mode} }
        dynamic_batching { max_queue_delay_microseconds: ${max_queue_delay_microseconds} }
        input [ { name: "draft_logits" data_type: ${logits_datatype} dims: [ -1, -1 ] optional: true },
                { name: "prompt_embedding_table" data_type: ${prompt_embedding_table_data_type} dims: [ -1, -1 ] } ]
        parameters: { key: "gpt_model_path" value: { string_value: "${engine_dir}" } }
        parameters: { key: "kv_cache_free_gpu_mem_fraction" value: { string_value: "${kv_cache_free_gpu_mem_fraction}" } }
        parameters: { key: "lora_cache_max_adapter_size" value: { string_value: "${lora_cache_max_adapter_size}" } }
        instance_group [ { count: 1 kind: KIND_CPU } ]
    """,
    "postprocessing": """
        name: "postprocessing"
        backend: "python"
        max_batch_size: ${triton_max_batch_size}
        parameters { key: "tokenizer_dir" value: { string_value: "${tokenizer_dir}" } }
        instance_group [ { count: ${postprocessing_instance_count} kind: KIND_CPU } ]
    """,
}
FAKE_FILL_TEMPLATE = '''
import sys
from string import Template
path, subs = sys.argv[-1 - 1], sys.argv[-1]
template = Template(open(path).read())
values = {"max_queue_size": 0, "max_queue_delay_microseconds": 0}
for pair in subs.split(","):
    key, value = pair.split(":", 1)
    assert key in template.template, key
    values[key] = value.replace("\\\\", "")
open(path, "w").write(template.safe_substitute(values))
'''


@pytest.fixture
def fake_app(tmp_path, monkeypatch):
    app = tmp_path / "app"
    for name, text in FAKE_TEMPLATES.items():
        model_dir = app / "all_models" / "inflight_batcher_llm" / name
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(textwrap.dedent(text))
    (app / "tools").mkdir()
    (app / "tools" / "fill_template.py").write_text(FAKE_FILL_TEMPLATE)
    module = load_script_module()
    monkeypatch.setattr(module, "APP_DIR", app)
    return module, app


def fake_run_args(tmp_path, *extra: str):
    return ["--hf-model-id", "meta-llama/Llama-3.2-1B-Instruct", "--served-model-name", "llama-3-2-1b",
            "--max-batch-size", "64", "--max-input-len", "2048", "--max-seq-len", "4096", "--max-num-tokens", "8192",
            "--work-dir", str(tmp_path / "work"), "--output-dir", str(tmp_path / "work" / "out"),
            "--cache-key", "abc", *extra]


def test_a_full_run_fills_a_repository_triton_can_parse(fake_app, tmp_path, monkeypatch):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    module, app = fake_app
    ran: list[list[str]] = []

    def fake_download(args):
        hf = module.paths(args)["hf"]
        hf.mkdir(parents=True)
        (hf / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (hf / "tokenizer.json").write_text("{}")
        (hf / "tokenizer_config.json").write_text("{}")
        return hf

    def fake_run(cmd):
        ran.append(cmd)
        if cmd[1].endswith("fill_template.py"):
            subprocess.run([sys.executable, *cmd[1:]], check=True)

    monkeypatch.setattr(module, "download", fake_download)
    monkeypatch.setattr(module, "run", fake_run)
    assert module.main(fake_run_args(tmp_path)) == 0

    out = tmp_path / "work" / "out"
    assert ran[0][1].endswith("models/core/llama/convert_checkpoint.py")
    assert ran[1][0] == "trtllm-build"
    repo = out / "model_repository"
    assert sorted(p.name for p in repo.iterdir()) == ["llama-3-2-1b", "postprocessing", "preprocessing", "tensorrt_llm"]
    configs = {p.parent.name: text_format.Parse(p.read_text(), model_config_pb2.ModelConfig())
               for p in repo.glob("*/config.pbtxt")}
    assert configs["llama-3-2-1b"].name == "llama-3-2-1b"  # the ensemble, served under the stack's name
    assert (repo / "llama-3-2-1b" / "1").is_dir()
    engine = configs["tensorrt_llm"]
    assert engine.backend == "tensorrtllm" and engine.model_transaction_policy.decoupled
    assert engine.max_batch_size == 64
    assert engine.input[1].data_type == model_config_pb2.TYPE_BF16  # the dev stack builds bfloat16
    assert engine.parameters["gpt_model_path"].string_value == "/staged/engine"
    assert engine.parameters["kv_cache_free_gpu_mem_fraction"].string_value == "0.9"
    # Optional backend parameters may stay unfilled; the backend treats them as unset.
    assert engine.parameters["lora_cache_max_adapter_size"].string_value == "${lora_cache_max_adapter_size}"
    assert configs["preprocessing"].parameters["tokenizer_dir"].string_value == "/staged/tokenizer"
    assert sorted(p.name for p in (out / "tokenizer").iterdir()) == ["config.json", "tokenizer.json", "tokenizer_config.json"]
    build = json.loads((out / "build.json").read_text())
    assert build["cache_key"] == "abc" and build["model_family"] == "llama"


def test_a_template_placeholder_nobody_fills_stops_the_build(fake_app, tmp_path):
    module, app = fake_app
    config = app / "all_models" / "inflight_batcher_llm" / "postprocessing" / "config.pbtxt"
    config.write_text(config.read_text() + "\ndynamic_batching { max_queue_delay_microseconds: ${new_required_knob} }\n")
    args = module.parse_args(fake_run_args(tmp_path))
    with pytest.raises(SystemExit, match="new_required_knob"):
        module.fill_repository(args)


def test_unknown_model_types_name_the_fix(fake_app, tmp_path):
    module, _ = fake_app
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bloom"}))
    with pytest.raises(SystemExit, match="CONVERTERS"):
        module.detect_family(tmp_path)


def test_unfilled_placeholders_ignores_string_parameters():
    module = load_script_module()
    text = 'max_batch_size: ${a}\nparameters { key: "x" value: { string_value: "${b}" } }\n'
    assert module.unfilled_placeholders(text) == ["a"]


def test_writer_policy_is_confined_to_the_engine_prefix():
    from components.model_store import write_prefix_policy

    key = key_for()
    policy = write_prefix_policy("arn:aws:s3:::b", eb.engine_prefix(key))
    for statement in policy["Statement"]:
        for resource in statement["Resource"]:
            assert resource in ("arn:aws:s3:::b", f"arn:aws:s3:::b/engines/{key}/*")
