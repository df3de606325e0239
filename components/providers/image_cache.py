"""ImageCacheSnapshot: an EBS snapshot of a Bottlerocket data volume with a node pool's serving images already
pulled, as a Pulumi dynamic resource (`nodePools[].imageCache`, docs/coldstart.md "Images on the node").

The key, commands, user data and IAM documents are pure builders in components/platform/builders/image_cache.py.
The provider, with the deploying machine's credentials:
1. adopts a completed snapshot of this stack and pool that carries the key (an interrupted run's, or one made
   before the state was lost): no instance, no pull;
2. otherwise resolves the AMI of the pinned Bottlerocket release from its public SSM parameter, launches one
   instance in a private subnet (a security group with no ingress, IMDSv2 with hop limit 1, encrypted gp3
   volumes, an instance profile with SSM core + pull from the program's ECR repository only; the launch waits
   while EC2 does not see a just-created profile yet), pulls every
   image into containerd's k8s.io namespace through SSM Run Command, stops the instance, snapshots /dev/xvdb,
   waits until the snapshot completes and tags it with the key;
3. terminates the instance in every case, also when a step fails or the wait times out (and, before a build,
   any build instance of the same pool an interrupted run left, found by its tritonllm:image-cache-build tag);
4. enables Fast Snapshot Restore in the pool's zones when asked (imageCache.fastSnapshotRestore);
5. streams each step to standard error (the CLI shows a dynamic provider's output, pulumi/pulumi PR 18253).
A new key is a replace, create before delete (the old snapshot goes once the node classes name the new one);
delete disables Fast Snapshot Restore and deletes the snapshot.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi.dynamic
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from components.platform.builders import image_cache as ic

# The key names the snapshot's content and the zones its Fast Snapshot Restore; the others only say where and
# how to build it.
KEY_INPUTS = ("key", "fast_snapshot_restore_zones")
SSM_DOCUMENT = "AWS-RunShellScript"
# Run Command's own states (SSM API reference, GetCommandInvocation `Status`).
COMMAND_DONE = {"Success", "Cancelled", "TimedOut", "Failed", "Cancelling"}
OUTPUT_TAIL_CHARS = 2000
# A just-created instance profile is refused by RunInstances for a few seconds ("InvalidParameterValue: Value
# (...) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"): IAM is eventually
# consistent with EC2 (EC2 User Guide, iam-roles-for-amazon-ec2.html; hashicorp/terraform-provider-aws retries
# aws_instance's RunInstances on exactly this). On a first `pulumi up` NodeImageCache creates the profile
# seconds before the launch, so the launch waits it out, for at most this long.
PROFILE_PROPAGATION_SECONDS = 180
# Build instances of an earlier run that did not reach its `finally` (the deploying process was killed): any
# state but these is terminated before a new build of the same pool.
GONE_STATES = {"shutting-down", "terminated"}


def _is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def snapshot_diff(olds: dict[str, Any], news: dict[str, Any]) -> tuple[bool, list[str]]:
    """(changes, replaces): only the key and the FSR zones matter; an unknown one (an image still being built)
    counts as changed. A new key replaces the resource, create before delete: the engine builds the new
    snapshot, updates the node classes that name it, and deletes the old snapshot only at the end, so no node
    class ever names a deleted snapshot. New zones alone are an update."""
    changed = [k for k in KEY_INPUTS if _is_unknown(news.get(k)) or news.get(k) != olds.get(k)]
    return bool(changed), [k for k in changed if k == "key"]


class ImageCacheError(RuntimeError):
    pass


class ImageCacheTimeout(ImageCacheError):
    """imageCache.timeoutMinutes ran out."""


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class CacheClients:
    """boto3 clients the provider uses (tests hand it clients on the moto server)."""

    def __init__(self, region: str, endpoint_url: str | None = None, clients: dict[str, Any] | None = None):
        if clients is None:
            import boto3

            clients = {n: boto3.client(n, region_name=region, endpoint_url=endpoint_url) for n in ("ec2", "ssm")}
        self.ec2, self.ssm = clients["ec2"], clients["ssm"]


def find_snapshot(ec2: Any, key: str, pool: str, stack: str, status: str = "completed") -> str | None:
    """The id of a snapshot of this stack's pool tagged with `key` in `status` (the newest), else None."""
    found = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": f"tag:{ic.KEY_TAG}", "Values": [key]},
            {"Name": f"tag:{ic.POOL_TAG}", "Values": [pool]},
            {"Name": f"tag:{ic.STACK_TAG}", "Values": [stack]},
            {"Name": "status", "Values": [status]},
        ],
    ).get("Snapshots", [])
    if not found:
        return None
    return str(max(found, key=lambda s: str(s.get("StartTime", "")))["SnapshotId"])


