"""Triton's OpenAI-compatible frontend on EKS (pure functions).

With `models[].openai.enabled` the model's pod runs Triton's own OpenAI frontend instead of
the `tritonserver` binary: `python3 /opt/tritonserver/python/openai/openai_frontend/main.py`
embeds Triton in-process (the `tritonserver` Python bindings) and serves

    :9000  /v1/chat/completions, /v1/completions, /v1/models (OpenAI API), /metrics, /health/ready
    :8000  KServe v2 HTTP and :8001 KServe v2 gRPC (`--enable-kserve-frontends`, `tritonfrontend`)

Source: triton-inference-server/server `python/openai` at r25.12 (Triton 25.12, the pinned
image). What that version implies here:

* Dependencies: the 25.12 images install them. server `build.py` r25.12 (the production stage
  of every Linux image, vLLM and TRT-LLM alike) pip-installs the `tritonserver` and
  `tritonfrontend` wheels from /opt/tritonserver/python and runs
  `pip3 install -r python/openai/requirements.txt` (fastapi, httpx, openai, partial-json-parser,
  starlette; transformers for the tokenizer comes with vLLM / TensorRT-LLM), and copies
  `python/openai` to /opt/tritonserver/python/openai. No image of ours, no pip at pod start.
* Metrics: main.py r25.12 starts no metrics frontend (no :8002); Prometheus text is served at
  `/metrics` on the OpenAI port. The pod's port named `metrics` (what the PodMonitor scrapes)
  is therefore 9000 for these models. The in-process server runs with its default options, so
  `--metrics-config=histogram_latencies=true` and `--exit-timeout-secs` are not applied.
* Backends: requests are built per backend (engine/utils/triton.py): vLLM models get
  `sampling_parameters`; every other model gets the TRT-LLM ensemble's tensors (TRTLLM_REQUEST_INPUTS).
  The `llmapi` model takes `streaming` and `sampling_param_*` instead, so the pinned frontend
  cannot serve it; TRT-LLM leader mode (one tritonserver per rank under mpirun) is not supported
  either (python/openai/README.md r25.12, "Model Parallelism Support"). config_problems refuses both.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from components.catalog import serving_metrics as metrics
from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.gateway.builders import manifests as gm

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


def tokenizer(model: Any) -> str:
    return model.openai.tokenizer or model.hf_model_id


def frontend_command(model: Any, repository: str) -> list[str]:
    """The container command: the OpenAI frontend with the KServe frontends on Triton's usual ports."""
    return [
        "python3",
        FRONTEND_MAIN,
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
