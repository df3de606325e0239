"""Pure builders for the serving images the program builds in AWS: content key (the image tag), build
context, CodeBuild buildspec, ECR lifecycle policy and the builder's IAM documents.

An image is built from one directory of this repository (images/<name>/: a Dockerfile and its scripts)
on a pinned base image with pinned build arguments (components/catalog/versions.py). Its tag is the
sha256 of all of them, so:
- an unchanged stack computes the same tag, the ServingImage resource sees equal inputs and does no work;
- any change of the base image, a file's bytes, a pin or an extra package yields a new tag, built once;
- an existing tag in ECR (a build another stack or an interrupted run already pushed) is never rebuilt.

Why CodeBuild and not a BuildKit Job in the cluster: a BuildKit pod needs `privileged: true` (or rootless
BuildKit with seccomp and AppArmor `Unconfined`, moby/buildkit docs/rootless.md "Kubernetes"), which the
restricted Pod Security Standard the program's namespaces enforce rejects (kubernetes.io/docs/concepts/
security/pod-security-standards: Privileged Containers, Seccomp, AppArmor), and a 20+ GB build would take
a GPU node's disk. CodeBuild runs docker in its own privileged build container (privileged_mode), billed per
minute only while it builds, and AWS builds its own nccl-tests image that way (aws-samples/
awsome-distributed-training micro-benchmarks/nccl-tests/buildspec.yaml).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from components.catalog import versions
from components.config import ModelConfig
from components.platform.builders.iam import policy_document, service_trust_policy

ImageRef = TypeVar("ImageRef")  # a plain reference, or the program's Output of one

IMAGES_DIR = Path(__file__).resolve().parents[3] / "images"
MULTINODE = "multinode"
EXTRA_PACKAGES = "extra-packages"

# Where build contexts go in the model store bucket (one object per content key).
CONTEXT_PREFIX = "image-contexts"
# ECR keeps this many images per repository (the newest), untagged ones a day: a content key that is no
# longer deployed ages out, while the images in use are the newest.
KEEP_IMAGES = 10
BUILD_POLL_SECONDS = 15
LOG_TAIL_LINES = 40
# A debian package name (Debian Policy 5.6.1: lowercase letters, digits, + - . ; at least two characters,
# starting alphanumeric), optionally `=version`.
APT_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$"


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: the directory its Dockerfile is in, the base image and the build arguments."""

    name: str  # images/<name>/, and the resource's name
    base_image: str
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def context_dir(self) -> Path:
        return IMAGES_DIR / self.name


def multinode_spec(base_image: str, extra_apt_packages: tuple[str, ...] = ()) -> ImageSpec:
    """The multi-node serving image on `base_image` (the model runtime's Triton image), every pin from the catalog."""
    return ImageSpec(
        MULTINODE,
        base_image,
        {
            "BASE_IMAGE": base_image,
            "EFA_INSTALLER_VERSION": versions.EFA_INSTALLER_VERSION,
            "EFA_INSTALLER_MPI": versions.EFA_INSTALLER_MPI,
            "NCCL_TESTS_VERSION": versions.NCCL_TESTS_VERSION,
            "NCCL_TESTS_GENCODE": " ".join(versions.NCCL_TESTS_GENCODE),
            "OPENSSH_VERSION_PREFIX": versions.OPENSSH_VERSION_PREFIX,
            "EXTRA_APT_PACKAGES": " ".join(extra_apt_packages),
        },
    )


def extra_packages_spec(base_image: str, extra_apt_packages: tuple[str, ...]) -> ImageSpec:
    """A single-node serving image: `base_image` plus apt packages (servingImage.extraAptPackages)."""
    if not extra_apt_packages:
        raise ValueError("an extra-packages image needs at least one package")
    return ImageSpec(
        EXTRA_PACKAGES,
        base_image,
        {"BASE_IMAGE": base_image, "EXTRA_APT_PACKAGES": " ".join(extra_apt_packages)},
    )


