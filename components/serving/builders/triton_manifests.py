"""Pure builders for one served model's Kubernetes objects (TritonLLM registers them).

Layout per model (namespace = models[].name):

    Namespace            labelled so its routes may attach to the shared Gateway
    ServiceAccount       `triton`: read of its own S3 prefix only (IRSA for vLLM, EKS Pod Identity for TRT-LLM)
    Secret               `hf-token` (HF_TOKEN, from the Pulumi secret), `ngc-pull` (optional)
    PersistentVolumeClaim `shared` on EFS: the Hugging Face cache (vLLM), staged engines (TRT-LLM, efs)
    Deployment           `triton`: Triton on the model's NodePool, GPUs, /dev/shm, probes
    Service              `triton`: http 8000, grpc 8001, metrics 8002
    PodMonitor, HPA, PodDisruptionBudget, HTTPRoute + GRPCRoute

vLLM pods load the repository straight from S3 (`--model-repository=s3://bucket/models/<name>`).
TRT-LLM pods first stage `engines/<key>/` from S3 to /staged (emptyDir on the node's gp3
volume, or the EFS claim) in an init container, since TensorRT-LLM reads local files only.
"""

from __future__ import annotations

import base64
import json
import math
import shlex
from typing import Any

from components.catalog import versions
from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.config import ModelConfig, ModelSite
from components.gateway.builders import manifests as gateway_manifests
from components.observability.builders import metrics
from components.platform.builders import pod_security
from components.platform.builders.karpenter import gpu_tolerations, node_selector_for
from components.platform.builders.storage import shared_claim_manifest
from components.serving.builders import engine_build
from components.serving.builders import llmapi as llmapi_repository
from components.serving.builders import openai as openai_frontend
from components.serving.builders.model_repository import (
    models_prefix,
    served_model_name,
)
from components.serving.builders.model_store import read_prefix_policy

SERVICE_NAME = "triton"
SERVICE_ACCOUNT = "triton"
DEPLOYMENT_NAME = "triton"
HF_TOKEN_SECRET = "hf-token"
HF_TOKEN_KEY = "HF_TOKEN"
# The token reaches the server as a file, not an environment variable (which leaks into child
# processes, crash dumps and `kubectl describe`): huggingface_hub reads $HF_TOKEN_PATH
# (constants.py: HF_TOKEN_PATH, default $HF_HOME/token) whenever HF_TOKEN is unset.
HF_TOKEN_VOLUME = "hf-token"
HF_TOKEN_DIR = engine_build.HF_TOKEN_DIR
HF_TOKEN_PATH = f"{HF_TOKEN_DIR}/{HF_TOKEN_KEY}"


def hf_token_volume(secret_name: str, optional: bool = True) -> dict[str, Any]:
    return {
        "name": HF_TOKEN_VOLUME,
        "secret": {"secretName": secret_name, "optional": optional, "defaultMode": 0o440},
    }


def hf_token_mount() -> dict[str, Any]:
    return {"name": HF_TOKEN_VOLUME, "mountPath": HF_TOKEN_DIR, "readOnly": True}


IMAGE_PULL_SECRET = "ngc-pull"
NGC_REGISTRY = "nvcr.io"
SHARED_CLAIM = "shared"
GPU_RESOURCE = engine_build.GPU_RESOURCE

METRICS_PORT = metrics.METRICS_PORT
PORTS = (("http", HTTP_PORT), ("grpc", GRPC_PORT), (metrics.METRICS_PORT_NAME, METRICS_PORT))

HF_CACHE_MOUNT = "/cache"
HF_HOME = f"{HF_CACHE_MOUNT}/huggingface"
STAGE_DIR = engine_build.STAGE_DIR
TRTLLM_REPOSITORY = f"{STAGE_DIR}/model_repository"
TRTLLM_ENGINE_MODEL = "tensorrt_llm"  # the engine model inside the TRT-LLM repository

