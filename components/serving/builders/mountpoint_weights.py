"""Per-node weights: the model's mirror as a Mountpoint for Amazon S3 volume (models[].weights.delivery:
mountpoint, docs/weights.md "Per node: the Mountpoint volume").

    PersistentVolume       tritonllm-weights-<model>-<commit12>  s3.csi.aws.com, static, ReadOnlyMany, the
                           mirror prefix only, a node-local cache, pod-level credentials
    PersistentVolumeClaim  weights-<commit12> in the model's namespace, bound to that PV only (claimRef)

The Mountpoint for Amazon S3 CSI driver v2 (EKS add-on aws-mountpoint-s3-csi-driver, pinned in
components/catalog/versions.py) runs one Mountpoint Pod per node for the workload pods that share a
volume, the same mount options, the same authentication source and fsGroup, and, with pod-level
credentials, the same namespace and service account (awslabs/mountpoint-s3-csi-driver v2.7.0
docs/MOUNTPOINT_POD_SHARING.md): every replica of one model on a node shares one Mountpoint Pod and its
cache, so the node reads the weights from S3 once. Two models never share (different PVs).

Credentials: `authenticationSource: pod`: the Mountpoint Pod uses the workload pod's own service account
(`triton`), through IRSA when it carries the role annotation (vLLM) and EKS Pod Identity otherwise (llmapi)
(v2.7.0 pkg/driver/node/credentialprovider/provider_pod.go provideFromPod). So the model's existing reader
role, which reads its own mirror prefix only, is the only role involved: the driver itself holds none.

The Mountpoint Pods run in the driver's own `mount-s3` namespace (restricted Pod Security, chart
templates/mount-s3-namespace.yaml), not in the model's: the model namespace's NetworkPolicies do not
apply to their S3 traffic, and the model pods gain no egress.
"""

from __future__ import annotations

from typing import Any

from components.config import ModelConfig
from components.platform.builders import pod_security
from components.serving.builders.weights_mirror import COMPLETE_MARKER, ResolvedMirror

CSI_DRIVER = "s3.csi.aws.com"
# Kubernetes requires a capacity on a PV; the driver ignores it (v2.7.0 docs/CONFIGURATION.md "Static Provisioning").
NOMINAL_CAPACITY = "1Ti"
# The driver's cache types (v2.7.0 pkg/driver/node/volumecontext/volume_context.go): emptyDir lives on the
# node's ephemeral storage, the instance-store RAID0 on GPU types with local NVMe.
CACHE_EMPTY_DIR = "emptyDir"


def claim_name(weights: ResolvedMirror) -> str:
    """One claim per commit: a moved hfRevision makes a new PV and claim, and rolls the pods onto it."""
    return f"weights-{weights.revision_sha[:12]}"


def volume_name(model: ModelConfig, weights: ResolvedMirror) -> str:
    """The PV's name (cluster-scoped): unique per model and commit, and the volumeHandle too (the driver
    processes one volume per volumeHandle, v2.7.0 docs/CONFIGURATION.md)."""
    return f"tritonllm-weights-{model.name}-{weights.revision_sha[:12]}"


def mount_options(weights: ResolvedMirror, region: str) -> list[str]:
    """Mountpoint flags, written as the driver's examples write them ("key value").

    - read-only: nothing writes to the mirror (the driver adds it for ReadOnlyMany too);
    - prefix: the model's mirror and nothing else of the bucket (Mountpoint needs the trailing slash);
    - region: the bucket's, and the STS region for pod-level IRSA (v2.7.0 docs/CONFIGURATION.md
      "Configuring the STS region": the driver reads --region);
    - uid/gid: files owned by the Triton user, as the staged copy was; allow-other: the workload pods'
      uid differs from the Mountpoint Pod's, and the driver would add --allow-root otherwise.
    """
    return [
        "read-only",
        f"prefix {weights.prefix}",
        f"region {region}",
        f"uid {pod_security.TRITON_UID}",
        f"gid {pod_security.TRITON_GID}",
        "allow-other",
    ]


def volume_attributes(bucket: Any, model: ModelConfig) -> dict[str, Any]:
    """`bucket`: the name, or an Output of it (the resource passes the model store's)."""
    return {
        "bucketName": bucket,
        "authenticationSource": "pod",
        "cache": CACHE_EMPTY_DIR,
        # The driver turns it into --max-cache-size at 95% (v2.5.0+, CHANGELOG #743), so Mountpoint evicts
        # before the kubelet would evict the Mountpoint Pod.
        "cacheEmptyDirSizeLimit": model.weights.node_cache_size,
    }