def resolve_ami(ssm: Any, parameter: str) -> str:
    """The AMI id in Bottlerocket's public SSM parameter; a release without one fails naming the parameter."""
    try:
        return str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound as exc:
        raise ImageCacheError(
            f"no Bottlerocket AMI at SSM parameter {parameter}: the release or the Kubernetes version has no "
            "image in this region; check nodePools[].amiVersion (list them with `aws ssm get-parameters-by-path "
            f"--path {parameter.rsplit('/', 2)[0]} --recursive`)"
        ) from exc


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def instance_tags(props: dict[str, Any]) -> dict[str, str]:
    """The build instance's (and its volumes') tags: the stack's, plus which stack and pool it builds for, so a
    later build can find one an interrupted run left behind (leftover_instances)."""
    return {**props["tags"], ic.BUILD_TAG: f"{props['stack']}/{props['pool']}"}


def launch_request(props: dict[str, Any], ami_id: str) -> dict[str, Any]:
    """RunInstances arguments of the build instance (pure, so tests read what is asked of EC2)."""
    volume = {"VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    tags = _tag_list(instance_tags(props))
    return {
        "ImageId": ami_id,
        "InstanceType": props["instance_type"],
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": props["subnet_id"],
        "SecurityGroupIds": [props["security_group_id"]],
        "IamInstanceProfile": {"Name": props["instance_profile"]},
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
        "InstanceInitiatedShutdownBehavior": "stop",
        "UserData": base64.b64encode(ic.build_user_data().encode()).decode(),
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {**volume, "VolumeSize": ic.ROOT_VOLUME_GIB}},
            {
                "DeviceName": ic.DATA_DEVICE,
                "Ebs": {
                    **volume,
                    "VolumeSize": int(props["volume_size_gib"]),
                    "Iops": ic.BUILD_VOLUME_IOPS,
                    "Throughput": ic.BUILD_VOLUME_THROUGHPUT,
                },
            },
        ],
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
    }


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float], what: str):
        self.clock, self.at, self.what = clock, clock() + seconds, what

    def check(self, step: str) -> None:
        if self.clock() >= self.at:
            raise ImageCacheTimeout(
                f"{self.what}: timed out while {step} (raise nodePools[].imageCache.timeoutMinutes)"
            )


def _is_profile_not_yet_visible(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    message = str(error.get("Message", ""))
    return error.get("Code") == "InvalidParameterValue" and (
        "iamInstanceProfile" in message or "Invalid IAM Instance Profile" in message
    )


def launch(
    ec2: Any,
    request: dict[str, Any],
    sleep: Callable[[float], None],
    emit: Callable[[str], None],
    clock: Callable[[], float],
) -> str:
    """RunInstances, retried while EC2 does not yet see the instance profile (PROFILE_PROPAGATION_SECONDS)."""
    until = clock() + PROFILE_PROPAGATION_SECONDS
    while True:
        try:
            return str(ec2.run_instances(**request)["Instances"][0]["InstanceId"])
        except Exception as exc:
            if not _is_profile_not_yet_visible(exc) or clock() >= until:
                raise
            emit(
                f"tritonllm: instance profile {request['IamInstanceProfile']['Name']} not visible to EC2 yet, retrying"
            )
            sleep(ic.POLL_SECONDS)


def leftover_instances(ec2: Any, props: dict[str, Any]) -> list[str]:
    """Build instances of this stack's pool that an interrupted run left running or stopped."""
    reservations = ec2.describe_instances(
        Filters=[{"Name": f"tag:{ic.BUILD_TAG}", "Values": [instance_tags(props)[ic.BUILD_TAG]]}]
    )["Reservations"]
    return sorted(
        i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] not in GONE_STATES
    )


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    return dict(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0])


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _instance_state(ec2: Any, instance_id: str) -> str:
    """The instance's state; `pending` while EC2's describe calls do not know the id RunInstances just returned
    (EC2 API Reference, "Eventual consistency in the Amazon EC2 API": InvalidInstanceID.NotFound right after
    RunInstances; boto3's instance_running waiter retries on it for the same reason)."""
    try:
        return str(_instance(ec2, instance_id)["State"]["Name"])
    except Exception as exc:
        if _error_code(exc) != "InvalidInstanceID.NotFound":
            raise
        return "pending"


