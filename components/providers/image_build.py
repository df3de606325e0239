"""ServingImage: a container image built in AWS CodeBuild and pushed to the program's ECR repository,
tagged by its content key, as a Pulumi dynamic resource.

The key, context archive, buildspec and IAM documents are pure builders in
components/serving/builders/serving_image.py. The provider:
1. does nothing when the tag is already in ECR (another stack's, or an interrupted run's, push);
2. uploads the build context zip to s3://<bucket>/image-contexts/<tag>.zip;
3. starts the CodeBuild project on it, waits, and copies every line of the build's CloudWatch log to its
   standard error as it arrives: a dynamic provider has no engine connection for pulumi.log (pulumi/pulumi
   PR 20409: "pulumi.log is just a pass through to print"), and the CLI shows a dynamic provider's output
   (pulumi/pulumi PR 18253), so the build's lines reach `pulumi up`'s log;
4. fails the resource with the build's failed phases and last log lines when the build does not succeed.

Its inputs carry the content key, computed when the program runs, so an unchanged stack has equal inputs:
the diff says no change and nothing is called in AWS.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi.dynamic
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from components.serving.builders import serving_image as si

# A change of these is a new image (its tag); the others only say where and how to build it.
KEY_INPUTS = ("tag", "repository_url")


def _is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def image_diff(olds: dict[str, Any], news: dict[str, Any]) -> tuple[bool, list[str]]:
    """(changes, replaces): only the tag and the repository it lives in matter; unknown counts as changed."""
    changed = [k for k in KEY_INPUTS if _is_unknown(news.get(k)) or news.get(k) != olds.get(k)]
    return bool(changed), []


class ImageBuildError(RuntimeError):
    pass


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BuildClients:
    """boto3 clients the provider uses (tests hand it clients on moto or with botocore Stubbers)."""

    def __init__(self, region: str, endpoint_url: str | None = None, clients: dict[str, Any] | None = None):
        if clients is None:
            import boto3

            clients = {
                name: boto3.client(name, region_name=region, endpoint_url=endpoint_url)
                for name in ("ecr", "s3", "codebuild", "logs")
            }
        self.ecr, self.s3, self.codebuild, self.logs = (clients[n] for n in ("ecr", "s3", "codebuild", "logs"))


def find_image(ecr: Any, repository: str, tag: str) -> str | None:
    """The digest of repository:tag, or None when ECR has no such tag."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return None
    details = found.get("imageDetails") or []
    return details[0].get("imageDigest") if details else None


class LogFollower:
    """Reads a build's CloudWatch log stream from where it left off; keeps the last lines for errors."""

    def __init__(self, logs: Any, emit: Callable[[str], None], prefix: str):
        self.logs, self.emit, self.prefix = logs, emit, prefix
        self.token: str | None = None
        self.tail: list[str] = []

    def poll(self, group: str | None, stream: str | None) -> None:
        if not group or not stream:
            return  # CodeBuild names the stream once the build container starts
        while True:
            kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                page = self.logs.get_log_events(**kwargs)
            except self.logs.exceptions.ResourceNotFoundException:
                return  # the stream is created with the build's first line
            for event in page.get("events") or []:
                for line in str(event.get("message", "")).rstrip("\n").splitlines():
                    self.emit(f"{self.prefix}{line}")
                    self.tail = [*self.tail[-(si.LOG_TAIL_LINES - 1) :], line]
            token = page.get("nextForwardToken")
            if not token or token == self.token:
                return  # the same token back: nothing newer yet
            self.token = token


