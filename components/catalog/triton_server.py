"""Facts of the Triton server every serving builder shares: its default listening ports, and how its
model repository API is put behind a secret header.

tritonserver's defaults (server r25.12 `src/command_line_parser.h`): HTTP 8000, gRPC 8001,
metrics 8002; the metrics port and its name live with the metric catalog (`serving_metrics.py`).
"""

from __future__ import annotations

HTTP_PORT = 8000
GRPC_PORT = 8001

# --- The model repository API (load/unload/index), restricted wherever model control is explicit.
# In explicit mode a load request can carry file overrides, i.e. code the server runs (server r25.12
# docs/customization_guide/deploy.md); the pods that run explicit mode (vLLM, ranks > 0 of TRT-LLM
# leader mode) therefore refuse it without a secret header. Syntax (server r25.12
# src/command_line_parser.cc, ParseRestrictedFeatureOption; docs/customization_guide/
# inference_protocols.md "Limit endpoint access"):
#     --http-restricted-api=<apis>:<key>=<value>      HTTP requests need the header `<key>: <value>`
#     --grpc-restricted-protocol=<protocols>:<key>=<value>   gRPC requests the metadata
#                                                     `triton-grpc-protocol-<key>: <value>`
# (the gRPC option is `--grpc-restricted-protocol`, not `--grpc-restricted-api`). Without the header:
# HTTP 403 "This API is restricted, expecting header '<key>'"; health, metadata and inference stay open.
RESTRICTED_API = "model-repository"
ADMIN_KEY_HEADER = "tritonllm-admin-key"
GRPC_RESTRICTED_PREFIX = (
    "triton-grpc-protocol-"  # server r25.12 src/grpc/grpc_server.h kRestrictedProtocolHeaderTemplate
)
ADMIN_KEY_GRPC_METADATA = GRPC_RESTRICTED_PREFIX + ADMIN_KEY_HEADER


def restricted_api_args(value: str) -> list[str]:
    """tritonserver arguments that put the model repository API behind the header ADMIN_KEY_HEADER = value."""
    return [
        f"--http-restricted-api={RESTRICTED_API}:{ADMIN_KEY_HEADER}={value}",
        f"--grpc-restricted-protocol={RESTRICTED_API}:{ADMIN_KEY_HEADER}={value}",
    ]
