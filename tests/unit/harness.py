"""Run the Pulumi program (`__main__.py`) under Pulumi mocks and record what it registers.

    run = run_program("dev")                                  # Pulumi.dev.yaml as committed
    run = run_program("dev", overrides={"models[0].tensorParallel": 8, "region": None})
    run = run_program("dev", secrets={"hfToken": None})      # as if the secret were never set
    run = run_program("dev", overrides={"hfToken": "hf_..."}) # set without --secret: plain text
    run = run_program("dev", overrides=..., check=False)     # failures land in run.error
    run2 = run_program("dev", caller_arn="arn:aws:iam::123456789012:role/ci", previous=run)  # an update by CI

    run.resources / run.of_type(token) / run.one(token, name=None)   # RecordedResource:
        .type .name .inputs (wire names, secrets unwrapped, resource refs as URNs) .outputs
        .urn .id .provider .parent .dependencies .ignore_changes .custom_timeouts .secret_inputs .is_secret(path)
    run.within("tritonllm:platform:Storage")                 # only that component's resources
    run.k8s_objects(kind) / run.manifests(kind)              # Kubernetes objects, as manifests
    run.helm_releases() / run.helm_release(chart)
    run.outputs["clusterName"]; "kubeconfig" in run.secret_outputs
    run.calls / run.unanswered_calls / run.seconds / run.count_by_type()

Each call resets the Pulumi runtime (settings, root stack, config) so runs are
isolated from each other. The mocks answer provider calls (AZs, caller identity,
partition, region, EKS cluster/addon versions, ...) with realistic data and give
every resource the outputs components read (ids with AWS prefixes, ARNs,
auto-generated names; pulumi-eks's multi-language `eks:index:Cluster` component
gets a kubeconfig, an `eksCluster` resource reference, security groups and OIDC).
`available_zones=` simulates a small region; `capacity=MockCapacity(...)` what the GPU capacity check's
invokes answer (instance type offerings per zone, EC2 vCPU quotas; by default every catalog GPU type in
every zone and roomy quotas). Fixtures live in conftest.py.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import gc
import hashlib
import importlib
import json
import logging
import os
import re
import runpy
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM = REPO_ROOT / "__main__.py"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pulumi  # noqa: E402  (after sys.path so the program's imports resolve the same way)
from google.protobuf import json_format  # noqa: E402
from pulumi.runtime import config as runtime_config  # noqa: E402
from pulumi.runtime import mocks as runtime_mocks  # noqa: E402
from pulumi.runtime import rpc  # noqa: E402
from pulumi.runtime import settings as runtime_settings  # noqa: E402
from pulumi.runtime.proto import resource_pb2  # noqa: E402
from pulumi.runtime.stack import run_pulumi_func  # noqa: E402
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await  # noqa: E402

NAMESPACE = "tritonllm"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
# Who runs `pulumi up` unless a run says otherwise (`run_program(caller_arn=...)`).
DEFAULT_CALLER_ARN = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/ci"
# What `pulumi config set --secret` would have stored for a user who followed the README.
DEFAULT_SECRETS: dict[str, str | None] = {
    "hfToken": "hf_mock_placeholder_token",
    "apiKeys": '["ci:mock-api-key-0123456789abcdef0123", "ci-next:mock-api-key-fedcba9876543210fedc"]',
}
_RESOURCE_REF_SIG = rpc._special_resource_sig
_SIG_KEY = rpc._special_sig_key


# --------------------------------------------------------------------------- stack files


def stack_files() -> list[str]:
    """Names of every stack with a Pulumi.<stack>.yaml in the repository root."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in REPO_ROOT.glob("Pulumi.*.yaml"))


def project_name() -> str:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]


def load_stack_config(stack: str) -> dict[str, Any]:
    """The `config:` map of Pulumi.<stack>.yaml, keys fully qualified (`tritonllm:models`)."""
    data = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(data.get("config") or {})


def _qualify(key: str) -> str:
    return key if ":" in key.split(".")[0].split("[")[0] else f"{NAMESPACE}:{key}"


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set `models[0].engine.dtype` (or delete it when value is None) inside a stack config;
    an index one past the end of a list appends.

    The first segment is the config key (namespace optional); later segments walk
    into its structured value, creating maps as needed.
    """
    head, _, rest = path.partition(".")
    index_part = ""
    if "[" in head:
        head, index_part = head[: head.index("[")], head[head.index("[") :]
    key = _qualify(head)
    parts = [int(i) if i else n for n, i in _PATH_PART.findall(index_part + ("." + rest if rest else ""))]
    if not parts:
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
        return
    node = config.setdefault(key, {} if isinstance(parts[0], str) else [])
    for part, nxt in zip(parts, parts[1:], strict=False):
        if isinstance(part, int):
            node = node[part]
        else:
            node = node.setdefault(part, {} if isinstance(nxt, str) else [])
    last = parts[-1]
    if value is None:
        if isinstance(node, dict):
            node.pop(last, None)
        else:
            del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)  # `[n]` one past the end appends
    else:
        node[last] = value


def _config_strings(config: dict[str, Any]) -> dict[str, str]:
    """Config as the engine passes it: strings, structured values as JSON."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = json.dumps(value)
    return out


# --------------------------------------------------------------------------- records