def context_files(directory: Path) -> dict[str, bytes]:
    """Every file of a build context directory, by its relative POSIX path (sorted, no symlinks)."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"{path}: a build context holds no symlinks (the tag hashes file bytes)")
        if path.is_file():
            files[path.relative_to(directory).as_posix()] = path.read_bytes()
    if "Dockerfile" not in files:
        raise ValueError(f"{directory}: no Dockerfile")
    return files


def image_key(spec: ImageSpec, files: dict[str, bytes]) -> str:
    """sha256 over the base image, every build argument and every context file's path, mode-free bytes."""
    parts = {
        "name": spec.name,
        "base_image": spec.base_image,
        "build_args": dict(sorted(spec.build_args.items())),
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
        # The builder's own environment shapes the image too (docker version, buildspec).
        "codebuild_image": versions.CODEBUILD_IMAGE,
        "buildspec": buildspec(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def image_tag(spec: ImageSpec, key: str) -> str:
    """ECR tag (at most 128 characters of [A-Za-z0-9_.-]): the image's name and its content key."""
    return f"{spec.name}-{key}"


def context_key(tag: str) -> str:
    return f"{CONTEXT_PREFIX}/{tag}.zip"


# Fixed timestamp and modes: the same files always give the same archive bytes.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def context_archive(files: dict[str, bytes]) -> bytes:
    """The build context as the zip CodeBuild's S3 source takes (userguide: "S3 ... a ZIP file")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files.items()):
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            mode = 0o755 if path.endswith(".sh") else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def buildspec() -> str:
    """The CodeBuild buildspec (version 0.2): log in to ECR, docker build with the build arguments, push.

    The build arguments come as environment variables of the build (start_build's
    environmentVariablesOverride): BUILD_ARGS (one `--build-arg NAME=value` list, shell-quoted by the
    provider), IMAGE_URI (repository:tag) and REGISTRY (the account's ECR host).
    """
    spec = {
        "version": "0.2",
        "env": {"shell": "bash", "variables": {"DOCKER_BUILDKIT": "1"}},
        "phases": {
            "pre_build": {
                "commands": [
                    'aws ecr get-login-password --region "$AWS_REGION" | '
                    'docker login --username AWS --password-stdin "$REGISTRY"',
                    "docker version",
                    "df -h /",
                ]
            },
            "build": {
                "commands": [
                    'eval "docker build --progress=plain $BUILD_ARGS -t $IMAGE_URI ."',
                ]
            },
            "post_build": {
                "commands": [
                    # post_build runs after a failed build too: push only what was built.
                    'if [ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ]; then docker push "$IMAGE_URI"; fi',
                    'if [ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ]; then docker image inspect --format "{{.Size}}" '
                    '"$IMAGE_URI" | sed "s/^/tritonllm: image size bytes /"; fi',
                ]
            },
        },
    }
    return json.dumps(spec, indent=2)  # YAML is a superset of JSON: CodeBuild reads it as is


def build_args_string(build_args: dict[str, str]) -> str:
    """`--build-arg NAME='value' ...` for the buildspec's eval, every value single-quoted."""
    import shlex

    return " ".join(f"--build-arg {name}={shlex.quote(value)}" for name, value in sorted(build_args.items()))


def repository_name(stack_name: str) -> str:
    """ECR repository name (lowercase, [a-z0-9._/-]): one per stack for the images it builds."""
    name = f"{stack_name}/serving"
    if not re.match(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", name):
        raise ValueError(f"{name!r} is not a valid ECR repository name")
    return name


def lifecycle_policy() -> dict[str, Any]:
    """ECR lifecycle policy: untagged images after a day, then keep the newest KEEP_IMAGES."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": "untagged images (interrupted pushes) after a day",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"keep the newest {KEEP_IMAGES} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
                "action": {"type": "expire"},
            },
        ]
    }


# --------------------------------------------------------------------------- IAM (pure documents)


def builder_trust_policy() -> dict[str, Any]:
    return service_trust_policy("codebuild.amazonaws.com")


def builder_policy(*, repository_arn: str, log_group_arn: str, bucket_arn: str) -> dict[str, Any]:
    """The CodeBuild service role's permissions: push to the one repository, read the base layers it
    already has, write its own log group, read build contexts from the bucket's image-contexts/ prefix
    and the bucket's owner and Region (s3:GetBucketAcl, s3:GetBucketLocation: the "S3BucketIdentity"
    statement of the minimum service role policy in CodeBuild's user guide, setting-up-service-role.html,
    which CodeBuild's S3 source download is documented with; here on the one bucket only).

    ecr:GetAuthorizationToken has no resource-level permissions (Service Authorization Reference, Amazon
    ECR actions table), so it alone takes "*"; it only returns a login token, the push rights are the
    repository's. The logs actions follow CodeBuild's service role policy (userguide
    setting-up-service-role.html), on one log group.
    """
    return policy_document(
        [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "PushToTheRepository",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "BuildLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group_arn, f"{log_group_arn}:*"],
            },
            {
                "Sid": "ReadBuildContexts",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": f"{bucket_arn}/{CONTEXT_PREFIX}/*",
            },
            {
                "Sid": "BuildContextBucketIdentity",
                "Effect": "Allow",
                "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
                "Resource": bucket_arn,
            },
        ]
    )


# --------------------------------------------------------------------------- build log lines

# CodeBuild's terminal build states (BatchGetBuilds buildStatus): everything but IN_PROGRESS.
BUILD_DONE = ("SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "STOPPED")


def failed_phases(build: dict[str, Any]) -> list[str]:
    """'PHASE: STATUS (message)' for every phase of a build that did not succeed."""
    lines = []
    for phase in build.get("phases") or []:
        status = phase.get("phaseStatus")
        if status and status != "SUCCEEDED":
            messages = "; ".join(c.get("message", "") for c in phase.get("contexts") or [] if c.get("message"))
            lines.append(f"{phase.get('phaseType')}: {status}" + (f" ({messages})" if messages else ""))
    return lines


IMAGE_SIZE_LINE = re.compile(r"tritonllm: image size bytes (\d+)")


def image_spec_for(model: ModelConfig, extra_apt_packages: tuple[str, ...]) -> ImageSpec | None:
    """The image a model runs when the program builds one: multi-node models always (the EFA stack), a
    single-node model when servingImage.extraAptPackages is set; None: the runtime's stock Triton image."""
    base = versions.triton_image(model.runtime)
    if model.multi_node is not None:
        return multinode_spec(base, extra_apt_packages)
    if extra_apt_packages:
        return extra_packages_spec(base, extra_apt_packages)
    return None


def node_pool_images(
    models: Sequence[ModelConfig], pool_name: str, built: Mapping[str, ImageRef]
) -> list[str | ImageRef]:
    """The images a new node of `pool_name` pulls for the models placed on it (`nodePools[].imageCache`): each
    model's serving image (the one ServingImages builds, from `built`: model name -> image reference, else its
    runtime's Triton image) and the AWS CLI image every staging init container runs (weights, engine,
    repository: aws_cli.aws_cli_container). tests/unit/test_image_cache.py holds this to the rendered pods."""
    placed = [m for m in models if m.node_pool == pool_name]
    images: list[str | ImageRef] = [
        built[m.name] if m.name in built else versions.triton_image(m.runtime) for m in placed
    ]
    return [*images, versions.AWS_CLI_IMAGE] if placed else []
