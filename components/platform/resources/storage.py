"""Storage: an encrypted EFS file system shared by Triton pods (engines, Hugging Face cache).

One mount target per AZ in the private subnets, reachable on NFS (2049/tcp) only
from the cluster's node security group. The `efs-sc` StorageClass provisions an
EFS access point per claim (dynamic provisioning through the EFS CSI add-on).
Claims are namespaced, so the Triton component creates its own RWX claim from
`shared_claim_manifest` in its namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import EfsConfig
from components.platform.builders.storage import (
    NFS_PORT,
    STORAGE_CLASS_NAME,
    efs_storage_class_manifest,
    file_system_policy,
)
from components.platform.resources.cluster import ClusterRef
from components.tokens import component_type


@dataclass(frozen=True)
class StorageArgs:
    efs: EfsConfig
    cluster_name: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]  # one mount target per zone
    cluster: ClusterRef


class Storage(pulumi.ComponentResource):
    """EFS file system, mount targets, security group, StorageClass.

    Attributes: file_system_id, storage_class_name, claim_size (efs.claimSize),
    file_system, security_group, mount_targets (per AZ).
    """

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "Storage"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-efs",
            vpc_id=args.vpc_id,
            description=f"EFS mount targets of {args.cluster_name}: NFS from cluster nodes only",
            tags={"Name": f"{name}-efs"},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-efs-nfs-from-nodes",
            security_group_id=self.security_group.id,
            referenced_security_group_id=args.cluster.node_security_group_id,
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
            throughput_mode=args.efs.throughput_mode,
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
                subnet_id=subnet_id,
                security_groups=[self.security_group.id],
                opts=child,
            )
            for i, subnet_id in enumerate(args.private_subnet_ids)
        ]

        self.file_system_id = self.file_system.id
        self.storage_class_name = STORAGE_CLASS_NAME
        self.claim_size = args.efs.claim_size
        shape = efs_storage_class_manifest("")  # everything but the file system id is static
        k8s.storage.v1.StorageClass(
            f"{name}-efs-sc",
            metadata=shape["metadata"],
            provisioner=shape["provisioner"],
            parameters=self.file_system.id.apply(lambda fs: efs_storage_class_manifest(fs)["parameters"]),
            reclaim_policy=shape["reclaimPolicy"],
            volume_binding_mode=shape["volumeBindingMode"],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.cluster.k8s_provider,
                depends_on=[*self.mount_targets, self.file_system_policy, args.cluster.addons["aws-efs-csi-driver"]],
            ),
        )

        self.register_outputs({"file_system_id": self.file_system_id, "storage_class_name": self.storage_class_name})
