"""The AWS CLI container every S3 copy of ours runs in: the serving pods' stage-* init containers
(repository, engine, weights) and the engine-build and weights-mirror Jobs' upload containers."""

from __future__ import annotations

from typing import Any

from components.catalog import versions
from components.platform.builders import pod_security


def aws_cli_container(
    name: str,
    script: str,
    region: str,
    *,
    cpu: str,
    memory: str,
    memory_limit: str,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """`script` under /bin/sh in the pinned AWS CLI image, restricted, with the stack's region; `mounts`
    then the /tmp emptyDir, which is also HOME: the AWS CLI image has no user 1000."""
    return {
        "name": name,
        "image": versions.AWS_CLI_IMAGE,
        "command": ["/bin/sh", "-c", script],
        "env": [
            {"name": "AWS_REGION", "value": region},
            {"name": "AWS_DEFAULT_REGION", "value": region},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}},
        "volumeMounts": [*mounts, pod_security.writable_mounts()[0]],
        "securityContext": pod_security.container_security_context(),
    }
