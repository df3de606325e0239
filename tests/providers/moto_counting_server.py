"""A real moto server (S3 and the rest) on a free loopback port that also counts what it receives.

    python -m tests.providers.moto_counting_server [--host 127.0.0.1]

prints the port it bound, then serves until killed. Besides moto's own API it
answers `GET /_counters` with every request it served since the last
`DELETE /_counters`: method, path, query, the S3 operation and the body bytes.
Counting on the server side sees every client (boto3 in-process, `aws s3 sync`
in a subprocess) the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

COUNTERS_PATH = "/_counters"
REPO_ROOT = Path(__file__).resolve().parents[2]


def s3_operation(method: str, query: str, headers: dict[str, str], path: str) -> str:
    """The S3 API operation a path-style request is, as far as the tests need to tell them apart."""
    params = parse_qs(query, keep_blank_values=True)
    has_key = path.strip("/").count("/") >= 1
    if method == "PUT" and "partNumber" in params:
        return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
    if method == "PUT" and has_key:
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST" and "uploads" in params:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in params:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in params:
        return "AbortMultipartUpload"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "GET" and "versions" in params:
        return "ListObjectVersions"
    if method == "GET" and not has_key:
        return "ListObjectsV2" if params.get("list-type") == ["2"] else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        return "GetObject"
    if method == "DELETE":
        return "DeleteObject" if has_key else "DeleteBucket"
    return f"{method} {'object' if has_key else 'bucket'}"


class CountingMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == COUNTERS_PATH:
            with self.lock:
                if environ["REQUEST_METHOD"] == "DELETE":
                    self.requests = []
                body = json.dumps(self.requests).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if not path.startswith("/moto-api"):
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
            # aws-chunked bodies carry framing; the decoded length is the payload.
            length = headers.get("x-amz-decoded-content-length") or environ.get("CONTENT_LENGTH") or 0
            record = {
                "method": method,
                "path": unquote(path),
                "query": query,
                "operation": s3_operation(method, query, headers, path),
                "bytes": int(length),
            }
            with self.lock:
                self.requests.append(record)
        return self.app(environ, start_response)


@dataclass
class MotoServer:
    """Handle on a running server: its URL and what it has counted."""

    url: str
    process: subprocess.Popen[bytes]

    def _counters(self, method: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url + COUNTERS_PATH, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def requests(self) -> list[dict[str, Any]]:
        """Every request served since the last reset."""
        return self._counters("GET")

    def reset(self) -> None:
        self._counters("DELETE")

    def operations(self) -> Counter[str]:
        return Counter(r["operation"] for r in self.requests())

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def start_moto_server(env: dict[str, str] | None = None) -> MotoServer:
    """Run this module in a child process; it binds a free port and prints it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.providers.moto_counting_server"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.isdigit():
        process.kill()
        raise RuntimeError(f"moto server did not start (printed {line!r}, exit {process.poll()})")
    return MotoServer(f"http://127.0.0.1:{line}", process)


def stop_moto_server(server: MotoServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    # One log line per request would cost time in benchmarks and bury test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = CountingMiddleware(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
