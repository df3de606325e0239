"""Bad stack configs fail before any resource is registered, naming the key and the fix.

Each case runs the real program under mocks with one mistake added to a committed
stack file, and checks that (1) the program raised ConfigError, (2) not a single
resource (not even the AWS provider) was registered, and (3) the message names
the offending key and says how to fix it. tests/unit/test_config_checks.py has more cases and
checks that every validation in components/config/ is reached by one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from components.config import ConfigError
from tests.unit.harness import run_program


@dataclass(frozen=True)
class BadConfig:
    id: str
    stack: str
    overrides: dict[str, Any]
    key: str  # the key the message must name (as in the stack file, without namespace)
    fix: str  # a fragment of the fix the message must suggest
    secrets: dict[str, Any] = field(default_factory=dict)


CASES = [
    BadConfig("wrong-type", "dev", {"network.azCount": "three"}, "network.azCount", "valid integer"),
    BadConfig("unknown-top-level-key", "dev", {"clustr": {"version": "1.34"}}, "clustr", "valid keys are"),
    BadConfig(
        "unknown-nested-key",
        "vllm",
        {"nodePools[0].instanceFamily": ["g5"]},
        "nodePools[0].instanceFamily",
        "check the spelling",
    ),
    BadConfig(
        "tp-x-pp-exceeds-node",
        "dev",
        {"models[0].tensorParallel": 4, "models[0].pipelineParallel": 4},
        "models[0]",
        "lower the parallelism or add larger instance types",
    ),
    BadConfig(
        "model-on-missing-pool",
        "vllm",
        {"models[1].nodePool": "p5"},
        "models[1].nodePool",
        "use one of ['g5'] or add it to nodePools",
    ),
    BadConfig("cidr-overlap", "dev", {"network.podCidr": "10.1.128.0/17"}, "network.podCidr", "choose disjoint blocks"),
    BadConfig(
        "gated-model-without-token",
        "vllm",
        {},
        "models[0].hfModelId",
        "pulumi config set --secret tritonllm:hfToken",
        secrets={"hfToken": None},
    ),
    BadConfig(
        "internet-facing-without-cidrs",
        "dev",
        {"gateway.scheme": "internet-facing"},
        "gateway.allowedCidrs",
        "list the client CIDRs",
    ),
    BadConfig(
        "min-above-max-replicas",
        "vllm",
        {"models[0].minReplicas": 5, "models[0].maxReplicas": 2},
        "models[0].minReplicas",
        "exceeds maxReplicas",
    ),
    BadConfig(
        "unknown-instance-family",
        "dev",
        {"nodePools[0].instanceFamilies": ["g7x"]},
        "nodePools[0].instanceFamilies",
        "known:",
    ),
    BadConfig(
        "fp8-on-a10g",
        "dev",
        {"nodePools[0].instanceFamilies": ["g5"], "models[0].engine.dtype": "fp8"},
        "models[0].engine.dtype",
        "use bfloat16",
    ),
    BadConfig(
        "kv-reuse-without-paged-cache",
        "dev",
        {"models[0].engine.pagedKvCache": False},
        "models[0].engine.enableKvCacheReuse",
        "set enableKvCacheReuse: false or pagedKvCache: true",
    ),
    BadConfig(
        "hf-revision-unresolvable",
        "dev",
        {"models[0].hfModelId": "missing/model"},
        "models[0].hfRevision",
        "check hfModelId and hfRevision",
    ),
    BadConfig("not-a-cidr", "dev", {"network.vpcCidr": "10.1.0.0/33"}, "network.vpcCidr", "write it like"),
    BadConfig("missing-region", "dev", {"region": None}, "region", "this key is required"),
    BadConfig(
        "admin-not-an-arn",
        "dev",
        {"cluster.adminPrincipalArns": ["alice"]},
        "cluster.adminPrincipalArns",
        "arn:aws:iam::123456789012:role/Name",
    ),
    BadConfig(
        "public-endpoint-without-cidrs",
        "dev",
        {"cluster.endpointPublicAccess": True},
        "cluster.endpointPublicAccessCidrs",
        "set endpointPublicAccess false",
    ),
    BadConfig(
        "public-endpoint-open-to-internet",
        "dev",
        {"cluster.endpointPublicAccess": True, "cluster.endpointPublicAccessCidrs": ["0.0.0.0/0"]},
        "cluster.endpointPublicAccessCidrs",
        "allowPublicEndpointFromAnywhere: true",
    ),
    BadConfig(
        "replicas-exceed-pool-gpus",
        "dev",
        {"models[0].maxReplicas": 20},
        "models[0].maxReplicas",
        "raise maxGpus or lower maxReplicas",
    ),
    BadConfig(
        "duplicate-pool-names",
        "vllm",
        {"nodePools[1]": {"name": "g5", "instanceFamilies": ["g6"]}},
        "nodePools",
        "must be unique",
    ),
    BadConfig(
        "bad-duration",
        "dev",
        {"nodePools[0].consolidateAfter": "5 minutes"},
        "nodePools[0].consolidateAfter",
        "should match pattern",
    ),
    BadConfig(
        "system-group-sizes",
        "dev",
        {"cluster.systemNodeGroup.minSize": 3},
        "cluster.systemNodeGroup.desiredSize",
        "minSize <= desiredSize <= maxSize",
    ),
    BadConfig(
        "trtllm-on-mixed-gpus",
        "dev",
        {"nodePools[0].instanceFamilies": ["g6e", "g5"]},
        "models[0].nodePool",
        "give it one GPU family",
    ),
    BadConfig(
        "metric-not-for-backend",
        "vllm",
        {"models[0].autoscaling.metric": "trtllm_waiting_requests"},
        "models[0].autoscaling.metric",
        "",
    ),
    BadConfig(
        "pool-without-types",
        "dev",
        {"nodePools[0].instanceFamilies": []},
        "nodePools[0].instanceFamilies",
        "set instanceFamilies",
    ),
    BadConfig("too-many-azs", "dev", {"network.azCount": 9}, "network.azCount", "less than or equal to 6"),
    BadConfig(
        "name-too-long-for-aws", "dev", {"name": "tritonllm-production-us-west"}, "name", "at most 24 characters"
    ),
    BadConfig(
        "engine-on-efs-without-efs",
        "dev",
        {"models[0].engineStorage": "efs", "efs.enabled": False},
        "models[0].engineStorage",
        "use engineStorage: local",
    ),
    BadConfig(
        "reserved-tag-key", "vllm", {"tags": {"team": "ml", "kubernetes.io/cluster/x": "owned"}}, "tags", "rename them"
    ),
    BadConfig(
        "internet-facing-without-tls",
        "dev",
        {
            "gateway.scheme": "internet-facing",
            "gateway.allowedCidrs": ["203.0.113.0/24"],
            "gateway.tls": {"plaintextInsideVpc": True},
        },
        "gateway.tls.plaintextInsideVpc",
        "must serve TLS",
    ),
    BadConfig(
        "internet-facing-with-the-generated-ca",
        "dev",
        {"gateway.scheme": "internet-facing", "gateway.allowedCidrs": ["203.0.113.0/24"]},
        "gateway.tls.certificateArn",
        "set gateway.tls.certificateArn or gateway.tls.domain + gateway.tls.hostedZoneId",
    ),
    BadConfig(
        "domain-without-certificate-or-zone",
        "dev",
        {"gateway.tls": {"domain": "llm.example.com"}},
        "gateway.tls.certificateArn",
        "gateway.tls.hostedZoneId to have one created",
    ),
    BadConfig(
        "open-to-the-world-without-the-key",
        "dev",
        {
            "gateway.tls": {
                "certificateArn": "arn:aws:acm:us-west-2:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
            },
            "gateway.allowedCidrs": ["0.0.0.0/0"],
        },
        "gateway.allowedCidrs",
        "gateway.dangerouslyAllowAnySource: true",
    ),
    BadConfig(
        "certificate-in-another-region",
        "dev",
        {
            "gateway.tls": {
                "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
            }
        },
        "gateway.tls.certificateArn",
        "request or import the certificate in us-west-2",
    ),
    BadConfig(
        "auth-on-without-api-keys",
        "dev",
        {},
        "apiKeys",
        "pulumi config set --secret tritonllm:apiKeys",
        secrets={"apiKeys": None},
    ),
    BadConfig(
        "api-keys-empty-list",
        "vllm",
        {},
        "apiKeys",
        "pulumi config set --secret tritonllm:apiKeys",
        secrets={"apiKeys": "[]"},
    ),
    BadConfig(
        "api-key-without-name",
        "vllm",
        {},
        "apiKeys",
        "name:secret",
        secrets={"apiKeys": '["just-a-long-secret-0123456789abcdef"]'},
    ),
    BadConfig("api-key-too-short", "vllm", {}, "apiKeys", "openssl rand -hex 24", secrets={"apiKeys": '["ci:short"]'}),
    BadConfig(
        "request-timeout-beyond-nlb-tls-idle",
        "dev",
        {
            "gateway.tls": {
                "certificateArn": "arn:aws:acm:us-west-2:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
            },
            "gateway.requestTimeoutSeconds": 600,
        },
        "gateway.requestTimeoutSeconds",
        "lower it to 340",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_fails_before_any_resource(case: BadConfig):
    run = run_program(case.stack, overrides=case.overrides, secrets=case.secrets, check=False)
    assert isinstance(run.error, ConfigError), f"expected ConfigError, got {run.error!r}"
    assert run.resources == [], f"registered before failing: {[r.type for r in run.resources]}"
    keys = [key for key, _ in run.error.problems]
    assert case.key in keys, f"{case.key!r} not named; problems: {run.error.problems}"
    message = dict(run.error.problems)[case.key]
    assert case.fix in message, f"fix {case.fix!r} not in {message!r}"
    # The rendered error shows the fully-qualified key, as `pulumi config set` spells it.
    assert f"tritonllm:{case.key}: " in str(run.error)
    # A bad API key is never echoed back.
    for value in (case.secrets or {}).values():
        for key in json.loads(value) if isinstance(value, str) and value.startswith("[") else []:
            assert key.split(":")[-1] not in str(run.error)


def test_every_committed_stack_is_valid(stack_run):
    assert stack_run.error is None and stack_run.resources
