"""More bad stack configs (same contract as test_config_errors.py), and a check that every
validation in components/config/ is reached by at least one bad-config case.

The coverage check replaces a test that only counted the cases it was given: here a new
`raise ValueError(...)` or `problems.append(...)` in a config section without a case that reaches it
fails, naming the line.
"""

from __future__ import annotations

import ast
import copy
import sys
from pathlib import Path

import pytest
from pulumi.runtime import config as runtime_config

from components import config as config_module
from components.config import ConfigError, parse_stack_config
from tests.multinode import test_config as multinode_config
from tests.unit import test_config_errors
from tests.unit.harness import DEFAULT_SECRETS, _config_strings, load_stack_config, set_path
from tests.unit.test_config_errors import BadConfig

MORE_CASES = [
    BadConfig(
        "input-len-not-below-seq-len",
        "dev",
        {"models[0].engine.maxInputLen": 4096, "models[0].engine.maxSeqLen": 4096},
        "models[0].engine.maxInputLen",
        "must be below maxSeqLen",
    ),
    BadConfig("duplicate-model-names", "vllm", {"models[1].name": "llama-2-7b-chat"}, "models", "must be unique"),
    BadConfig(
        "gpus-below-tp-x-pp",
        "dev",
        {"models[0].tensorParallel": 2, "models[0].gpus": 1},
        "models[0].gpus",
        "raise gpus or drop the key",
    ),
    BadConfig(
        "unknown-instance-type",
        "dev",
        {"nodePools[0].instanceTypes": ["g6e.3xlarge"]},
        "nodePools[0].instanceTypes",
        "use types from components/catalog/gpus.py",
    ),
    BadConfig(
        "vpc-cidr-prefix-too-long", "dev", {"network.vpcCidr": "10.0.0.0/21"}, "network.vpcCidr", "between /16 and /20"
    ),
    BadConfig(
        "pod-cidr-prefix-too-short",
        "dev",
        {"network.podCidr": "100.64.0.0/15"},
        "network.podCidr",
        "between /16 and /20",
    ),
    BadConfig("structured-key-not-json", "dev", {"models": "[{name: oops"}, "models", "is not valid JSON"),
    # TLS with the program's own CA (gateway.tls.privateDomain, certificateValidityDays)
    BadConfig(
        "private-domain-with-a-certificate",
        "dev",
        {
            "gateway.tls": {
                "privateDomain": "llm.corp.internal",
                "certificateArn": "arn:aws:acm:us-west-2:123456789012:certificate/0123abcd-0123-4567-89ab-0123456789ab",
            }
        },
        "gateway.tls.privateDomain",
        "drop privateDomain",
    ),
    BadConfig(
        "private-domain-not-a-name",
        "dev",
        {"gateway.tls": {"privateDomain": "LLM_endpoint"}},
        "gateway.tls.privateDomain",
        "should match pattern",
    ),
    BadConfig(
        "plaintext-with-a-private-domain",
        "dev",
        {"gateway.tls": {"plaintextInsideVpc": True, "privateDomain": "llm.corp.internal"}},
        "gateway.tls.plaintextInsideVpc",
        "drop plaintextInsideVpc",
    ),
    BadConfig(
        "validity-with-a-certificate-of-yours",
        "dev",
        {
            "gateway.tls": {
                "domain": "llm.example.com",
                "hostedZoneId": "Z0123456789ABCDEFGHIJ",
                "certificateValidityDays": 90,
            }
        },
        "gateway.tls.certificateValidityDays",
        "drop it",
    ),
    BadConfig(
        "validity-shorter-than-the-renewal-window",
        "dev",
        {"gateway.tls": {"certificateValidityDays": 30}},
        "gateway.tls.certificateValidityDays",
        "greater than or equal to 60",
    ),
    # checks added by other issues' work, so that each has a case (see the last test)
    BadConfig(
        "bottlerocket-without-ami-version",
        "dev",
        {"nodePools[0].amiFamily": "Bottlerocket"},
        "nodePools[0].amiVersion",
        "required for amiFamily Bottlerocket",
    ),
    BadConfig(
        "ami-version-not-a-release",
        "dev",
        {"nodePools[0].amiVersion": "2026-07-14"},
        "nodePools[0].amiVersion",
        "write it like v20260714",
    ),
    BadConfig(
        "cpu-pool-family-not-a-family",
        "dev",
        {"cpuNodePool.instanceFamilies": ["m7i.large"]},
        "cpuNodePool.instanceFamilies",
        "write them like m7i",
    ),
    BadConfig(
        "gpu-pool-named-like-the-cpu-pool",
        "dev",
        {"nodePools[0].name": "cpu", "models[0].nodePool": "cpu"},
        "nodePools[0].name",
        "rename the GPU pool",
    ),
    BadConfig(
        "plaintext-with-a-certificate",
        "dev",
        {"gateway.tls": {"plaintextInsideVpc": True, "domain": "llm.example.com"}},
        "gateway.tls.plaintextInsideVpc",
        "drop plaintextInsideVpc",
    ),
    BadConfig(
        "hosted-zone-without-domain",
        "dev",
        {"gateway.tls": {"hostedZoneId": "Z0123456789ABCDEFGHIJ"}},
        "gateway.tls.domain",
        "set domain",
    ),
    BadConfig(
        "certificate-not-acm",
        "dev",
        {"gateway.tls": {"certificateArn": "arn:aws:iam::123456789012:server-certificate/llm"}},
        "gateway.tls.certificateArn",
        "use arn:aws:acm:",
    ),
    BadConfig("api-keys-not-json", "dev", {}, "apiKeys", "JSON list", secrets={"apiKeys": "ci:abc"}),
    BadConfig("api-keys-not-strings", "dev", {}, "apiKeys", "JSON list", secrets={"apiKeys": '{"ci": "not-a-list"}'}),
    BadConfig(
        "api-key-name-twice",
        "dev",
        {},
        "apiKeys",
        "give every key its own name",
        secrets={"apiKeys": '["ci:' + "a" * 40 + '", "ci:' + "b" * 40 + '"]'},
    ),
    BadConfig(
        "retention-size-fills-the-volume",
        "vllm",
        {"monitoring.retentionSize": "100GB"},
        "monitoring.retentionSize",
        "keep it about 20% below",
    ),
    BadConfig(
        "vllm-metric-without-custom-metrics",
        "vllm",
        {"models[0].vllm.reportCustomMetrics": False},
        "models[0].vllm.reportCustomMetrics",
        "remove the key or pick autoscaling.metric",
    ),
    BadConfig(
        "model-named-like-a-composing-model",
        "dev",
        {"models[0].name": "preprocessing"},
        "models[0].name",
        "choose another name",
    ),
    # checks that moved into the config package with their sections (issue 16) and had no case yet
    BadConfig(
        "llmapi-kv-cache-config-not-a-map",
        "llmapi",
        {"models[0].trtllm.llmapi.extraLlmArgs": {"kv_cache_config": 5}},
        "models[0].trtllm.llmapi.extraLlmArgs",
        "must be a map of KvCacheConfig fields",
    ),
    BadConfig(
        "llmapi-kv-cache-key-owned-by-the-stack",
        "llmapi",
        {"models[0].trtllm.llmapi.extraLlmArgs": {"kv_cache_config": {"free_gpu_memory_fraction": 0.5}}},
        "models[0].trtllm.llmapi.extraLlmArgs",
        "is set by trtllm.llmapi",
    ),
    BadConfig(
        "trtllm-options-on-a-vllm-model",
        "llmapi",
        {"models[1].trtllm": {"runtime": "engine"}},
        "models[1].trtllm",
        "only used with backend trtllm",
    ),
    BadConfig(
        "openai-options-without-openai",
        "dev",
        {"models[0].openai": {"tokenizer": "meta-llama/Llama-3.2-1B"}},
        "models[0].openai",
        "only used with openai.enabled: true",
    ),
    BadConfig(
        "multinode-min-groups-exceed-max-gpus",
        "multinode",
        {"nodePools[0].maxGpus": 8, "models[0].minReplicas": 2, "models[0].maxReplicas": 2},
        "models[0].minReplicas",
        "raise maxGpus",
    ),
]

