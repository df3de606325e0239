"""Storage's pure builders: the EFS StorageClass, file system policy and shared claim manifests (the
component is components/platform/resources/storage.py).
"""

from __future__ import annotations

from typing import Any

STORAGE_CLASS_NAME = "efs-sc"
NFS_PORT = 2049
EFS_PROVISIONER = "efs.csi.aws.com"


def efs_storage_class_manifest(file_system_id: str, name: str = STORAGE_CLASS_NAME) -> dict[str, Any]:
    """StorageClass for dynamically provisioned EFS access points.

    Each claim gets an access point rooted in its own directory under /dynamic, owned
    by a uid/gid from the range, mode 700: pods of one claim share it, others cannot read it.
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": EFS_PROVISIONER,
        "parameters": {
            "provisioningMode": "efs-ap",
            "fileSystemId": file_system_id,
            "directoryPerms": "700",
            "basePath": "/dynamic",
            "gidRangeStart": "50000",
            "gidRangeEnd": "60000",
        },
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",  # EFS is regional: no need to wait for the pod's zone
    }


def file_system_policy(file_system_arn: str) -> dict[str, Any]:
    """EFS file-system policy: clients mount only through a mount target and only over TLS.

    The same two statements the EFS console's "Enforce in-transit encryption for all clients"
    writes: without an Allow, a file-system policy would also refuse the anonymous (non-IAM)
    NFS clients the CSI driver uses; with it, the security group stays the network gate and
    the Deny refuses any connection without TLS. The EFS CSI driver mounts with `tls`: always for
    an access point (our StorageClass provisions one per claim), and by default otherwise
    (kubernetes-sigs/aws-efs-csi-driver pkg/driver/node.go: encryptInTransit defaults to true,
    `accesspoint=<id>` is mounted with "tls").
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowMountThroughMountTargets",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "elasticfilesystem:ClientMount",
                    "elasticfilesystem:ClientWrite",
                    "elasticfilesystem:ClientRootAccess",
                ],
                "Resource": file_system_arn,
                "Condition": {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            },
            {
                "Sid": "DenyWithoutTls",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "*",
                "Resource": file_system_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def shared_claim_manifest(
    name: str, namespace: str, storage_class: str = STORAGE_CLASS_NAME, size: str = "200Gi"
) -> dict[str, Any]:
    """A ReadWriteMany claim on EFS (EFS ignores the size, but Kubernetes requires one)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
        },
    }