@dataclass
class RecordedResource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    urn: str
    id: str
    custom: bool
    remote: bool
    provider: str  # provider reference ("urn::id"), "" for the default provider
    parent: str  # parent URN
    dependencies: list[str]  # URNs from depends_on and input dependencies
    secret_inputs: set[str]  # dotted paths of inputs that were Pulumi secrets
    ignore_changes: list[str] = field(default_factory=list)  # as sent to the engine (Pulumi property paths)
    custom_timeouts: dict[str, str] = field(default_factory=dict)  # {"create": "60m", ...}, only those set
    # As sent to the engine: {"urn": ...} or {"spec": {"type": ..., "name": ..., "parentUrn": ...}}
    aliases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def physical_name(self) -> str | None:
        return self.outputs.get("name")

    def get(self, path: str, default: Any = None) -> Any:
        """Input at a dotted path, e.g. `spec.template.spec.taints`."""
        node: Any = self.inputs
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return node

    def manifest(self) -> dict[str, Any]:
        """A Kubernetes resource's inputs as a manifest (apiVersion, kind, metadata, ...)."""
        if not self.type.startswith("kubernetes:") or self.type.startswith("kubernetes:helm.sh"):
            raise ValueError(f"{self.type} is not a Kubernetes object")
        return {k: v for k, v in self.inputs.items() if not k.startswith("__")}

    def is_secret(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in self.secret_inputs)


@dataclass
class RecordedCall:
    token: str
    args: dict[str, Any]


@dataclass
class ProgramRun:
    stack: str
    config: dict[str, Any]
    resources: list[RecordedResource]
    calls: list[RecordedCall]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    error: BaseException | None
    seconds: float
    unanswered_calls: list[str] = field(default_factory=list)  # provider functions the mocks answered with {}

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(
                f"expected one {type_token}{' named ' + name if name else ''}, found {[r.name for r in found]}"
            )
        return found[0]

    def named(self, name: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.name == name]

    def by_urn(self, urn: str) -> RecordedResource:
        return next(r for r in self.resources if r.urn == urn)

    def by_id(self, id_: str) -> RecordedResource | None:
        return next((r for r in self.resources if r.id == id_), None)

    def types(self) -> set[str]:
        return {r.type for r in self.resources}

    def children_of(self, parent: RecordedResource | str) -> list[RecordedResource]:
        urn = parent if isinstance(parent, str) else parent.urn
        return [r for r in self.resources if r.parent == urn]

    def ancestors(self, resource: RecordedResource) -> list[RecordedResource]:
        """Parent, grandparent, ... of a resource (through recorded parent URNs)."""
        by_urn = {r.urn: r for r in self.resources}
        chain, urn = [], resource.parent
        while urn in by_urn:
            chain.append(by_urn[urn])
            urn = by_urn[urn].parent
        return chain

    def within(self, component_type: str) -> ProgramRun:
        """The same run restricted to resources under a component of `component_type`
        (e.g. "tritonllm:platform:Storage"), so lookups ignore other components' resources."""
        scoped = [r for r in self.resources if any(a.type == component_type for a in self.ancestors(r))]
        return dataclasses.replace(self, resources=scoped)

    def k8s_objects(self, kind: str | None = None) -> list[RecordedResource]:
        """Kubernetes objects (not providers, not Helm releases), optionally of one kind."""
        found = [
            r
            for r in self.resources
            if r.type.startswith("kubernetes:")
            and r.custom
            and not r.type.startswith(("kubernetes:helm.sh", "pulumi:providers"))
            and "kind" in r.inputs
        ]
        return [r for r in found if kind is None or r.inputs.get("kind") == kind]

    def manifests(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.k8s_objects(kind)]

    def helm_releases(self) -> list[RecordedResource]:
        return self.of_type("kubernetes:helm.sh/v3:Release")

    def helm_release(self, chart: str) -> RecordedResource:
        found = [r for r in self.helm_releases() if r.inputs.get("chart") == chart]
        if len(found) != 1:
            raise AssertionError(f"expected one Helm release of chart {chart}, found {len(found)}")
        return found[0]

    def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


class ProgramFailed(AssertionError):
    """Raised by run_program(check=True) when the program raised; `.run` has what was recorded."""

    def __init__(self, run: ProgramRun):
        self.run = run
        super().__init__(f"program failed on stack {run.stack!r}: {run.error!r}")


# --------------------------------------------------------------------------- mocks


def _short_hash(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


# Resource ID prefixes AWS uses, so ids look like the real thing (tests match on them).
_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation": "vpc-cidr-assoc-",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc-",
    "aws:efs/fileSystem:FileSystem": "fs-",
    "aws:efs/mountTarget:MountTarget": "fsmt-",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr-",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr-",
    "aws:kms/key:Key": "",
}