# Raises in components/config/ that no stack config can reach: defensive, behind a validation that fails first.
UNREACHABLE_BY_DESIGN = {
    "source_cidrs": "GatewayConfig refuses internet-facing without allowedCidrs before anything calls it",
}


@pytest.mark.parametrize("case", MORE_CASES, ids=[c.id for c in MORE_CASES])
def test_bad_config_fails_before_any_resource(case: BadConfig):
    test_config_errors.test_bad_config_fails_before_any_resource(case)


@pytest.mark.parametrize("vpc_cidr, pod_cidr", [("10.0.0.0/16", "100.64.0.0/16"), ("10.0.0.0/20", "100.64.0.0/20")])
def test_cidr_prefixes_16_to_20_are_accepted(vpc_cidr, pod_cidr):
    raw = _raw_config(BadConfig("ok", "dev", {"network.vpcCidr": vpc_cidr, "network.podCidr": pod_cidr}, "", ""))
    cfg = parse_stack_config(raw, {"hfToken"})
    assert (cfg.network.vpc_cidr, cfg.network.pod_cidr) == (vpc_cidr, pod_cidr)


# --------------------------------------------------------------------------- every check has a case

# Every section of the config package (the reference generator checks nothing).
CONFIG_SOURCES = sorted(p for p in Path(config_module.__file__).parent.glob("*.py") if p.name != "reference.py")


