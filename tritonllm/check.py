"""`python -m tritonllm check --stack NAME`: validate `Pulumi.<NAME>.yaml` offline, exactly as the
program does, and say what `pulumi up` would create, component by component.

No Pulumi CLI, no AWS, no network. The stack file (over `Pulumi.yaml`'s project config) is turned
into what the Pulumi engine hands the program (every value a string, structured values as JSON) and
validated by `components.config.parse_config_map`, the function the program's `read_pulumi_config`
calls, so a bad stack fails with the program's own `invalid stack config:` message, every key and
its fix. Secrets are known only as set or unset: an encrypted (`secure:`) value counts as set.

The description comes from the validated config and the pure builders the program's components
register (NodePool manifests, subnet layout, the NLB Service, each model's Deployment or
LeaderWorkerSet, HPA and routes), not from a list kept here. What needs the network is not done, and
said so: a TensorRT-LLM engine's hfRevision is resolved to its commit by `pulumi preview`/`up` (the
Hugging Face API; a 40-character commit sha needs no request, and then the engine key is printed),
and the availability-zone names come from AWS.

Exit codes: 0 the stack is valid; 1 it is not (the program's message on stderr), or a value the
check cannot read (encrypted where the program expects plain text); 2 bad arguments, or no stack file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: every command's parser imports this module (tritonllm/__main__.py)
    from components.config import StackConfig

# As components.config.base has them (tests/unit/test_check.py compares), without importing pydantic
# when the command-line parser is built.
NAMESPACE = "tritonllm"
SECRET_KEYS = ("hfToken", "ngcApiKey", "apiKeys", "alertWebhookUrl")
PROJECT_DIR = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class CheckError(Exception):
    """The stack cannot be checked: no stack file (exit 2), a file that is not YAML, or a value the check
    cannot read offline (exit 1). The message says which and what to do."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class StackFile:
    """A stack's config as the Pulumi engine would pass it to the program."""

    path: Path
    config: dict[str, str]  # `namespace:key` -> value as the program receives it
    encrypted: frozenset[str]  # secret keys (without namespace) set with a `secure:` value, or assumed set
    notes: tuple[str, ...] = ()  # what the stack file has that the check does not read
    assumed: frozenset[str] = frozenset()  # secret keys the file does not set, taken as set (--assume-secrets)


# The secrets validation can require (gated models, gateway.auth): what --assume-secrets takes as set.
# ngcApiKey is optional everywhere, so it is never assumed.
ASSUMABLE_SECRETS = ("hfToken", "apiKeys")