def labels(model: ModelConfig) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tritonllm-weights",
        "app.kubernetes.io/part-of": "tritonllm",
        "tritonllm.io/model": model.name,
    }


def persistent_volume_manifest(
    model: ModelConfig, weights: ResolvedMirror, *, bucket: Any, region: str
) -> dict[str, Any]:
    name = volume_name(model, weights)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels(model)},
        "spec": {
            "capacity": {"storage": NOMINAL_CAPACITY},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",  # static: the bucket is never the volume's to delete
            "storageClassName": "",
            # No other claim may bind it (v2.7.0 docs/CONFIGURATION.md, claimRef).
            "claimRef": {"namespace": model.name, "name": claim_name(weights)},
            "mountOptions": mount_options(weights, region),
            "csi": {
                "driver": CSI_DRIVER,
                "volumeHandle": name,
                "readOnly": True,
                "volumeAttributes": volume_attributes(bucket, model),
            },
        },
    }


def persistent_volume_claim_manifest(model: ModelConfig, weights: ResolvedMirror) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(weights), "namespace": model.name, "labels": labels(model)},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": volume_name(model, weights),
            "resources": {"requests": {"storage": NOMINAL_CAPACITY}},
        },
    }


def pod_volume(volume: str, weights: ResolvedMirror) -> dict[str, Any]:
    return {"name": volume, "persistentVolumeClaim": {"claimName": claim_name(weights), "readOnly": True}}


def check_weights_script(weights: ResolvedMirror, mount_dir: str, copy_to: str | None = None) -> str:
    """The init container on a mounted mirror. First the marker must hold this mirror's key (an interrupted
    mirror is never loaded; it also proves the mount and its credentials work before the server starts).

    Then, without `copy_to` (vLLM), every file is read once, whole and in parallel, through the volume: a
    sequential read per file, which Mountpoint prefetches fastest, fills the node's cache, so the server's
    own loads (safetensors through mmap, many small reads) are served from the node's disk rather than S3
    (on the second pod of a node the cache is already full and this takes seconds). With `copy_to` (llmapi)
    the files are copied to the pod's own volume instead (as sequential). The last line is the one the
    coldstart report reads, as for staging (`tritonllm: weights staged from ... in Ns`)."""
    root = mount_dir.rstrip("/")
    marker = f"{root}/{COMPLETE_MARKER}"
    where = f"{weights.hf_model_id}@{weights.revision_sha}"
    lines = [
        "set -eu",
        "start=$(date +%s)",
        f'marker=$(cat "{marker}" 2>/dev/null || true)',
        f'[ "$marker" = "{weights.key}" ] || {{ echo "no complete mirror of {where} on the Mountpoint volume '
        f'at {mount_dir}: the HfSnapshotMirror Job did not finish, or the volume did not mount" >&2; exit 1; }}',
    ]
    if copy_to is None:
        lines += [
            # POSIX sh, no find(1) needed: each file read whole in the background, directories walked.
            'pids=""',
            'warm() { for f in "$1"/*; do if [ -d "$f" ]; then warm "$f"; elif [ -f "$f" ]; then '
            'cat "$f" > /dev/null & pids="$pids $!"; fi; done; }',
            f'warm "{root}"',
            "failed=0",
            'for pid in $pids; do wait "$pid" || failed=1; done',
            '[ "$failed" = 0 ] || { echo "reading the weights through the Mountpoint volume failed" >&2; exit 1; }',
            f"echo \"tritonllm: weights staged from the node's Mountpoint volume ({where}) at {mount_dir} in "
            "$(( $(date +%s) - start ))s (read into the node's cache, no copy)\"",
        ]
    else:
        lines += [
            f'cp -R "{root}/." "{copy_to}/"',
            f'rm -f "{copy_to}/{COMPLETE_MARKER}"',
            f"echo \"tritonllm: weights staged from the node's Mountpoint volume ({where}) to {copy_to} in "
            f'$(( $(date +%s) - start ))s ($(du -sm "{copy_to}" | cut -f1) MiB)"',
        ]
    return "\n".join(lines)