def ensure_image(
    props: dict[str, Any],
    clients: BuildClients,
    *,
    emit: Callable[[str], None] = _stderr_line,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Make sure repository:tag exists in ECR (build it in CodeBuild if not); returns built, digest, seconds."""
    repository, tag = props["repository_name"], props["tag"]
    digest = find_image(clients.ecr, repository, tag)
    if digest:
        return {"built": False, "digest": digest, "build_seconds": 0.0, "build_id": None}

    started = clock()
    bucket, key = props["bucket"], si.context_key(tag)
    clients.s3.put_object(Bucket=bucket, Key=key, Body=bytes.fromhex(props["context_zip_hex"]))
    image_uri = f"{props['repository_url']}:{tag}"
    build = clients.codebuild.start_build(
        projectName=props["project_name"],
        sourceTypeOverride="S3",
        sourceLocationOverride=f"{bucket}/{key}",
        timeoutInMinutesOverride=int(props["timeout_minutes"]),
        environmentVariablesOverride=[
            {"name": "IMAGE_URI", "value": image_uri, "type": "PLAINTEXT"},
            {"name": "REGISTRY", "value": props["repository_url"].split("/", 1)[0], "type": "PLAINTEXT"},
            {"name": "BUILD_ARGS", "value": props["build_args"], "type": "PLAINTEXT"},
        ],
    )["build"]
    build_id = build["id"]
    emit(f"tritonllm: building {image_uri} in CodeBuild ({build_id})")
    follower = LogFollower(clients.logs, emit, prefix="[codebuild] ")
    deadline = started + int(props["timeout_minutes"]) * 60 + 600  # CodeBuild's own timeout, then a margin
    while True:
        (build,) = clients.codebuild.batch_get_builds(ids=[build_id])["builds"]
        logs = build.get("logs") or {}
        follower.poll(logs.get("groupName"), logs.get("streamName"))
        status = build.get("buildStatus", "IN_PROGRESS")
        if status in si.BUILD_DONE:
            break
        if clock() >= deadline:
            clients.codebuild.stop_build(id=build_id)
            status = "TIMED_OUT"
            break
        sleep(si.BUILD_POLL_SECONDS)
    if status != "SUCCEEDED":
        phases = "\n".join(si.failed_phases(build)) or "(no phase details)"
        tail = "\n".join(follower.tail) or "(no log lines: the build never started its container?)"
        raise ImageBuildError(
            f"image build {build_id} for {image_uri} ended {status}\n{phases}\n"
            f"--- last {len(follower.tail)} log lines ---\n{tail}"
        )
    digest = find_image(clients.ecr, repository, tag)
    if not digest:
        raise ImageBuildError(f"image build {build_id} succeeded but ECR has no {repository}:{tag}")
    return {"built": True, "digest": digest, "build_seconds": round(clock() - started, 1), "build_id": build_id}


# Inputs kept in the state as outputs (the context archive is an input only: it can be large).
_STATE_KEYS = ("tag", "key", "repository_name", "repository_url", "bucket", "project_name", "region")


class ServingImageProvider(pulumi.dynamic.ResourceProvider):
    serialize_as_secret_always = False  # nothing secret in it; keep the state readable

    def _clients(self, props: dict[str, Any]) -> BuildClients:
        return BuildClients(props["region"], props.get("endpoint_url") or None)

    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        result = ensure_image(props, self._clients(props))
        outs = {k: props.get(k) for k in _STATE_KEYS}
        outs.update(result)
        outs["image_uri"] = f"{props['repository_url']}:{props['tag']}@{result['digest']}"
        return outs

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["tag"], outs=self._outs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changes, replaces = image_diff(olds, news)
        return pulumi.dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._outs(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The image stays until the repository's lifecycle policy expires it (a rollback may still run it);
        # the repository itself goes with the stack (force_delete). Only the context object is ours alone.
        try:
            self._clients(props).s3.delete_object(Bucket=props["bucket"], Key=si.context_key(props["tag"]))
        except Exception as exc:  # noqa: BLE001 (best effort: the bucket may already be gone)
            _stderr_line(f"tritonllm: could not delete the build context of {props.get('tag')}: {exc}")


class ServingImage(pulumi.dynamic.Resource, module="tritonllm", name="ServingImage"):
    """An image built from images/<spec.name>/ in CodeBuild, in ECR as <repository>:<name>-<content key>.

    Outputs: image_uri (repository:tag@sha256:..., what pods run), tag, digest, built (False: ECR had it).
    """

    image_uri: pulumi.Output[str]
    tag: pulumi.Output[str]
    digest: pulumi.Output[str]
    built: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        spec: si.ImageSpec,
        *,
        repository_name: pulumi.Input[str],
        repository_url: pulumi.Input[str],
        bucket: pulumi.Input[str],
        project_name: pulumi.Input[str],
        region: str,
        timeout_minutes: int,
        endpoint_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        files = si.context_files(spec.context_dir)
        key = si.image_key(spec, files)
        props = {
            "tag": si.image_tag(spec, key),
            "key": key,
            "repository_name": repository_name,
            "repository_url": repository_url,
            "bucket": bucket,
            "project_name": project_name,
            "region": region,
            "endpoint_url": endpoint_url,
            "timeout_minutes": timeout_minutes,
            "build_args": si.build_args_string(spec.build_args),
            "context_zip_hex": si.context_archive(files).hex(),
            "image_uri": None,
            "digest": None,
            "built": None,
            "build_seconds": None,
            "build_id": None,
        }
        super().__init__(ServingImageProvider(), name, props, opts)
