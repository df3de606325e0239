"""Facts of the Triton server every serving builder shares: its default listening ports.

tritonserver's defaults (server r25.12 `src/command_line_parser.h`): HTTP 8000, gRPC 8001,
metrics 8002; the metrics port and its name live with the metric catalog (`serving_metrics.py`).
"""

from __future__ import annotations

HTTP_PORT = 8000
GRPC_PORT = 8001
