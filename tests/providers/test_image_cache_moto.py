"""The ImageCacheSnapshot provider (components/providers/image_cache.py) against a real moto server.

EC2 (run_instances, describe_instances, stop/terminate, create_snapshot, describe_snapshots, delete_snapshot) and
SSM Run Command (send_command, get_command_invocation, list_commands) are moto's, for real: moto 5 starts an
instance at once, reports every command `Success` and completes a snapshot at once. Two things moto cannot
play, and how the tests stand in for them:
- Bottlerocket's public AMI parameter: `/aws/service/...` is reserved (moto refuses put_parameter there, as
  AWS does) and moto has no Bottlerocket entries, so `get_parameter` of exactly that name answers a moto AMI;
  every other call reaches moto's SSM.
- a failing pull: `get_command_invocation` answers `Failed` for the command that pulls one chosen image.
Fast Snapshot Restore is not in moto: its calls are checked with a botocore Stubber against EC2's model.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2

from components.platform.builders import image_cache as ic
from components.providers import image_cache as prov
from tests.providers.test_provider_host import from_wire, host, to_wire  # noqa: F401 (host: the fixture)

REGION = "us-east-1"
PUBLIC = "nvcr.io/nvidia/tritonserver:26.01-vllm-python-py3"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonllm-vllm/serving:extra-packages-abc@sha256:" + "b" * 64
IMAGES = sorted([PUBLIC, ECR, "public.ecr.aws/aws-cli/aws-cli:2.31.39"])


class BottlerocketSsm:
    """moto's SSM client, except the Bottlerocket AMI parameter (reserved, absent in moto) and chosen failures."""

    def __init__(
        self, real: Any, parameter: str, ami_id: str | None, fail_on: str | None = None, status: str = "Failed"
    ):
        self.real, self.parameter, self.ami_id, self.fail_on, self.status = real, parameter, ami_id, fail_on, status
        self.exceptions = real.exceptions
        self.asked: list[str] = []
        self.failed_command: str | None = None

    def get_parameter(self, Name: str) -> dict[str, Any]:  # noqa: N803 (boto3's argument name)
        self.asked.append(Name)
        if Name == self.parameter and self.ami_id:
            return {"Parameter": {"Name": Name, "Value": self.ami_id}}
        return self.real.get_parameter(Name=Name)

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.real.send_command(**kwargs)
        if self.fail_on and self.fail_on in kwargs["Parameters"]["commands"][0]:
            self.failed_command = answer["Command"]["CommandId"]
        return answer

    def get_command_invocation(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.real.get_command_invocation(**kwargs)
        if kwargs["CommandId"] == self.failed_command:
            return {**answer, "Status": self.status, "StandardErrorContent": "ctr: failed to resolve reference"}
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def world(moto_server) -> dict[str, Any]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server.url)
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=moto_server.url)
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_server.url)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"build-{uuid.uuid4().hex[:6]}", Description="x", VpcId=vpc)["GroupId"]
    profile = f"build-{uuid.uuid4().hex[:6]}"
    iam.create_instance_profile(InstanceProfileName=profile)
    ami_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    pool = f"g5-{uuid.uuid4().hex[:6]}"
    props = {
        "pool": pool,
        "stack": "tritonllm-test",
        "region": REGION,
        "key": ic.cache_key(eks_version="1.34", ami_version="v1.47.0", images=IMAGES, volume_size_gib=200),
        "images": IMAGES,
        "ami_parameter": ic.ami_parameter("1.34", "v1.47.0"),
        "volume_size_gib": 200,
        "instance_type": "m6i.large",
        "timeout_minutes": 60,
        "subnet_id": subnet,
        "security_group_id": group,
        "instance_profile": profile,
        "fast_snapshot_restore_zones": [],
        "tags": {"tritonllm:stack": "test"},
    }
    return {"ec2": ec2, "ssm": ssm, "ami_id": ami_id, "props": props, "subnet": subnet}