# A cold start downloads (vLLM) or stages (TRT-LLM) many GB, then loads them on the GPU.
STARTUP_BUDGET_SECONDS = 40 * 60
STARTUP_PERIOD_SECONDS = 10
# Triton drains in-flight generations on SIGTERM for up to EXIT_TIMEOUT; Kubernetes waits longer.
EXIT_TIMEOUT_SECONDS = 90
TERMINATION_GRACE_SECONDS = 120
PRESTOP_SLEEP_SECONDS = 10  # let the NLB / NGINX stop sending new requests first


def pod_labels(model: ModelConfig) -> dict[str, str]:
    """The labels the PodMonitor, Services, HPA and PDB select on (components/catalog/serving_metrics.py owns them)."""
    return metrics.pod_selector_labels(model.name)


def object_labels(model: ModelConfig) -> dict[str, str]:
    return {**pod_labels(model), "app.kubernetes.io/part-of": "tritonllm", "app.kubernetes.io/component": "server"}


def _meta(name: str, namespace: str, model: ModelConfig, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": object_labels(model), **extra}


# --------------------------------------------------------------------------- small objects


def namespace_labels_for_pod_security(model: ModelConfig) -> dict[str, str]:
    """restricted for a model's namespace; baseline (root sshd, audited and warned at restricted)
    for multi-node models (components/platform/builders/pod_security.py, POD_SECURITY_EXCEPTIONS)."""
    if model.multi_node is not None:
        return pod_security.namespace_labels("baseline", audit="restricted", warn="restricted")
    return pod_security.restricted_namespace_labels()


def namespace_manifest(model: ModelConfig, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {**object_labels(model), **namespace_labels_for_pod_security(model), **(extra_labels or {})}
    labels.pop("app.kubernetes.io/component")
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": model.name, "labels": labels}}


IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def uses_irsa(model: ModelConfig) -> bool:
    """Whether the Triton pods get AWS credentials through IRSA rather than EKS Pod Identity.

    vLLM pods: tritonserver itself reads s3://, with the AWS C++ SDK Triton 25.12 is built
    with (1.11.60); EKS Pod Identity needs 1.11.263 or later, web identity (IRSA) works.
    TRT-LLM pods read S3 with the AWS CLI (2.31, Pod Identity capable) in an init container.
    """
    return model.backend == "vllm"


def triton_reader_policy(
    model: ModelConfig, bucket_arn: str, prefix: str, kms_key_arn: str | None = None
) -> dict[str, Any]:
    """Read of `prefix` only; for vLLM also the bucket check Triton's S3 client makes first.

    Triton calls HeadBucket before any S3 repository access. HeadBucket is authorized as
    s3:ListBucket without an s3:prefix, which the prefix-conditioned ListBucket of
    read_prefix_policy cannot match. The extra statement allows ListBucket only when no
    prefix is given: it reveals object names, never object contents.
    """
    document = read_prefix_policy(bucket_arn, prefix, kms_key_arn=kms_key_arn)
    if model.backend == "vllm":
        document["Statement"].append(
            {
                "Sid": "TritonHeadBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"Null": {"s3:prefix": "true"}},
            }
        )
    return document


def service_account_manifest(
    model: ModelConfig, name: str = SERVICE_ACCOUNT, irsa_role_arn: Any | None = None
) -> dict[str, Any]:
    metadata = _meta(name, model.name, model)
    if irsa_role_arn is not None:
        metadata["annotations"] = {IRSA_ROLE_ANNOTATION: irsa_role_arn}
    # No API token: Pod Identity and IRSA project their own tokens.
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def hf_token_secret_manifest(model: ModelConfig) -> dict[str, Any]:
    """Metadata and type only: TritonLLM adds stringData from the Pulumi secret, so it never appears in plain."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(HF_TOKEN_SECRET, model.name, model),
    }


def image_pull_secret_manifest(model: ModelConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": _meta(IMAGE_PULL_SECRET, model.name, model),
    }


def dockerconfigjson(api_key: str, registry: str = NGC_REGISTRY) -> str:
    """The .dockerconfigjson for nvcr.io: NGC API keys log in as the literal user `$oauthtoken`."""
    user = "$oauthtoken"
    auth = base64.b64encode(f"{user}:{api_key}".encode()).decode()
    return json.dumps({"auths": {registry: {"username": user, "password": api_key, "auth": auth}}})


def service_manifest(model: ModelConfig) -> dict[str, Any]:
    ports = [
        {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
        # h2c tells the Gateway to speak cleartext HTTP/2 to Triton's gRPC port.
        {
            "name": "grpc",
            "port": GRPC_PORT,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
        {
            "name": metrics.METRICS_PORT_NAME,
            "port": METRICS_PORT,
            "targetPort": metrics.METRICS_PORT_NAME,
            "protocol": "TCP",
            "appProtocol": "http",
        },
    ]
    if model.openai.enabled:
        ports.append(openai_frontend.service_port())
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(SERVICE_NAME, model.name, model),
        "spec": {"type": "ClusterIP", "selector": pod_labels(model), "ports": ports},
    }


def hpa_manifest(model: ModelConfig) -> dict[str, Any]:
    """autoscaling/v2 on the model's Triton metric (served per pod by prometheus-adapter)."""
    a = model.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(DEPLOYMENT_NAME, model.name, model),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT_NAME},
            "minReplicas": model.min_replicas,
            "maxReplicas": model.max_replicas,
            "metrics": [metrics.hpa_metric_spec(model)],
            "behavior": {
                # A new replica needs a GPU node (minutes): add up to 2 pods or double per minute.
                "scaleUp": {
                    "stabilizationWindowSeconds": a.scale_up_stabilization_seconds,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Pods", "value": 2, "periodSeconds": 60},
                        {"type": "Percent", "value": 100, "periodSeconds": 60},
                    ],
                },
                # Give back one replica at a time: a cold start is expensive to redo.
                "scaleDown": {
                    "stabilizationWindowSeconds": a.scale_down_stabilization_seconds,
                    "selectPolicy": "Min",
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }


def pdb_manifest(model: ModelConfig) -> dict[str, Any]:
    # maxUnavailable (not minAvailable): one replica at a time goes during drains and
    # consolidation, and a single-replica model never blocks a node drain forever.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(DEPLOYMENT_NAME, model.name, model),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pod_labels(model)}},
    }


