"""Storage: encrypted EFS, mount targets per AZ, NFS only from the nodes, StorageClass, RWX claim."""

from __future__ import annotations

from components.platform.builders.network import SUBNET_ROLE_TAG
import json

from components.platform.builders.storage import (
    NFS_PORT,
    STORAGE_CLASS_NAME,
    efs_storage_class_manifest,
    shared_claim_manifest,
)
from tests.k8s_schema import validate_k8s_object
from tests.unit.harness import run_program
from tests.unit.test_network import _cfg

EFS = "aws:efs/fileSystem:FileSystem"
STORAGE = "tritonllm:platform:Storage"


def test_shared_claim_is_a_valid_rwx_claim_on_efs():
    claim = shared_claim_manifest("shared", "llama", size="100Gi")
    validate_k8s_object(claim)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS_NAME
    assert claim["metadata"] == {"name": "shared", "namespace": "llama"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"


def test_storage_class_manifest_is_valid_dynamic_access_points():
    sc = efs_storage_class_manifest("fs-123")
    validate_k8s_object(sc)
    assert sc["provisioner"] == "efs.csi.aws.com"
    assert sc["parameters"]["provisioningMode"] == "efs-ap" and sc["parameters"]["fileSystemId"] == "fs-123"
    assert sc["parameters"]["directoryPerms"] == "700" and sc["parameters"]["basePath"]


def test_efs_is_encrypted_with_the_configured_throughput(stack_run):
    cfg = _cfg(stack_run)
    fs = stack_run.within(STORAGE).one(EFS)
    assert fs.inputs["encrypted"] is True
    assert fs.inputs["throughputMode"] == cfg.efs.throughput_mode


def test_bursting_throughput_by_config():
    assert (
        run_program("dev", overrides={"efs.throughputMode": "bursting"})
        .within(STORAGE)
        .one(EFS)
        .inputs["throughputMode"]
        == "bursting"
    )


def test_one_mount_target_per_az_in_private_subnets(stack_run):
    cfg = _cfg(stack_run)
    fs = stack_run.within(STORAGE).one(EFS)
    sg = stack_run.within(STORAGE).one("aws:ec2/securityGroup:SecurityGroup")
    private = {
        s.id
        for s in stack_run.within("tritonllm:platform:Network").of_type("aws:ec2/subnet:Subnet")
        if s.inputs["tags"][SUBNET_ROLE_TAG] == "private"
    }
    targets = stack_run.within(STORAGE).of_type("aws:efs/mountTarget:MountTarget")
    assert len(targets) == cfg.network.az_count
    assert {t.inputs["subnetId"] for t in targets} == private
    assert all(t.inputs["fileSystemId"] == fs.id and t.inputs["securityGroups"] == [sg.id] for t in targets)


def test_nfs_only_from_the_node_security_group(stack_run):
    sg = stack_run.within(STORAGE).one("aws:ec2/securityGroup:SecurityGroup")
    assert not sg.inputs.get("ingress"), "no inline rules: every rule is a separate, tested resource"
    rules = [
        r
        for r in stack_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == sg.id
    ]
    node_sg = stack_run.within("tritonllm:platform:Cluster").one("eks:index:Cluster").outputs["nodeSecurityGroupId"]
    assert [
        (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"], r.inputs.get("referencedSecurityGroupId"))
        for r in rules
    ] == [("tcp", NFS_PORT, NFS_PORT, node_sg)]
    assert not any(k in rules[0].inputs for k in ("cidrIpv4", "cidrIpv6", "prefixListId"))


def test_storage_class_points_at_the_file_system(stack_run):
    fs = stack_run.within(STORAGE).one(EFS)
    (sc,) = [m for m in stack_run.manifests("StorageClass") if m["metadata"]["name"] == STORAGE_CLASS_NAME]
    validate_k8s_object(sc)
    assert sc == efs_storage_class_manifest(fs.id)
    # Created after the mount targets and the EFS CSI driver add-on.
    sc_record = next(
        r for r in stack_run.k8s_objects("StorageClass") if r.inputs["metadata"]["name"] == STORAGE_CLASS_NAME
    )
    efs_addon = next(
        a for a in stack_run.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "aws-efs-csi-driver"
    )
    assert efs_addon.urn in sc_record.dependencies
    assert all(
        t.urn in sc_record.dependencies for t in stack_run.within(STORAGE).of_type("aws:efs/mountTarget:MountTarget")
    )


def test_efs_disabled_creates_no_file_system():
    run = run_program("dev", overrides={"efs.enabled": False})
    assert not run.of_type(EFS) and not run.of_type("aws:efs/mountTarget:MountTarget")
    assert STORAGE_CLASS_NAME not in [m["metadata"]["name"] for m in run.manifests("StorageClass")]


def test_file_system_policy_denies_connections_without_tls(stack_run):
    fs = stack_run.within(STORAGE).one(EFS)
    policy_resource = stack_run.within(STORAGE).one("aws:efs/fileSystemPolicy:FileSystemPolicy")
    assert policy_resource.inputs["fileSystemId"] == fs.id
    statements = json.loads(policy_resource.inputs["policy"])["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny == [
        {
            "Sid": "DenyWithoutTls",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "*",
            "Resource": fs.outputs["arn"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    # Whatever is allowed is allowed only through a mount target (i.e. through the NFS security group).
    for allow in (s for s in statements if s["Effect"] == "Allow"):
        assert allow["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
        assert allow["Resource"] == fs.outputs["arn"]
        assert all(a.startswith("elasticfilesystem:Client") for a in allow["Action"])
    # The StorageClass (and so every mount) waits for the policy.
    sc = next(r for r in stack_run.k8s_objects("StorageClass") if r.inputs["metadata"]["name"] == STORAGE_CLASS_NAME)
    assert policy_resource.urn in sc.dependencies
