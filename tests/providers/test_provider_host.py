"""ModelRepository through Pulumi's own dynamic-provider host, as the engine drives it.

`python -m pulumi.dynamic` is the process the engine starts for dynamic
resources: it unpickles the provider from the `__provider` property and
serves the provider gRPC protocol. Talking gRPC to it checks what calling the
provider class directly cannot: the pickled provider loads in another process
from the project directory, properties (unknowns included) survive Pulumi's
wire format, and outputs serialize back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.providers import s3_sync
from components.providers.model_repository import ModelRepositoryProvider

from .conftest import REPO_ROOT, MotoServer
from .test_model_repository import SETTINGS, local_files, make_tree, objects

URN = "urn:pulumi:test::tritonllm::pulumi-python:dynamic/tritonllm:ModelRepository::repo"


def to_wire(props: dict[str, Any]) -> Any:
    return asyncio.run(rpc.serialize_properties(props, {}))


def from_wire(struct: Any) -> dict[str, Any]:
    return rpc.deserialize_properties(struct, keep_unknowns=True)


@pytest.fixture
def host(moto_server: MotoServer) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"], cwd=REPO_ROOT, stdout=subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().decode().strip()
        assert port.isdigit(), f"provider host printed {port!r}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_pb2_grpc.ResourceProviderStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_engine_round_trip(host, tmp_path: Path, bucket, s3, moto_server, cache_dir):
    tree = make_tree(tmp_path / "repo")
    provider = serialize_provider(ModelRepositoryProvider(SETTINGS, str(cache_dir)))
    props = {
        "bucket": bucket,
        "prefix": "/repos/llama/",
        "source_dir": str(tree),
        "content_hash": s3_sync.content_hash(tree, cache_dir=cache_dir),
        "region": "us-east-1",
        "endpoint_url": moto_server.url,
        "__provider": provider,
    }

    checked = host.Check(provider_pb2.CheckRequest(urn=URN, olds=to_wire({}), news=to_wire(props)))
    assert list(checked.failures) == [] and from_wire(checked.inputs)["prefix"] == "repos/llama"
    created = host.Create(provider_pb2.CreateRequest(urn=URN, properties=checked.inputs))
    outs = from_wire(created.properties)
    assert created.id == f"{bucket}/repos/llama"
    assert outs["content_hash"] == props["content_hash"] and outs["file_count"] == 6
    assert objects(s3, bucket) == local_files(tree, "repos/llama")

    moto_server.reset()
    same = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=checked.inputs))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert moto_server.requests() == []

    refreshed = host.Read(provider_pb2.ReadRequest(id=created.id, urn=URN, properties=created.properties))
    assert from_wire(refreshed.properties)["content_hash"] == props["content_hash"]  # no drift

    # A preview where the bucket is being replaced and the prefix comes from another resource.
    preview = {**props, "bucket": rpc.UNKNOWN, "prefix": rpc.UNKNOWN}
    preview_checked = host.Check(provider_pb2.CheckRequest(urn=URN, olds=created.properties, news=to_wire(preview)))
    assert list(preview_checked.failures) == []
    unknown = host.Diff(
        provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=preview_checked.inputs)
    )
    assert unknown.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(unknown.replaces) == ["bucket", "prefix"] and unknown.deleteBeforeReplace

    (tree / "empty.txt").unlink()
    news = {**from_wire(checked.inputs), "content_hash": s3_sync.content_hash(tree, cache_dir=cache_dir)}
    changed = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=to_wire(news)))
    assert changed.changes == provider_pb2.DiffResponse.DIFF_SOME and list(changed.replaces) == []
    updated = host.Update(
        provider_pb2.UpdateRequest(id=created.id, urn=URN, olds=created.properties, news=to_wire(news))
    )
    assert from_wire(updated.properties)["file_count"] == 5
    assert objects(s3, bucket) == local_files(tree, "repos/llama")

    host.Delete(provider_pb2.DeleteRequest(id=created.id, urn=URN, properties=updated.properties))
    assert objects(s3, bucket) == {}