def pod_monitor_manifest(model: ModelConfig, site: ModelSite) -> dict[str, Any]:
    return metrics.pod_monitor_manifest(model.name, model.name, site.scrape_interval)


def route_manifests(model: ModelConfig, gateway_name: str, gateway_namespace: str) -> list[dict[str, Any]]:
    args = (served_model_name(model), model.name, SERVICE_NAME, gateway_name, gateway_namespace)
    openai_rules = (
        openai_frontend.http_route_rules(served_model_name(model), SERVICE_NAME) if model.openai.enabled else []
    )
    return [
        gateway_manifests.http_route_manifest(*args, extra_rules=openai_rules),
        gateway_manifests.grpc_route_manifest(*args),
    ]


def shared_claim(model: ModelConfig, site: ModelSite, storage_class_name: str) -> dict[str, Any]:
    manifest = shared_claim_manifest(SHARED_CLAIM, model.name, storage_class_name, site.efs_claim_size)
    manifest["metadata"]["labels"] = object_labels(model)
    return manifest


# --------------------------------------------------------------------------- the server


def vllm_repository_uri(bucket: str, model: ModelConfig) -> str:
    return f"s3://{bucket}/{models_prefix(model).rstrip('/')}"


def tritonserver_args(repository: str, *, rank: int = 0, world_size: int = 1) -> list[str]:
    args = [
        f"--model-repository={repository}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
        # Time-to-first-response histograms, which the dashboard plots.
        "--metrics-config=histogram_latencies=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
    ]
    if world_size == 1:
        # Everything in the repository loads at start; the control API stays off.
        return args + ["--model-control-mode=none"]
    # TensorRT-LLM leader mode: one tritonserver per rank under MPI; ranks > 0 only host the engine.
    if rank > 0:
        args += ["--model-control-mode=explicit", f"--load-model={TRTLLM_ENGINE_MODEL}"]
    else:
        args += ["--model-control-mode=none"]
    return args + ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