def _check_lines() -> dict[tuple[str, int], str]:
    """(file, line) -> source of each place the config package reports a bad value."""
    found: dict[tuple[str, int], str] = {}
    for source in CONFIG_SOURCES:
        found.update({(source.name, line): text for line, text in _check_lines_in(source).items()})
    return found


def _check_lines_in(source: Path) -> dict[int, str]:
    """Line -> source of each place `source` reports a bad value (raise, or problems.append)."""
    tree = ast.parse(source.read_text())
    lines = source.read_text().splitlines()
    found = {}
    exempt = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in UNREACHABLE_BY_DESIGN:
            exempt |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in exempt:
            continue
        is_raise = isinstance(node, ast.Raise) and node.exc is not None
        is_append = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "append"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "problems"
        )
        if is_raise or is_append:
            found[node.lineno] = lines[node.lineno - 1].strip()
    return found


def _stack_config(case: BadConfig) -> tuple[dict, list[str]]:
    """The config map a case gives the program (as tests/unit/harness.py builds it) and its secret keys."""
    raw = copy.deepcopy(load_stack_config(case.stack))
    for path, value in case.overrides.items():
        set_path(raw, path, copy.deepcopy(value))
    secret_keys = []
    for key, value in {**DEFAULT_SECRETS, **case.secrets}.items():
        if value is None:
            raw.pop(f"tritonllm:{key}", None)
        else:
            raw[f"tritonllm:{key}"] = value
            secret_keys.append(f"tritonllm:{key}")
    return raw, secret_keys


def _raw_config(case: BadConfig) -> dict:
    raw, _ = _stack_config(case)
    return {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("tritonllm:")}


def _lines_run_by(case: BadConfig) -> set[tuple[str, int]]:
    ran: set[tuple[str, int]] = set()
    targets = {str(source): source.name for source in CONFIG_SOURCES}

    def tracer(frame, event, arg):
        name = targets.get(frame.f_code.co_filename)
        if name is None:
            return None

        def local(frame, event, arg):
            if event == "line":
                ran.add((name, frame.f_lineno))
            return local

        return local

    raw, secret_keys = _stack_config(case)
    previous = sys.gettrace()
    # the program's own entry point (components.config.read_pulumi_config) on the case's config
    runtime_config.set_all_config(_config_strings(raw), secret_keys)
    sys.settrace(tracer)
    try:
        outcome = _read_config()
    finally:
        sys.settrace(previous)
        runtime_config.set_all_config({}, [])
    # cases whose check lives outside config.py (e.g. resolving hfRevision) pass here; the
    # program-level test checks every case's error and message
    assert outcome is None or isinstance(outcome, ConfigError), outcome
    return ran


def _read_config() -> ConfigError | None:
    try:
        config_module.read_pulumi_config()
    except ConfigError as exc:
        return exc
    return None


def test_every_config_check_is_reached_by_a_bad_config_case():
    from tests.unit import test_openai_llmapi

    cases = test_config_errors.CASES + MORE_CASES + multinode_config.CASES + test_openai_llmapi.CASES
    ran: set[tuple[str, int]] = set()
    for case in cases:
        ran |= _lines_run_by(case)
    checks = _check_lines()
    assert len(checks) >= 20, checks  # the AST walk finds the config checks at all
    assert {name for name, _ in checks} >= {
        "models.py",
        "stack.py",
        "gateway.py",
        "llmapi.py",
        "openai.py",
        "multinode_checks.py",
        "node_pools.py",
    }
    missing = {where: text for where, text in checks.items() if where not in ran}
    assert not missing, (
        "checks in components/config/ that no bad-config case reaches; add a BadConfig case "
        "(tests/unit/test_config_errors.py, test_config_checks.py or tests/multinode/test_config.py) for each:\n"
        + "\n".join(f"  components/config/{name}:{line}: {text}" for (name, line), text in sorted(missing.items()))
    )
