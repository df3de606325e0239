"""Pure builders for `nodePools[].imageCache`: the snapshot of a Bottlerocket data volume with the pool's
serving images already pulled (the provider is components/providers/image_cache.py, the component
components/platform/resources/image_cache.py, the node class side components/platform/builders/karpenter.py).

How the snapshot is made follows AWS's aws-samples/bottlerocket-images-cache `snapshot.sh` (commit 3370ea0,
April 2025): a Bottlerocket instance with the admin container enabled, `ctr -n k8s.io images pull --label
io.cri-containerd.image=managed` through `apiclient exec admin sheltie` for every image (the label the CRI
plugin puts on its own pulls; the plugin loads every image of the k8s.io namespace when containerd starts,
containerd v2 internal/cri/server/images, CRIImageService.CheckImages, so kubelet sees them), the instance stopped,
/dev/xvdb snapshotted. What differs:
- the instance runs in one of the cluster's private subnets, with a security group that admits nothing,
  IMDSv2 with hop limit 1 and encrypted volumes (the sample: a public IP, the default security group);
- private ECR images are pulled with a token the instance gets itself from its own role (through
  Bottlerocket's ecr-credential-provider, the binary kubelet uses for ECR), scoped to the program's
  repository; the sample reads a token on the deploying machine and sends it inside the SSM command, where
  anyone who may read the account's Run Command history sees it;
- the snapshot carries its content key as a tag, so an unchanged pool builds nothing and an interrupted
  run's completed snapshot is adopted.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from components.platform.builders.iam import policy_document

# A change of how the volume is laid out (the commands below, the containerd namespace) bumps this, so
# every pool's snapshot is rebuilt once.
LAYOUT_VERSION = "1"
ARCH = "x86_64"  # every GPU NodePool requires kubernetes.io/arch amd64 (karpenter.node_pool_requirements)
PLATFORM = "linux/amd64"
DATA_DEVICE = "/dev/xvdb"  # Bottlerocket's data volume (its root is /dev/xvda)
ROOT_VOLUME_GIB = 4  # what our Bottlerocket node classes give /dev/xvda (karpenter.block_device_mappings)
# The build volume is written once at full speed: the sample's template gives it 4,000 IOPS and 1,000 MiB/s
# (ebs-snapshot-instance.yaml), gp3's ceiling for throughput.
BUILD_VOLUME_IOPS = 4000
BUILD_VOLUME_THROUGHPUT = 1000

KEY_TAG = "tritonllm:image-cache-key"
POOL_TAG = "tritonllm:node-pool"
STACK_TAG = "tritonllm:stack"
BUILD_TAG = "tritonllm:image-cache-build"  # on build instances: "<stack>/<pool>"

CTR = ["ctr", "-a", "/run/containerd/containerd.sock", "-n", "k8s.io"]
# kubelet's ECR credential provider on Bottlerocket hosts (bottlerocket-core-kit packages/ecr-credential-provider-*
# spec: installed to %{_cross_libexecdir}/kubernetes/kubelet/plugins). It reads a CredentialProviderRequest on
# stdin and answers with the registry's user and password (kubernetes/cloud-provider-aws
# cmd/ecr-credential-provider), using the instance's role.
ECR_CREDENTIAL_PROVIDER = "/usr/libexec/kubernetes/kubelet/plugins/ecr-credential-provider"
ECR_REGISTRY = re.compile(r"^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

POLL_SECONDS = 10


def ami_parameter(eks_version: str, ami_version: str, arch: str = ARCH) -> str:
    """Public SSM parameter holding the AMI id of a Bottlerocket release, as Karpenter v1.14.1 reads it
    (pkg/providers/amifamily/bottlerocket.go DescribeImageQuery: `/aws/service/bottlerocket/aws-k8s-<k8s>/
    <arch>/<version without v>/image_id`). The standard variant: the build instance needs no GPU, and the
    -nvidia variant of the same release ships the same containerd from the same core kit."""
    return f"/aws/service/bottlerocket/aws-k8s-{eks_version}/{arch}/{ami_version.removeprefix('v')}/image_id"


def normalized_images(images: Iterable[str]) -> list[str]:
    """Sorted, without duplicates: the order models are listed in does not change the snapshot."""
    return sorted({image.strip() for image in images if image and image.strip()})


def cache_key(
    *,
    eks_version: str,
    ami_version: str,
    images: Iterable[str],
    volume_size_gib: int,
    arch: str = ARCH,
    layout_version: str = LAYOUT_VERSION,
) -> str:
    """sha256 of everything the snapshot's bytes depend on: the Bottlerocket release (its containerd writes the
    volume), the architecture, each image reference (digests included when pinned), the volume size."""
    payload = {
        "eks": eks_version,
        "ami": ami_version,
        "arch": arch,
        "images": normalized_images(images),
        "volumeGib": int(volume_size_gib),
        "layout": layout_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def registry_of(image: str) -> str:
    """The registry host of an image reference (docker's rule: the first part when it has a dot or a colon)."""
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first or first == "localhost") else "docker.io"


def cri_reference(image: str) -> str:
    """The name kubelet's runtime looks an image up by: the CRI plugin's LocalResolve normalizes a pod's image
    with docker.ParseDockerRef and resolves that string in its image store (containerd
    internal/cri/server/images/service.go), and ParseDockerRef keeps only the digest of a reference that has
    both a tag and a digest, and adds `:latest` to one with neither (containerd reference/docker/reference.go).
    Pulling under this name is what makes a pod's `repo:tag@sha256:...` find the cached image."""
    registry = registry_of(image)
    if registry == "docker.io" and not image.startswith("docker.io/"):
        image = "docker.io/" + (image if "/" in image else "library/" + image)
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        repository, _, tag = name.rpartition(":")
    else:
        repository, tag = name, ""
    if digest:
        return f"{repository}@{digest}"
    return f"{repository}:{tag or 'latest'}"