# (service, resource path template) for ARNs of common AWS types.
_ARN_SHAPES = {
    "aws:iam/role:Role": ("iam", "role/{name}", False),
    "aws:iam/policy:Policy": ("iam", "policy/{name}", False),
    "aws:iam/instanceProfile:InstanceProfile": ("iam", "instance-profile/{name}", False),
    "aws:sqs/queue:Queue": ("sqs", "{name}", True),
    "aws:sns/topic:Topic": ("sns", "{name}", True),
    "aws:kms/key:Key": ("kms", "key/{id}", True),
    "aws:kms/alias:Alias": ("kms", "{name}", True),
    "aws:efs/fileSystem:FileSystem": ("elasticfilesystem", "file-system/{id}", True),
    "aws:cloudwatch/eventRule:EventRule": ("events", "rule/{name}", True),
    "aws:eks/cluster:Cluster": ("eks", "cluster/{name}", True),
    "aws:eks/nodeGroup:NodeGroup": ("eks", "nodegroup/{cluster}/{name}/{id}", True),
    "aws:eks/addon:Addon": ("eks", "addon/{cluster}/{name}/{id}", True),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": ("eks", "podidentityassociation/{cluster}/{id}", True),
    "aws:eks/accessEntry:AccessEntry": ("eks", "access-entry/{cluster}/{id}", True),
    "aws:s3/bucket:Bucket": ("s3", "{name}", False),
    "aws:s3/bucketV2:BucketV2": ("s3", "{name}", False),
    "aws:secretsmanager/secret:Secret": ("secretsmanager", "secret:{name}-AbCdEf", True),
    "aws:acm/certificate:Certificate": ("acm", "certificate/{id}", True),
    "aws:ec2/vpc:Vpc": ("ec2", "vpc/{id}", True),
    "aws:ec2/subnet:Subnet": ("ec2", "subnet/{id}", True),
    "aws:ec2/securityGroup:SecurityGroup": ("ec2", "security-group/{id}", True),
    "aws:ec2/launchTemplate:LaunchTemplate": ("ec2", "launch-template/{id}", True),
    "aws:ecr/repository:Repository": ("ecr", "repository/{name}", True),
    "aws:cloudwatch/logGroup:LogGroup": ("logs", "log-group:{name}", True),
    "aws:codebuild/project:Project": ("codebuild", "project/{name}", True),
}

# Types whose physical name lives in another property than `name`.
_NAME_KEYS = {"aws:eks/nodeGroup:NodeGroup": "nodeGroupName"}

# AWS limits on physical names (characters), for tests that check names fit.
AWS_NAME_LIMITS = {
    "aws:iam/role:Role": 64,
    "aws:iam/policy:Policy": 128,
    "aws:iam/rolePolicy:RolePolicy": 128,
    "aws:iam/instanceProfile:InstanceProfile": 128,
    "aws:sqs/queue:Queue": 80,
    "aws:cloudwatch/eventRule:EventRule": 64,
    "aws:ec2/launchTemplate:LaunchTemplate": 128,
    "aws:ec2/securityGroup:SecurityGroup": 255,
    "aws:eks/nodeGroup:NodeGroup": 63,
    "aws:lb/loadBalancer:LoadBalancer": 32,
    "aws:lb/targetGroup:TargetGroup": 32,
    "aws:secretsmanager/secret:Secret": 512,
    "aws:s3/bucket:Bucket": 63,
    "aws:s3/bucketV2:BucketV2": 63,
    "aws:kms/alias:Alias": 256,
    "aws:cloudwatch/logGroup:LogGroup": 512,
}


@functools.cache
def _has_name_property(token: str) -> bool:
    """Whether the SDK class for `pkg:mod/x:Type` has a `name` output (so Pulumi auto-names it)."""
    try:
        pkg, mod, cls_name = token.split(":")
        module = importlib.import_module(f"pulumi_{pkg}.{mod.split('/')[0]}" if mod != "index" else f"pulumi_{pkg}")
        cls = getattr(module, cls_name)
    except (ValueError, ImportError, AttributeError):
        return False
    return isinstance(getattr(cls, "name", None), property)


DEFAULT_QUOTA_VCPUS = 4096.0


@dataclass
class MockCapacity:
    """The answers of the capacity check's invokes (components/providers/capacity.py).

    not_offered: instance type -> the zones it is not offered in (None: in none of them).
    quotas: quota code -> vCPUs (the rest: DEFAULT_QUOTA_VCPUS).
    failing: invoke tokens that fail with `failure` (e.g. a user without servicequotas:GetServiceQuota).
    addon_newest: EKS add-on -> the newest build getAddonVersion answers for the cluster's version (None:
    EKS has none, the data source's "empty result" error); the rest answer the pinned build.
    """

    not_offered: dict[str, set[str] | None] = field(default_factory=dict)
    quotas: dict[str, float] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    failure: str = "AccessDeniedException: not authorized to perform this operation"
    addon_newest: dict[str, str | None] = field(default_factory=dict)

    def offered(self, itype: str, zone: str) -> bool:
        if itype not in self.not_offered:
            return True
        missing = self.not_offered[itype]
        return missing is not None and zone not in missing


