"""Triton's OpenAI-compatible frontend on EKS (pure functions).

With `models[].openai.enabled` the model's pod runs Triton's own OpenAI frontend instead of
the `tritonserver` binary: `python3 /opt/tritonserver/python/openai/openai_frontend/main.py`
embeds Triton in-process (the `tritonserver` Python bindings) and serves

    :9000  /v1/chat/completions, /v1/completions, /v1/models (OpenAI API), /metrics, /health/ready
    :8000  KServe v2 HTTP and :8001 KServe v2 gRPC (`--enable-kserve-frontends`, `tritonfrontend`)

Source: triton-inference-server/server `python/openai` at the release of the image the pod runs:
r26.01 for vLLM models, r25.12 for TRT-LLM engine models (components/catalog/versions.py; the
frontend's main.py and engine/utils/triton.py are the same at r25.12, r26.01 and r26.02 but for
one vLLM sampling-field exclusion, `best_of`, FRONTEND_READ_AT). What that implies here:

* Dependencies: the images install them. server `build.py` r25.12 and r26.01 (the production stage
  of every Linux image, vLLM and TRT-LLM alike) pip-installs the `tritonserver` and
  `tritonfrontend` wheels from /opt/tritonserver/python and runs
  `pip3 install -r python/openai/requirements.txt` (fastapi, httpx, openai, partial-json-parser,
  starlette; transformers for the tokenizer comes with vLLM / TensorRT-LLM), and copies
  `python/openai` to /opt/tritonserver/python/openai. No image of ours, no pip at pod start.
* Metrics: main.py (r25.12 to r26.02) starts no metrics frontend (no :8002); Prometheus text is
  served at `/metrics` on the OpenAI port. The pod's port named `metrics` (what the PodMonitor scrapes)
  is therefore 9000 for these models. The in-process server runs with its default options, so
  `--metrics-config=histogram_latencies=true` and `--exit-timeout-secs` are not applied.
* Model repository: the frontend must be given a local one. While building its engine it checks
  every model's path (engine/utils/triton.py `_parse_lora_configs`): `os.path.normpath(path) !=
  path` raises "Invalid model name", and `s3://bucket/...` normalises to `s3:/bucket/...`, so an
  S3 repository makes main.py exit before serving. vLLM models in OpenAI mode therefore get their
  repository (config.pbtxt + model.json, a few KB; the weights come from Hugging Face as always)
  copied from S3 to the pod by an init container (triton_manifests.stage_repository_script), as
  TRT-LLM pods get their engine.
* Model control: main.py builds its in-process server as `tritonserver.Server(model_repository=...,
  log_*=...)`, every other option at its default: model control NONE (core r25.12
  python/tritonserver/_api/_server.py `Options.model_control_mode`). The vLLM backend's health
  check (ENABLE_VLLM_HEALTH_CHECK) unloads a model whose engine died and needs EXPLICIT mode to do
  so (vllm_backend r25.12 docs/health_check.md); under NONE the dead model stays READY and no probe
  can see it. main.py has no flag for the mode, so vLLM pods start it through LAUNCHER, which gives
  the in-process server `model_control_mode=EXPLICIT, startup_models=[<model>]` (what
  `--model-control-mode=explicit --load-model=<model>` gives tritonserver) and then runs main.py
  unchanged. The model's readiness on the KServe port (/v2/models/<name>/ready) then drops when the
  engine dies, and the pod's readiness and liveness probes follow it.
* Stopping (scale-down drain): main.py r25.12 runs uvicorn, whose own SIGTERM handling comes first: it
  closes the OpenAI port and waits for the responses in flight (streams included) with no time limit of
  its own (uvicorn Server.shutdown; main.py sets no timeout_graceful_shutdown), then main.py's handler
  stops the KServe frontends and the in-process server (tritonserver Options.exit_timeout, default 30 s).
  So for these pods the bound on a drain is the pod's terminationGracePeriodSeconds, sized from
  models[].drainSeconds like every Triton pod (triton_manifests.drain_budget).
* Backends: requests are built per backend (engine/utils/triton.py): vLLM models get
  `sampling_parameters`; every other model gets the TRT-LLM ensemble's tensors (TRTLLM_REQUEST_INPUTS).
  The `llmapi` model takes `streaming` and `sampling_param_*` instead, so no frontend release we
  could read (up to r26.08) serves it; TRT-LLM leader mode (one tritonserver per rank under
  mpirun) is not supported either (python/openai/README.md r25.12, "Model Parallelism Support").
  config_problems refuses both. At r26.01 the frontend refuses `best_of` for vLLM models (400).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from components.catalog import serving_metrics as metrics
from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.gateway.builders import manifests as gm

# Server releases whose python/openai this module was checked against (main.py's flags and
# choices, routers/observability.py, engine/utils/triton.py); every runtime that can run the
# frontend must be pinned to one of them (tests/unit/test_versions.py).
FRONTEND_READ_AT = ("25.12", "26.01", "26.02")

FRONTEND_DIR = "/opt/tritonserver/python/openai"
FRONTEND_MAIN = f"{FRONTEND_DIR}/openai_frontend/main.py"
OPENAI_PORT = 9000  # main.py's default --openai-port
OPENAI_PORT_NAME = "openai"
READY_PATH = "/health/ready"  # routers/observability.py: 200 once the in-process server is ready
METRICS_PATH = "/metrics"

# --backend values main.py accepts (choices=["vllm", "tensorrtllm"]).
BACKEND_FLAG = {"vllm": "vllm", "trtllm": "tensorrtllm"}

# The gateway path under which a model's OpenAI API is reachable: <http endpoint>/openai/<model>/v1.
PATH_PREFIX = "/openai"


# Where the frontend finds hfModelId's tokenizer (its chat template) in the pod, read offline: vLLM's
# weights staged from the weights mirror, or the tokenizer/ the engine build copied next to the engine
# (model_repository/trtllm/build_engine.py `paths`: staged_tokenizer).
ENGINE_TOKENIZER_DIR = "/staged/tokenizer"


def tokenizer(model: Any) -> str:
    """The frontend's --tokenizer: a local directory (the pods read no Hugging Face repository)."""
    from components.serving.builders.weights_mirror import WEIGHTS_DIR

    return WEIGHTS_DIR if model.backend == "vllm" else ENGINE_TOKENIZER_DIR


