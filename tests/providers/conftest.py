"""A real moto S3 server per test session, on a free loopback port, with request counters."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from tests.providers.moto_counting_server import REPO_ROOT, MotoServer, start_moto_server, stop_moto_server

__all__ = ["REPO_ROOT", "MotoServer"]


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
