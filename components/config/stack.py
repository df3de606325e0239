"""The whole `tritonllm:` namespace: `StackConfig` composes the sections; `parse_stack_config` reports every bad key."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from components.config.base import (
    CPU_NODE_POOL_NAME,
    DNS_LABEL,
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    ConfigModel,
    StackIdentity,
)
from components.config.cluster import ClusterConfig
from components.config.gateway import (
    ACM_ARN,
    IDLE_TIMEOUT_MARGIN_SECONDS,
    NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS,
    GatewayConfig,
    check_api_keys,
)
from components.config.models import ModelConfig
from components.config.monitoring import MonitoringConfig
from components.config.monitoring_checks import WEBHOOK_SECRET, alert_problems, check_webhook_url
from components.config.multinode import ROLLOUT_SURGE_GROUPS, MultiNodeConfig
from components.config.multinode_checks import multi_node_problems
from components.config.network import NetworkConfig
from components.config.node_pools import CpuNodePoolConfig, NodePoolConfig
from components.config.serving_image import ServingImageConfig
from components.config.storage import EfsConfig, ModelStoreConfig


@dataclass(frozen=True)
class ModelSite:
    """What a served model's builders need of the stack besides the model's own config: its region,
    the node pool it runs on, and the stack-wide switches that shape its objects."""

    region: str
    node_pool: NodePoolConfig
    efs_enabled: bool
    efs_claim_size: str
    monitoring_enabled: bool
    scrape_interval: str
    auth_enabled: bool
    # gateway.requestTimeoutSeconds: the interceptor's response-header timeout on held routes (minReplicas 0)
    request_timeout_seconds: int = 300


class StackConfig(ConfigModel):
    """Everything under the `tritonllm:` namespace."""

    region: str = Field(..., pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region (required)")
    name: str = Field(
        "tritonllm",
        pattern=DNS_LABEL,
        max_length=24,
        description="Prefix of every resource name and the EKS cluster name (max 24: AWS name limits)",
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="See network.*")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="See cluster.*")
    node_pools: list[NodePoolConfig] = Field(..., min_length=1, description="GPU NodePools (required)")
    cpu_node_pool: CpuNodePoolConfig = Field(default_factory=CpuNodePoolConfig, description="See cpuNodePool.*")
    efs: EfsConfig = Field(default_factory=EfsConfig, description="See efs.*")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="See monitoring.*")
    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="See gateway.*")
    model_store: ModelStoreConfig = Field(default_factory=ModelStoreConfig, description="See modelStore.*")
    serving_image: ServingImageConfig = Field(default_factory=ServingImageConfig, description="See servingImage.*")
    models: list[ModelConfig] = Field(..., min_length=1, description="Served models (required)")
    tags: dict[str, str] = Field({}, description="Tags added to every AWS resource")
    capacity_check: Literal["error", "warn", "off"] = Field(
        "error",
        description="GPU capacity check at preview (docs/capacity.md): are the node pools' instance types offered "
        "in the stack's zones, do the EC2 vCPU quotas cover them. error: fail when a pool cannot launch at all or "
        "the quotas do not cover the models' minReplicas, warn about the rest; warn: only warn; off: read nothing. "
        "The same mode governs the EKS add-on check at preview (a pinned add-on build EKS does not publish for the "
        "cluster's Kubernetes version)",
    )
    # Secrets: only whether they are set. Read them with pulumi.Config().require_secret.
    hf_token_set: bool = Field(False, exclude=True)
    ngc_api_key_set: bool = Field(False, exclude=True)
    api_key_count: int = Field(0, exclude=True)  # how many valid apiKeys entries; never the keys themselves
    alert_webhook_set: bool = Field(False, exclude=True)  # whether the alertWebhookUrl secret is set

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, value: dict[str, str]) -> dict[str, str]:
        # AWS reserves aws:*; Karpenter rejects EC2NodeClass tags it manages itself.
        reserved = ("aws:", "kubernetes.io/cluster/", "karpenter.sh/", "karpenter.k8s.aws/", "eks:")
        bad = [k for k in value if not k or k.startswith(reserved)]
        if bad:
            raise ValueError(f"tag keys {bad} are reserved (prefixes {list(reserved)}); rename them")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> StackConfig:
        problems: list[str] = self._gateway_checks()
        pools = {p.name: (i, p) for i, p in enumerate(self.node_pools)}
        if len(pools) != len(self.node_pools):
            problems.append("@nodePools: names must be unique")
        for j, pool in enumerate(self.node_pools):
            bad_zones = [z for z in pool.zones if not re.match(rf"^{re.escape(self.region)}[a-z]$", z)]
            if bad_zones:
                problems.append(
                    f"@nodePools[{j}].zones: {bad_zones} are not zones of region {self.region}; "
                    f"write them like {self.region}a"
                )
        if self.cpu_node_pool.enabled and CPU_NODE_POOL_NAME in pools:
            problems.append(
                f"@nodePools[{pools[CPU_NODE_POOL_NAME][0]}].name: {CPU_NODE_POOL_NAME!r} is the CPU NodePool's "
                "name; rename the GPU pool or set cpuNodePool.enabled: false"
            )
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            problems.append(f"@models: names must be unique, got {names}")
        for i, m in enumerate(self.models):
            if m.node_pool not in pools:
                problems.append(
                    f"@models[{i}].nodePool: {m.node_pool!r} is not a nodePools entry; "
                    f"use one of {sorted(pools)} or add it to nodePools"
                )
                continue
            pool = pools[m.node_pool][1]
            if m.multi_node is not None:
                problems += multi_node_problems(i, m, pool, self.region)
            elif m.gpus_per_replica > pool.max_gpus_per_node:
                problems.append(
                    f"@models[{i}]: needs {m.gpus_per_replica} GPUs per replica (tensorParallel x pipelineParallel "
                    f"= {m.parallel_gpus}) but the largest type in nodePool {pool.name!r} has "
                    f"{pool.max_gpus_per_node}; lower the parallelism or add larger instance types to the pool"
                )
            if m.builds_engine and len(pool.gpu_models) > 1:
                problems.append(
                    f"@models[{i}].nodePool: TensorRT-LLM engines are built per GPU architecture but nodePool "
                    f"{pool.name!r} mixes {[g.name for g in pool.gpu_models]}; give it one GPU family"
                )
            if m.compile_cache and len(pool.gpu_models) > 1:
                problems.append(
                    f"@models[{i}].compileCache: true, but nodePool {pool.name!r} mixes "
                    f"{[g.name for g in pool.gpu_models]}: a pod cannot tell its node's GPU before it starts, so "
                    "replicas would share kernels compiled for another architecture; give the pool one GPU "
                    "family or set compileCache: false"
                )
            if m.is_gated and not self.hf_token_set:
                problems.append(
                    f"@models[{i}].hfModelId: {m.hf_model_id} is gated on Hugging Face but hfToken is not set; "
                    "run `pulumi config set --secret tritonllm:hfToken hf_...` (or set gated: false)"
                )
            if m.builds_engine and m.engine.dtype == "fp8":
                if any(g.compute_capability < "8.9" for g in pool.gpu_models):
                    problems.append(
                        f"@models[{i}].engine.dtype: fp8 needs Ada or Hopper GPUs (compute 8.9+), "
                        f"nodePool {pool.name!r} has {[g.name for g in pool.gpu_models]}; use bfloat16"
                    )
            if m.uses_llmapi and m.trtllm.llmapi.kv_cache_dtype == "fp8":
                if any(g.compute_capability < "8.9" for g in pool.gpu_models):
                    problems.append(
                        f"@models[{i}].trtllm.llmapi.kvCacheDtype: fp8 needs Ada or Hopper GPUs (compute 8.9+), "
                        f"nodePool {pool.name!r} has {[g.name for g in pool.gpu_models]}; use auto"
                    )
            if m.builds_engine and m.engine_storage == "efs" and not self.efs.enabled:
                problems.append(
                    f"@models[{i}].engineStorage: efs needs the shared file system but efs.enabled is false; "
                    "use engineStorage: local or set efs.enabled: true"
                )
            if m.drain_seconds < self.gateway.request_timeout_seconds:
                problems.append(
                    f"@models[{i}].drainSeconds: {m.drain_seconds} is below gateway.requestTimeoutSeconds "
                    f"({self.gateway.request_timeout_seconds}): a scale-down could cut a request the gateway still "
                    f"waits for; set drainSeconds to {self.gateway.request_timeout_seconds} or more, or lower "
                    "gateway.requestTimeoutSeconds"
                )
            problems += self._scale_to_zero_problems(i, m)
            # A multi-node update surges whole groups (LeaderWorkerSet maxSurge): they hold GPUs too.
            surge = ROLLOUT_SURGE_GROUPS if m.multi_node is not None else 0
            if (m.max_replicas + surge) * m.gpus_per_replica > pool.max_gpus:
                during = f" + {surge} surge group during an update" if surge else ""
                problems.append(
                    f"@models[{i}].maxReplicas: {m.max_replicas} replicas{during} x {m.gpus_per_replica} GPUs "
                    f"exceeds nodePool {pool.name!r} maxGpus ({pool.max_gpus}); raise maxGpus"
                    f"{f' to {(m.max_replicas + surge) * m.gpus_per_replica}' if surge else ''} or lower maxReplicas"
                )
        problems += alert_problems(self.monitoring, self.models, self.alert_webhook_set)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _scale_to_zero_problems(self, i: int, m: ModelConfig) -> list[str]:
        """minReplicas 0 (docs/autoscaling.md "Scale to zero"): its metric comes from Prometheus, and the hold
        must fit in the NLB's idle timeout where the program sets it (TCP listeners, plaintext gateway)."""
        if not m.scales_to_zero:
            return []
        problems = []
        if not self.monitoring.enabled:
            problems.append(
                f"@models[{i}].minReplicas: 0 needs the monitoring stack (KEDA scales the model above zero on its "
                "Triton metric, read from Prometheus); set monitoring.enabled: true or minReplicas: 1"
            )
        hold = self.held_request_seconds(m)
        if not self.gateway.tls.enabled and hold > NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS:
            problems.append(
                f"@models[{i}].autoscaling.coldStartTimeoutSeconds: {m.autoscaling.cold_start_timeout} s of hold + "
                f"gateway.requestTimeoutSeconds ({self.gateway.request_timeout_seconds}) + "
                f"{IDLE_TIMEOUT_MARGIN_SECONDS} s exceeds the NLB's longest TCP idle timeout "
                f"({NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS} s); lower one of the two"
            )
        return problems

    def held_request_seconds(self, m: ModelConfig) -> int:
        """The longest silence a request to `m` may see at NGINX: the cold-start hold, then the
        response-header wait, and a margin so the interceptor answers (504) before NGINX gives up."""
        hold = m.autoscaling.cold_start_timeout if m.scales_to_zero else 0
        return hold + self.gateway.request_timeout_seconds + IDLE_TIMEOUT_MARGIN_SECONDS

    @property
    def nlb_idle_timeout_seconds(self) -> int:
        """The NLB's TCP idle timeout (plaintext gateway): above the longest silence NGINX may wait for,
        cold-start holds included. TLS listeners: fixed by AWS at 350 s (GatewayConfig)."""
        base = self.gateway.nlb_idle_timeout_seconds
        if self.gateway.tls.enabled:
            return base
        held = [self.held_request_seconds(m) + IDLE_TIMEOUT_MARGIN_SECONDS for m in self.models if m.scales_to_zero]
        return min(NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS, max([base, *held]))

    @property
    def scale_to_zero_models(self) -> list[ModelConfig]:
        return [m for m in self.models if m.scales_to_zero]

    def _gateway_checks(self) -> list[str]:
        problems = []
        tls = self.gateway.tls
        if tls.domain and not tls.certificate_arn and not tls.hosted_zone_id:
            problems.append(
                "@gateway.tls.certificateArn: gateway.tls.domain without a certificate; set gateway.tls.certificateArn "
                "to an ACM certificate ARN for it, or gateway.tls.hostedZoneId to have one created and DNS-validated "
                "(or drop domain: the program then serves TLS with its own CA, gateway.tls.privateDomain)"
            )
        arn = tls.certificate_arn
        if arn:
            match = re.match(ACM_ARN, arn)
            if match is None:
                problems.append(
                    "@gateway.tls.certificateArn: not an ACM certificate ARN; "
                    "use arn:aws:acm:<region>:<account>:certificate/<id>"
                )
            elif match["region"] != self.region:
                problems.append(
                    f"@gateway.tls.certificateArn: the certificate is in {match['region']} but the stack's NLB is "
                    f"in {self.region} (an NLB can only use ACM certificates of its own region); request or "
                    f"import the certificate in {self.region}, or set gateway.tls.domain + hostedZoneId instead"
                )
        if self.gateway.auth.enabled and self.api_key_count == 0:
            problems.append(
                "@apiKeys: no API key while gateway.auth.enabled is true; run "
                "`pulumi config set --secret tritonllm:apiKeys '[\"ci:'$(openssl rand -hex 24)'\"]'` "
                "(or set gateway.auth.enabled: false)"
            )
        return problems

    @property
    def identity(self) -> StackIdentity:
        return StackIdentity(self.name, self.region, dict(self.tags))

    def site_of(self, model: ModelConfig) -> ModelSite:
        """The stack facts `model`'s builders read (its node pool, region, EFS, monitoring, auth)."""
        return ModelSite(
            region=self.region,
            node_pool=self.node_pool(model.node_pool),
            efs_enabled=self.efs.enabled,
            efs_claim_size=self.efs.claim_size,
            monitoring_enabled=self.monitoring.enabled,
            scrape_interval=self.monitoring.scrape_interval,
            auth_enabled=self.gateway.auth.enabled,
            request_timeout_seconds=self.gateway.request_timeout_seconds,
        )

    def node_pool(self, name: str) -> NodePoolConfig:
        return next(p for p in self.node_pools if p.name == name)