class _RecordingMocks(runtime_mocks.Mocks):
    def __init__(
        self,
        region: str,
        available_zones: int = 6,
        caller_arn: str = DEFAULT_CALLER_ARN,
        previous: ProgramRun | None = None,
        capacity: MockCapacity | None = None,
    ):
        self.region = region
        self.available_zones = available_zones
        self.caller_arn = caller_arn
        # The stack's state from an earlier run (an update rather than a first `pulumi up`), by URN.
        self.previous = {r.urn: r for r in previous.resources} if previous is not None else {}
        self.capacity = capacity or MockCapacity()
        self.resources: list[RecordedResource] = []
        self.calls: list[RecordedCall] = []
        self.unanswered: list[str] = []
        self.lock = threading.Lock()
        self.monitor: _RecordingMonitor | None = None

    # ---- provider functions
    def call(self, args: runtime_mocks.MockCallArgs):
        with self.lock:
            self.calls.append(RecordedCall(args.token, _plain(args.args)))
        token, a = args.token, args.args
        region = a.get("region") or self.region
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"[: self.available_zones]
            return {
                "id": region,
                "names": [f"{region}{c}" for c in letters],
                "zoneIds": [f"usw2-az{i + 1}" for i in range(len(letters))],
                "groupNames": [region] * len(letters),
                "state": a.get("state"),
            }
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "id": ACCOUNT_ID,
                "accountId": self.caller_arn.split(":")[4],
                "arn": self.caller_arn,
                "userId": "AIDAMOCKUSER",
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "id": PARTITION,
                "partition": PARTITION,
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }
        if token == "aws:index/getRegion:getRegion":
            return {
                "id": region,
                "name": region,
                "region": region,
                "description": region,
                "endpoint": f"ec2.{region}.amazonaws.com",
            }
        if token in self.capacity.failing:
            return {}, [("", self.capacity.failure)]
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            wanted: list[str] = next(
                (f["values"] for f in a.get("filters") or [] if f.get("name") == "instance-type"), []
            )
            zones = [f"{region}{c}" for c in "abcdef"[: self.available_zones]]
            pairs = [(t, z) for t in wanted for z in zones if self.capacity.offered(t, z)]
            return {
                "id": region,
                "instanceTypes": [t for t, _ in pairs],
                "locations": [z for _, z in pairs],
                "locationTypes": [a.get("locationType", "region")] * len(pairs),
                "locationType": a.get("locationType"),
                "filters": a.get("filters"),
            }
        if token == "aws:servicequotas/getServiceQuota:getServiceQuota":
            code = a.get("quotaCode", "")
            return {
                "id": f"ec2/{code}",
                "quotaCode": code,
                "serviceCode": a.get("serviceCode"),
                "value": self.capacity.quotas.get(code, DEFAULT_QUOTA_VCPUS),
                "adjustable": True,
                "globalQuota": False,
                "arn": f"arn:{PARTITION}:servicequotas:{region}:{ACCOUNT_ID}:ec2/{code}",
                "quotaName": "",
                "serviceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "defaultValue": 0.0,
                "usageMetrics": [],
            }
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"id": "policy", "json": json.dumps(_policy_from_args(a))}
        if token in ("aws:eks/getAddonVersion:getAddonVersion",):
            from components.catalog import versions

            name = a["addonName"]  # required by getAddonVersion
            pinned = {**versions.EKS_ADDONS, **versions.OPTIONAL_EKS_ADDONS}
            newest = self.capacity.addon_newest.get(name, pinned.get(name, "v0.0.0-eksbuild.1"))
            if newest is None:
                # terraform-provider-aws addon_version_data_source.go: no build -> NewEmptyResultError
                return {}, [
                    ("", f"reading EKS Add-On version info ({name}, {a.get('kubernetesVersion')}): empty result")
                ]
            return {
                "id": name,
                "addonName": name,
                "kubernetesVersion": a.get("kubernetesVersion"),
                "mostRecent": a.get("mostRecent"),
                "version": newest,
            }
        if token == "aws:ssm/getParameter:getParameter":
            return {
                "id": a.get("name"),
                "name": a.get("name"),
                "type": "String",
                "value": "ami-0123456789abcdef0",
                "insecureValue": "ami-0123456789abcdef0",
            }
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0123456789abcdef0", "imageId": "ami-0123456789abcdef0", "name": "mock"}
        if token == "aws:eks/getCluster:getCluster":
            return self._eks_cluster_state(a.get("name", "cluster"))
        if token == "aws:lb/getHostedZoneId:getHostedZoneId":
            # Route 53 zone of Network Load Balancers in us-west-2 (Elastic Load Balancing endpoints table).
            return {"id": "Z18D5FSROUN65G", "loadBalancerType": a.get("loadBalancerType"), "region": region}
        if token == "aws:eks/getClusterAuth:getClusterAuth":
            return {"id": a.get("name"), "name": a.get("name"), "token": "k8s-aws-v1.mock-token"}
        # Unknown calls answer empty; `run.unanswered_calls` lists them (extend `call` when one matters).
        with self.lock:
            self.unanswered.append(token)
        return {}

    # ---- resources
    def new_resource(self, args: runtime_mocks.MockResourceArgs):
        return self.new_resource_with(args, urn="", parent="", dependencies=[], remote=False, wire_inputs=None)

    def new_resource_with(
        self,
        args,
        urn: str,
        parent: str,
        dependencies: list[str],
        remote: bool,
        wire_inputs: dict[str, Any] | None,
        ignore_changes: list[str] | None = None,
        custom_timeouts: dict[str, str] | None = None,
        aliases: list[dict[str, Any]] | None = None,
    ):
        # Record from the wire form (resource references still references, secrets still marked).
        inputs, secret_paths = _unwrap_secrets(wire_inputs if wire_inputs is not None else args.inputs)
        inputs = _plain(inputs)
        typ, name = args.typ, args.name
        id_ = args.resource_id or (_ID_PREFIXES.get(typ, "id-") + _short_hash(typ, name, urn))
        if typ == "aws:kms/key:Key":
            # a KMS key id looks like a UUID (8-4-4-4-12 hex, version 4)
            parts = (
                _short_hash(name)[:8],
                _short_hash(name, "k")[:4],
                "4" + _short_hash(name, "x")[:3],
                "8" + _short_hash(name, "y")[:3],
                _short_hash(name, "z")[:12],
            )
            id_ = "-".join(parts)
        outputs = self._outputs(typ, name, id_, _copy_tree(args.inputs), urn)
        record = RecordedResource(
            type=typ,
            name=name,
            inputs=inputs,
            outputs=_plain(_unwrap_secrets(outputs)[0]),
            urn=urn,
            id=id_,
            custom=bool(args.custom),
            remote=remote,
            provider=args.provider or "",
            parent=parent,
            dependencies=list(dependencies),
            secret_inputs=secret_paths,
            ignore_changes=list(ignore_changes or []),
            custom_timeouts=dict(custom_timeouts or {}),
            aliases=list(aliases or []),
        )
        with self.lock:
            self.resources.append(record)
        return id_, outputs

    def _outputs(self, typ: str, name: str, id_: str, state: dict[str, Any], urn: str) -> dict[str, Any]:
        state.setdefault("id", id_)
        if typ == "pulumi:index:Stash":
            # The engine's builtin provider (pulumi/pulumi pkg/resource/deploy/builtins.go, since v3.208.0):
            # Create saves the input as `output`; Update takes the new input but keeps the old `output`.
            before = self.previous.get(urn)
            state["output"] = before.outputs["output"] if before is not None else state.get("input")
            return state
        if typ.startswith("aws:"):
            self._aws_outputs(typ, name, id_, state)
        elif typ.startswith("kubernetes:"):
            self._k8s_outputs(typ, name, state)
        elif typ == "eks:index:Cluster":
            state.update(self._eks_component_outputs(name, state, urn))
        elif typ.startswith("random:"):
            state.setdefault("result", "mock-" + _short_hash(typ, name, length=24))
        elif typ == "pulumi-python:dynamic/tritonllm:ServingImage":
            # What the provider returns once the image is in ECR (components/providers/image_build.py).
            if state.get("repository_url") and state.get("tag"):
                digest = "sha256:" + hashlib.sha256(str(state["tag"]).encode()).hexdigest()
                state.update(digest=digest, image_uri=f"{state['repository_url']}:{state['tag']}@{digest}", built=True)
        elif typ == "pulumi-python:dynamic/tritonllm:ImageCacheSnapshot":
            # What the provider returns once the snapshot is complete (components/providers/image_cache.py):
            # an id derived from the key, so a changed image reads as a changed snapshot in the node class.
            if state.get("key"):
                state.update(
                    snapshot_id="snap-" + hashlib.sha256(str(state["key"]).encode()).hexdigest()[:17], built=True
                )
        elif typ == "tls:index/privateKey:PrivateKey":
            # Shaped like OpenSSH keys (never real ones); pulumi_tls marks the private half secret itself.
            body = _short_hash(typ, name, length=40)
            state.setdefault(
                "privateKeyOpenssh",
                f"-----BEGIN OPENSSH PRIVATE KEY-----\nmock{body}\n-----END OPENSSH PRIVATE KEY-----\n",
            )
            state.setdefault("publicKeyOpenssh", f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5mock{body[:20]} \n")
            state.setdefault("privateKeyPem", f"-----BEGIN PRIVATE KEY-----\nmock{body}\n-----END PRIVATE KEY-----\n")
        elif typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            body = _short_hash(typ, name, length=40)
            state.setdefault("certPem", f"-----BEGIN CERTIFICATE-----\nmock{body}\n-----END CERTIFICATE-----\n")
        elif typ == "tls:index/certRequest:CertRequest":
            body = _short_hash(typ, name, length=40)
            state.setdefault(
                "certRequestPem",
                f"-----BEGIN CERTIFICATE REQUEST-----\nmock{body}\n-----END CERTIFICATE REQUEST-----\n",
            )
        return state

    def _aws_outputs(self, typ: str, name: str, id_: str, state: dict[str, Any]) -> None:
        # Auto-naming as Pulumi does for types with a `name`: logical name plus a random suffix.
        if "name" not in state and "namePrefix" not in state and _has_name_property(typ):
            state["name"] = f"{name}-{_short_hash(typ, name)[:7]}"
        elif "namePrefix" in state and "name" not in state:
            state["name"] = f"{state['namePrefix']}{_short_hash(typ, name)[:26]}"
        if typ in _NAME_KEYS and _NAME_KEYS[typ] not in state:
            state[_NAME_KEYS[typ]] = f"{name}-{_short_hash(typ, name)[:7]}"
        shape = _ARN_SHAPES.get(typ)
        if shape and "arn" not in state:
            service, path, regional = shape
            path = path.format(name=state.get("name", name), id=id_, cluster=state.get("clusterName", "cluster"))
            region = self.region if regional else ""
            # S3 bucket ARNs carry neither Region nor account (arn:aws:s3:::bucket, S3 user guide s3-arn-format).
            account = "" if service == "s3" else ACCOUNT_ID
            state["arn"] = f"arn:{PARTITION}:{service}:{region}:{account}:{path}"
        if typ == "aws:acm/certificate:Certificate":
            domain = state.get("domainName", "example.com")
            state.setdefault(
                "domainValidationOptions",
                [
                    {
                        "domainName": domain,
                        "resourceRecordName": f"_0123abcd.{domain}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": "_4567efab.mock.acm-validations.aws.",
                    }
                ],
            )
        elif typ == "aws:route53/zone:Zone":
            state.setdefault("zoneId", "Z" + _short_hash(typ, name, length=20).upper())
        elif typ == "aws:route53/record:Record":
            state.setdefault("fqdn", str(state.get("name", "")).rstrip("."))
        if typ == "aws:sqs/queue:Queue":
            state.setdefault("url", f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}")
        elif typ == "aws:iam/role:Role":
            state.setdefault("uniqueId", "AROA" + _short_hash(name).upper())
        elif typ == "aws:ecr/repository:Repository":
            state.setdefault("repositoryUrl", f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{state['name']}")
        elif typ == "aws:kms/key:Key":
            state.setdefault("keyId", id_)
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.setdefault("latestVersion", 1)
            state.setdefault("defaultVersion", 1)
        elif typ == "aws:efs/fileSystem:FileSystem":
            state.setdefault("dnsName", f"{id_}.efs.{self.region}.amazonaws.com")
        elif typ == "aws:efs/mountTarget:MountTarget":
            state.setdefault("ipAddress", "10.0.0.10")
            state.setdefault("networkInterfaceId", "eni-" + _short_hash(name))
        elif typ == "aws:ec2/eip:Eip":
            state.setdefault("publicIp", "203.0.113.10")
            state.setdefault("allocationId", id_)
        elif typ == "aws:eks/cluster:Cluster":
            state.update({k: v for k, v in self._eks_cluster_state(state.get("name", name)).items() if k not in state})
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state.setdefault(
                "arn",
                f"arn:{PARTITION}:iam::{ACCOUNT_ID}:oidc-provider/{state.get('url', '').removeprefix('https://')}",
            )
        elif typ == "aws:s3/bucketV2:BucketV2" or typ == "aws:s3/bucket:Bucket":
            if not state.get("bucket"):  # auto-named like Pulumi: logical name + suffix (or the prefix)
                prefix = state.get("bucketPrefix")
                state["bucket"] = (
                    (prefix + _short_hash(typ, name)[:26]) if prefix else f"{name}-{_short_hash(typ, name)[:7]}"
                )
            state.setdefault("bucketRegionalDomainName", f"{state['bucket']}.s3.{self.region}.amazonaws.com")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            state.setdefault("dnsName", f"{name}-{_short_hash(name)[:8]}.elb.{self.region}.amazonaws.com")

    @staticmethod
    def _k8s_outputs(typ: str, name: str, state: dict[str, Any]) -> None:
        if typ == "kubernetes:helm.sh/v3:Release":
            release_name = state.get("name") or f"{name}-{_short_hash(typ, name)[:8]}"
            state["name"] = release_name
            state["status"] = {
                "name": release_name,
                "namespace": state.get("namespace", "default"),
                "status": "deployed",
                "revision": 1,
                "chart": state.get("chart"),
                "version": state.get("version"),
                "appVersion": state.get("version"),
            }
            return
        if typ.startswith("kubernetes:") and "kind" in state:
            metadata = state.setdefault("metadata", {})
            if isinstance(metadata, dict) and not metadata.get("name"):
                metadata["name"] = f"{name}-{_short_hash(typ, name)[:8]}"
            if typ.endswith(":Service"):
                state.setdefault(
                    "status",
                    {
                        "loadBalancer": {
                            "ingress": [
                                {"hostname": f"k8s-{name[:20]}-{_short_hash(name)[:10]}.elb.us-west-2.amazonaws.com"}
                            ]
                        }
                    },
                )

    def _eks_cluster_state(self, cluster_name: str) -> dict[str, Any]:
        oidc_id = _short_hash(cluster_name, length=32).upper()
        issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc_id}"
        return {
            "id": cluster_name,
            "name": cluster_name,
            "arn": f"arn:{PARTITION}:eks:{self.region}:{ACCOUNT_ID}:cluster/{cluster_name}",
            "endpoint": f"https://{oidc_id}.gr7.{self.region}.eks.amazonaws.com",
            "version": None,
            "status": "ACTIVE",
            "certificateAuthority": {"data": "TU9DSy1DQQ=="},
            "certificateAuthorities": [{"data": "TU9DSy1DQQ=="}],
            "identities": [{"oidcs": [{"issuer": issuer}]}],
            "vpcConfig": {
                "clusterSecurityGroupId": "sg-" + _short_hash(cluster_name, "primary-sg"),
                "vpcId": "vpc-mock",
            },
            "platformVersion": "eks.1",
        }

    def _eks_component_outputs(self, name: str, inputs: dict[str, Any], urn: str) -> dict[str, Any]:
        """pulumi-eks's Cluster component: what its outputs look like after `pulumi up`."""
        cluster_name = inputs.get("name") or f"{name}-eksCluster-{_short_hash(name)[:7]}"
        cluster = self._eks_cluster_state(cluster_name)
        cluster["version"] = inputs.get("version")
        cluster["vpcConfig"]["vpcId"] = inputs.get("vpcId", "vpc-mock")
        cluster["vpcConfig"]["subnetIds"] = list(inputs.get("privateSubnetIds") or []) + list(
            inputs.get("publicSubnetIds") or []
        )
        cluster["vpcConfig"]["endpointPublicAccess"] = inputs.get("endpointPublicAccess")
        cluster["vpcConfig"]["endpointPrivateAccess"] = inputs.get("endpointPrivateAccess")
        cluster["vpcConfig"]["publicAccessCidrs"] = inputs.get("publicAccessCidrs")
        cluster["accessConfig"] = {"authenticationMode": inputs.get("authenticationMode")}
        if inputs.get("encryptionConfigKeyArn"):
            cluster["encryptionConfig"] = {
                "provider": {"keyArn": inputs["encryptionConfigKeyArn"]},
                "resources": ["secrets"],
            }
        primary_sg = cluster["vpcConfig"]["clusterSecurityGroupId"]
        skip_sgs = bool(inputs.get("skipDefaultSecurityGroups"))
        cluster_sg = primary_sg if skip_sgs else "sg-" + _short_hash(cluster_name, "cluster-sg")
        node_sg = primary_sg if skip_sgs else "sg-" + _short_hash(cluster_name, "node-sg")
        issuer = cluster["identities"][0]["oidcs"][0]["issuer"]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubernetes",
                    "cluster": {"server": cluster["endpoint"], "certificate-authority-data": "TU9DSy1DQQ=="},
                }
            ],
            "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
            "current-context": "aws",
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--output", "json"],
                        }
                    },
                }
            ],
        }
        eks_ref = self._register_child(urn, "aws:eks/cluster:Cluster", f"{name}-eksCluster", cluster_name, cluster)
        create_oidc = bool(inputs.get("createOidcProvider"))
        oidc_arn = (
            f"arn:{PARTITION}:iam::{ACCOUNT_ID}:oidc-provider/{issuer.removeprefix('https://')}" if create_oidc else ""
        )
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "eksCluster": eks_ref,
            "clusterSecurityGroupId": cluster_sg,
            "nodeSecurityGroupId": node_sg,
            "oidcProviderArn": oidc_arn,
            "oidcProviderUrl": issuer,
            "oidcIssuer": issuer.removeprefix("https://"),
            "clusterIngressRuleId": "" if skip_sgs else "sgr-" + _short_hash(cluster_name, "ingress"),
            "defaultNodeGroupAsgName": "",
            "fargateProfileId": "",
            "fargateProfileStatus": "",
            "autoModeNodeRoleName": "",
            "core": {
                "cluster": eks_ref,
                "endpoint": cluster["endpoint"],
                "vpcId": inputs.get("vpcId"),
                "subnetIds": cluster["vpcConfig"]["subnetIds"],
                "privateSubnetIds": inputs.get("privateSubnetIds"),
                "publicSubnetIds": inputs.get("publicSubnetIds"),
                "clusterSecurityGroupId": cluster_sg,
                "accessEntries": [],
            },
        }

    def _register_child(self, parent_urn: str, typ: str, name: str, id_: str, state: dict[str, Any]) -> dict:
        """Register a child resource a component created (so references to it resolve) and return a reference."""
        monitor = self.monitor
        assert monitor is not None
        urn = monitor.make_urn(parent_urn, typ, name)
        monitor.resources[urn] = runtime_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        with self.lock:
            self.resources.append(
                RecordedResource(
                    type=typ,
                    name=name,
                    inputs={},
                    outputs=_plain(state),
                    urn=urn,
                    id=id_,
                    custom=True,
                    remote=False,
                    provider="",
                    parent=parent_urn,
                    dependencies=[],
                    secret_inputs=set(),
                )
            )
        return {_SIG_KEY: _RESOURCE_REF_SIG, "urn": urn, "id": id_, "packageVersion": ""}


