"""The ServingImage provider (components/providers/image_build.py) against a real moto server.

ECR (describe_images, put_image), S3 (the context upload) and CloudWatch Logs (get_log_events paging) are
moto's, for real. CodeBuild is moto's too where moto can play it (start_build and batch_get_builds:
moto 5 marks every build SUCCEEDED at once, pushes nothing and writes no log); where a test needs a build
that runs, logs and pushes or fails, its CodeBuild client is a real botocore client behind a Stubber, so
every request the provider makes is validated against CodeBuild's own service model. What the build does
(log lines, the pushed image) is played on moto between polls, through the provider's injected `sleep`.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2

from components.catalog import versions
from components.providers import image_build
from components.serving.builders import serving_image as si
from tests.providers.test_provider_host import from_wire, host, to_wire  # noqa: F401 (host: the fixture)

REGION = "us-east-1"


def _client(name: str, moto_server) -> Any:
    return boto3.client(name, region_name=REGION, endpoint_url=moto_server.url)


@pytest.fixture
def world(moto_server, bucket):
    """A repository, a log group/stream, and the props a ServingImage would hand its provider."""
    ecr, logs = _client("ecr", moto_server), _client("logs", moto_server)
    repo = f"tritonllm-{uuid.uuid4().hex[:8]}/serving"
    url = ecr.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE")["repository"]["repositoryUri"]
    group, stream = f"/tritonllm/{uuid.uuid4().hex[:8]}/image-builds", "build-1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    spec = si.multinode_spec(versions.TRITON_TRTLLM_ENGINE_IMAGE)
    files = si.context_files(spec.context_dir)
    tag = si.image_tag(spec, si.image_key(spec, files))
    props = {
        "tag": tag,
        "repository_name": repo,
        "repository_url": url,
        "bucket": bucket,
        "project_name": "tritonllm-image-builder",
        "region": REGION,
        "timeout_minutes": 120,
        "build_args": si.build_args_string(spec.build_args),
        "context_zip_hex": si.context_archive(files).hex(),
    }
    return {"ecr": ecr, "logs": logs, "group": group, "stream": stream, "props": props, "files": files}


def _push(ecr, repo: str, tag: str) -> str:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "a" * 64,
        },
        "layers": [],
    }
    image = ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag=tag)["image"]
    return image["imageId"]["imageDigest"]


_LAST_LOG_MS = [0]


def _log(logs, group: str, stream: str, lines: list[str]) -> None:
    import time

    # Strictly after the previous batch: moto orders a stream's events by timestamp, so a batch stamped
    # earlier than the last one (two calls within the same few milliseconds) would be read out of order.
    now = max(int(time.time() * 1000), _LAST_LOG_MS[0] + 1)
    _LAST_LOG_MS[0] = now + len(lines)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
    )


def _build(status: str, world, phases: list[dict] | None = None) -> dict:
    return {
        "id": "tritonllm-image-builder:1234",
        "buildStatus": status,
        "logs": {"groupName": world["group"], "streamName": world["stream"]},
        "phases": phases or [],
    }


def _stubbed_codebuild(moto_server):
    client = _client("codebuild", moto_server)
    return client, Stubber(client)


def _clients(world, moto_server, codebuild) -> image_build.BuildClients:
    return image_build.BuildClients(
        REGION,
        clients={"ecr": world["ecr"], "s3": _client("s3", moto_server), "codebuild": codebuild, "logs": world["logs"]},
    )


def test_an_image_already_in_ecr_is_not_built(world, moto_server, s3):
    props = world["props"]
    digest = _push(world["ecr"], props["repository_name"], props["tag"])
    codebuild, stubber = _stubbed_codebuild(moto_server)
    with stubber:  # nothing queued: any CodeBuild call would fail the test
        result = image_build.ensure_image(props, _clients(world, moto_server, codebuild), emit=lambda line: None)
    assert result == {"built": False, "digest": digest, "build_seconds": 0.0, "build_id": None}
    assert "Contents" not in s3.list_objects_v2(Bucket=props["bucket"])  # no context uploaded


def test_a_missing_image_is_built_its_log_streamed_and_its_digest_returned(world, moto_server, s3):
    props = world["props"]
    codebuild, stubber = _stubbed_codebuild(moto_server)
    key = si.context_key(props["tag"])
    stubber.add_response(
        "start_build",
        {"build": {"id": "tritonllm-image-builder:1234", "buildStatus": "IN_PROGRESS"}},
        {
            "projectName": props["project_name"],
            "sourceTypeOverride": "S3",
            "sourceLocationOverride": f"{props['bucket']}/{key}",
            "timeoutInMinutesOverride": 120,
            "environmentVariablesOverride": ANY,
        },
    )
    for status in ("IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"):
        stubber.add_response(
            "batch_get_builds", {"builds": [_build(status, world)]}, {"ids": ["tritonllm-image-builder:1234"]}
        )
    script = iter(
        [
            lambda: _log(world["logs"], world["group"], world["stream"], ["Step 1/12 : FROM nvcr.io", "Step 2/12"]),
            lambda: (
                _log(world["logs"], world["group"], world["stream"], ["tritonllm-verify-image: ok", "pushed"]),
                _push(world["ecr"], props["repository_name"], props["tag"]),
            ),
        ]
    )
    _log(world["logs"], world["group"], world["stream"], ["[Container] Entering phase PRE_BUILD"])
    emitted: list[str] = []
    with stubber:
        result = image_build.ensure_image(
            props, _clients(world, moto_server, codebuild), emit=emitted.append, sleep=lambda s: next(script)()
        )
        stubber.assert_no_pending_responses()
    assert result["built"] is True and result["digest"].startswith("sha256:")
    # every log line once, in order, after the start line
    assert emitted == [
        f"tritonllm: building {props['repository_url']}:{props['tag']} in CodeBuild (tritonllm-image-builder:1234)",
        "[codebuild] [Container] Entering phase PRE_BUILD",
        "[codebuild] Step 1/12 : FROM nvcr.io",
        "[codebuild] Step 2/12",
        "[codebuild] tritonllm-verify-image: ok",
        "[codebuild] pushed",
    ]
    # the context CodeBuild read is the archive of images/multinode/
    body = s3.get_object(Bucket=props["bucket"], Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == world["files"]


def test_the_build_gets_its_image_uri_registry_and_build_args(world, moto_server):
    props = world["props"]
    codebuild, stubber = _stubbed_codebuild(moto_server)
    registry = props["repository_url"].split("/", 1)[0]
    stubber.add_response(
        "start_build",
        {"build": {"id": "b:1"}},
        {
            "projectName": ANY,
            "sourceTypeOverride": ANY,
            "sourceLocationOverride": ANY,
            "timeoutInMinutesOverride": ANY,
            "environmentVariablesOverride": [
                {"name": "IMAGE_URI", "value": f"{props['repository_url']}:{props['tag']}", "type": "PLAINTEXT"},
                {"name": "REGISTRY", "value": registry, "type": "PLAINTEXT"},
                {"name": "BUILD_ARGS", "value": props["build_args"], "type": "PLAINTEXT"},
            ],
        },
    )
    stubber.add_response("batch_get_builds", {"builds": [{"id": "b:1", "buildStatus": "STOPPED"}]}, {"ids": ["b:1"]})
    with stubber, pytest.raises(image_build.ImageBuildError, match="ended STOPPED"):
        image_build.ensure_image(
            props, _clients(world, moto_server, codebuild), emit=lambda line: None, sleep=lambda s: None
        )


def test_a_failed_build_fails_with_its_phase_and_last_lines(world, moto_server):
    props = world["props"]
    codebuild, stubber = _stubbed_codebuild(moto_server)
    stubber.add_response("start_build", {"build": {"id": "tritonllm-image-builder:1234"}}, None)
    phases = [
        {"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
        {
            "phaseType": "BUILD",
            "phaseStatus": "FAILED",
            "contexts": [
                {
                    "statusCode": "COMMAND_EXECUTION_ERROR",
                    "message": "Error while executing command: docker build. Reason: exit status 1",
                }
            ],
        },
    ]
    stubber.add_response("batch_get_builds", {"builds": [_build("FAILED", world, phases)]}, None)
    lines = [f"line {i}" for i in range(si.LOG_TAIL_LINES + 5)] + ["tritonllm-verify-image: missing: aws-ofi-nccl"]
    _log(world["logs"], world["group"], world["stream"], lines)
    with stubber, pytest.raises(image_build.ImageBuildError) as failure:
        image_build.ensure_image(
            props, _clients(world, moto_server, codebuild), emit=lambda line: None, sleep=lambda s: None
        )
    message = str(failure.value)
    assert "ended FAILED" in message and "BUILD: FAILED (Error while executing command: docker build" in message
    assert message.rstrip().endswith("tritonllm-verify-image: missing: aws-ofi-nccl")
    assert f"last {si.LOG_TAIL_LINES} log lines" in message and "line 5\n" not in message  # only the tail


def test_moto_codebuild_succeeds_without_pushing_and_the_provider_says_so(world, moto_server):
    """moto's own CodeBuild (start_build, batch_get_builds) for real: it reports SUCCEEDED but pushes
    nothing, which the provider refuses: success means the tag is in ECR."""
    codebuild = _client("codebuild", moto_server)
    codebuild.create_project(
        name=world["props"]["project_name"],
        source={
            "type": "S3",
            "location": f"{world['props']['bucket']}/image-contexts/none.zip",
            "buildspec": si.buildspec(),
        },
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": versions.CODEBUILD_IMAGE,
            "computeType": versions.CODEBUILD_COMPUTE_TYPE,
            "privilegedMode": True,
        },
        serviceRole="arn:aws:iam::123456789012:role/builder",
    )
    with pytest.raises(image_build.ImageBuildError, match="succeeded but ECR has no"):
        image_build.ensure_image(
            world["props"], _clients(world, moto_server, codebuild), emit=lambda line: None, sleep=lambda s: None
        )


def test_diff_changes_only_with_the_tag_or_repository():
    olds = {"tag": "multinode-a", "repository_url": "r", "bucket": "b", "context_zip_hex": "00"}
    assert image_build.image_diff(olds, dict(olds)) == (False, [])
    assert image_build.image_diff(olds, {**olds, "context_zip_hex": "01", "bucket": "c"}) == (False, [])
    assert image_build.image_diff(olds, {**olds, "tag": "multinode-b"}) == (True, [])
    assert image_build.image_diff(olds, {**olds, "repository_url": "s"}) == (True, [])
    from pulumi.runtime.rpc import UNKNOWN

    assert image_build.image_diff(olds, {**olds, "tag": UNKNOWN}) == (True, [])


def test_log_follower_pages_through_the_stream(world):
    _log(world["logs"], world["group"], world["stream"], [f"l{i}" for i in range(30)])
    seen: list[str] = []
    follower = image_build.LogFollower(world["logs"], seen.append, prefix="")
    follower.poll(world["group"], world["stream"])
    follower.poll(world["group"], world["stream"])  # nothing new: nothing repeated
    _log(world["logs"], world["group"], world["stream"], ["last"])
    follower.poll(world["group"], world["stream"])
    assert seen == [f"l{i}" for i in range(30)] + ["last"]
    follower.poll(None, None)  # no stream named yet: nothing to read


def test_through_pulumis_provider_host_an_unchanged_image_is_no_change(world, moto_server, host):  # noqa: F811
    """The provider as the engine drives it (`python -m pulumi.dynamic`, gRPC): Create finds the tag in ECR and
    builds nothing; Diff of the same inputs is DIFF_NONE without one AWS request; a new tag is DIFF_SOME."""
    props = {**world["props"], "endpoint_url": moto_server.url}
    digest = _push(world["ecr"], props["repository_name"], props["tag"])
    props["__provider"] = serialize_provider(image_build.ServingImageProvider())
    urn = "urn:pulumi:test::tritonllm::pulumi-python:dynamic/tritonllm:ServingImage::img"
    created = host.Create(provider_pb2.CreateRequest(urn=urn, properties=to_wire(props)))
    outs = from_wire(created.properties)
    assert created.id == props["tag"] and outs["built"] is False
    assert outs["image_uri"] == f"{props['repository_url']}:{props['tag']}@{digest}"
    moto_server.reset()
    same = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties, news=to_wire(props)))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert moto_server.requests() == []
    changed = {**props, "tag": "multinode-" + "f" * 64}
    diff = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties, news=to_wire(changed)))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