# Top-level keys as they appear in stack files (camelCase).
TOP_LEVEL_KEYS = tuple((f.alias or n) for n, f in StackConfig.model_fields.items() if not f.exclude) + SECRET_KEYS


def _loc_to_key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += ("." if key else "") + str(part)
    return key or "(root)"


_FIXES = {
    "missing": "this key is required; add it to the stack file",
    "extra_forbidden": "unknown key; check the spelling against the configuration reference (docs/configuration.md)",
}


def plaintext_secret_problems(raw: Mapping[str, Any], stored_as_secret: Collection[str]) -> list[tuple[str, str]]:
    """A secret key (SECRET_KEYS) that is set but not stored as a Pulumi secret: `pulumi config set`
    without --secret wrote it in plain text into Pulumi.<stack>.yaml. The message never shows the value."""
    return [
        (
            key,
            "is stored in plain text in Pulumi.<stack>.yaml (set without --secret), where anyone who reads the "
            "file or its history has it; store the same value encrypted: "
            f'`pulumi config set --secret {NAMESPACE}:{key} "$(pulumi config get {NAMESPACE}:{key})"` '
            "(and rotate it if the file was shared or committed)",
        )
        for key in SECRET_KEYS
        if raw.get(key) not in (None, "") and key not in stored_as_secret
    ]