@dataclass
class Report:
    stack: str
    stack_file: Path
    config: StackConfig
    encrypted: frozenset[str]
    assumed: frozenset[str]
    keys: tuple[str, ...]  # the tritonllm keys the stack sets (without namespace), secrets included
    components: list[tuple[str, list[str]]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        keys = self.keys
        out = [
            f"{self.stack_file.name}: valid ({len(keys)} tritonllm keys: {', '.join(keys)})",
            f"secrets: {_secrets_line(self.config, self.encrypted, self.assumed)}",
            "what `pulumi up` would create (from the config and the program's builders; nothing was contacted):",
        ]
        width = max(len(name) for name, _ in self.components)
        for name, details in self.components:
            out.append(f"  {name.ljust(width)}  {details[0]}")
            out += [f"  {' ' * width}    {d}" for d in details[1:]]
        out += [f"skipped: {s}" for s in self.skipped]
        return out


def _secrets_line(cfg: StackConfig, encrypted: frozenset[str], assumed: frozenset[str]) -> str:
    states = {
        "hfToken": cfg.hf_token_set,
        "ngcApiKey": cfg.ngc_api_key_set,
        "apiKeys": cfg.api_key_count > 0,
        "alertWebhookUrl": cfg.alert_webhook_set,
    }
    parts = []
    for key in SECRET_KEYS:
        if not states[key]:
            parts.append(f"{key} not set")
        elif key in assumed:
            parts.append(f"{key} assumed set (--assume-secrets: set it before `pulumi up`)")
        elif key in encrypted:
            parts.append(f"{key} set (encrypted: `pulumi up` checks its value)")
        elif key == "apiKeys":
            parts.append(f"apiKeys set ({cfg.api_key_count} valid keys)")
        else:
            parts.append(f"{key} set")
    return ", ".join(parts)


# --------------------------------------------------------------------------- reading the stack file


def engine_value(value: Any) -> str:
    """A config value as the Pulumi engine passes it to a program: scalars as their text, structured
    values as JSON (what `pulumi.Config().get` and `get_object` read back)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _load_yaml(text: str) -> Any:
    """YAML as Pulumi reads config: an unquoted date (`amiVersion: 2026-07-14`) stays the text it is,
    as the program receives it, rather than becoming a date object."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _secure_paths(value: Any, path: str) -> list[str]:
    if _is_secure(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _secure_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secure_paths(v, f"{path}[{i}]")]
    return []


def _project_config(project_dir: Path) -> tuple[str, dict[str, Any]]:
    """Pulumi.yaml's name and its project-level config values (`key: value`, `{value: ...}` or
    `{default: ...}`; a key without a namespace is in the project's)."""
    import yaml

    project_file = project_dir / "Pulumi.yaml"
    try:
        project = _load_yaml(project_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CheckError(f"cannot read {project_file}: {exc}", EXIT_USAGE) from None
    name = str(project.get("name") or NAMESPACE)
    values = {}
    for key, spec in (project.get("config") or {}).items():
        full = key if ":" in key else f"{name}:{key}"
        if isinstance(spec, dict) and ("value" in spec or "default" in spec):
            values[full] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            values[full] = spec
    return name, values


def read_stack_file(project_dir: Path, stack: str, assume_secrets: bool = False) -> StackFile:
    """The stack's config map (project defaults, then Pulumi.<stack>.yaml), as the engine passes it.
    With `assume_secrets` a secret key the file does not set counts as set, its value unknown."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise CheckError(
            f"no stack file {path.name} in {project_dir}; known stacks: {', '.join(known) or 'none'}", EXIT_USAGE
        )
    import yaml

    _, values = _project_config(project_dir)
    try:
        document = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CheckError(f"{path.name} is not valid YAML: {exc}") from None
    values.update(document.get("config") or {})
    prefix = NAMESPACE + ":"
    encrypted, uncheckable = set(), []
    for key, value in values.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in SECRET_KEYS and _is_secure(value):
            encrypted.add(name)
        else:
            uncheckable += _secure_paths(value, key)
    if uncheckable:
        raise CheckError(
            f"{path.name}: {', '.join(uncheckable)} encrypted (secure:), which only the Pulumi CLI can read; the "
            f"program reads only {', '.join(SECRET_KEYS)} as secrets: set the value in plain text "
            "(`pulumi config set --path` without --secret), or check it with `pulumi preview`"
        )
    assumed = frozenset(
        k for k in ASSUMABLE_SECRETS if assume_secrets and k not in encrypted and values.get(prefix + k) in (None, "")
    )
    notes = []
    environments = document.get("environment")
    if environments:
        notes.append(
            f"{path.name} imports Pulumi ESC environments ({environments}): their values reach the program "
            "through the Pulumi CLI only, so this check validates the stack file without them"
        )
    config = {
        key: engine_value(value)
        for key, value in values.items()
        if value is not None and not (key.startswith(prefix) and key[len(prefix) :] in encrypted)
    }
    return StackFile(path, config, frozenset(encrypted) | assumed, tuple(notes), assumed)


def validate(stack_file: StackFile) -> StackConfig:
    """The program's own validation (components.config.parse_config_map); raises ConfigError."""
    from components.config import parse_config_map

    # `secure:` values are stored encrypted; a secret key written in plain text is refused, as at preview
    return parse_config_map(stack_file.config, stack_file.encrypted, stored_as_secret=stack_file.encrypted)


# --------------------------------------------------------------------------- what `up` would create


def describe(
    cfg: StackConfig, encrypted: frozenset[str] = frozenset()
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(component, lines) in the order `__main__.py` registers them, and what was skipped."""
    from components.config import multi_node_pools

    multi_node = multi_node_pools(cfg)
    skipped: list[str] = []
    components = [
        ("Network", _network(cfg)),
        ("Cluster", _cluster(cfg)),
        ("Karpenter", _karpenter(cfg, multi_node)),
    ]
    if cfg.efs.enabled:
        components.append(("Storage", _storage(cfg)))
    components.append(("ModelStore", _model_store(cfg)))
    components.append(("Gateway", _gateway(cfg, encrypted)))
    components.append(("Monitoring", _monitoring(cfg)))
    if multi_node:
        components.append(("MultiNode", _multi_node(cfg, multi_node)))
    components.append(("WeightsMirror", _weights_mirror(cfg)))
    for model in cfg.models:
        lines, skip = _triton(cfg, model)
        components.append((f"TritonLLM {model.name}", lines))
        skipped += skip
    skipped.append(
        f"the availability-zone names: the program takes the first {cfg.network.az_count} that AWS lists for "
        f"{cfg.region} when it runs"
    )
    return components, skipped


def _network(cfg: StackConfig) -> list[str]:
    from components.platform.builders import network as nb

    net = cfg.network
    layout = nb.subnet_layout(net.vpc_cidr, net.pod_cidr, net.az_count)
    nats = sorted({nb.nat_subnet_index(net.nat_gateways, i) for i in range(net.az_count)})
    return [
        f"VPC {net.vpc_cidr} (+ {net.pod_cidr} for pods) over {net.az_count} AZs of {cfg.region}",
        f"private (node) subnets {', '.join(layout.private)}",
        f"public subnets {', '.join(layout.public)}; pod subnets {', '.join(layout.pods)}",
        f"{len(nats)} NAT gateway{'s' if len(nats) > 1 else ''} ({net.nat_gateways})",
    ]


def _cluster(cfg: StackConfig) -> list[str]:
    from components.catalog import versions
    from components.platform.builders import addon_versions

    cc, group = cfg.cluster, cfg.cluster.system_node_group
    endpoint = "private API endpoint"
    if cc.endpoint_public_access:
        endpoint += f", public to {', '.join(cc.endpoint_public_access_cidrs)}"
    return [
        f"EKS {cc.version} cluster {cfg.name}, {endpoint}, secrets encrypted with KMS",
        f"system node group {group.min_size}-{group.max_size} x {', '.join(group.instance_types)} "
        f"({group.desired_size} at start)",
        "managed add-ons "
        + ", ".join(
            f"{name} {version}"
            for name, version in [
                *versions.EKS_ADDONS.items(),
                # models[].weights.delivery mountpoint: the cluster's add-on loop installs it too
                *((n, versions.OPTIONAL_EKS_ADDONS[n]) for n in addon_versions.cluster_optional_addons(cfg)),
            ]
        ),
        f"{len(cc.admin_principal_arns)} extra cluster-admin access entries (cluster.adminPrincipalArns)",
    ]


def _node_pool_line(manifest: Mapping[str, Any], gpus: str = "") -> str:
    spec = manifest["spec"]
    requirements = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
    types = requirements.get("node.kubernetes.io/instance-type") or requirements.get(
        "karpenter.k8s.aws/instance-family", []
    )
    zones = requirements.get("topology.kubernetes.io/zone")
    limits = ", ".join(f"{k} {v}" for k, v in spec["limits"].items())
    taints = [t["key"] for t in spec["template"]["spec"].get("taints", [])]
    return (
        f"{manifest['metadata']['name']}: {', '.join(types)}{gpus} "
        f"({'/'.join(requirements['karpenter.sh/capacity-type'])}"
        f"{', zones ' + ', '.join(zones) if zones else ''}), limits {limits}"
        f"{', taint ' + ', '.join(taints) if taints else ''}"
    )


def _gpus(pool: Any) -> str:
    return f" [{', '.join(g.name for g in pool.gpu_models)}]"


def _karpenter(cfg: StackConfig, multi_node: Mapping[str, Any]) -> list[str]:
    from components.catalog import versions
    from components.platform.builders import karpenter as kb

    pools = [pool for pool in cfg.node_pools if pool.name not in multi_node]
    names = ([kb.CPU_NODE_POOL_NAME] if cfg.cpu_node_pool.enabled else []) + [p.name for p in pools]
    lines = [
        f"Karpenter {versions.KARPENTER.version} (SQS interruption queue), NVIDIA device plugin; "
        f"NodePools [{', '.join(names)}]"
    ]
    if cfg.cpu_node_pool.enabled:
        lines.append(_node_pool_line(kb.cpu_node_pool_manifest(cfg.cpu_node_pool)))
    lines += [_node_pool_line(kb.node_pool_manifest(pool), _gpus(pool)) for pool in pools]
    return lines


def _storage(cfg: StackConfig) -> list[str]:
    from components.platform.builders import storage as sb

    return [
        f"EFS ({cfg.efs.throughput_mode}, encrypted, TLS only), a mount target per AZ, StorageClass "
        f"{sb.STORAGE_CLASS_NAME}; a {cfg.efs.claim_size} shared claim in each model's namespace"
    ]


def _model_store(cfg: StackConfig) -> list[str]:
    from components.serving.builders import engine_build, model_repository

    prefixes = [f"{model_repository.models_prefix(m)} ({m.name})" for m in cfg.models if m.backend == "vllm"] + [
        f"{engine_build.ENGINES_PREFIX} ({m.name})" for m in cfg.models if m.builds_engine
    ]
    store = cfg.model_store
    return [
        f"S3 bucket (encrypted, TLS only, versioned: old versions kept {store.noncurrent_version_days} days"
        f"{', force_destroy' if store.force_destroy else ''})",
        f"uploads: {', '.join(prefixes) if prefixes else 'none (no vLLM model, no engine build)'}",
    ]


def _weights_mirror(cfg: StackConfig) -> list[str]:
    from components.serving.builders import weights_mirror as wm

    repos = sorted({m.hf_model_id for m in cfg.models})
    return [
        f"namespace {wm.MIRROR_NAMESPACE}: the hfToken Secret (its only copy in the cluster), a role that writes "
        f"{wm.MIRROR_PREFIX} of the bucket only",
        f"snapshots: {wm.MIRROR_PREFIX}<hfModelId>/<commit>/ of {', '.join(repos)}, each copied once by a Job "
        f"(deadline {cfg.model_store.mirror.timeout_minutes} min) at the commit hfRevision names",
    ]


def _gateway(cfg: StackConfig, encrypted: frozenset[str]) -> list[str]:
    from components.catalog import versions
    from components.gateway.builders import manifests as gm

    gw, tls = cfg.gateway, cfg.gateway.tls
    certificate = tls.certificate_arn or ("<certificate created for the domain>" if tls.enabled else None)
    service = gm.load_balancer_service_manifest(
        scheme=gw.scheme,
        source_cidrs=gw.source_cidrs(cfg.network),
        allow_any_source=gw.dangerously_allow_any_source,
        certificate_arn=certificate,
        ssl_policy=tls.ssl_policy,
        idle_timeout_seconds=None if tls.enabled else cfg.nlb_idle_timeout_seconds,
    )
    ports = ", ".join(f"{p['port']} ({p['name']})" for p in service["spec"]["ports"])
    if not tls.enabled:
        tls_mode = "off (gateway.tls.plaintextInsideVpc): HTTP and gRPC in plain text inside the VPC"
    elif tls.certificate_arn:
        tls_mode = f"ACM certificate {tls.certificate_arn}" + (f" for {tls.domain}" if tls.domain else "")
    else:
        tls_mode = (
            f"an ACM certificate the program creates for {tls.domain}, DNS-validated in zone {tls.hosted_zone_id}"
        )
    if tls.enabled and tls.domain and tls.hosted_zone_id:
        tls_mode += f", alias record {tls.domain} -> the NLB"
    if gw.auth.enabled:
        keys = "encrypted, checked at up" if "apiKeys" in encrypted else f"{cfg.api_key_count}"
        auth = f"API keys (HTTP Basic, realm {gw.auth.realm!r}) on every route; apiKeys: {keys}"
    else:
        auth = "off (gateway.auth.enabled: false): anyone who reaches the NLB may call the models"
    return [
        f"{gw.scheme} NLB, listeners {ports}, admitting {', '.join(service['spec']['loadBalancerSourceRanges'])}",
        f"TLS: {tls_mode}",
        f"auth: {auth}",
        f"AWS Load Balancer Controller {versions.AWS_LOAD_BALANCER_CONTROLLER.version}, NGINX Gateway Fabric "
        f"{versions.NGINX_GATEWAY_FABRIC.version}; request timeout {gw.request_timeout_seconds}s",
    ]


def _monitoring(cfg: StackConfig) -> list[str]:
    from components.catalog import versions

    mon = cfg.monitoring
    if not mon.enabled:
        return ["off (monitoring.enabled: false): no Prometheus or Grafana, no HPA (each model keeps minReplicas)"]
    charts = [versions.KUBE_PROMETHEUS_STACK, versions.PROMETHEUS_ADAPTER]
    if mon.dcgm_exporter:
        charts.append(versions.DCGM_EXPORTER)
    return [
        "on: " + ", ".join(f"{c.name} {c.version}" for c in charts) + "; Grafana password in Secrets Manager",
        f"Prometheus: {mon.storage_size} volume, retention {mon.retention} / {mon.retention_size}, "
        f"scrape every {mon.scrape_interval}",
    ]


def _multi_node(cfg: StackConfig, multi_node: Mapping[str, Any]) -> list[str]:
    from components.catalog import versions
    from components.config import efa_pools, placement_group_pools
    from components.platform.builders import multinode as mb

    efa, placement = efa_pools(cfg), placement_group_pools(cfg)
    lines = [
        f"LeaderWorkerSet controller {versions.LEADER_WORKER_SET.version}"
        + (f", EFA device plugin {versions.AWS_EFA_DEVICE_PLUGIN.version}" if efa else "")
        + f"; NodePools [{', '.join(sorted(multi_node))}] in one zone each"
    ]
    for name in sorted(multi_node):
        pool = cfg.node_pool(name)
        extras = [w for w, on in (("EFA", name in efa), ("cluster placement group", name in placement)) if on]
        line = _node_pool_line(mb.efa_node_pool_manifest(pool, name in efa), _gpus(pool))
        lines.append(line + (f"; {', '.join(extras)}" if extras else ""))
    return lines


def _triton(cfg: StackConfig, model: Any) -> tuple[list[str], list[str]]:
    from components.gateway.builders import manifests as gm
    from components.serving.builders import engine_build, serving_image, weights_mirror
    from components.serving.builders import multinode as mnb
    from components.serving.builders import triton_manifests as tm
    from components.serving.builders.model_repository import served_model_name

    site = cfg.site_of(model)
    skipped: list[str] = []
    if model.backend == "vllm":
        runtime = "vLLM backend, model repository uploaded to S3"
    elif model.uses_llmapi:
        runtime = "TensorRT-LLM through the LLM API (no engine build; the pod stages the weights mirror)"
    else:
        runtime = (
            f"TensorRT-LLM engine built by a Job on nodePool {model.node_pool} for "
            f"{engine_build.gpu_architecture(site.node_pool)}"
        )
    if tm.reads_weights_mirror(model) and model.weights.delivery == "mountpoint":
        runtime += (
            f"; weights through a Mountpoint for Amazon S3 volume shared by its pods on a node (node cache up to "
            f"{model.weights.node_cache_size})"
        )
    engine_key = None
    if model.builds_engine:
        if engine_build.COMMIT_SHA.match(model.hf_revision):
            engine_key = engine_build.engine_cache_key(engine_build.engine_key_parts(model, site))
            runtime += f", engine key {engine_build.short_key(engine_key)}"
        else:
            engine_key = "0" * 64  # a stand-in: the real key needs the commit hfRevision names now
            skipped.append(
                f"models[{cfg.models.index(model)}].hfRevision {model.hf_revision!r} of {model.hf_model_id}: "
                "resolving it to a commit (the engine key) needs the Hugging Face API; `pulumi preview`/`up` "
                "does it (pin a 40-character commit sha to need no request)"
            )
    kwargs: dict[str, Any] = dict(
        bucket="<bucket>",
        engine_key=engine_key,
        shared_claim_name=tm.SHARED_CLAIM if site.efs_enabled else None,
        image_pull_secret=tm.IMAGE_PULL_SECRET if cfg.ngc_api_key_set else None,
    )
    if tm.reads_weights_mirror(model):
        # The mirror's path names the commit; without a pinned sha a stand-in (the engine key's reason).
        commit = model.hf_revision if engine_build.COMMIT_SHA.match(model.hf_revision) else "0" * 40
        kwargs["weights"] = weights_mirror.resolved_mirror(model.hf_model_id, commit)
    if model.multi_node is not None:
        workload = mnb.leader_worker_set_manifest(model, site, **kwargs)
        pod = workload["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
        shape = f"LeaderWorkerSet of {model.multi_node.nodes} nodes per replica"
        hpa = mnb.hpa_manifest(model)
    else:
        workload = tm.deployment_manifest(model, site, **kwargs)
        pod = workload["spec"]["template"]["spec"]
        shape = "Deployment"
        hpa = tm.hpa_manifest(model)
    server = pod["containers"][0]
    image_line = f"image {server['image']}"
    spec = serving_image.image_spec_for(model, tuple(cfg.serving_image.extra_apt_packages))
    if spec is not None:
        # Built by the program in CodeBuild (components/serving/builders/serving_image.py); the digest is ECR's.
        tag = serving_image.image_tag(
            spec, serving_image.image_key(spec, serving_image.context_files(spec.context_dir))
        )
        image_line = (
            f"image {serving_image.repository_name(cfg.name)}:{tag} (built in AWS CodeBuild from images/{spec.name}/ "
            f"on {spec.base_image}, only when ECR lacks that tag)"
        )
    gpus = server["resources"]["limits"].get(tm.GPU_RESOURCE, "0")
    if site.monitoring_enabled:
        metric = hpa["spec"]["metrics"][0]["pods"]
        replicas = (
            f"replicas {model.min_replicas}-{hpa['spec']['maxReplicas']} "
            f"(HPA on {metric['metric']['name']}, target {metric['target']['averageValue']} per pod)"
        )
        if model.scales_to_zero:
            replicas += (
                f", to zero after {model.autoscaling.idle} s idle (KEDA), requests held up to "
                f"{model.autoscaling.cold_start_timeout} s by the KEDA HTTP add-on's interceptor"
            )
    else:
        replicas = f"replicas {model.min_replicas} (no HPA without monitoring)"
    routes = tm.route_manifests(model, gm.GATEWAY_NAME, gm.NGF_NAMESPACE)
    http = next(r for r in routes if r["kind"] == "HTTPRoute")
    grpc = next(r for r in routes if r["kind"] == "GRPCRoute")
    kserve_rules = len(gm.exposed_http_requests(served_model_name(model)))
    openai_rules = len(http["spec"]["rules"]) - kserve_rules
    route_line = (
        f"routes: HTTPRoute {http['metadata']['name']} ({kserve_rules} KServe paths"
        + (f", {openai_rules} OpenAI /v1 rules" if openai_rules else "")
        + f"), GRPCRoute {grpc['metadata']['name']} ({len(grpc['spec']['rules'][0]['matches'])} methods)"
        + (", behind the API-key check" if site.auth_enabled else "")
    )
    ports = ", ".join(f"{p['name']} {p['port']}" for p in tm.service_manifest(model)["spec"]["ports"])
    return [
        f"namespace {model.name}, served as {served_model_name(model)!r}: {runtime}",
        f"{shape}, {replicas}, {gpus} GPU(s) per pod on nodePool {model.node_pool}{_gpus(site.node_pool)}",
        image_line,
        f"Service {tm.SERVICE_NAME} ({ports}); {route_line}",
    ], skipped


# --------------------------------------------------------------------------- the command


def check_stack(project_dir: Path, stack: str, assume_secrets: bool = False) -> Report:
    """Validate the stack and describe it; raises CheckError or ConfigError (the program's message)."""
    stack_file = read_stack_file(project_dir, stack, assume_secrets)
    cfg = validate(stack_file)
    try:
        components, skipped = describe(cfg, stack_file.encrypted)
    except ValueError as exc:  # a builder refused what validation let through: the program would too
        raise CheckError(f"{stack_file.path.name} passes config validation but the program would fail: {exc}") from None
    prefix = NAMESPACE + ":"
    keys = sorted(
        {k[len(prefix) :] for k in stack_file.config if k.startswith(prefix)}
        | (stack_file.encrypted - stack_file.assumed)
    )
    return Report(
        stack,
        stack_file.path,
        cfg,
        stack_file.encrypted,
        stack_file.assumed,
        tuple(keys),
        components,
        [*stack_file.notes, *skipped],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True, help="stack name, e.g. dev (checks Pulumi.<stack>.yaml)")
    parser.add_argument("--cwd", type=Path, default=PROJECT_DIR, help="project directory (default: this repository)")
    parser.add_argument(
        "--assume-secrets",
        action="store_true",
        help=f"take the secrets the stack file does not set yet ({', '.join(ASSUMABLE_SECRETS)}) as set, e.g. "
        "before the Pulumi CLI is there to encrypt them",
    )


def main(args: argparse.Namespace) -> int:
    from components.config import ConfigError

    try:
        report = check_stack(Path(args.cwd).resolve(), args.stack, args.assume_secrets)
    except CheckError as exc:
        print(f"tritonllm check: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"tritonllm check: Pulumi.{args.stack}.yaml: {exc}", file=sys.stderr)
        if "`pulumi config set" in str(exc):
            print(
                f"tritonllm check: the `pulumi config set` commands act on the selected stack: "
                f"`pulumi stack select {args.stack}` first",
                file=sys.stderr,
            )
        return EXIT_INVALID
    for line in report.lines():
        print(line)
    return EXIT_OK
