"""The typed stack config: every key, its type, default and validation rule.

Stack files set keys in the `tritonllm:` namespace (e.g. `tritonllm:models`).
`parse_stack_config` turns those raw values into a `StackConfig` or raises
`ConfigError` naming every bad key and how to fix it, before any resource is
registered. Secrets (the Hugging Face token, the NGC API key, the API keys) are never
read here: the loader is only told whether they are set, and the program reads them as
Pulumi secret Outputs.

One module per section (network, cluster, node_pools, storage, monitoring, gateway,
models with openai/llmapi/multinode); each section's own validation lives with its model,
and `stack.py` composes them and runs the checks that span sections. This package imports
nothing from the layers above it (builders, resources, providers): see `.importlinter`.
"""

from components.config.base import (
    CPU_NODE_POOL_NAME,
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    StackIdentity,
)
from components.config.cluster import ClusterConfig, SystemNodeGroupConfig
from components.config.gateway import GatewayConfig, parse_api_keys
from components.config.llmapi import LlmApiOptions, TrtllmOptions
from components.config.models import (
    AutoscalingConfig,
    EngineBuildOptions,
    ModelConfig,
    VllmOptions,
)
from components.config.monitoring import MonitoringConfig
from components.config.multinode import ROLLOUT_SURGE_GROUPS, MultiNodeConfig
from components.config.network import NetworkConfig
from components.config.node_pools import CpuNodePoolConfig, ImageCacheConfig, NodePoolConfig
from components.config.openai import OpenAiOptions
from components.config.serving_image import ServingImageConfig
from components.config.stack import (
    TOP_LEVEL_KEYS,
    ModelSite,
    StackConfig,
    efa_pools,
    multi_node_pools,
    parse_config_map,
    parse_stack_config,
    placement_group_pools,
    read_pulumi_config,
)
from components.config.storage import EfsConfig, ModelStoreConfig

__all__ = [
    "CPU_NODE_POOL_NAME",
    "ROLLOUT_SURGE_GROUPS",
    "NAMESPACE",
    "SECRET_KEYS",
    "StackIdentity",
    "TOP_LEVEL_KEYS",
    "AutoscalingConfig",
    "ClusterConfig",
    "ConfigError",
    "CpuNodePoolConfig",
    "ImageCacheConfig",
    "EfsConfig",
    "EngineBuildOptions",
    "GatewayConfig",
    "LlmApiOptions",
    "ModelConfig",
    "ModelSite",
    "ModelStoreConfig",
    "ServingImageConfig",
    "MonitoringConfig",
    "MultiNodeConfig",
    "NetworkConfig",
    "NodePoolConfig",
    "OpenAiOptions",
    "StackConfig",
    "SystemNodeGroupConfig",
    "TrtllmOptions",
    "VllmOptions",
    "efa_pools",
    "multi_node_pools",
    "parse_api_keys",
    "parse_config_map",
    "placement_group_pools",
    "parse_stack_config",
    "read_pulumi_config",
]