def parse_stack_config(
    raw: Mapping[str, Any],
    secret_keys_set: set[str] | frozenset[str] = frozenset(),
    *,
    secrets_complete: bool = False,
    stored_as_secret: Collection[str] | None = None,
) -> StackConfig:
    """Validate the `tritonllm:` config values (without namespace) into a StackConfig.

    `raw` values may be JSON strings (as Pulumi passes structured config) or
    already-decoded objects. `secret_keys_set` names the secret keys that are set;
    `secrets_complete` says it names all of them (the program, `tritonllm deploy`), so a
    missing apiKeys secret is an error. `stored_as_secret`, when given, names the keys Pulumi
    holds encrypted: a secret key in `raw` that is not among them is refused (plain text).
    """
    problems: list[tuple[str, str]] = []
    if stored_as_secret is not None:
        problems += plaintext_secret_problems(raw, stored_as_secret)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECRET_KEYS:
            continue
        if key not in TOP_LEVEL_KEYS:
            problems.append((key, f"unknown key; valid keys are {', '.join(TOP_LEVEL_KEYS)}"))
            continue
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append((key, f"is not valid JSON/YAML structure ({exc.msg})"))
                continue
        values[key] = value
    if problems:
        raise ConfigError(problems)
    values["hf_token_set"] = "hfToken" in secret_keys_set
    values["ngc_api_key_set"] = "ngcApiKey" in secret_keys_set
    key_problems: list[tuple[str, str]]
    values["alert_webhook_set"] = WEBHOOK_SECRET in secret_keys_set
    problems += check_webhook_url(raw.get(WEBHOOK_SECRET))
    if raw.get("apiKeys") in (None, "") and ("apiKeys" in secret_keys_set or not secrets_complete):
        # Set but encrypted (a stack file read outside Pulumi), or a caller that does not say which
        # secrets are set (unit tests of other parts): the program checks them at `up`.
        count, key_problems = 1, list[tuple[str, str]]()
    else:
        count, key_problems = check_api_keys(raw.get("apiKeys"))
    values["api_key_count"] = count
    problems += key_problems
    try:
        if problems:
            raise ConfigError(problems)
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            key = _loc_to_key(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] in _FIXES:
                message = _FIXES[err["type"]]
            elif "input" in err and not isinstance(err["input"], (dict, list)):
                message += f" (got {err['input']!r})"
            for line in message.split("\n"):
                # Cross-field checks name their own key as "@sub.key: message".
                if line.startswith("@"):
                    sub_key, _, line = line[1:].partition(": ")
                    joined = sub_key if key == "(root)" else f"{key}.{sub_key}"
                    problems.append((joined.replace(".[", "["), line))
                else:
                    problems.append((key, line))
        raise ConfigError(problems) from None