def _clients(
    world: dict[str, Any], *, ami: bool = True, fail_on: str | None = None, status: str = "Failed"
) -> prov.CacheClients:
    ssm = BottlerocketSsm(
        world["ssm"], world["props"]["ami_parameter"], world["ami_id"] if ami else None, fail_on, status
    )
    return prov.CacheClients(REGION, clients={"ec2": world["ec2"], "ssm": ssm})


def _pool_instances(ec2: Any, subnet: str) -> list[dict[str, Any]]:
    found = ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [subnet]}])["Reservations"]
    return [i for r in found for i in r["Instances"]]


def _sent_scripts(ssm: Any, instance_id: str) -> list[str]:
    commands = ssm.list_commands(InstanceId=instance_id)["Commands"]
    return [c["Parameters"]["commands"][0] for c in sorted(commands, key=lambda c: c["RequestedDateTime"])]


def _pool_snapshots(world: dict[str, Any]) -> list[dict[str, Any]]:
    """This test's snapshots (the moto server outlives a test; each test has its own pool name)."""
    pool_filter = [{"Name": f"tag:{ic.POOL_TAG}", "Values": [world["props"]["pool"]]}]
    return list(world["ec2"].describe_snapshots(OwnerIds=["self"], Filters=pool_filter)["Snapshots"])


def _no_sleep(_seconds: float) -> None:
    return None


def test_create_builds_the_snapshot_and_terminates_the_instance(world):
    clients, lines = _clients(world), []
    result = prov.ensure_snapshot(world["props"], clients, emit=lines.append, sleep=_no_sleep)
    assert result["built"] is True
    ec2 = world["ec2"]
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[result["snapshot_id"]])["Snapshots"]
    tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert tags[ic.KEY_TAG] == world["props"]["key"] and tags[ic.POOL_TAG] == world["props"]["pool"]
    assert snapshot["State"] == "completed" and snapshot["Encrypted"] is True
    assert snapshot["VolumeSize"] == 200 != ic.ROOT_VOLUME_GIB
    # the AMI came from the release's public parameter
    assert clients.ssm.asked == ["/aws/service/bottlerocket/aws-k8s-1.34/x86_64/1.47.0/image_id"]
    (instance,) = _pool_instances(ec2, world["subnet"])
    assert instance["State"]["Name"] == "terminated"
    assert instance["ImageId"] == world["ami_id"] and instance["InstanceType"] == "m6i.large"
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [world["props"]["security_group_id"]]
    assert not instance.get("PublicIpAddress")
    # the snapshot is of the data volume (200 GiB; the root is 4): moto drops a terminated instance's mappings
    # kubelet stopped, then one pull per image in key order, then the check; each run by bash
    scripts = _sent_scripts(world["ssm"], instance["InstanceId"])
    assert scripts == [
        ic.ssm_commands(s)[0] for s in [ic.prepare_script(), *map(ic.pull_script, IMAGES), ic.verify_script(IMAGES)]
    ]
    assert any("terminated" in line for line in lines)


def test_the_build_instance_is_asked_for_with_imdsv2_encrypted_volumes_and_no_public_address(world):
    request = prov.launch_request(world["props"], "ami-0123")
    assert request["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
    }
    assert all(b["Ebs"]["Encrypted"] and b["Ebs"]["VolumeType"] == "gp3" for b in request["BlockDeviceMappings"])
    assert "NetworkInterfaces" not in request and request["SubnetId"] == world["subnet"]  # private subnet, its default
    # what EC2 kept of it on moto
    world["ec2"].run_instances(**request | {"ImageId": world["ami_id"]})
    volumes = world["ec2"].describe_volumes(Filters=[{"Name": "tag:tritonllm:stack", "Values": ["test"]}])["Volumes"]
    assert volumes and all(v["Encrypted"] for v in volumes)


