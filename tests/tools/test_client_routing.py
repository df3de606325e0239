"""`tritonllm client` sends the gateway's routing header on every call.

The EKS gateway routes gRPC by the `x-triton-model` header (gRPC carries the
model name inside the message). A real gRPC server speaking Triton's
GRPCInferenceService records the metadata each call arrives with; a real HTTP
server does the same for the HTTP path.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import pytest

import grpc

# requirements-local.txt (installed by `make setup`): a missing client SDK fails, never skips
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from components.gateway.builders import manifests as gateway_manifests
from tritonllm import client

MODEL = "mistral-7b-instruct"


def test_client_header_is_the_one_the_gateway_matches():
    assert client.MODEL_HEADER == gateway_manifests.MODEL_HEADER
    route = gateway_manifests.grpc_route_manifest(MODEL, MODEL, "triton", "gw", "gw-ns")
    # the route matches exactly this header name with exactly the model's name
    matches = [h for rule in route["spec"]["rules"] for m in rule.get("matches", []) for h in m.get("headers", [])]
    assert {"type": "Exact", "name": client.MODEL_HEADER, "value": MODEL} in [
        {"type": h.get("type", "Exact"), "name": h["name"], "value": h["value"]} for h in matches
    ], matches


class RecordingTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self):
        self.metadata: dict[str, dict[str, str]] = {}

    def _record(self, method, context):
        self.metadata[method] = dict(context.invocation_metadata())

    def ModelConfig(self, request, context):
        self._record("ModelConfig", context)
        config = model_config_pb2.ModelConfig(name=request.name, backend="vllm")
        # Shaped like Triton's vLLM backend model: sampling goes in a JSON string.
        config.input.add(name="text_input", data_type=model_config_pb2.TYPE_STRING, dims=[1])
        config.input.add(name="stream", data_type=model_config_pb2.TYPE_BOOL, dims=[1], optional=True)
        config.input.add(name="sampling_parameters", data_type=model_config_pb2.TYPE_STRING, dims=[1], optional=True)
        config.input.add(name="exclude_input_in_output", data_type=model_config_pb2.TYPE_BOOL, dims=[1], optional=True)
        config.output.add(name="text_output", data_type=model_config_pb2.TYPE_STRING, dims=[-1])
        config.model_transaction_policy.decoupled = True
        return service_pb2.ModelConfigResponse(config=config)

    def ModelStreamInfer(self, request_iterator, context):
        self._record("ModelStreamInfer", context)
        for request in request_iterator:
            text = b"routed"
            response = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
            out = response.outputs.add(name="text_output", datatype="BYTES", shape=[1])
            response.raw_output_contents.append(len(text).to_bytes(4, "little") + text)
            response.parameters["triton_final_response"].bool_param = True
            yield service_pb2.ModelStreamInferResponse(infer_response=response)
            del out


@pytest.fixture
def recording_server():
    from concurrent import futures

    servicer = RecordingTriton()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None).wait(10)


def _args(tmp_path: Path, url: str, protocol: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there\n")
    return parser.parse_args(
        [
            "--url",
            url,
            "--protocol",
            protocol,
            "--model-name",
            MODEL,
            "--input-prompts",
            str(prompts),
            "--results-file",
            str(tmp_path / "out.jsonl"),
        ]
    )


def test_grpc_calls_carry_the_model_header(tmp_path, recording_server):
    servicer, port = recording_server
    assert client.main(_args(tmp_path, f"127.0.0.1:{port}", "grpc")) == 0
    for method in ("ModelConfig", "ModelStreamInfer"):
        assert servicer.metadata[method].get(client.MODEL_HEADER) == MODEL, (method, servicer.metadata[method])


def test_http_calls_carry_the_model_header(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, body: dict):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            seen.append((self.path, self.headers.get(client.MODEL_HEADER)))
            self._reply(
                {
                    "name": MODEL,
                    "backend": "vllm",
                    "input": [
                        {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
                        {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
                        {"name": "sampling_parameters", "data_type": "TYPE_STRING", "dims": [1], "optional": True},
                    ],
                    "output": [{"name": "text_output", "data_type": "TYPE_STRING", "dims": [-1]}],
                }
            )

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.headers.get(client.MODEL_HEADER)))
            self._reply({"model_name": MODEL, "text_output": "routed"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert client.main(_args(tmp_path, f"http://127.0.0.1:{server.server_port}", "http")) == 0
    finally:
        server.shutdown()
    assert seen and all(header == MODEL for _, header in seen), seen
    assert any(path.endswith("/generate") for path, _ in seen)