def wait_state(ec2: Any, instance_id: str, state: str, deadline: Deadline, sleep: Callable[[float], None]) -> None:
    while (current := _instance_state(ec2, instance_id)) != state:
        if current in ("terminated", "shutting-down") and state != "terminated":
            raise ImageCacheError(f"build instance {instance_id} is {current} while waiting for {state}")
        deadline.check(f"waiting for instance {instance_id} to be {state}")
        sleep(ic.POLL_SECONDS)


def run_script(
    ssm: Any,
    instance_id: str,
    script: str,
    comment: str,
    deadline: Deadline,
    sleep: Callable[[float], None],
    emit: Callable[[str], None],
) -> None:
    """Run one bash script on the instance through SSM and wait; a failure raises with its output's tail.

    The first send waits for the SSM agent to register (SendCommand answers InvalidInstanceId until it has)."""
    while True:
        try:
            command = ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=SSM_DOCUMENT,
                Comment=comment[:100],
                Parameters={"commands": ic.ssm_commands(script)},
            )["Command"]
            break
        except ssm.exceptions.InvalidInstanceId:
            deadline.check(f"waiting for the SSM agent on {instance_id}")
            sleep(ic.POLL_SECONDS)
    command_id = command["CommandId"]
    while True:
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ssm.exceptions.InvocationDoesNotExist:
            invocation = {"Status": "Pending"}
        status = invocation.get("Status", "Pending")
        if status in COMMAND_DONE:
            break
        deadline.check(comment)
        sleep(ic.POLL_SECONDS)
    if status != "Success":
        out = (invocation.get("StandardOutputContent") or "")[-OUTPUT_TAIL_CHARS:]
        err = (invocation.get("StandardErrorContent") or "")[-OUTPUT_TAIL_CHARS:]
        raise ImageCacheError(
            f"{comment} on build instance {instance_id} ended {status} (SSM command {command_id})\n"
            f"--- stdout ---\n{out or '(none)'}\n--- stderr ---\n{err or '(none)'}"
        )
    emit(f"tritonllm: {comment}: done")


def data_volume_id(ec2: Any, instance_id: str) -> str:
    for mapping in _instance(ec2, instance_id).get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == ic.DATA_DEVICE:
            return str(mapping["Ebs"]["VolumeId"])
    raise ImageCacheError(f"build instance {instance_id} has no {ic.DATA_DEVICE}")