# `python3 -c LAUNCHER <main.py> <options JSON> <main.py arguments...>`: main.py, with options for the
# in-process server that main.py has no flag for (see the module docstring, "Model control").
# main.py r25.12 calls `tritonserver.Server(model_repository=..., log_verbose=..., log_info=...,
# log_warn=..., log_error=...)`; the launcher puts a subclass in its place that adds the options
# to those keyword arguments, and refuses loudly if a later main.py passes an Options object
# instead (its keyword arguments would then be ignored).
LAUNCHER = """\
import json, os, runpy, sys
import tritonserver
main, options = sys.argv[1], json.loads(sys.argv[2])
if "model_control_mode" in options:
    options["model_control_mode"] = getattr(tritonserver.ModelControlMode, options["model_control_mode"].upper())
class Server(tritonserver.Server):
    def __init__(self, server_options=None, **kwargs):
        if server_options is not None:
            raise SystemExit("tritonllm launcher: main.py passed tritonserver.Options; cannot add " + repr(sorted(options)))
        super().__init__(**{**kwargs, **options})
tritonserver.Server = Server
print("tritonllm launcher: in-process server options " + repr(options), flush=True)
sys.argv = [main, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(main))
runpy.run_path(main, run_name="__main__")
"""


def server_options(model: Any) -> dict[str, Any]:
    """Options of the in-process server beyond main.py's own (JSON; the mode by its enum name)."""
    if model.backend == "vllm":
        return {"model_control_mode": "explicit", "startup_models": [model.name]}
    return {}


def frontend_command(model: Any, repository: str) -> list[str]:
    """The container command: the OpenAI frontend with the KServe frontends on Triton's usual ports
    (through LAUNCHER when the in-process server needs options main.py cannot set)."""
    options = server_options(model)
    start = ["python3", "-c", LAUNCHER, FRONTEND_MAIN, json.dumps(options)] if options else ["python3", FRONTEND_MAIN]
    return [
        *start,
        "--model-repository",
        repository,
        "--tokenizer",
        tokenizer(model),
        "--backend",
        BACKEND_FLAG[model.backend],
        "--host",
        "0.0.0.0",
        "--openai-port",
        str(OPENAI_PORT),
        "--default-max-tokens",
        str(model.openai.default_max_tokens),
        "--enable-kserve-frontends",
        "--kserve-http-port",
        str(HTTP_PORT),
        "--kserve-grpc-port",
        str(GRPC_PORT),
        "--uvicorn-log-level",
        "warning",
    ]