def vllm_tritonserver_args(repository: str, model_name: str) -> list[str]:
    """vLLM: explicit model control with the one model loaded at start.

    The vLLM backend's health check (parameter ENABLE_VLLM_HEALTH_CHECK in
    model_repository/vllm/config.pbtxt) unloads the model when the engine is dead, and only
    in EXPLICIT model-control mode (triton-inference-server/vllm_backend r25.12
    docs/health_check.md); the model-ready probes then fail.
    """
    args = tritonserver_args(repository)
    args = [a for a in args if not a.startswith("--model-control-mode=")]
    return args + ["--model-control-mode=explicit", f"--load-model={model_name}"]


def triton_command(model: ModelConfig, bucket: str) -> list[str]:
    if model.backend == "vllm":
        # vLLM spreads tensor/pipeline parallel over the pod's GPUs itself: one tritonserver.
        return ["tritonserver", *vllm_tritonserver_args(vllm_repository_uri(bucket, model), model.name)]
    world = model.parallel_gpus
    if world == 1:
        return ["tritonserver", *tritonserver_args(TRTLLM_REPOSITORY)]
    cmd = ["mpirun", "--allow-run-as-root"]
    for rank in range(world):
        cmd += ["-n", "1", "tritonserver", *tritonserver_args(TRTLLM_REPOSITORY, rank=rank, world_size=world)]
        if rank < world - 1:
            cmd.append(":")
    return cmd


def stage_engine_script(bucket: str, key: str) -> str:
    """Init container shell: copy engines/<key>/ to STAGE_DIR unless a replica already did (EFS)."""
    prefix = engine_build.engine_prefix(key)
    src = shlex.quote(f"s3://{bucket}/{prefix}")
    staged = f"{STAGE_DIR}/.staged-{engine_build.short_key(key)}"
    return "\n".join(
        [
            "set -eu",
            f'if [ -f {staged} ]; then echo "engine {key} already staged"; exit 0; fi',
            f"aws s3api head-object --bucket {shlex.quote(bucket)} --key {shlex.quote(prefix + engine_build.COMPLETE_MARKER)} "
            f'>/dev/null || {{ echo "no complete engine at {src}: the TrtllmEngine build did not finish" >&2; exit 1; }}',
            f"aws s3 sync {src} {STAGE_DIR}/ --exclude {engine_build.COMPLETE_MARKER} --only-show-errors --no-progress",
            f"touch {staged}",
            f'echo "staged {src} to {STAGE_DIR}"',
        ]
    )


def _probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def probes(model_name: str | None = None) -> dict[str, dict[str, Any]]:
    """Probes; with `model_name` (vLLM) every probe asks for that model's readiness.

    The server's /v2/health/live stays 200 while a dead vLLM engine's model is unloaded by the
    backend's health check, so for vLLM liveness too follows /v2/models/<name>/ready (HTTP 400 when
    the model is not ready): the kubelet restarts the container instead of keeping a dead replica.
    """
    ready = f"/v2/models/{model_name}/ready" if model_name else "/v2/health/ready"
    live = ready if model_name else "/v2/health/live"
    return {
        # Sized for the slowest cold start; liveness and readiness only begin after it.
        "startupProbe": _probe(
            ready, STARTUP_PERIOD_SECONDS, math.ceil(STARTUP_BUDGET_SECONDS / STARTUP_PERIOD_SECONDS)
        ),
        "readinessProbe": _probe(ready, 5, 3),
        "livenessProbe": _probe(live, 10, 6),
    }


def openai_probes(model: ModelConfig) -> dict[str, dict[str, Any]]:
    """Probes of a pod running Triton's OpenAI frontend: the OpenAI port comes up last (after the
    server and the KServe frontends), so start and readiness wait for its /health/ready; liveness
    stays on KServe HTTP, as probes() has it (model readiness for vLLM)."""
    kserve = probes(model.name if model.backend == "vllm" else None)
    return {
        "startupProbe": openai_frontend.ready_probe(
            STARTUP_PERIOD_SECONDS, math.ceil(STARTUP_BUDGET_SECONDS / STARTUP_PERIOD_SECONDS)
        ),
        "readinessProbe": openai_frontend.ready_probe(5, 3),
        "livenessProbe": kserve["livenessProbe"],
    }