def wait_snapshot(ec2: Any, snapshot_id: str, deadline: Deadline, sleep: Callable[[float], None], emit: Any) -> None:
    last = ""
    while True:
        try:
            (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        except Exception as exc:  # just created: not yet visible to describe calls (eventual consistency)
            if _error_code(exc) != "InvalidSnapshot.NotFound":
                raise
            snapshot = {"State": "pending"}
        state, progress = snapshot.get("State"), snapshot.get("Progress", "")
        if progress != last:
            emit(f"tritonllm: snapshot {snapshot_id} {state} {progress}")
            last = progress
        if state == "completed":
            return
        if state in ("error", "recoverable"):
            raise ImageCacheError(f"snapshot {snapshot_id} ended {state}: {snapshot.get('StateMessage', '')}")
        deadline.check(f"waiting for snapshot {snapshot_id}")
        sleep(ic.POLL_SECONDS)


def build_snapshot(
    props: dict[str, Any],
    clients: CacheClients,
    *,
    emit: Callable[[str], None] = _stderr_line,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Launch, pull, stop, snapshot; the instance is terminated whatever happens. Returns the snapshot id."""
    ec2, ssm = clients.ec2, clients.ssm
    what = f"image cache of node pool {props['pool']}"
    deadline = Deadline(float(props["timeout_minutes"]) * 60, clock, what)
    ami_id = resolve_ami(ssm, props["ami_parameter"])
    left = leftover_instances(ec2, props)
    if left:
        ec2.terminate_instances(InstanceIds=left)
        emit(f"tritonllm: {what}: terminated build instances an interrupted run left: {', '.join(left)}")
    instance_id = launch(ec2, launch_request(props, ami_id), sleep, emit, clock)
    emit(f"tritonllm: {what}: build instance {instance_id} ({props['instance_type']}, {ami_id})")
    try:
        wait_state(ec2, instance_id, "running", deadline, sleep)
        run_script(ssm, instance_id, ic.prepare_script(), "stop kubelet", deadline, sleep, emit)
        for image in props["images"]:
            run_script(ssm, instance_id, ic.pull_script(image), f"pull {image}", deadline, sleep, emit)
        run_script(
            ssm, instance_id, ic.verify_script(props["images"]), "check the pulled images", deadline, sleep, emit
        )
        ec2.stop_instances(InstanceIds=[instance_id])
        wait_state(ec2, instance_id, "stopped", deadline, sleep)
        volume_id = data_volume_id(ec2, instance_id)
        snapshot_id = str(
            ec2.create_snapshot(
                VolumeId=volume_id,
                Description=f"tritonllm image cache {props['stack']}/{props['pool']} {props['key'][:16]}",
                TagSpecifications=[
                    {
                        "ResourceType": "snapshot",
                        "Tags": _tag_list(ic.snapshot_tags(props["key"], props["pool"], props["stack"], props["tags"])),
                    }
                ],
            )["SnapshotId"]
        )
        emit(f"tritonllm: {what}: snapshot {snapshot_id} of {volume_id}")
        try:
            wait_snapshot(ec2, snapshot_id, deadline, sleep, emit)
        except ImageCacheTimeout as exc:
            # The snapshot goes on without the instance (it copies the volume as it was when it started); the
            # next `pulumi up` finds it by its key and waits for it instead of pulling every image again.
            raise ImageCacheTimeout(
                f"{exc}; snapshot {snapshot_id} is kept and still being written: run `pulumi up` again to wait "
                "for it (it carries the key, nothing is pulled again)"
            ) from exc
        except Exception:
            delete_snapshot(ec2, snapshot_id, [], emit)  # a failed snapshot is never adopted: drop it
            raise
        return snapshot_id
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        emit(f"tritonllm: {what}: build instance {instance_id} terminated")


def fast_restore_failures(answer: dict[str, Any]) -> list[str]:
    """`zone: code message` for each zone Enable/DisableFastSnapshotRestores refused: EC2 answers those in the
    response's Unsuccessful set, not as an error (EC2 API Reference, EnableFastSnapshotRestores)."""
    return [
        f"{item.get('AvailabilityZone')}: {item.get('Error', {}).get('Code')} {item.get('Error', {}).get('Message')}"
        for failed in answer.get("Unsuccessful") or []
        for item in failed.get("FastSnapshotRestoreStateErrors") or []
    ]


def enable_fast_restore(
    ec2: Any, snapshot_id: str, zones: list[str], emit: Callable[[str], None] = _stderr_line
) -> None:
    """Fast Snapshot Restore on in `zones`. A zone EC2 refuses (its quota of FSR snapshots per region, for one) is
    reported, not raised: the snapshot is good without it, nodes just read their first blocks from S3."""
    if zones:
        answer = ec2.enable_fast_snapshot_restores(AvailabilityZones=sorted(zones), SourceSnapshotIds=[snapshot_id])
        for failure in fast_restore_failures(answer):
            emit(
                f"tritonllm: warning: Fast Snapshot Restore of {snapshot_id} not enabled in {failure} "
                "(nodePools[].imageCache.fastSnapshotRestore)"
            )


def delete_snapshot(ec2: Any, snapshot_id: str, zones: list[str], emit: Callable[[str], None]) -> None:
    """Fast Snapshot Restore off (it bills per zone-hour until disabled), then the snapshot; gone is fine."""
    try:
        if zones:
            ec2.disable_fast_snapshot_restores(AvailabilityZones=sorted(zones), SourceSnapshotIds=[snapshot_id])
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    except Exception as exc:  # noqa: BLE001 (report and go on: a snapshot already gone is not an error)
        if "NotFound" not in str(exc):
            raise
        emit(f"tritonllm: snapshot {snapshot_id} was already gone")


def _wait_for_pending(
    props: dict[str, Any],
    clients: CacheClients,
    what: str,
    *,
    emit: Callable[[str], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str | None:
    """A snapshot with the key that an earlier run started and left pending (its wait timed out), waited for:
    its id once completed; None when there is none, or it failed (then it is deleted and the caller builds)."""
    pending = find_snapshot(clients.ec2, props["key"], props["pool"], props["stack"], status="pending")
    if pending is None:
        return None
    emit(f"tritonllm: {what}: snapshot {pending} with the key is still being written, waiting for it")
    deadline = Deadline(float(props["timeout_minutes"]) * 60, clock, what)
    try:
        wait_snapshot(clients.ec2, pending, deadline, sleep, emit)
    except ImageCacheTimeout:
        raise
    except ImageCacheError as exc:
        emit(f"tritonllm: {what}: {exc}; building again")
        delete_snapshot(clients.ec2, pending, [], emit)
        return None
    return pending


def ensure_snapshot(
    props: dict[str, Any],
    clients: CacheClients,
    *,
    emit: Callable[[str], None] = _stderr_line,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The completed snapshot for props' key: adopted when one exists, else built. Returns the outputs."""
    started = clock()
    what = f"image cache of node pool {props['pool']}"
    snapshot_id = find_snapshot(clients.ec2, props["key"], props["pool"], props["stack"])
    if snapshot_id is None:
        snapshot_id = _wait_for_pending(props, clients, what, emit=emit, clock=clock, sleep=sleep)
    built = snapshot_id is None
    if snapshot_id is None:
        snapshot_id = build_snapshot(props, clients, emit=emit, clock=clock, sleep=sleep)
    else:
        emit(f"tritonllm: {what}: snapshot {snapshot_id} has key, nothing to build")
    enable_fast_restore(clients.ec2, snapshot_id, list(props.get("fast_snapshot_restore_zones") or []), emit)
    return {"snapshot_id": snapshot_id, "built": built, "build_seconds": round(clock() - started, 1)}


_STATE_KEYS = (
    "key",
    "pool",
    "stack",
    "region",
    "images",
    "ami_parameter",
    "volume_size_gib",
    "fast_snapshot_restore_zones",
    "endpoint_url",  # delete and update read their clients from the state
)


class ImageCacheProvider(pulumi.dynamic.ResourceProvider):
    serialize_as_secret_always = False  # image references and ids only: keep the state readable

    def _clients(self, props: dict[str, Any]) -> CacheClients:
        return CacheClients(props["region"], props.get("endpoint_url") or None)

    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        outs = {k: props.get(k) for k in _STATE_KEYS}
        outs.update(ensure_snapshot(props, self._clients(props)))
        return outs

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._outs(props)
        return pulumi.dynamic.CreateResult(id_=outs["snapshot_id"], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changes, replaces = snapshot_diff(olds, news)
        return pulumi.dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        """Same key (a new key is a replace): Fast Snapshot Restore follows the zones."""
        outs = self._outs(news)
        gone = set(olds.get("fast_snapshot_restore_zones") or []) - set(news.get("fast_snapshot_restore_zones") or [])
        if gone:
            self._clients(news).ec2.disable_fast_snapshot_restores(
                AvailabilityZones=sorted(gone), SourceSnapshotIds=[outs["snapshot_id"]]
            )
        return pulumi.dynamic.UpdateResult(outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        delete_snapshot(
            self._clients(props).ec2,
            props["snapshot_id"],
            list(props.get("fast_snapshot_restore_zones") or []),
            _stderr_line,
        )


class ImageCacheSnapshot(pulumi.dynamic.Resource, module="tritonllm", name="ImageCacheSnapshot"):
    """The snapshot a node pool's data volumes start from. Outputs: snapshot_id, key, built (False: adopted)."""

    snapshot_id: pulumi.Output[str]
    key: pulumi.Output[str]
    built: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        *,
        pool: str,
        stack: str,
        region: str,
        key: pulumi.Input[str],
        images: pulumi.Input[list[str]],
        ami_parameter: str,
        volume_size_gib: int,
        instance_type: str,
        timeout_minutes: int,
        subnet_id: pulumi.Input[str],
        security_group_id: pulumi.Input[str],
        instance_profile: pulumi.Input[str],
        fast_snapshot_restore_zones: pulumi.Input[list[str]],
        tags: dict[str, str],
        endpoint_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "pool": pool,
            "stack": stack,
            "region": region,
            "key": key,
            "images": images,
            "ami_parameter": ami_parameter,
            "volume_size_gib": volume_size_gib,
            "instance_type": instance_type,
            "timeout_minutes": timeout_minutes,
            "subnet_id": subnet_id,
            "security_group_id": security_group_id,
            "instance_profile": instance_profile,
            "fast_snapshot_restore_zones": fast_snapshot_restore_zones,
            "tags": tags,
            "endpoint_url": endpoint_url,
            "snapshot_id": None,
            "built": None,
            "build_seconds": None,
        }
        super().__init__(ImageCacheProvider(), name, props, opts)