def parse_config_map(
    config: Mapping[str, Any],
    encrypted: frozenset[str] | set[str] = frozenset(),
    stored_as_secret: Collection[str] | None = None,
) -> StackConfig:
    """Parse the `tritonllm:` keys of a whole config map (`namespace:key` -> value, as the Pulumi engine
    passes it to the program: strings, structured values as JSON).

    A secret key counts as set when its value is not empty, or when it is in `encrypted`: secret keys
    (without namespace) known only to be set, as in a stack file read outside Pulumi by `tritonllm
    check`. `stored_as_secret` names the secret keys the stack stores encrypted (None: not known, not
    checked). The program (read_pulumi_config) and `tritonllm check` both validate through here.
    """
    prefix = NAMESPACE + ":"
    raw = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix) and k[len(prefix) :] not in encrypted}
    secrets_set = set(encrypted) | {k for k in SECRET_KEYS if raw.get(k) not in (None, "")}
    return parse_stack_config(raw, secrets_set, secrets_complete=True, stored_as_secret=stored_as_secret)


def read_pulumi_config() -> StackConfig:
    """Parse the running stack's `tritonllm:` config (as the Pulumi engine or mocks set it)."""
    from pulumi.runtime import config as runtime_config

    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    # Which keys Pulumi decrypted for us: the language host passes them with the config
    # (PULUMI_CONFIG_SECRET_KEYS, handed to set_all_config by pulumi-language-python-exec).
    encrypted = set(runtime_config.get_config_secret_keys_env())
    stored_as_secret = {
        k for k in SECRET_KEYS if runtime_config.is_config_secret(prefix + k) or prefix + k in encrypted
    }
    return parse_config_map(everything, stored_as_secret=stored_as_secret)


# --- multi-node models and the pools that serve them


def multi_node_pools(cfg: StackConfig) -> dict[str, list[ModelConfig]]:
    """nodePool name -> the multi-node models it serves."""
    pools: dict[str, list[ModelConfig]] = {}
    for m in cfg.models:
        if m.multi_node is not None:
            pools.setdefault(m.node_pool, []).append(m)
    return pools


def _multi_node_configs(cfg: StackConfig) -> dict[str, list[MultiNodeConfig]]:
    """nodePool name -> the multiNode sections of the models it serves."""
    pools: dict[str, list[MultiNodeConfig]] = {}
    for m in cfg.models:
        if m.multi_node is not None:
            pools.setdefault(m.node_pool, []).append(m.multi_node)
    return pools


def efa_pools(cfg: StackConfig) -> set[str]:
    """Pools that serve a multi-node model with EFA on."""
    return {name for name, configs in _multi_node_configs(cfg).items() if any(mn.efa for mn in configs)}


def placement_group_pools(cfg: StackConfig) -> set[str]:
    """Pools that serve a multi-node model launched in a cluster placement group."""
    return {name for name, configs in _multi_node_configs(cfg).items() if any(mn.placement_group for mn in configs)}