def test_unchanged_key_adopts_the_completed_snapshot_and_launches_nothing(world):
    first = prov.ensure_snapshot(world["props"], _clients(world), emit=lambda _l: None, sleep=_no_sleep)
    before = len(_pool_instances(world["ec2"], world["subnet"]))
    again = prov.ensure_snapshot(world["props"], _clients(world), emit=lambda _l: None, sleep=_no_sleep)
    assert again == {**again, "snapshot_id": first["snapshot_id"], "built": False}
    assert len(_pool_instances(world["ec2"], world["subnet"])) == before
    # another key, or another pool with the same key, is not adopted
    other = dict(world["props"], pool=world["props"]["pool"] + "x")
    assert prov.find_snapshot(world["ec2"], other["key"], other["pool"], other["stack"]) is None


def test_a_failed_pull_fails_the_resource_with_its_output_and_still_terminates_the_instance(world):
    clients = _clients(world, fail_on=PUBLIC.split(":")[0])
    with pytest.raises(prov.ImageCacheError, match=r"pull nvcr.io/.* ended Failed(.|\n)*failed to resolve reference"):
        prov.ensure_snapshot(world["props"], clients, emit=lambda _l: None, sleep=_no_sleep)
    (instance,) = _pool_instances(world["ec2"], world["subnet"])
    assert instance["State"]["Name"] == "terminated"
    assert _pool_snapshots(world) == []


def test_a_timeout_terminates_the_instance(world):
    ticks = iter(range(0, 100_000, 1000))  # every clock reading 1,000 s later: past the 60 min limit quickly
    stuck = _clients(world, fail_on="tritonllm-vllm/serving", status="InProgress")  # the ECR pull never ends
    with pytest.raises(prov.ImageCacheError, match="timed out while pull 123456789012.dkr.*imageCache.timeoutMinutes"):
        prov.ensure_snapshot(
            world["props"], stuck, emit=lambda _l: None, sleep=_no_sleep, clock=lambda: float(next(ticks))
        )
    (instance,) = _pool_instances(world["ec2"], world["subnet"])
    assert instance["State"]["Name"] == "terminated"


def test_a_release_without_an_ami_fails_naming_the_parameter_and_launches_nothing(world):
    with pytest.raises(prov.ImageCacheError, match="aws-k8s-1.34/x86_64/1.47.0/image_id.*amiVersion"):
        prov.ensure_snapshot(world["props"], _clients(world, ami=False), emit=lambda _l: None, sleep=_no_sleep)
    assert _pool_instances(world["ec2"], world["subnet"]) == []


def test_delete_removes_the_snapshot_and_a_second_delete_is_fine(world):
    made = prov.ensure_snapshot(world["props"], _clients(world), emit=lambda _l: None, sleep=_no_sleep)
    lines: list[str] = []
    prov.delete_snapshot(world["ec2"], made["snapshot_id"], [], lines.append)
    assert _pool_snapshots(world) == []
    prov.delete_snapshot(world["ec2"], made["snapshot_id"], [], lines.append)
    assert lines == [f"tritonllm: snapshot {made['snapshot_id']} was already gone"]


def test_fast_snapshot_restore_is_enabled_in_the_zones_and_disabled_before_delete():
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    zones = ["us-east-1b", "us-east-1a"]
    with Stubber(ec2) as stub:
        ids = {"AvailabilityZones": sorted(zones), "SourceSnapshotIds": ["snap-1"]}
        stub.add_response("enable_fast_snapshot_restores", {"Successful": []}, ids)
        stub.add_response("disable_fast_snapshot_restores", {"Successful": []}, ids)
        stub.add_response("delete_snapshot", {}, {"SnapshotId": "snap-1"})
        prov.enable_fast_restore(ec2, "snap-1", zones)
        prov.enable_fast_restore(ec2, "snap-1", [])  # off: no call
        prov.delete_snapshot(ec2, "snap-1", zones, lambda _l: None)
        stub.assert_no_pending_responses()


