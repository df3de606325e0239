"""NodeImageCache: for each `nodePools[].imageCache` pool, the EBS snapshot its nodes' data volumes start from,
with the serving images of the pool's models already pulled (docs/coldstart.md "Images on the node").

Registers, once per stack with such a pool:
- a security group for the build instance that admits nothing (egress only: the registries, SSM, ECR);
- the build instance's role and instance profile: SSM's managed core policy, and pull from the program's ECR
  repository when a cached image lives there (components/platform/builders/image_cache.py build_role_policy);
- one ImageCacheSnapshot (components/providers/image_cache.py) per pool, keyed by the AMI release and the
  image references, so an unchanged pool builds nothing. Images ServingImages builds are Outputs: the
  snapshot waits for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from components.catalog import versions
from components.config import NodePoolConfig, StackIdentity
from components.platform.builders import image_cache as ic
from components.platform.resources import iam_roles
from components.providers.image_cache import ImageCacheSnapshot
from components.tokens import component_type

HTTPS = 443


@dataclass(frozen=True)
class NodeImageCacheArgs:
    stack: StackIdentity
    pools: Sequence[NodePoolConfig]  # the pools with imageCache.enabled
    images: Mapping[str, Sequence[pulumi.Input[str]]]  # pool name -> image references its models run
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    availability_zones: pulumi.Input[Sequence[str]]  # the VPC's zones (Fast Snapshot Restore where pools run)
    partition: pulumi.Input[str]
    ecr_repository_arn: pulumi.Input[str] | None = None  # ServingImages' repository, when the stack builds images
    # Network.private_egress: the private subnets' routes to the NAT gateway. The build instance reaches SSM,
    # ECR and the registries only through them, and its launch needs no more than a subnet id to go ahead.
    private_egress: Sequence[pulumi.Resource] = ()


def _key(pool: NodePoolConfig, images: list[str]) -> str:
    return ic.cache_key(
        eks_version=versions.EKS_VERSION,
        ami_version=str(pool.ami_version),
        images=images,
        volume_size_gib=pool.disk_size_gib,
    )


def _fsr_zones(pool: NodePoolConfig, vpc_zones: list[str]) -> list[str]:
    if not pool.image_cache.fast_snapshot_restore:
        return []
    return sorted(pool.zones or vpc_zones)


class NodeImageCache(pulumi.ComponentResource):
    """Build instance security group + role + one content-keyed snapshot per imageCache pool.

    Attributes: snapshot_ids (pool name -> snapshot id Output), snapshots (ImageCacheSnapshot), role.
    """

    def __init__(self, name: str, args: NodeImageCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("platform", "NodeImageCache"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        security_group = aws.ec2.SecurityGroup(
            f"{name}-image-cache-build",
            vpc_id=args.vpc_id,
            description=f"Image cache build instances of {args.stack.name}: no ingress, HTTPS out",
            tags={"Name": f"{name}-image-cache-build"},
            opts=child,
        )
        # Registries, SSM, ECR and S3 (layers) are all HTTPS, reached through the NAT gateway or endpoints.
        # The group is created without AWS's default allow-all egress rule (the Terraform AWS provider removes
        # it), so the build waits for this rule too.
        https_out = aws.vpc.SecurityGroupEgressRule(
            f"{name}-image-cache-build-https",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to registries, SSM and ECR (egress only; nothing may connect in)",
            opts=pulumi.ResourceOptions(parent=security_group),
        )
        self.role, attachments = iam_roles.service_role(
            f"{name}-image-cache-build",
            service="ec2.amazonaws.com",
            description=f"Instances that pull serving images into image cache snapshots of {args.stack.name}",
            managed_policies=ic.BUILD_ROLE_MANAGED_POLICIES,
            partition=args.partition,
            opts=child,
        )
        depends: list[pulumi.Resource] = [*attachments, https_out, *args.private_egress]
        if args.ecr_repository_arn is not None:
            depends.append(
                aws.iam.RolePolicy(
                    f"{name}-image-cache-build-ecr",
                    role=self.role.id,
                    policy=pulumi.Output.from_input(args.ecr_repository_arn).apply(
                        lambda arn: json.dumps(ic.build_role_policy([arn]))
                    ),
                    opts=pulumi.ResourceOptions(parent=self.role),
                )
            )
        profile = aws.iam.InstanceProfile(f"{name}-image-cache-build", role=self.role.name, opts=child)
        subnet_id = pulumi.Output.from_input(args.private_subnet_ids).apply(lambda ids: sorted(ids)[0])
        vpc_zones = pulumi.Output.from_input(args.availability_zones).apply(list)

        self.snapshots: dict[str, ImageCacheSnapshot] = {}
        self.snapshot_ids: dict[str, pulumi.Output[str]] = {}
        for pool in args.pools:
            images = pulumi.Output.all(*args.images.get(pool.name, ())).apply(ic.normalized_images)
            snapshot = ImageCacheSnapshot(
                f"{name}-{pool.name}-image-cache",
                pool=pool.name,
                stack=args.stack.name,
                region=args.stack.region,
                key=images.apply(partial(_key, pool)),
                images=images,
                ami_parameter=ic.ami_parameter(versions.EKS_VERSION, str(pool.ami_version)),
                volume_size_gib=pool.disk_size_gib,
                instance_type=pool.image_cache.build_instance_type,
                timeout_minutes=pool.image_cache.timeout_minutes,
                subnet_id=subnet_id,
                security_group_id=security_group.id,
                instance_profile=profile.name,
                fast_snapshot_restore_zones=vpc_zones.apply(partial(_fsr_zones, pool)),
                tags={"tritonllm:stack": pulumi.get_stack(), **args.stack.tags},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[profile, *depends]),
            )
            self.snapshots[pool.name] = snapshot
            self.snapshot_ids[pool.name] = snapshot.snapshot_id
        self.register_outputs({"snapshotIds": self.snapshot_ids})
