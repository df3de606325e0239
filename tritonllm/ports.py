"""Loopback ports and URLs shared by the local servers (`serve`'s Triton, its API-key front)."""

from __future__ import annotations

import socket
from typing import Sequence


def client_host(host: str) -> str:
    """The address a local client dials for a server bound to `host` (0.0.0.0 means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (checked by binding to it, like Triton will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str = "127.0.0.1", exclude: Sequence[int] = ()) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((client_host(host), 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise OSError("could not find a free TCP port")


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class LoopbackUrls:
    """`http_url`/`grpc_url` of a server with `host`, `http_port` and `grpc_port` attributes."""

    host: str
    http_port: int
    grpc_port: int

    @property
    def _client_host(self) -> str:
        return client_host(self.host)

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"