def is_ecr(image: str) -> bool:
    return bool(ECR_REGISTRY.match(registry_of(image)))


def build_user_data() -> str:
    """Bottlerocket TOML of the build instance: the admin container on (its `sheltie` runs commands in the
    host's namespaces, as the sample's template enables it). No cluster settings: kubelet never joins."""
    return "[settings.host-containers.admin]\nenabled = true\n"


def _sheltie(*argv: str) -> str:
    return "apiclient exec admin sheltie " + " ".join(shlex.quote(a) for a in argv)


def pull_script(image: str) -> str:
    """A bash script (run by SSM's AWS-RunShellScript in Bottlerocket's control container) that pulls `image`
    into containerd's k8s.io namespace on the host, labelled as the CRI plugin's own image. ECR images are
    pulled with a token the instance's role gets (never sent to or from the deploying machine)."""
    pull = [*CTR, "images", "pull", "--label", "io.cri-containerd.image=managed", "--platform", PLATFORM]
    lines = ["set -euo pipefail", f"image={shlex.quote(cri_reference(image))}"]
    if is_ecr(image):
        request = json.dumps(
            {
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "kind": "CredentialProviderRequest",
                "image": cri_reference(image),
            }
        )
        lines += [
            # `apiclient exec` forwards a non-terminal stdin and closes it at its end (bottlerocket-core-kit
            # sources/api/apiclient/src/exec.rs ReadFromUser::read_stdin, ContentComplete)
            f"response=$({_sheltie(ECR_CREDENTIAL_PROVIDER)} <<< {shlex.quote(request)})",
            # the response's auth.<registry>.password, read with bash alone (no JSON tool is assumed on the instance)
            """password_field='"password"[[:space:]]*:[[:space:]]*"([^"]+)"'""",
            "[[ $response =~ $password_field ]] || "
            '{ echo "ecr-credential-provider gave no password for $image" >&2; exit 1; }',
            f'{_sheltie(*pull)} --user "AWS:${{BASH_REMATCH[1]}}" "$image"',
        ]
    else:
        lines.append(f'{_sheltie(*pull)} "$image"')
    lines.append('echo "pulled $image"')
    return "\n".join(lines) + "\n"


def ssm_commands(script: str) -> list[str]:
    """AWS-RunShellScript's `commands` parameter for one bash script (run by bash, not the document's sh)."""
    return [f"bash -c {shlex.quote(script)}"]


# The SSM agent runs in the control container, and every command goes through the admin container: both start
# at boot in parallel, each pulling its image first (bottlerocket-core-kit packages/os/host-containers@.service),
# so the agent can take commands before `apiclient exec admin` has a container to enter. The first script
# waits for it (an exec into a container not running fails), for at most this many 5 s tries.
ADMIN_CONTAINER_TRIES = 60


def prepare_script() -> str:
    """Before the pulls: the admin container up, then kubelet stopped (it would garbage-collect images it did
    not ask for), as the sample does."""
    return (
        "\n".join(
            [
                "set -euo pipefail",
                f"for try in $(seq 1 {ADMIN_CONTAINER_TRIES}); do",
                f"  {_sheltie('true')} && break",
                f'  [ "$try" -lt {ADMIN_CONTAINER_TRIES} ] || '
                "{ echo 'the admin container is not running: apiclient exec admin fails' >&2; exit 1; }",
                "  sleep 5",
                "done",
                _sheltie("systemctl", "stop", "kubelet"),
            ]
        )
        + "\n"
    )


def verify_script(images: Sequence[str]) -> str:
    """After the pulls: containerd lists every image in k8s.io (a pull that printed success but stored nothing
    fails the build here, not on a node), under the name the CRI plugin resolves (cri_reference)."""
    lines = ["set -euo pipefail", f"listed=$({_sheltie(*CTR, 'images', 'ls', '-q')})"]
    for image in map(cri_reference, images):
        lines.append(
            f"grep -qxF {shlex.quote(image)} <<< \"$listed\" || {{ echo 'missing after pull: {image}' >&2; exit 1; }}"
        )
    return "\n".join(lines) + "\n"


def snapshot_tags(key: str, pool: str, stack: str, tags: dict[str, str]) -> dict[str, str]:
    return {**tags, KEY_TAG: key, POOL_TAG: pool, STACK_TAG: stack, "Name": f"{stack}-{pool}-image-cache"}


def build_role_policy(repository_arns: Sequence[str]) -> dict[str, Any] | None:
    """Inline policy of the build instance's role beyond SSM's managed core: pull from the program's own ECR
    repository only (the token call cannot be scoped: ecr:GetAuthorizationToken takes no resource,
    ECR User Guide "Amazon ECR identity-based policy examples"). None when no pool caches an ECR image."""
    if not repository_arns:
        return None
    return policy_document(
        [
            {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "PullServingImages",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Resource": sorted(repository_arns),
            },
        ]
    )


# The build role's only managed policy: the SSM agent registers and runs commands (Bottlerocket's control
# container runs the agent).
BUILD_ROLE_MANAGED_POLICIES = ("AmazonSSMManagedInstanceCore",)