class _RecordingMonitor(runtime_mocks.MockMonitor):
    """MockMonitor that also hands the mocks each resource's URN, parent, dependencies and remoteness."""

    mocks: _RecordingMocks

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)
        args = runtime_mocks.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        id_, state = self.mocks.new_resource_with(
            args,
            urn=urn,
            parent=request.parent,
            dependencies=list(request.dependencies),
            remote=bool(request.remote),
            wire_inputs=json_format.MessageToDict(request.object),
            ignore_changes=list(request.ignoreChanges),
            custom_timeouts={
                k: v
                for k, v in (
                    ("create", request.customTimeouts.create),
                    ("update", request.customTimeouts.update),
                    ("delete", request.customTimeouts.delete),
                )
                if v
            },
            aliases=[json_format.MessageToDict(alias) for alias in request.aliases],
        )
        obj_proto = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = runtime_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj_proto)


# --------------------------------------------------------------------------- value helpers


def _unwrap_secrets(value: Any, path: str = "") -> tuple[Any, set[str]]:
    """Strip Pulumi's secret wrappers from deserialized properties, returning the secret paths."""
    if rpc.is_rpc_secret(value):
        inner, paths = _unwrap_secrets(rpc.unwrap_rpc_secret(value), path)
        return inner, paths | {path or "(root)"}
    if isinstance(value, dict):
        out, paths = {}, set()
        for k, v in value.items():
            out[k], p = _unwrap_secrets(v, f"{path}.{k}" if path else str(k))
            paths |= p
        return out, paths
    if isinstance(value, list):
        out_list, paths = [], set()
        for i, v in enumerate(value):
            item, p = _unwrap_secrets(v, f"{path}.{i}" if path else str(i))
            out_list.append(item)
            paths |= p
        return out_list, paths
    return value, set()


