"""Issue 12, EKS side: Triton's OpenAI frontend in the pod, its routes, and TRT-LLM through the LLM API.

Upstream facts these tests hold the builders to (cited where they are used):
* triton-inference-server/server r25.12 `python/openai/openai_frontend/main.py`: its CLI flags and
  `--backend` choices; `/health/ready` and `/metrics` on the OpenAI port; no metrics frontend;
* server r25.12 `python/openai/openai_frontend/engine/utils/triton.py`: the tensors sent to a
  non-vLLM model (components.openai_frontend.TRTLLM_REQUEST_INPUTS);
* NVIDIA/TensorRT-LLM `triton_backend/all_models/llmapi/tensorrt_llm/1/{model.py,helpers.py}`:
  model.yaml -> LLM(**args) plus `triton_config`, the inputs it reads.
The upstream TRT-LLM ensemble config is read from the reference data (`make reference`; skipped when absent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import ConfigError
from components.config import llmapi as llmapi_repository_config
from components.config import openai as openai_frontend
from components.serving.builders import llmapi as llmapi_repository
from tests.k8s_schema import validate_manifest
from tests.unit.conftest import stack_run_for
from tests.unit.harness import run_program
from tests.unit.test_config_errors import BadConfig

# main.py r25.12 parse_args(): every flag it defines (a flag outside this list makes it exit 2).
MAIN_PY_FLAGS_R25_12 = {
    "--model-repository",
    "--tokenizer",
    "--backend",
    "--lora-separator",
    "--tritonserver-log-verbose-level",
    "--host",
    "--tool-call-parser",
    "--chat-template",
    "--default-max-tokens",
    "--openai-port",
    "--uvicorn-log-level",
    "--openai-restricted-api",
    "--enable-kserve-frontends",
    "--kserve-http-port",
    "--kserve-grpc-port",
}
MAIN_PY_BOOLEAN_FLAGS = {"--enable-kserve-frontends"}
BACKEND_CHOICES_R25_12 = {"vllm", "tensorrtllm"}

OPENAI_ON_DEV = {"models[0].openai": {"enabled": True}}


def _deployment(run, namespace: str) -> dict:
    return next(m for m in run.manifests("Deployment") if m["metadata"]["namespace"] == namespace)


def _container(run, namespace: str) -> dict:
    return _deployment(run, namespace)["spec"]["template"]["spec"]["containers"][0]


def _parse_flags(command: list[str]) -> dict[str, str | bool]:
    flags: dict[str, str | bool] = {}
    # python3 main.py ..., or python3 -c LAUNCHER main.py OPTIONS ... (vLLM: openai.LAUNCHER)
    i = 5 if command[:2] == ["python3", "-c"] else 2
    while i < len(command):
        flag = command[i]
        assert flag.startswith("--"), f"unexpected positional {flag!r} in {command}"
        if flag in MAIN_PY_BOOLEAN_FLAGS:
            flags[flag], i = True, i + 1
        else:
            flags[flag], i = command[i + 1], i + 2
    return flags


@pytest.fixture(scope="module")
def llmapi_run():
    return stack_run_for("llmapi")


@pytest.fixture(scope="module")
def dev_openai_run():
    return run_program("dev", overrides=OPENAI_ON_DEV)


# --------------------------------------------------------------------------- the frontend's command line


@pytest.mark.parametrize("case", ["vllm", "trtllm-engine"])
def test_frontend_command_line(case, llmapi_run, dev_openai_run):
    run, namespace, backend, repository = {
        # a local copy for both: the frontend refuses s3:// (test_openai_repository_path.py)
        "vllm": (llmapi_run, "mistral-7b-instruct", "vllm", "/staged/model_repository"),
        "trtllm-engine": (dev_openai_run, "llama-3-2-1b", "tensorrtllm", "/staged/model_repository"),
    }[case]
    command = _container(run, namespace)["command"]
    main = "/opt/tritonserver/python/openai/openai_frontend/main.py"
    if case == "vllm":  # through the launcher that sets EXPLICIT model control (test_openai_vllm_health.py)
        assert command[:2] == ["python3", "-c"] and command[3] == main
    else:
        assert command[:2] == ["python3", main]
    flags = _parse_flags(command)
    assert set(flags) <= MAIN_PY_FLAGS_R25_12, set(flags) - MAIN_PY_FLAGS_R25_12
    assert flags["--backend"] == backend and backend in BACKEND_CHOICES_R25_12
    assert str(flags["--model-repository"]).startswith(repository)
    assert flags["--enable-kserve-frontends"] is True
    assert (flags["--kserve-http-port"], flags["--kserve-grpc-port"], flags["--openai-port"]) == (
        "8000",
        "8001",
        "9000",
    )
    assert flags["--host"] == "0.0.0.0"
    # The chat template comes from the model's own tokenizer, on disk: the weights staged from the mirror
    # (vLLM) or the tokenizer/ the engine build copied next to the engine; no token, no Hub.
    local = {"vllm": "/weights", "trtllm-engine": "/staged/tokenizer"}[case]
    assert flags["--tokenizer"] == local
    env = {e["name"]: e for e in _container(run, namespace)["env"]}
    assert not {"HF_TOKEN", "HF_TOKEN_PATH"} & set(env)


def test_models_without_the_switch_keep_tritonserver(llmapi_run, dev_run, vllm_run):
    assert _container(dev_run, "llama-3-2-1b")["command"][0] == "tritonserver"
    for m in vllm_run.manifests("Deployment"):
        assert m["spec"]["template"]["spec"]["containers"][0]["command"][0] == "tritonserver"
    assert "/bin/sh" == _container(llmapi_run, "llama-3-2-1b")["command"][0]


# --------------------------------------------------------------------------- ports, metrics, probes


@pytest.mark.parametrize("case", ["vllm", "trtllm-engine"])
def test_ports_metrics_and_probes(case, llmapi_run, dev_openai_run):
    run, namespace = {"vllm": (llmapi_run, "mistral-7b-instruct"), "trtllm-engine": (dev_openai_run, "llama-3-2-1b")}[
        case
    ]
    container = _container(run, namespace)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # KServe HTTP/gRPC where they always were; Prometheus text is on the OpenAI port (main.py r25.12
    # starts no metrics frontend), so the port the PodMonitor scrapes by name is 9000.
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 9000}
    monitors = [m for m in run.manifests("PodMonitor") if m["metadata"]["namespace"] == namespace]
    assert monitors and {e["port"] for e in monitors[0]["spec"]["podMetricsEndpoints"]} <= set(ports)
    assert {e.get("path", "/metrics") for e in monitors[0]["spec"]["podMetricsEndpoints"]} == {"/metrics"}
    service = next(s for s in run.manifests("Service") if s["metadata"]["namespace"] == namespace)
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["openai"]["port"] == 9000 and service_ports["openai"]["targetPort"] == 9000
    assert service_ports["metrics"]["targetPort"] == "metrics"
    # The OpenAI port comes up last: the startup probe waits for it; liveness is KServe's.
    assert container["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": 9000}
    # liveness stays on KServe HTTP, as for tritonserver pods (vLLM: the model's own readiness, and
    # readiness too: it drops when the backend unloads a dead engine, /health/ready would not)
    live = "/v2/models/mistral-7b-instruct/ready" if case == "vllm" else "/v2/health/live"
    assert container["livenessProbe"]["httpGet"] == {"path": live, "port": "http"}
    ready = {"path": live, "port": "http"} if case == "vllm" else {"path": "/health/ready", "port": 9000}
    assert container["readinessProbe"]["httpGet"] == ready
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 30 * 60


def test_objects_match_their_schemas(llmapi_run, dev_openai_run):
    for run in (llmapi_run, dev_openai_run):
        for kind in ("Deployment", "Service", "HTTPRoute", "ConfigMap"):
            for manifest in run.manifests(kind):
                validate_manifest(manifest)


# --------------------------------------------------------------------------- routes


def _route(run, namespace):
    return next(m for m in run.manifests("HTTPRoute") if m["metadata"]["namespace"] == namespace)


def test_openai_routes(llmapi_run):
    route = _route(llmapi_run, "mistral-7b-instruct")
    openai_rules = [r for r in route["spec"]["rules"] if r["backendRefs"][0]["port"] == 9000]
    assert len(openai_rules) == 2
    prefixed, by_header = openai_rules
    assert prefixed["matches"] == [{"path": {"type": "PathPrefix", "value": "/openai/mistral-7b-instruct/v1"}}]
    rewrite = [f for f in prefixed["filters"] if f["type"] == "URLRewrite"]
    assert rewrite[0]["urlRewrite"]["path"] == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}
    # behind the same API-key check as every other rule (the gateway's AuthenticationFilter)
    for rule in openai_rules:
        assert {
            "type": "ExtensionRef",
            "extensionRef": {
                "group": "gateway.nginx.org",
                "kind": "AuthenticationFilter",
                "name": "tritonllm-api-keys",
            },
        } in rule["filters"]
    assert by_header["matches"][0]["path"] == {"type": "PathPrefix", "value": "/v1"}
    assert by_header["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-triton-model", "value": "mistral-7b-instruct"}
    ]
    # Only /v1/* reaches the frontend: its /metrics and /health/ready stay inside the cluster.
    for rule in openai_rules:
        for match in rule["matches"]:
            assert match["path"]["value"].endswith("/v1")
    # The Gateway API caps rules per HTTPRoute at 16.
    assert len(route["spec"]["rules"]) <= 16
    # The KServe rules are still there, unchanged.
    assert any(
        m["path"]["value"] == "/v2/models/mistral-7b-instruct/generate"
        for r in route["spec"]["rules"]
        for m in r["matches"]
    )


def test_no_openai_routes_without_the_switch(llmapi_run):
    route = _route(llmapi_run, "llama-3-2-1b")
    assert all(r["backendRefs"][0]["port"] == 8000 for r in route["spec"]["rules"])
    service = next(s for s in llmapi_run.manifests("Service") if s["metadata"]["namespace"] == "llama-3-2-1b")
    assert "openai" not in {p["name"] for p in service["spec"]["ports"]}


def test_stack_outputs(llmapi_run):
    base = llmapi_run.outputs["openaiBaseUrls"]
    assert set(base) == {"mistral-7b-instruct"}
    assert base["mistral-7b-instruct"] == "https://llm.tritonllm-llmapi.internal/openai/mistral-7b-instruct/v1"
    examples = llmapi_run.outputs["openaiExamples"]["mistral-7b-instruct"]
    assert f"{base['mistral-7b-instruct']}/chat/completions" in examples["curl"]
    assert '"model": "mistral-7b-instruct"' in examples["curl"]
    compile(examples["python"], "example", "exec")  # valid Python
    # API keys are on by default (gateway.auth): both examples send them as the gateway wants (Basic)
    assert examples["curl"].endswith('-u "$TRITONLLM_API_KEY"')
    # TLS with the stack's own CA: curl and the SDK verify against it
    assert examples["curl"].startswith("curl -s --cacert tritonllm-ca.pem https://")
    assert 'os.environ.setdefault("SSL_CERT_FILE", "tritonllm-ca.pem")' in examples["python"]
    assert examples["python"].index("SSL_CERT_FILE") < examples["python"].index("client = OpenAI(")
    assert (
        'default_headers={"Authorization": "Basic " + base64.b64encode(os.environ["TRITONLLM_API_KEY"]'
        in examples["python"]
    )
    assert f'base_url="{base["mistral-7b-instruct"]}"' in examples["python"]


def test_no_openai_outputs_without_the_switch(dev_run):
    assert "openaiBaseUrls" not in dev_run.outputs


# --------------------------------------------------------------------------- the llmapi model


def _llmapi_model(run=None, **overrides):
    from components.config import parse_stack_config

    raw = yaml.safe_load(Path("Pulumi.llmapi.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in raw.items()}
    model = values["models"][0]
    model.update(overrides)
    return parse_stack_config(values, {"hfToken"}).models[0]


def _parse_pbtxt(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    return config


def test_llmapi_repository_renders_for_the_pinned_image(tmp_path):
    model = _llmapi_model()
    files = llmapi_repository.model_files(model)
    assert set(files) == {"llama-3-2-1b/config.pbtxt", "llama-3-2-1b/1/model.yaml"}
    config = _parse_pbtxt(files["llama-3-2-1b/config.pbtxt"])
    assert config.name == "llama-3-2-1b" and config.backend == "python"
    model_yaml = yaml.safe_load(files["llama-3-2-1b/1/model.yaml"])
    triton_config = model_yaml.pop("triton_config")
    # model.py reads both keys; upstream's launcher disables auto-complete, so config.pbtxt carries them too.
    assert config.max_batch_size == triton_config["max_batch_size"] == 0
    assert config.model_transaction_policy.decoupled is triton_config["decoupled"] is True
    assert "--disable-auto-complete-config" in llmapi_repository.TRITONSERVER_EXTRA_ARGS
    # Every other model.yaml key goes to LLM(**args): all must be LLM-API arguments of TRT-LLM 1.1.0.
    assert set(model_yaml) <= llmapi_repository_config.LLM_ARGS_1_1_0
    assert set(model_yaml["kv_cache_config"]) <= llmapi_repository_config.KV_CACHE_CONFIG_KEYS_1_1_0
    assert model_yaml == {
        "model": "/weights",  # staged from the weights mirror (tests/unit/test_weights_mirror.py)
        "backend": "pytorch",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "dtype": "bfloat16",
        "max_batch_size": 64,
        "max_num_tokens": 8192,
        "max_seq_len": 4096,
        "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": True},
    }
    inputs = {i.name: i for i in config.input}
    outputs = {o.name for o in config.output}
    assert "text_output" in outputs and not inputs["text_input"].optional
    # helpers.py reads `streaming`, `sampling_param_<SamplingParams arg>`, `return_finish_reason`, `stop`.
    sampling_args = {
        "best_of",
        "temperature",
        "top_k",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "max_tokens",
        "seed",
        "exclude_input_from_output",
        "return_perf_metrics",
        "stop",
    }
    for name in inputs:
        assert (
            name in {"text_input", "streaming", "return_finish_reason", "stop"}
            or name.removeprefix("sampling_param_") in sampling_args
        ), name
    # deterministic: identical config renders identical bytes
    assert llmapi_repository.model_files(_llmapi_model()) == files


def test_llmapi_options_reach_model_yaml():
    model = _llmapi_model(
        tensorParallel=2,
        trtllm={
            "runtime": "llmapi",
            "llmapi": {
                "kvCacheDtype": "fp8",
                "enableBlockReuse": False,
                "extraLlmArgs": {"enable_chunked_prefill": True, "kv_cache_config": {"host_cache_size": 1024}},
            },
        },
    )
    args = llmapi_repository.llm_args(model)
    assert args["tensor_parallel_size"] == 2
    assert args["kv_cache_config"] == {
        "free_gpu_memory_fraction": 0.9,
        "enable_block_reuse": False,
        "dtype": "fp8",
        "host_cache_size": 1024,
    }
    assert args["enable_chunked_prefill"] is True
    # TP 2: every rank runs trtllm-llmapi-launch under mpirun (rank 0 serves, the rest are workers)
    assert llmapi_repository.launcher(model) == ["mpirun", "--allow-run-as-root", "-n", "2", "trtllm-llmapi-launch"]


def test_llmapi_pod(llmapi_run):
    container = _container(llmapi_run, "llama-3-2-1b")
    script = container["command"][2]
    version = "/llmapi/model_repository/llama-3-2-1b/1"
    # upstream's model.py behind our streaming wrapper (tests/e2e/test_llmapi_streaming.py runs it)
    assert f"cp /app/all_models/llmapi/tensorrt_llm/1/model.py {version}/upstream_model.py" in script
    assert f"cp /app/all_models/llmapi/tensorrt_llm/1/helpers.py {version}/helpers.py" in script
    assert f"cp /llmapi/config/llmapi_stream.py {version}/model.py" in script
    assert f"cp /llmapi/config/text_deltas.py {version}/text_deltas.py" in script
    assert script.splitlines()[-1].startswith(
        "exec mpirun --allow-run-as-root -n 1 tritonserver --model-repository=/llmapi/model_repository "
    )
    assert script.rstrip().endswith("--disable-auto-complete-config")
    spec = _deployment(llmapi_run, "llama-3-2-1b")["spec"]["template"]
    # the weights mirror staged first (tests/unit/test_weights_mirror.py); no engine
    assert [c["name"] for c in spec["spec"]["initContainers"]] == ["stage-weights"]
    volumes = {v["name"]: v for v in spec["spec"]["volumes"]}
    assert volumes["llmapi-config"]["configMap"]["name"] == "llmapi-model"
    configmap = next(m for m in llmapi_run.manifests("ConfigMap") if m["metadata"]["namespace"] == "llama-3-2-1b")
    model = _llmapi_model()
    wrapper = Path(llmapi_repository.__file__).resolve().parents[3] / "model_repository" / "trtllm"
    assert configmap["data"] == {
        "config.pbtxt": llmapi_repository.config_pbtxt(model),
        "model.yaml": llmapi_repository.model_yaml(model),
        "llmapi_stream.py": (wrapper / "llmapi_stream.py").read_text(),
        "text_deltas.py": (wrapper / "text_deltas.py").read_text(),
    }
    assert spec["metadata"]["annotations"]["tritonllm.io/llmapi-config"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_HOME" not in env


def test_llmapi_registers_no_engine_build(llmapi_run, dev_run):
    # The dev stack (engine runtime) does build: the check below can fail.
    assert dev_run.of_type("pulumi-python:dynamic/tritonllm:TrtllmEngine")
    assert llmapi_run.of_type("pulumi-python:dynamic/tritonllm:TrtllmEngine") == []
    names = [r.name for r in llmapi_run.resources]
    assert not [n for n in names if "engine-builder" in n], names
    # the llmapi pods' role reads the model's weights mirror and nothing else
    llama = [r for r in llmapi_run.resources if r.name.startswith("llama-3-2-1b")]
    policies = [r for r in llama if r.type == "aws:iam/rolePolicy:RolePolicy"]
    assert [r.name for r in policies] == ["llama-3-2-1b-triton-inline"]
    document = json.loads(policies[0].inputs["policy"])
    reads = [st["Resource"] for st in document["Statement"] if st["Action"] == ["s3:GetObject"]]
    assert len(reads) == 1 and "/hf-mirror/meta-llama/Llama-3.2-1B-Instruct/" in reads[0][0]


def test_engine_runtime_is_the_default_and_unchanged(dev_run):
    from components.config import parse_stack_config

    raw = yaml.safe_load(Path("Pulumi.dev.yaml").read_text())["config"]
    cfg = parse_stack_config({k.split(":", 1)[1]: v for k, v in raw.items()}, {"hfToken"})
    assert cfg.models[0].trtllm.runtime == "engine" and cfg.models[0].builds_engine
    assert _container(dev_run, "llama-3-2-1b")["command"][:2] == [
        "tritonserver",
        "--model-repository=/staged/model_repository",
    ]


# --------------------------------------------------------------------------- which models the frontend can serve


def test_frontend_inputs_exist_in_the_trtllm_ensemble_but_not_in_llmapi():
    from tests.k8s_schema import require_reference_dir

    ensemble = (
        require_reference_dir()
        / "trtllm-templates"
        / "TensorRT-LLM-2a9abd95"
        / "inflight_batcher_llm"
        / "ensemble"
        / "config.pbtxt"
    )
    import re

    text = re.sub(r"\$\{\w+\}", "1", ensemble.read_text())
    ensemble_inputs = {i.name for i in _parse_pbtxt(text).input}
    sent = set(openai_frontend.TRTLLM_REQUEST_INPUTS) | set(openai_frontend.TRTLLM_OPTIONAL_REQUEST_INPUTS)
    assert sent <= ensemble_inputs, sent - ensemble_inputs
    llmapi_inputs = {name for name, *_ in llmapi_repository.INPUTS}
    assert not set(openai_frontend.TRTLLM_REQUEST_INPUTS) <= llmapi_inputs  # hence the config refusal


# --------------------------------------------------------------------------- bad configs fail before any resource

BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    (
        "openai-on-llmapi",
        "llmapi",
        {"models[0].openai": {"enabled": True}},
        "models[0].openai.enabled",
        "use trtllm.runtime: engine",
    ),
    (
        "openai-on-trtllm-leader-mode",
        "dev",
        {"models[0].openai": {"enabled": True}, "models[0].tensorParallel": 2},
        "models[0].openai.enabled",
        "one GPU per replica",
    ),
    (
        "unknown-llm-arg",
        "llmapi",
        {"models[0].trtllm.llmapi.extraLlmArgs": {"max_batch_szie": 8}},
        "models[0].trtllm.llmapi.extraLlmArgs",
        "not an LLM API argument of TensorRT-LLM 1.1.0",
    ),
    (
        "unknown-kv-cache-key",
        "llmapi",
        {"models[0].trtllm.llmapi.extraLlmArgs": {"kv_cache_config": {"fraction": 1}}},
        "models[0].trtllm.llmapi.extraLlmArgs",
        "not a KvCacheConfig field",
    ),
    (
        "stack-owned-llm-arg",
        "llmapi",
        {"models[0].trtllm.llmapi.extraLlmArgs": {"tensor_parallel_size": 4}},
        "models[0].trtllm.llmapi.extraLlmArgs",
        "set it there instead",
    ),
    (
        "llmapi-without-a-usable-metric",
        "llmapi",
        {"models[0].autoscaling": {}},
        "models[0].autoscaling.metric",
        "set autoscaling.metric: triton_request_rate",
    ),
    (
        "llmapi-fp8-kv-on-a10g",
        "llmapi",
        {"nodePools[0].instanceFamilies": ["g5"], "models[0].trtllm.llmapi.kvCacheDtype": "fp8"},
        "models[0].trtllm.llmapi.kvCacheDtype",
        "use auto",
    ),
    (
        "llmapi-options-on-engine-runtime",
        "dev",
        {"models[0].trtllm": {"llmapi": {"maxBatchSize": 8}}},
        "models[0].trtllm.llmapi",
        "set runtime: llmapi",
    ),
    (
        "engine-options-on-llmapi",
        "llmapi",
        {"models[0].engine": {"maxBatchSize": 8}},
        "models[0].engine",
        "move the options to trtllm.llmapi",
    ),
    (
        "openai-on-multinode",
        "multinode",
        {"models[0].openai": {"enabled": True}},
        "models[0].openai.enabled",
        "LeaderWorkerSet",
    ),
    (
        "llmapi-on-multinode",
        "multinode",
        {"models[0].trtllm": {"runtime": "llmapi"}, "models[0].autoscaling": {"metric": "triton_request_rate"}},
        "models[0].multiNode",
        "use trtllm.runtime: engine",
    ),
    ("unknown-runtime", "dev", {"models[0].trtllm": {"runtime": "pytorch"}}, "models[0].trtllm.runtime", "'llmapi'"),
]


# The same cases as test_config_errors.BadConfig, for the config-check coverage test (test_config_checks.py).
CASES = [BadConfig(id_, stack, overrides, key, fix) for id_, stack, overrides, key, fix in BAD]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_config_fails_before_any_resource(case):
    _, stack, overrides, key, fix = case
    run = run_program(stack, overrides=overrides, check=False)
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    assert run.resources == [], f"registered before failing: {[r.type for r in run.resources]}"
    problems = dict(run.error.problems)
    assert key in problems, f"{key!r} not named; problems: {run.error.problems}"
    assert fix in problems[key], problems[key]
    assert f"tritonllm:{key}: " in str(run.error)


def test_llm_arg_list_is_a_list_of_names():
    # A sanity bound on the derived list: names only, no values, every managed arg is in it.
    assert llmapi_repository_config.MANAGED_LLM_ARGS <= llmapi_repository_config.LLM_ARGS_1_1_0
    assert llmapi_repository_config.MANAGED_KV_CACHE_KEYS <= llmapi_repository_config.KV_CACHE_CONFIG_KEYS_1_1_0
    assert all(n.isidentifier() for n in llmapi_repository_config.LLM_ARGS_1_1_0)
    json.dumps(sorted(llmapi_repository_config.LLM_ARGS_1_1_0))


def test_tritonllm_client_speaks_the_llmapi_model():
    """`tritonllm client`/`bench` build requests from the model config: the rendered llmapi config
    gets the LLM API's tensor names (sampling_param_*, streaming)."""
    from google.protobuf import json_format

    from tritonllm._llm_io import GenerationSettings, ModelInterface, plan_inputs

    config = _parse_pbtxt(llmapi_repository.config_pbtxt(_llmapi_model()))
    iface = ModelInterface.from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
    values = plan_inputs(iface, "hi", GenerationSettings(max_tokens=9, temperature=0.1, stop=["x"]), stream=True)
    assert values == {
        "text_input": "hi",
        "streaming": True,
        "sampling_param_exclude_input_from_output": True,
        "sampling_param_max_tokens": 9,
        "sampling_param_temperature": 0.1,
        "sampling_param_stop": ["x"],
    }