def container_ports() -> list[tuple[str, int]]:
    """(name, port) of the container in OpenAI mode: KServe HTTP/gRPC, and the OpenAI port,
    named `metrics` because it is also where Prometheus text is served (see the module docstring)."""
    return [("http", HTTP_PORT), ("grpc", GRPC_PORT), (metrics.METRICS_PORT_NAME, OPENAI_PORT)]


def service_port() -> dict[str, Any]:
    return {
        "name": OPENAI_PORT_NAME,
        "port": OPENAI_PORT,
        "targetPort": OPENAI_PORT,
        "protocol": "TCP",
        "appProtocol": "http",
    }


def ready_probe(period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    """Readiness of the OpenAI port: it starts last (after the server and the KServe frontends)."""
    return {
        "httpGet": {"path": READY_PATH, "port": OPENAI_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def http_route_rules(model_name: str, service_name: str) -> list[dict[str, Any]]:
    """HTTPRoute rules (data for gateway_manifests.http_route_manifest) for the OpenAI API:

    * `/openai/<model>/v1/...` rewritten to `/v1/...` (the base URL an OpenAI client is given), and
    * `/v1/...` with the header `x-triton-model: <model>` (clients that cannot change the path),

    both to the Service's OpenAI port. Only `/v1/*` reaches the frontend: its `/metrics` and
    `/health/ready` stay inside the cluster.
    """
    backend = [{"name": service_name, "port": OPENAI_PORT}]
    return [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": f"{PATH_PREFIX}/{model_name}/v1"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}},
                }
            ],
            "backendRefs": backend,
        },
        {
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": "/v1"},
                    "headers": [{"type": "Exact", "name": gm.MODEL_HEADER, "value": model_name}],
                }
            ],
            "backendRefs": backend,
        },
    ]


# --------------------------------------------------------------------------- how to call it


def base_url(http_endpoint: str | None, model_name: str) -> str:
    endpoint = (http_endpoint or "<httpEndpoint: the load balancer is not provisioned yet>").rstrip("/")
    return f"{endpoint}{PATH_PREFIX}/{model_name}/v1"


API_KEY_ENV = "TRITONLLM_API_KEY"  # a gateway API key `name:secret` (gateway.auth, HTTP Basic)


def curl_example(http_endpoint: str | None, model_name: str, api_keys: bool = False, ca_cert: str | None = None) -> str:
    body = json.dumps(
        {"model": model_name, "messages": [{"role": "user", "content": "What is Triton?"}], "max_tokens": 64}
    )
    command = shlex.join(
        [
            "curl",
            "-s",
            *(["--cacert", ca_cert] if ca_cert else []),  # the stack's own CA (gateway.tls.privateDomain)
            f"{base_url(http_endpoint, model_name)}/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ]
    )
    # the gateway checks API keys as HTTP Basic credentials
    return command + (f' -u "${API_KEY_ENV}"' if api_keys else "")


def python_example(
    http_endpoint: str | None, model_name: str, api_keys: bool = False, ca_cert: str | None = None
) -> str:
    lines = ["from openai import OpenAI"]
    if ca_cert:  # the SDK's HTTP client verifies against $SSL_CERT_FILE (set before the client is made)
        lines = ["import os", f'os.environ.setdefault("SSL_CERT_FILE", "{ca_cert}")', *lines]
    headers = ""
    if api_keys:  # the SDK's api_key goes out as Bearer; the gateway wants Basic name:secret
        lines = ["import base64, os", *[line for line in lines if line != "import os"]]
        headers = (
            f', default_headers={{"Authorization": "Basic " + '
            f'base64.b64encode(os.environ["{API_KEY_ENV}"].encode()).decode()}}'
        )
    return "\n".join(
        [
            *lines,
            f'client = OpenAI(base_url="{base_url(http_endpoint, model_name)}", api_key="unused"{headers})',
            f'reply = client.chat.completions.create(model="{model_name}", '
            'messages=[{"role": "user", "content": "What is Triton?"}], max_tokens=64)',
            "print(reply.choices[0].message.content)",
        ]
    )