def plain_occurrences(value: Any, needle: str, path: str = "") -> list[str]:
    """Dotted paths where `needle` appears in a (possibly nested) value's strings.

    Check each path with `RecordedResource.is_secret` to find secrets held in plain text.
    """
    if isinstance(value, str):
        return [path] if needle in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += plain_occurrences(v, needle, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += plain_occurrences(v, needle, f"{path}.{i}" if path else str(i))
    return found


def _copy_tree(value: Any) -> Any:
    """Copy dicts and lists; leave leaves (including deserialized Resource references) shared."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """Deep copy into JSON-like values: resource references become their URN strings and
    integral floats (protobuf has only doubles) become ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _RESOURCE_REF_SIG:
            return value.get("urn")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return f"<resource {type(value).__name__}>"
    return value


def _policy_from_args(args: dict[str, Any]) -> dict[str, Any]:
    statements = []
    for s in args.get("statements") or []:
        st: dict[str, Any] = {"Effect": s.get("effect", "Allow")}
        if s.get("sid"):
            st["Sid"] = s["sid"]
        if s.get("actions"):
            st["Action"] = s["actions"]
        if s.get("resources"):
            st["Resource"] = s["resources"]
        for p in s.get("principals") or []:
            st.setdefault("Principal", {})[p["type"]] = p["identifiers"]
        for c in s.get("conditions") or []:
            st.setdefault("Condition", {}).setdefault(c["test"], {})[c["variable"]] = c["values"]
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


# --------------------------------------------------------------------------- runtime reset + run

_RUN_LOCK = threading.Lock()
_LOG = logging.getLogger("tests.unit.harness")


def _quiet_unretrieved(loop, context) -> None:
    """When a program fails, every resource waiting on the failed Output holds the same
    exception in a future nobody awaits; asyncio would print each one at GC time."""
    if "never retrieved" in context.get("message", ""):
        _LOG.debug("unretrieved future: %s", context.get("exception"))
        return
    loop.default_exception_handler(context)


def _reset_runtime() -> None:
    """Forget everything a previous program run left in the Pulumi runtime."""
    # Other tests in the session (asyncio.run, pytest's own loops) may leave the main
    # thread without a usable event loop; Pulumi's runtime needs one.
    try:
        loop = asyncio.get_event_loop()
        if loop.is_closed():
            raise RuntimeError("closed")
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    runtime_settings.ROOT.set(None)
    settings = runtime_settings.SETTINGS
    settings.outputs = set()
    settings.package_refs = {}
    settings.base_providers_by_ref = {}
    settings.callbacks = None
    runtime_config.set_all_config({}, [])


def run_program(
    stack: str = "dev",
    overrides: dict[str, Any] | None = None,
    secrets: dict[str, str | None] | None = None,
    *,
    check: bool = True,
    preview: bool = False,
    program: Path | str = PROGRAM,
    config: dict[str, Any] | None = None,
    available_zones: int = 6,
    caller_arn: str = DEFAULT_CALLER_ARN,
    previous: ProgramRun | None = None,
    capacity: MockCapacity | None = None,
) -> ProgramRun:
    """Run the program for `stack` under mocks.

    overrides: `{"path": value}`; a path is a config key (namespace optional) optionally
      followed by `.field`/`[index]` into its structured value; value None deletes it.
    secrets: secret config keys (namespace optional) -> value, merged over DEFAULT_SECRETS;
      None unsets one. They are passed as Pulumi secrets, except a key that `overrides` sets:
      that one is plain config, as `pulumi config set` without --secret stores it.
    config: use this whole config map instead of reading Pulumi.<stack>.yaml.
    available_zones: how many AZs aws.get_availability_zones reports (simulate a small region).
    caller_arn: the identity running `pulumi up` (aws.get_caller_identity's arn).
    previous: an earlier run of the same stack whose state this run updates (as far as the mocks keep
      state: pulumi.Stash keeps its first `output`, as the engine's builtin provider does).
    capacity: what the capacity check's offerings and quota invokes answer (MockCapacity).
    check: raise ProgramFailed if the program raised (else return the run with `.error`).
    """
    raw = copy.deepcopy(config) if config is not None else load_stack_config(stack)
    for path, value in (overrides or {}).items():
        set_path(raw, path, copy.deepcopy(value))
    secret_values = {**DEFAULT_SECRETS, **(secrets or {})}
    # A secret key given in `overrides` is stored in plain text (`pulumi config set` without --secret).
    plain = {_qualify(path.split(".")[0].split("[")[0]) for path in overrides or {}}
    secret_keys = []
    for key, value in secret_values.items():
        key = _qualify(key)
        if key in plain:
            continue
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
            secret_keys.append(key)
    region = str(raw.get(f"{NAMESPACE}:region") or raw.get("aws:region") or "us-west-2")

    with _RUN_LOCK:
        saved_env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PULUMI_CONFIG")}
        saved_cwd = os.getcwd()
        mocks = _RecordingMocks(region, available_zones, caller_arn, previous, capacity)
        monitor = _RecordingMonitor(mocks)
        mocks.monitor = monitor
        error: BaseException | None = None
        outputs: dict[str, Any] = {}
        secret_outputs: set[str] = set()
        started = time.perf_counter()
        # Everything alive before this run (the session's cached runs, imported modules) is left out of
        # the collections below: the collection after a failed run then walks only this run's objects
        # (a full one walked the whole heap, ~0.3 s for each of the hundreds of bad-config runs).
        gc.freeze()
        try:
            _reset_runtime()
            runtime_config.set_all_config(_config_strings(raw), secret_keys)
            pulumi.runtime.set_mocks(
                mocks, project=project_name(), stack=stack, preview=preview, monitor=monitor, logger=_LOG
            )
            _ensure_event_loop().set_exception_handler(_quiet_unretrieved)
            os.chdir(REPO_ROOT)

            def run_program_file() -> None:
                runpy.run_path(str(program), run_name="__main__")

            try:
                _sync_await(run_pulumi_func(run_program_file))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through ProgramRun
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                error = exc
            root = runtime_settings.get_root_resource()
            if error is None and root is not None:
                for key, value in dict(getattr(root, "outputs", {})).items():
                    out = pulumi.Output.from_input(value)
                    outputs[key] = _plain(_sync_await(out.future()))
                    if _sync_await(out.is_secret()):
                        secret_outputs.add(key)
        finally:
            seconds = time.perf_counter() - started
            if error is not None:
                gc.collect()  # release the failed run's futures while the quiet handler is installed
            gc.unfreeze()
            os.chdir(saved_cwd)
            os.environ.update(saved_env)
            _reset_runtime()

    run = ProgramRun(
        stack=stack,
        config=raw,
        resources=list(mocks.resources),
        calls=list(mocks.calls),
        outputs=outputs,
        secret_outputs=secret_outputs,
        error=error,
        seconds=seconds,
        unanswered_calls=list(mocks.unanswered),
    )
    if check and error is not None:
        raise ProgramFailed(run) from error
    return run


def iter_stack_runs(stacks: Iterable[str] | None = None) -> Iterable[ProgramRun]:
    for stack in stacks or stack_files():
        yield run_program(stack)