def topology_spread(model: ModelConfig) -> list[dict[str, Any]]:
    # ScheduleAnyway: GPU capacity is scarce; spreading is a preference, never a reason to stay Pending.
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": pod_labels(model)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def deployment_manifest(
    model: ModelConfig,
    site: ModelSite,
    *,
    bucket: str,
    engine_key: str | None = None,
    shared_claim_name: str | None = None,
    hf_token_secret: str | None = HF_TOKEN_SECRET,
    image_pull_secret: str | None = None,
) -> dict[str, Any]:
    """The Triton Deployment. `engine_key` is required for TRT-LLM; `shared_claim_name` enables EFS."""
    if model.builds_engine and not engine_key:
        raise ValueError(f"model {model.name!r} (trtllm) needs the engine key to stage")
    if model.builds_engine and model.engine_storage == "efs" and not shared_claim_name:
        raise ValueError(
            f"models[{model.name}].engineStorage is efs but EFS is disabled (efs.enabled false); "
            "set engineStorage: local or enable EFS"
        )
    gpus = str(model.gpus_per_replica)
    res = model.resources
    region_env = [{"name": "AWS_REGION", "value": site.region}, {"name": "AWS_DEFAULT_REGION", "value": site.region}]
    env = [*region_env, *pod_security.home_env()]
    # Read-only root filesystem: the server writes to /dev/shm, /tmp and $HOME (emptyDirs).
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}, *pod_security.writable_mounts()]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
        *pod_security.writable_volumes(),
    ]
    init_containers: list[dict[str, Any]] = []

    if hf_token_secret:
        # optional: public models run without a token.
        env.append({"name": "HF_TOKEN_PATH", "value": HF_TOKEN_PATH})
        mounts.append(hf_token_mount())
        volumes.append(hf_token_volume(hf_token_secret))

    if model.backend == "vllm" or model.uses_llmapi:
        # The Hugging Face cache on the shared claim: a new replica reuses downloaded weights.
        env.append({"name": "HF_HOME", "value": HF_HOME})
        mounts.append({"name": "hf-cache", "mountPath": HF_CACHE_MOUNT})
        volumes.append(
            {
                "name": "hf-cache",
                **(
                    {"persistentVolumeClaim": {"claimName": shared_claim_name}}
                    if shared_claim_name
                    else {"emptyDir": {}}
                ),
            }
        )
        if model.uses_llmapi:
            mounts += llmapi_mounts()
            volumes += llmapi_volumes()
    else:
        assert engine_key is not None
        stage_mount = {"name": "engine", "mountPath": STAGE_DIR}
        if model.engine_storage == "efs":
            # One staged copy per engine key on EFS, shared by every replica of the model.
            stage_mount["subPath"] = f"engines/{engine_key}"
            volumes.append({"name": "engine", "persistentVolumeClaim": {"claimName": shared_claim_name}})
        else:
            volumes.append({"name": "engine", "emptyDir": {}})  # the node's encrypted gp3 root volume
        mounts.append(stage_mount)
        init_containers.append(
            {
                "name": "stage-engine",
                "image": versions.AWS_CLI_IMAGE,
                "command": ["/bin/sh", "-c", stage_engine_script(bucket, engine_key)],
                # The AWS CLI image has no user 1000: HOME on the /tmp emptyDir.
                "env": [*region_env, {"name": "HOME", "value": "/tmp"}],
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "volumeMounts": [stage_mount, pod_security.writable_mounts()[0]],
                "securityContext": pod_security.container_security_context(),
            }
        )

    container = {
        "name": "triton",
        "image": versions.TRITON_VLLM_IMAGE if model.backend == "vllm" else versions.TRITON_TRTLLM_IMAGE,
        "command": server_command(model, bucket),
        "env": env,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in container_ports(model)],
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory, GPU_RESOURCE: gpus},
            "limits": {"memory": res.memory, GPU_RESOURCE: gpus},
        },
        "volumeMounts": mounts,
        **(openai_probes(model) if model.openai.enabled else probes(model.name if model.backend == "vllm" else None)),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": pod_security.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        # Pod Identity and IRSA inject their own projected tokens; no API token needed.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "nodeSelector": node_selector_for(model.node_pool),
        "tolerations": gpu_tolerations(),
        "topologySpreadConstraints": topology_spread(model),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security.pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": image_pull_secret}]
    annotations = {"tritonllm.io/engine-key": engine_key} if engine_key else {}
    if model.uses_llmapi:
        # A changed model.yaml/config.pbtxt (a ConfigMap) must roll the pods.
        annotations["tritonllm.io/llmapi-config"] = llmapi_config_hash(model)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(DEPLOYMENT_NAME, model.name, model),
        "spec": {
            "replicas": model.min_replicas,  # the HPA owns it afterwards (TritonLLM ignores later changes)
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": pod_labels(model)},
            # Surge, never drop below the current capacity: a replacement loads before the old pod goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": STARTUP_BUDGET_SECONDS + 600,
            "template": {
                "metadata": {"labels": object_labels(model), **({"annotations": annotations} if annotations else {})},
                "spec": pod_spec,
            },
        },
    }


