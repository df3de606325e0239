"""Storage: an encrypted EFS file system shared by Triton pods (engines, Hugging Face cache).

One mount target per AZ in the private subnets, reachable on NFS (2049/tcp) only
from the cluster's node security group. The `efs-sc` StorageClass provisions an
EFS access point per claim (dynamic provisioning through the EFS CSI add-on).
Claims are namespaced, so the Triton component creates its own RWX claim from
`shared_claim_manifest` in its namespace.
"""
from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster import Cluster
from components.config import StackConfig
from components.network import Network

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
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
                           "elasticfilesystem:ClientRootAccess"],
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


def shared_claim_manifest(name: str, namespace: str, storage_class: str = STORAGE_CLASS_NAME,
                          size: str = "200Gi") -> dict[str, Any]:
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


class Storage(pulumi.ComponentResource):
    """EFS file system, mount targets, security group, StorageClass.

    Attributes: file_system_id, storage_class_name, claim_size (cfg.efs.claimSize),
    file_system, security_group, mount_targets (per AZ).
    """

    def __init__(self, name: str, cfg: StackConfig, cluster: Cluster, network: Network,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("tritonllm:platform:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-efs",
            vpc_id=network.vpc_id,
            description=f"EFS mount targets of {cfg.name}: NFS from cluster nodes only",
            tags={"Name": f"{name}-efs"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-efs-nfs-from-nodes",
            security_group_id=self.security_group.id,
            referenced_security_group_id=cluster.node_security_group_id,
            ip_protocol="tcp",
            from_port=NFS_PORT,
            to_port=NFS_PORT,
            description="NFS from EKS nodes (the EFS CSI node plugin mounts on the node)",
            opts=pulumi.ResourceOptions(parent=self.security_group),
        )

        self.file_system = aws.efs.FileSystem(
            f"{name}-shared",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode=cfg.efs.throughput_mode,
            tags={"Name": f"{name}-shared"},
            opts=child,
        )
        self.file_system_policy = aws.efs.FileSystemPolicy(
            f"{name}-shared",
            file_system_id=self.file_system.id,
            policy=self.file_system.arn.apply(lambda arn: json.dumps(file_system_policy(arn))),
            opts=pulumi.ResourceOptions(parent=self.file_system),
        )
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-shared-{i}",
                file_system_id=self.file_system.id,
                subnet_id=subnet.id,
                security_groups=[self.security_group.id],
                opts=child,
            )
            for i, subnet in enumerate(network.private_subnets)
        ]

        self.file_system_id = self.file_system.id
        self.storage_class_name = STORAGE_CLASS_NAME
        self.claim_size = cfg.efs.claim_size
        shape = efs_storage_class_manifest("")  # everything but the file system id is static
        k8s.storage.v1.StorageClass(
            f"{name}-efs-sc",
            metadata=shape["metadata"],
            provisioner=shape["provisioner"],
            parameters=self.file_system.id.apply(lambda fs: efs_storage_class_manifest(fs)["parameters"]),
            reclaim_policy=shape["reclaimPolicy"],
            volume_binding_mode=shape["volumeBindingMode"],
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.k8s_provider,
                depends_on=[*self.mount_targets, self.file_system_policy, cluster.addons["aws-efs-csi-driver"]],
            ),
        )

        self.register_outputs({"file_system_id": self.file_system_id, "storage_class_name": self.storage_class_name})
