"""A real moto S3 server per test session, on a free loopback port, with request counters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import botocore.config
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen[bytes]

    def _counters(self, method: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url + "/_counters", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def requests(self) -> list[dict[str, Any]]:
        """Every request served since the last reset."""
        return self._counters("GET")

    def reset(self) -> None:
        self._counters("DELETE")

    def operations(self) -> Counter[str]:
        return Counter(r["operation"] for r in self.requests())


def start_moto_server(env: dict[str, str] | None = None) -> MotoServer:
    """Start tests/providers/moto_counting_server.py; it binds port 0 and prints the port."""
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


@pytest.fixture(scope="session")
def aws_test_env() -> Iterator[None]:
    """Fake credentials, and no user AWS config that could point elsewhere."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    saved = {key: os.environ.get(key) for key in [*values, "AWS_PROFILE", "AWS_ENDPOINT_URL"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(values)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_server(aws_test_env: None) -> Iterator[MotoServer]:
    server = start_moto_server()
    yield server
    stop_moto_server(server)


@pytest.fixture
def s3(moto_server: MotoServer) -> Any:
    """A plain boto3 client on the moto server, for arranging and checking."""
    return boto3.client(
        "s3",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3: Any, moto_server: MotoServer) -> str:
    """A fresh bucket per test; counters start at zero."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    moto_server.reset()
    return name


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "hash-cache"