def test_through_pulumis_provider_host_an_adopted_snapshot_then_no_change_then_delete(world, moto_server, host):  # noqa: F811
    """The provider as the engine drives it (`python -m pulumi.dynamic`, gRPC): Create adopts the completed
    snapshot carrying the key (no instance; moto's SSM has no Bottlerocket AMI, so a build would fail), Diff of
    the same inputs is DIFF_NONE without one AWS request, a new key is a replace that the engine runs create
    before delete, and Delete removes the snapshot."""
    ec2, props = world["ec2"], {**world["props"], "endpoint_url": moto_server.url}
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=200, Encrypted=True)["VolumeId"]
    tags = ic.snapshot_tags(props["key"], props["pool"], props["stack"], props["tags"])
    made = ec2.create_snapshot(
        VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": prov._tag_list(tags)}]
    )["SnapshotId"]
    props["__provider"] = serialize_provider(prov.ImageCacheProvider())
    urn = "urn:pulumi:test::tritonllm::pulumi-python:dynamic/tritonllm:ImageCacheSnapshot::cache"
    created = host.Create(provider_pb2.CreateRequest(urn=urn, properties=to_wire(props)))
    outs = from_wire(created.properties)
    assert created.id == made and outs["snapshot_id"] == made and outs["built"] is False
    assert _pool_instances(ec2, world["subnet"]) == []
    moto_server.reset()
    same = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties, news=to_wire(props)))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert moto_server.requests() == []
    changed = {**props, "key": "f" * 64}
    diff = host.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties, news=to_wire(changed)))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == ["key"]
    assert diff.deleteBeforeReplace is False
    host.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=created.properties))
    assert _pool_snapshots(world) == []


def _tagged_snapshot(world: dict[str, Any], key: str) -> str:
    ec2, props = world["ec2"], world["props"]
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=200, Encrypted=True)["VolumeId"]
    tags = ic.snapshot_tags(key, props["pool"], props["stack"], props["tags"])
    return str(
        ec2.create_snapshot(
            VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": prov._tag_list(tags)}]
        )["SnapshotId"]
    )


def test_a_zones_update_keeps_the_snapshot_and_turns_fast_restore_off_where_it_left(world):
    """Same key, fewer zones: the same snapshot (adopted, nothing built), FSR disabled in the zone that left.
    EC2 is a Stubber-validated client here (moto has no Fast Snapshot Restore), answering moto's snapshot."""
    key = "a" * 64
    snapshot_id = _tagged_snapshot(world, key)
    found = world["ec2"].describe_snapshots(SnapshotIds=[snapshot_id])
    found.pop("ResponseMetadata", None)
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    clients = prov.CacheClients(REGION, clients={"ec2": ec2, "ssm": world["ssm"]})
    provider = prov.ImageCacheProvider()
    provider._clients = lambda _props: clients
    zones = ["us-east-1a", "us-east-1b"]
    olds = {**world["props"], "key": key, "snapshot_id": snapshot_id, "fast_snapshot_restore_zones": zones}
    news = {**world["props"], "key": key, "fast_snapshot_restore_zones": zones[:1]}
    with Stubber(ec2) as stub:
        stub.add_response("describe_snapshots", found)
        ids = {"SourceSnapshotIds": [snapshot_id]}
        stub.add_response("enable_fast_snapshot_restores", {"Successful": []}, {"AvailabilityZones": zones[:1], **ids})
        stub.add_response("disable_fast_snapshot_restores", {"Successful": []}, {"AvailabilityZones": zones[1:], **ids})
        result = provider.update(snapshot_id, olds, news)
        stub.assert_no_pending_responses()
    assert result.outs["snapshot_id"] == snapshot_id and result.outs["built"] is False


