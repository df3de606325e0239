"""Karpenter's pure builders: controller IAM policy, interruption queue policy and rules, Helm values,
EC2NodeClass and NodePool manifests (the component is components/platform/resources/karpenter.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from components.catalog import versions
from components.config import CPU_NODE_POOL_NAME, CpuNodePoolConfig, NodePoolConfig
from components.platform.builders import iam
from components.platform.builders.addon_versions import EFS_ADDON, MOUNTPOINT_ADDON
from components.platform.builders.cluster import IMDS_HOP_LIMIT, SYSTEM_NODE_SELECTOR
from components.platform.builders.image_cache import BUILD_VOLUME_IOPS, BUILD_VOLUME_THROUGHPUT
from components.platform.builders.network import DISCOVERY_TAG

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
# Karpenter labels every node it launches with the name of its NodePool; NodePools are named after
# `nodePools[].name`, so {NODE_POOL_LABEL: pool.name} selects a pool's nodes.
NODE_POOL_LABEL = "karpenter.sh/nodepool"
# Our own labels on GPU nodes: the device plugin and GPU exporters select nodes on the first.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
AMI_FAMILY_LABEL = "tritonllm.io/ami-family"

NAMESPACE = "kube-system"  # Karpenter's recommended namespace
SERVICE_ACCOUNT = "karpenter"
RELEASE_NAME = "karpenter"
# The chart's Service selects the controller with these labels (karpenter 1.14.1
# charts/karpenter/templates/_helpers.tpl karpenter.selectorLabels: the chart name, the release name)
# and serves its metrics on the port named here (templates/service.yaml).
SELECTOR_LABELS = {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": RELEASE_NAME}
METRICS_PORT_NAME = "http-metrics"
NODECLASS_GROUP = "karpenter.k8s.aws"
INTERRUPTION_QUEUE_TARGET_ID = "KarpenterInterruptionQueueTarget"

# Node role policies from Karpenter's getting-started template.
NODE_ROLE_POLICIES = (
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


# --------------------------------------------------------------------------- scheduling helpers


def gpu_tolerations() -> list[dict[str, str]]:
    """Tolerations a GPU workload needs to run on any of our NodePools."""
    return [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


def node_selector_for(pool_name: str) -> dict[str, str]:
    """nodeSelector that pins a pod to one NodePool."""
    return {NODE_POOL_LABEL: pool_name}


def chart_source(chart: versions.Chart) -> dict[str, Any]:
    """helm.v3.Release arguments naming a chart: OCI charts by full reference, others by repository."""
    if chart.repo.startswith("oci://"):
        return {"chart": f"{chart.repo}/{chart.name}", "version": chart.version}
    return {"chart": chart.name, "version": chart.version, "repository_opts": {"repo": chart.repo}}


# --------------------------------------------------------------------------- IAM (pure)


def controller_policy_document(
    partition: str, region: str, account_id: str, cluster_name: str, node_role_arn: str, queue_arn: str
) -> dict[str, Any]:
    """Karpenter v1 controller policy (the v1.14 getting-started CloudFormation's policies, merged).

    Launching and deleting is scoped to resources tagged for this cluster and a NodePool;
    passing a role only the node role, only to EC2.
    """
    arn = f"arn:{partition}"
    ec2 = f"{arn}:ec2:{region}"
    cluster_tag = f"kubernetes.io/cluster/{cluster_name}"
    tagged_kinds = ["fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"]
    profile = f"{arn}:iam::{account_id}:instance-profile/*"
    cluster_arn = f"{arn}:eks:{region}:{account_id}:cluster/{cluster_name}"
    return iam.policy_document(
        [
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Resource": [
                    f"{ec2}::image/*",
                    f"{ec2}::snapshot/*",
                    f"{ec2}:*:security-group/*",
                    f"{ec2}:*:subnet/*",
                    f"{ec2}:*:capacity-reservation/*",
                    f"{ec2}:*:placement-group/*",
                ],
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Resource": f"{ec2}:*:launch-template/*",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/{cluster_tag}": "owned"},
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Resource": [f"{ec2}:*:{kind}/*" for kind in tagged_kinds],
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Condition": {
                    "StringEquals": {
                        f"aws:RequestTag/{cluster_tag}": "owned",
                        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Resource": [f"{ec2}:*:{kind}/*" for kind in tagged_kinds],
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": {
                        f"aws:RequestTag/{cluster_tag}": "owned",
                        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Resource": f"{ec2}:*:instance/*",
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/{cluster_tag}": "owned"},
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                    },
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/{cluster_tag}": "owned"},
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Resource": node_role_arn,
                "Action": "iam:PassRole",
                "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}},
            },
            {
                "Sid": "AllowScopedInstanceProfileCreationActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": ["iam:CreateInstanceProfile"],
                "Condition": {
                    "StringEquals": {
                        f"aws:RequestTag/{cluster_tag}": "owned",
                        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                        "aws:RequestTag/topology.kubernetes.io/region": region,
                    },
                    "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileTagActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": ["iam:TagInstanceProfile"],
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/{cluster_tag}": "owned",
                        "aws:ResourceTag/topology.kubernetes.io/region": region,
                        f"aws:RequestTag/{cluster_tag}": "owned",
                        "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                        "aws:RequestTag/topology.kubernetes.io/region": region,
                    },
                    "StringLike": {
                        "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                        "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
                    },
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": [
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:DeleteInstanceProfile",
                ],
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/{cluster_tag}": "owned",
                        "aws:ResourceTag/topology.kubernetes.io/region": region,
                    },
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowAPIServerEndpointDiscovery",
                "Effect": "Allow",
                "Resource": cluster_arn,
                "Action": "eks:DescribeCluster",
            },
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Resource": queue_arn,
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            },
            {
                "Sid": "AllowZonalShiftStatusReadOnly",
                "Effect": "Allow",
                "Resource": "*",
                "Action": ["arc-zonal-shift:GetManagedResource"],
                "Condition": {"StringEquals": {"arc-zonal-shift:ResourceIdentifier": cluster_arn}},
            },
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Resource": f"{arn}:ssm:{region}::parameter/aws/service/*",
                "Action": "ssm:GetParameter",
            },
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": "pricing:GetProducts"},
            {
                "Sid": "AllowUnscopedInstanceProfileListAction",
                "Effect": "Allow",
                "Resource": "*",
                "Action": "iam:ListInstanceProfiles",
            },
            {
                "Sid": "AllowInstanceProfileReadActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": "iam:GetInstanceProfile",
            },
        ]
    )


def interruption_queue_policy(queue_arn: str) -> dict[str, Any]:
    """Only EventBridge / SQS may send to the queue; plain HTTP is denied."""
    return {
        "Version": iam.POLICY_VERSION,
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            {
                "Sid": "DenyHTTP",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def interruption_event_patterns() -> dict[str, dict[str, Any]]:
    """EventBridge patterns whose events Karpenter handles (short rule name suffix -> pattern).

    Suffixes stay short: EventBridge rule names are limited to 64 characters.
    """
    return {
        "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},  # scheduled changes
        "spot": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
        "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
        "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
        "reservation": {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"],
        },
    }


# --------------------------------------------------------------------------- manifests (pure)


def karpenter_values(cluster_name: str, queue_name: str, region: str) -> dict[str, Any]:
    """Helm values of the Karpenter chart.

    AWS_REGION is given explicitly: with IMDS hop limit 1 the controller cannot ask instance
    metadata for it (chart values `controller.env`, example `AWS_REGION` in the chart's values.yaml).
    """
    return {
        "settings": {
            "clusterName": cluster_name,
            "interruptionQueue": queue_name,
            # VPC CNI custom networking keeps the primary ENI away from pods: leave it out of max-pods.
            "reservedENIs": "1",
        },
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "replicas": 2,
        "nodeSelector": {"kubernetes.io/os": "linux", **SYSTEM_NODE_SELECTOR},
        "controller": {
            "env": [{"name": "AWS_REGION", "value": region}],
            # Requests == limits: Karpenter must not be throttled or evicted while it scales the cluster.
            "resources": {
                "requests": {"cpu": "1", "memory": "1Gi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        },
    }


def block_device_mappings(
    ami_family: str,
    disk_size_gib: int,
    *,
    snapshot_id: str | None = None,
    volume_initialization_rate: int | None = None,
) -> list[dict[str, Any]]:
    """Encrypted gp3 volumes; images (15-20 GB for Triton LLM images) and emptyDirs land on the big one.

    `snapshot_id` (Bottlerocket, `nodePools[].imageCache`): the data volume starts from the snapshot that holds
    the pool's images. `encrypted` is then left out: EC2 takes a volume's encryption from its snapshot and the
    EC2NodeClass CRD says so ("If you are creating a volume from a snapshot, you can't specify an encryption
    value"); the program builds its snapshots from encrypted volumes, so the volume is encrypted.
    Its throughput and IOPS are those the snapshot was written with (image_cache.BUILD_VOLUME_*): first reads
    come from S3 whatever the volume's rate, later ones (every layer the runtime opens) at up to 1,000 MiB/s.
    """

    def ebs(size: str, throughput: int, iops: int = 3000) -> dict[str, Any]:
        return {
            "volumeSize": size,
            "volumeType": "gp3",
            "encrypted": True,
            "deleteOnTermination": True,
            "iops": iops,
            "throughput": throughput,
        }

    if ami_family == "Bottlerocket":
        # Bottlerocket: a small OS volume and a data volume for images and pods.
        data = ebs(f"{disk_size_gib}Gi", 500)
        if snapshot_id is not None:
            data = ebs(f"{disk_size_gib}Gi", BUILD_VOLUME_THROUGHPUT, BUILD_VOLUME_IOPS)
            del data["encrypted"]
            data["snapshotID"] = snapshot_id
            if volume_initialization_rate is not None:
                data["volumeInitializationRate"] = volume_initialization_rate
        return [
            {"deviceName": "/dev/xvda", "ebs": ebs("4Gi", 125)},
            {"deviceName": "/dev/xvdb", "rootVolume": False, "ebs": data},
        ]
    if snapshot_id is not None:
        raise ValueError("only a Bottlerocket node class has a data volume to start from a snapshot")
    return [{"deviceName": "/dev/xvda", "rootVolume": True, "ebs": ebs(f"{disk_size_gib}Gi", 500)}]


# SOCI parallel pull/unpack, the settings nodeadm writes for AL2023's FastImagePull
# (awslabs/amazon-eks-ami nodeadm/internal/containerd/snapshotter/soci-snapshotter.config.toml):
# 16 MB chunks, 20 downloads and 12 unpacks per image, compressed blobs dropped once unpacked.
SOCI_PARALLEL_PULL = {
    "max-concurrent-downloads-per-image": 20,
    "concurrent-download-chunk-size": "16mb",
    "max-concurrent-unpacks-per-image": 12,
    "discard-unpacked-layers": True,
}
# Where Bottlerocket's SOCI snapshotter keeps unpacked layers: bound onto the instance-store array
# like /var/lib/containerd (awslabs/ai-on-eks, guidance container-startup-time accelerate-pull-process).
BOTTLEROCKET_SOCI_DIR = "/var/lib/soci-snapshotter"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fast_image_pull_user_data(ami_family: str) -> str:
    """EC2NodeClass `spec.userData` turning on parallel image pull (SOCI) for a GPU pool.

    AL2023: a NodeConfig with the FastImagePull gate; Karpenter v1.14.1 adds YAML user data to its MIME
    archive as an application/node.eks.aws part before its own NodeConfig, and nodeadm merges both
    (pkg/providers/amifamily/bootstrap/nodeadm.go parseUserData). With instanceStorePolicy RAID0 nodeadm
    binds the SOCI root /var/lib/soci-snapshotter-grpc onto the array with containerd's
    (templates/al2023/runtime/bin/setup-local-disks BIND_SOCI). nodeadm ignores the gate below 4 vCPUs /
    7 GiB (internal/containerd/config.go UseSOCISnapshotter); every GPU type in our catalog is above.

    Bottlerocket: TOML settings; Karpenter keeps unknown settings and only sets its own
    (bootstrap/bottlerocketsettings.go SettingsRaw). Its RAID0 bootstrap command
    (bootstrap/bottlerocket.go "000-mount-instance-storage") binds containerd, kubelet and pod logs,
    or before Bottlerocket 1.46 exactly those (version.go SupportsDefaultBind), so a later command
    (bootstrap commands run in name order) binds SOCI's directory too: /var/lib/soci-snapshotter is on
    Bottlerocket's bind allow-list for k8s variants, and sequential binds are allowed from
    bottlerocket-core-kit v10.8.0 (#679). Not essential: should it fail on an older release, the node
    still boots and SOCI unpacks onto the EBS data volume.
    """
    if ami_family == "AL2023":
        node_config = {
            "apiVersion": "node.eks.aws/v1alpha1",
            "kind": "NodeConfig",
            "spec": {"featureGates": {"FastImagePull": True}},
        }
        return yaml.safe_dump(node_config, sort_keys=False)
    if ami_family == "Bottlerocket":
        tables: list[tuple[str, dict[str, Any]]] = [
            ("settings.container-runtime", {"snapshotter": "soci"}),
            ("settings.container-runtime-plugins.soci-snapshotter", {"pull-mode": "parallel-pull-unpack"}),
            ("settings.container-runtime-plugins.soci-snapshotter.parallel-pull-unpack", SOCI_PARALLEL_PULL),
            (
                "settings.bootstrap-commands.010-bind-soci-snapshotter",
                {
                    "commands": [["apiclient", "ephemeral-storage", "bind", "--dirs", BOTTLEROCKET_SOCI_DIR]],
                    "essential": False,
                    "mode": "always",
                },
            ),
        ]
        return "\n".join(
            f"[{name}]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in body.items())
            for name, body in tables
        )
    raise ValueError(f"no parallel image pull settings for AMI family {ami_family!r}")


# `nodePools[].imageCache` pools: the instance store takes kubelet's directory (emptyDirs: the staged weights
# and engines) and pod logs, and containerd stays on the data volume the snapshot fills. Karpenter v1.14.1's
# RAID0 command with /var/lib/containerd left out (pkg/providers/amifamily/bootstrap/bottlerocket.go,
# "000-mount-instance-storage": `apiclient ephemeral-storage init`, then `bind --dirs /var/lib/containerd
# /var/lib/kubelet /var/log/pods`, essential, mode always). Both dirs are on Bottlerocket's bind allow-list for
# k8s variants, and on a type without instance store both commands log "no ephemeral disks found" and succeed
# (bottlerocket-core-kit sources/api/apiserver/src/server/ephemeral_storage.rs `initialize`, `bind`,
# `allowed_bind_dirs`), so `essential` cannot stop such a node. Karpenter keeps bootstrap commands from user
# data and adds its own only with instanceStorePolicy RAID0, which these node classes leave out
# (bootstrap/bottlerocketsettings.go UnmarshalTOML/MarshalTOML).
IMAGE_CACHE_BOOTSTRAP_COMMAND = "000-mount-instance-storage-keep-containerd"
IMAGE_CACHE_BIND_DIRS = ("/var/lib/kubelet", "/var/log/pods")


def image_cache_user_data() -> str:
    """EC2NodeClass `spec.userData` (Bottlerocket TOML) of an imageCache pool: our own instance-store bind."""
    body = {
        "commands": [
            ["apiclient", "ephemeral-storage", "init"],
            ["apiclient", "ephemeral-storage", "bind", "--dirs", *IMAGE_CACHE_BIND_DIRS],
        ],
        "essential": True,
        "mode": "always",
    }
    return f"[settings.bootstrap-commands.{IMAGE_CACHE_BOOTSTRAP_COMMAND}]\n" + "".join(
        f"{key} = {_toml_value(value)}\n" for key, value in body.items()
    )


def metadata_options() -> dict[str, Any]:
    """IMDSv2 only, hop limit 1: pods cannot reach instance metadata (they get AWS access via Pod Identity)."""
    return {
        "httpEndpoint": "enabled",
        "httpProtocolIPv6": "disabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": IMDS_HOP_LIMIT,
    }


def ec2_node_class_manifest(
    pool: NodePoolConfig,
    cluster_name: str,
    node_role_name: str,
    tags: Mapping[str, str],
    snapshot_id: str | None = None,
) -> dict[str, Any]:
    """EC2NodeClass for one GPU NodePool: pinned GPU AMI, IMDSv2, encrypted gp3, instance store as RAID0.

    instanceStorePolicy RAID0: on types with local NVMe (g5, g6, g6e, p4d, p5...) Karpenter builds
    one RAID0 array from the instance-store disks and puts kubelet and containerd on it (images,
    emptyDirs such as the HF cache and staged engines); types without instance store are unaffected
    (Karpenter v1.14 docs, concepts/nodeclasses.md "spec.instanceStorePolicy").

    An imageCache pool (`snapshot_id`, the snapshot NodeImageCache built): no instanceStorePolicy, since
    Karpenter's RAID0 bind would hide the snapshot's containerd; our own bootstrap command binds kubelet and
    pod logs onto the same array instead (image_cache_user_data), and the data volume starts from the snapshot.
    """
    discovery = {DISCOVERY_TAG: cluster_name}
    if pool.image_cache.enabled != (snapshot_id is not None):
        raise ValueError(f"node pool {pool.name}: imageCache.enabled needs its snapshot id, and only it")
    if snapshot_id is not None:
        storage: dict[str, Any] = {"userData": image_cache_user_data()}
    else:
        storage = {"instanceStorePolicy": "RAID0"}
        if pool.fast_image_pull:
            storage["userData"] = fast_image_pull_user_data(pool.ami_family)
    return {
        "apiVersion": f"{NODECLASS_GROUP}/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": pool.name},
        "spec": {
            "amiSelectorTerms": [{"alias": pool.ami_alias}],
            "role": node_role_name,  # Karpenter creates and manages the instance profile
            "subnetSelectorTerms": [{"tags": discovery}],  # every private subnet, no other
            "securityGroupSelectorTerms": [{"tags": discovery}],
            "metadataOptions": metadata_options(),
            "blockDeviceMappings": block_device_mappings(
                pool.ami_family,
                pool.disk_size_gib,
                snapshot_id=snapshot_id,
                volume_initialization_rate=pool.image_cache.volume_initialization_rate,
            ),
            **storage,
            "tags": {**dict(tags), "tritonllm/node-pool": pool.name},
        },
    }


def cpu_node_class_manifest(
    pool: CpuNodePoolConfig, cluster_name: str, node_role_name: str, tags: Mapping[str, str]
) -> dict[str, Any]:
    """EC2NodeClass of the CPU NodePool: pinned AL2023 standard AMI, IMDSv2 hop 1, encrypted gp3."""
    discovery = {DISCOVERY_TAG: cluster_name}
    return {
        "apiVersion": f"{NODECLASS_GROUP}/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": CPU_NODE_POOL_NAME},
        "spec": {
            "amiSelectorTerms": [{"alias": pool.ami_alias}],
            "role": node_role_name,
            "subnetSelectorTerms": [{"tags": discovery}],
            "securityGroupSelectorTerms": [{"tags": discovery}],
            "metadataOptions": metadata_options(),
            "blockDeviceMappings": block_device_mappings("AL2023", pool.disk_size_gib),
            "tags": {**dict(tags), "tritonllm/node-pool": CPU_NODE_POOL_NAME},
        },
    }


def cpu_node_pool_manifest(pool: CpuNodePoolConfig) -> dict[str, Any]:
    """NodePool for pods that need no GPU, so they never wait behind GPU-only pools.

    No taint: anything without a GPU request may land here. Karpenter's scheduler also adds
    GPU nodes only for pods that tolerate nvidia.com/gpu, so this pool is where other pods grow.
    Low weight, a CPU limit and WhenEmptyOrUnderutilized consolidation keep it small.
    """
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": CPU_NODE_POOL_NAME},
        "spec": {
            "template": {
                # No GPU_PRESENT_LABEL: GPU daemons (device plugin, DCGM exporter) stay off these nodes.
                "metadata": {"labels": {AMI_FAMILY_LABEL: "al2023"}},
                "spec": {
                    "nodeClassRef": {"group": NODECLASS_GROUP, "kind": "EC2NodeClass", "name": CPU_NODE_POOL_NAME},
                    "requirements": [
                        {
                            "key": "karpenter.k8s.aws/instance-family",
                            "operator": "In",
                            "values": list(pool.instance_families),
                        },
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                    ],
                    "expireAfter": "720h",
                },
            },
            "limits": {"cpu": str(pool.max_cpu)},
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "5m",
                "budgets": [{"nodes": "10%"}],
            },
            "weight": 1,
        },
    }


def node_pool_requirements(pool: NodePoolConfig) -> list[dict[str, Any]]:
    """Karpenter requirements for a pool: its instance types (or families), capacity types, NVIDIA GPUs."""
    if pool.instance_types:
        types = [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)}]
    else:
        types = [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(pool.instance_families)}]
    return [
        *types,
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        *([{"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(pool.zones)}] if pool.zones else []),
    ]


# Taints a node starts with until an agent on it is ready, keyed by the EKS add-on that removes it.
# Each CSI driver's node plugin removes its `agent-not-ready` taint once it has registered with kubelet,
# so a pod that mounts its volume is not started on a new node before the driver can mount it (kubelet
# would fail the mount and retry with a growing back-off, up to about 2 minutes):
# - Mountpoint: awslabs/mountpoint-s3-csi-driver v2.7.0 pkg/driver/node/taint.go AgentNotReadyNodeTaintKey,
#   docs/CONFIGURATION.md "Configure node startup taint" (NoExecute recommended);
# - EFS: kubernetes-sigs/aws-efs-csi-driver pkg/driver/driver.go AgentNotReadyNodeTaintKey and
#   node.go removeNotReadyTaint, docs/README.md (NoExecute recommended).
# Both node DaemonSets tolerate every taint, so they run on our tainted GPU nodes. Karpenter does not wait
# for startupTaints when it simulates scheduling, and expects something else to remove them
# (karpenter.sh/v1 NodePool `startupTaints`).
ADDON_STARTUP_TAINTS: dict[str, dict[str, str]] = {
    MOUNTPOINT_ADDON: {"key": "s3.csi.aws.com/agent-not-ready", "effect": "NoExecute"},
    EFS_ADDON: {"key": "efs.csi.aws.com/agent-not-ready", "effect": "NoExecute"},
}


def node_startup_taints(addons: Sequence[str]) -> list[dict[str, str]]:
    """startupTaints for GPU NodePools: one per CSI add-on whose volumes the serving pods mount
    (addon_versions.addons_mounted_by_models) and which removes its own taint when ready.

    Only for an installed add-on: a taint nobody removes would keep every pod off the node.
    """
    return [dict(ADDON_STARTUP_TAINTS[name]) for name in addons if name in ADDON_STARTUP_TAINTS]


def node_pool_manifest(pool: NodePoolConfig, startup_taints: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """NodePool (karpenter.sh/v1) for one `nodePools` entry."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": pool.name},
        "spec": {
            "template": {
                "metadata": {"labels": {GPU_PRESENT_LABEL: "true", AMI_FAMILY_LABEL: pool.ami_family.lower()}},
                "spec": {
                    "nodeClassRef": {"group": NODECLASS_GROUP, "kind": "EC2NodeClass", "name": pool.name},
                    "requirements": node_pool_requirements(pool),
                    "taints": [dict(GPU_TAINT)],
                    **({"startupTaints": [dict(taint) for taint in startup_taints]} if startup_taints else {}),
                    "expireAfter": pool.expire_after,
                },
            },
            "limits": {"nvidia.com/gpu": str(pool.max_gpus), "cpu": str(pool.max_cpu)},
            "disruption": {
                "consolidationPolicy": pool.consolidation_policy,
                "consolidateAfter": pool.consolidate_after,
                # Voluntary disruption takes at most one GPU node at a time: serving capacity drains slowly.
                "budgets": [{"nodes": "1"}],
            },
            "weight": pool.weight,
        },
    }


def device_plugin_values() -> dict[str, Any]:
    """NVIDIA device plugin: only on our GPU nodes, tolerating their taint.

    Bottlerocket's NVIDIA variant runs its own device plugin, so those nodes are left out.
    """
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]},
                                {"key": AMI_FAMILY_LABEL, "operator": "NotIn", "values": ["bottlerocket"]},
                            ],
                        }
                    ]
                }
            }
        },
        "tolerations": [
            *gpu_tolerations(),
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
        ],
        "priorityClassName": "system-node-critical",
    }


# --------------------------------------------------------------------------- component