# --------------------------------------------------------------------------- OpenAI frontend, LLM API

LLMAPI_CONFIGMAP = "llmapi-model"


def llmapi_configmap_manifest(model: ModelConfig) -> dict[str, Any]:
    """The rendered llmapi config.pbtxt and model.yaml (components/serving/builders/llmapi.py)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(LLMAPI_CONFIGMAP, model.name, model),
        "data": llmapi_repository.configmap_data(model),
    }


def llmapi_config_hash(model: ModelConfig) -> str:
    import hashlib

    text = json.dumps(llmapi_repository.configmap_data(model), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def llmapi_volumes() -> list[dict[str, Any]]:
    return [
        {"name": "llmapi-config", "configMap": {"name": LLMAPI_CONFIGMAP}},
        {"name": "llmapi-repository", "emptyDir": {}},
    ]


def llmapi_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "llmapi-config", "mountPath": llmapi_repository.CONFIG_MOUNT, "readOnly": True},
        {"name": "llmapi-repository", "mountPath": llmapi_repository.REPOSITORY_DIR},
    ]


def model_repository_location(model: ModelConfig, bucket: str) -> str:
    if model.backend == "vllm":
        return vllm_repository_uri(bucket, model)
    return llmapi_repository.REPOSITORY_DIR if model.uses_llmapi else TRTLLM_REPOSITORY


def server_command(model: ModelConfig, bucket: str) -> list[str]:
    """The Triton container's command: Triton's OpenAI frontend (openai.enabled), the llmapi
    launcher (trtllm.runtime llmapi), or the tritonserver command of triton_command."""
    repository = model_repository_location(model, bucket)
    if model.openai.enabled:
        return openai_frontend.frontend_command(model, repository)
    if model.uses_llmapi:
        server = [
            *llmapi_repository.launcher(model),
            "tritonserver",
            *tritonserver_args(repository),
            *llmapi_repository.TRITONSERVER_EXTRA_ARGS,
        ]
        script = llmapi_repository.prepare_script(model) + "\nexec " + shlex.join(server)
        return ["/bin/sh", "-c", script]
    return triton_command(model, bucket)


def container_ports(model: ModelConfig) -> list[tuple[str, int]]:
    return openai_frontend.container_ports() if model.openai.enabled else list(PORTS)


# --------------------------------------------------------------------------- how to call it

CLIENT_PROMPTS = "prompts.txt"


def client_command(model: ModelConfig, grpc_endpoint: str | None) -> str:
    """The exact `tritonllm client` call for this model through the gateway's gRPC endpoint."""
    url = grpc_endpoint or "<grpcEndpoint: the load balancer is not provisioned yet>"
    name = served_model_name(model)
    return shlex.join(
        [
            "python",
            "-m",
            "tritonllm",
            "client",
            "--url",
            url,
            "--protocol",
            "grpc",
            "--model-name",
            name,
            "--input-prompts",
            CLIENT_PROMPTS,
            "--results-file",
            f"results/{name}.txt",
        ]
    )
