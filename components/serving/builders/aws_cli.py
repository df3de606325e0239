"""The AWS CLI container every S3 copy of ours runs in: the serving pods' stage-* init containers
(repository, engine, weights) and the engine-build and weights-mirror Jobs' upload containers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.catalog import versions
from components.platform.builders import pod_security

# The AWS CLI v2's `aws s3` transfer client. Its default, `auto`, resolves to the CRT client on the
# instance types it calls optimized (aws/aws-cli awscli/topics/s3-config.rst "preferred_transfer_client":
# p4d.24xlarge, p4de.24xlarge, p5.48xlarge, trn1(n).32xlarge; more families from 2.37.0, aws/aws-cli#10676),
# i.e. on our largest GPU nodes. The CRT client ignores max_concurrent_requests (same page) and sizes its
# buffer pool from the instance's bandwidth (awslabs/aws-c-s3 source/s3_platform_info.c: 400 Gbps for those
# types; source/s3_client.c: a default memory limit of 8 GiB or more from 75 Gbps), while our containers
# have a 2 GiB memory limit; `classic` is the one transfer client whose settings and memory are the same on
# every node.
TRANSFER_CLIENT = "classic"


def s3_config_lines(settings: Mapping[str, str] | None = None) -> list[str]:
    """Shell lines that write an AWS CLI config ($TMPDIR or /tmp, the pod's writable emptyDir) with the
    transfer client and `settings` under `s3`, and point AWS_CONFIG_FILE at it. Credentials still come
    from Pod Identity/IRSA's environment."""
    items = {"preferred_transfer_client": TRANSFER_CLIENT, **(settings or {})}
    return [
        "cat > \"${TMPDIR:-/tmp}/aws-s3.cfg\" <<'EOF'",
        "[default]",
        "s3 =",
        *(f"  {key} = {value}" for key, value in items.items()),
        "EOF",
        'export AWS_CONFIG_FILE="${TMPDIR:-/tmp}/aws-s3.cfg"',
    ]


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
    """`script` under /bin/sh in the pinned AWS CLI image, restricted, with the stack's region and the
    classic transfer client (s3_config_lines; a script may write its own config after it); `mounts`
    then the /tmp emptyDir, which is also HOME: the AWS CLI image has no user 1000."""
    return {
        "name": name,
        "image": versions.AWS_CLI_IMAGE,
        "command": ["/bin/sh", "-c", "\n".join([*s3_config_lines(), script])],
        "env": [
            {"name": "AWS_REGION", "value": region},
            {"name": "AWS_DEFAULT_REGION", "value": region},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}},
        "volumeMounts": [*mounts, pod_security.writable_mounts()[0]],
        "securityContext": pod_security.container_security_context(),
    }