class ProfileNotYetVisible:
    """moto's EC2, except RunInstances refuses the instance profile `refusals` times first, as EC2 does for a
    profile IAM created seconds ago (the message is EC2's)."""

    def __init__(self, real: Any, refusals: int):
        self.real, self.refusals, self.calls = real, refusals, 0

    def run_instances(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.refusals:
            name = kwargs["IamInstanceProfile"]["Name"]
            message = (
                f"Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"
            )
            raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": message}}, "RunInstances")
        return self.real.run_instances(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_just_created_instance_profile_is_waited_for_not_a_failed_first_deploy(world):
    ec2 = ProfileNotYetVisible(world["ec2"], refusals=2)
    clients = _clients(world)
    clients.ec2 = ec2
    lines: list[str] = []
    result = prov.ensure_snapshot(world["props"], clients, emit=lines.append, sleep=_no_sleep)
    assert result["built"] is True and ec2.calls == 3
    assert sum("not visible to EC2 yet" in line for line in lines) == 2
    (instance,) = _pool_instances(world["ec2"], world["subnet"])
    assert instance["State"]["Name"] == "terminated"


def test_a_profile_ec2_never_sees_fails_after_the_propagation_limit_and_other_errors_at_once(world):
    ticks = iter(range(0, 100_000, 60))  # a minute per clock reading: past PROFILE_PROPAGATION_SECONDS soon
    ec2 = ProfileNotYetVisible(world["ec2"], refusals=1000)
    clients = _clients(world)
    clients.ec2 = ec2
    with pytest.raises(ClientError, match="Invalid IAM Instance Profile"):
        prov.ensure_snapshot(
            world["props"], clients, emit=lambda _l: None, sleep=_no_sleep, clock=lambda: float(next(ticks))
        )
    assert 1 < ec2.calls <= prov.PROFILE_PROPAGATION_SECONDS // 60 + 2
    # the same code for another parameter is the caller's mistake: no retry
    calls: list[dict[str, Any]] = []

    def bad_type(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        message = "Invalid value 'm6i.nonsense' for InstanceType."
        raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": message}}, "RunInstances")

    stub_ec2 = type("Ec2", (), {"run_instances": staticmethod(bad_type)})()
    with pytest.raises(ClientError, match="InstanceType"):
        prov.launch(stub_ec2, prov.launch_request(world["props"], world["ami_id"]), _no_sleep, print, lambda: 0.0)
    assert len(calls) == 1


def test_a_build_instance_an_interrupted_run_left_is_terminated_before_the_next_build(world):
    """The deploying process killed mid-build never reaches its `finally`: the instance (and its 4,000 IOPS /
    1,000 MiB/s data volume) would run on. The next build of the same pool finds it by its tag and ends it."""
    ec2 = world["ec2"]
    left = ec2.run_instances(**prov.launch_request(world["props"], world["ami_id"]))["Instances"][0]["InstanceId"]
    other_pool = dict(world["props"], pool=world["props"]["pool"] + "-other")
    other = ec2.run_instances(**prov.launch_request(other_pool, world["ami_id"]))["Instances"][0]["InstanceId"]
    lines: list[str] = []
    prov.ensure_snapshot(world["props"], _clients(world), emit=lines.append, sleep=_no_sleep)
    states = {i["InstanceId"]: i["State"]["Name"] for i in _pool_instances(ec2, world["subnet"])}
    assert states[left] == "terminated" and states[other] == "running"
    assert any(left in line and "interrupted run" in line for line in lines)
    ec2.terminate_instances(InstanceIds=[other])


def test_a_zone_that_refuses_fast_snapshot_restore_is_reported():
    """EC2 answers a refused zone (the region's FSR quota, for one) inside a successful response."""
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    refused = {
        "Unsuccessful": [
            {
                "SnapshotId": "snap-1",
                "FastSnapshotRestoreStateErrors": [
                    {"AvailabilityZone": "us-east-1b", "Error": {"Code": "QuotaExceeded", "Message": "limit"}}
                ],
            }
        ]
    }
    lines: list[str] = []
    with Stubber(ec2) as stub:
        stub.add_response(
            "enable_fast_snapshot_restores",
            refused,
            {"AvailabilityZones": ["us-east-1a", "us-east-1b"], "SourceSnapshotIds": ["snap-1"]},
        )
        prov.enable_fast_restore(ec2, "snap-1", ["us-east-1b", "us-east-1a"], lines.append)
    assert len(lines) == 1 and "us-east-1b: QuotaExceeded limit" in lines[0] and "fastSnapshotRestore" in lines[0]


class NotYetVisible:
    """moto's EC2, except describe calls do not know a just-created instance or snapshot for `misses` calls each,
    as EC2 answers right after RunInstances / CreateSnapshot (eventual consistency)."""

    def __init__(self, real: Any, misses: int):
        self.real, self.misses = real, {"describe_instances": misses, "describe_snapshots": misses}

    def _miss(self, call: str, code: str, **kwargs: Any) -> dict[str, Any]:
        ids = kwargs.get("InstanceIds") or kwargs.get("SnapshotIds")
        if ids and self.misses[call] > 0:
            self.misses[call] -= 1
            raise ClientError({"Error": {"Code": code, "Message": f"The ID '{ids[0]}' does not exist"}}, call)
        return getattr(self.real, call)(**kwargs)

    def describe_instances(self, **kwargs: Any) -> dict[str, Any]:
        return self._miss("describe_instances", "InvalidInstanceID.NotFound", **kwargs)

    def describe_snapshots(self, **kwargs: Any) -> dict[str, Any]:
        return self._miss("describe_snapshots", "InvalidSnapshot.NotFound", **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_an_instance_or_snapshot_not_yet_visible_to_describe_calls_is_waited_for(world):
    ec2 = NotYetVisible(world["ec2"], misses=2)
    clients = _clients(world)
    clients.ec2 = ec2
    result = prov.ensure_snapshot(world["props"], clients, emit=lambda _l: None, sleep=_no_sleep)
    assert result["built"] is True and ec2.misses == {"describe_instances": 0, "describe_snapshots": 0}
    (snapshot,) = _pool_snapshots(world)
    assert snapshot["SnapshotId"] == result["snapshot_id"] and snapshot["State"] == "completed"


class SlowSnapshot:
    """moto's EC2, except a snapshot stays `pending` (moto completes one at once) until `finish()`: by id it
    answers State pending, and the status filter sees it as pending, not completed."""

    def __init__(self, real: Any):
        self.real, self.done = real, False

    def finish(self) -> None:
        self.done = True

    def describe_snapshots(self, **kwargs: Any) -> dict[str, Any]:
        filters = kwargs.get("Filters") or []
        status = next((f["Values"][0] for f in filters if f["Name"] == "status"), None)
        if self.done:
            return self.real.describe_snapshots(**kwargs)
        if status == "completed":
            return {"Snapshots": []}
        if status == "pending":
            kwargs = {**kwargs, "Filters": [f for f in filters if f["Name"] != "status"]}
        answer = self.real.describe_snapshots(**kwargs)
        return {"Snapshots": [{**s, "State": "pending", "Progress": "40%"} for s in answer["Snapshots"]]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_snapshot_still_being_written_at_the_timeout_is_kept_and_the_next_run_waits_for_it(world):
    """A first snapshot of tens of GB can outlast imageCache.timeoutMinutes. Deleting it would make every
    run pull everything again and time out again; it is kept (it carries the key) and the next run waits for
    it without launching an instance."""
    ec2 = SlowSnapshot(world["ec2"])
    clients = _clients(world)
    clients.ec2 = ec2
    ticks = iter(range(0, 100_000, 300))  # five minutes per clock reading
    with pytest.raises(prov.ImageCacheTimeout, match=r"waiting for snapshot snap-\w+.*is kept(.|\n)*pulumi up"):
        prov.ensure_snapshot(
            world["props"], clients, emit=lambda _l: None, sleep=_no_sleep, clock=lambda: float(next(ticks))
        )
    (kept,) = _pool_snapshots(world)
    (instance,) = _pool_instances(world["ec2"], world["subnet"])
    assert instance["State"]["Name"] == "terminated"
    reads = iter([False, False, True])  # pending twice more, then completed

    def sleep(_seconds: float) -> None:
        if next(reads):
            ec2.finish()

    lines: list[str] = []
    again = prov.ensure_snapshot(world["props"], clients, emit=lines.append, sleep=sleep)
    assert again["snapshot_id"] == kept["SnapshotId"] and again["built"] is False
    assert len(_pool_instances(world["ec2"], world["subnet"])) == 1  # no second build instance
    assert any("still being written, waiting for it" in line for line in lines)
