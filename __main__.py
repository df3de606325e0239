"""Triton LLM serving on Amazon EKS: config in, components in the middle, outputs out."""

import pulumi
import pulumi_aws as aws

from components.config import efa_pools, multi_node_pools, placement_group_pools, read_pulumi_config
from components.gateway.builders import certificates
from components.gateway.builders import manifests as gateway_manifests
from components.gateway.resources.gateway import Gateway, GatewayArgs
from components.observability.resources.container_insights import ContainerInsights, ContainerInsightsArgs
from components.observability.resources.monitoring import Monitoring, MonitoringArgs
from components.platform.builders import addon_versions
from components.platform.builders.karpenter import node_startup_taints
from components.platform.resources.cluster import Cluster, ClusterArgs
from components.platform.resources.image_cache import NodeImageCache, NodeImageCacheArgs
from components.platform.resources.karpenter import Karpenter, KarpenterArgs
from components.platform.resources.multinode import MultiNodePlatform, MultiNodePlatformArgs
from components.platform.resources.network import Network, NetworkArgs
from components.platform.resources.scale_to_zero import ScaleToZero, ScaleToZeroArgs
from components.platform.resources.storage import Storage, StorageArgs
from components.providers.addon_check import check_addon_versions
from components.providers.capacity import check_capacity
from components.providers.engine_build import resolve_engines
from components.providers.weights_mirror import resolve_mirrors
from components.serving.builders.serving_image import image_spec_for, node_pool_images
from components.serving.resources.model_store import ModelStore, ModelStoreArgs
from components.serving.resources.serving_images import ServingImages, ServingImagesArgs
from components.serving.resources.triton import TritonLLM, TritonLLMArgs
from components.serving.resources.weights_mirror import WeightsMirror, WeightsMirrorArgs

cfg = read_pulumi_config()  # raises ConfigError (every bad key, with its fix) before any resource exists
secrets = pulumi.Config("tritonllm")
hf_token = secrets.get_secret("hfToken")
ngc_api_key = secrets.get_secret("ngcApiKey")
api_keys = secrets.get_secret("apiKeys")
alert_webhook_url = secrets.get_secret("alertWebhookUrl")
# TRT-LLM engine keys: hfRevision resolved to its commit now (Hugging Face API, with the token for
# gated models); a failure is a ConfigError before any resource exists. The token stays in memory.
engines = resolve_engines(cfg, secrets.get("hfToken"))
# Every model's Hugging Face snapshot in the model store (hf-mirror/<repo>/<commit>/), keyed the same way.
mirrors = resolve_mirrors(cfg, secrets.get("hfToken"))

aws_provider = aws.Provider(
    "aws", region=cfg.region, default_tags={"tags": {"tritonllm:stack": pulumi.get_stack(), **cfg.tags}}
)
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})
# GPU capacity (docs/capacity.md): node pools' instance types offered in the zones, EC2 vCPU quotas;
# capacityCheck: error fails here, before any cloud resource, when a pool could never launch.
check_capacity(cfg, aws_provider)
# EKS add-on builds (docs/capacity.md): a pinned build EKS does not publish for the cluster's Kubernetes
# version would fail CreateAddon mid-`up`, after the cluster exists; under capacityCheck: error it fails here.
check_addon_versions(cfg, aws_provider)
stack = cfg.identity
multi_node = multi_node_pools(cfg)  # pool name -> the multi-node models it serves

network = Network(cfg.name, NetworkArgs(network=cfg.network, cluster_name=cfg.name), opts=aws_opts)
cluster = Cluster(
    cfg.name,
    ClusterArgs(
        stack=stack,
        cluster=cfg.cluster,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        public_subnet_ids=network.public_subnet_ids,
        pod_subnet_ids=network.pod_subnet_ids,
        availability_zones=network.availability_zones,
        optional_addons=addon_versions.cluster_optional_addons(cfg),
    ),
    opts=aws_opts,
)
model_store = ModelStore(cfg.name, ModelStoreArgs(model_store=cfg.model_store, region=cfg.region), opts=aws_opts)
# Serving images built in AWS CodeBuild (multi-node models: the EFA stack; servingImage.extraAptPackages),
# each tagged by its content key: an unchanged stack builds nothing.
extra_apt_packages = tuple(cfg.serving_image.extra_apt_packages)
image_specs = {m.name: spec for m in cfg.models if (spec := image_spec_for(m, extra_apt_packages)) is not None}
serving_images = (
    ServingImages(
        cfg.name,
        ServingImagesArgs(
            stack_name=cfg.name,
            region=cfg.region,
            model_store=model_store,
            specs=tuple(image_specs.values()),
            timeout_minutes=cfg.serving_image.build_timeout_minutes,
        ),
        opts=aws_opts,
    )
    if image_specs
    else None
)
model_images = {
    name: serving_images.image_uri(spec) for name, spec in image_specs.items() if serving_images is not None
}
# nodePools[].imageCache: the pool's serving images pre-pulled on the snapshot its nodes' data volumes start
# from (docs/coldstart.md "Images on the node"), rebuilt only when an image or the AMI release changes.
image_cache_pools = [pool for pool in cfg.node_pools if pool.image_cache.enabled]
image_cache = (
    NodeImageCache(
        cfg.name,
        NodeImageCacheArgs(
            stack=stack,
            pools=image_cache_pools,
            images={pool.name: node_pool_images(cfg.models, pool.name, model_images) for pool in image_cache_pools},
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            availability_zones=network.availability_zones,
            partition=cluster.partition,
            ecr_repository_arn=serving_images.repository.arn if serving_images is not None else None,
            private_egress=network.private_egress,
        ),
        opts=aws_opts,
    )
    if image_cache_pools
    else None
)
image_snapshots = image_cache.snapshot_ids if image_cache is not None else {}
karpenter = Karpenter(
    cfg.name,
    KarpenterArgs(
        stack=stack,
        cpu_node_pool=cfg.cpu_node_pool,
        cluster=cluster.ref,
        # Pools serving multi-node models (one zone, placement group, EFA) come from MultiNodePlatform.
        node_pools=[pool for pool in cfg.node_pools if pool.name not in multi_node],
        image_snapshots=image_snapshots,
        startup_taints=node_startup_taints(addon_versions.addons_mounted_by_models(cfg)),
    ),
    opts=aws_opts,
)
storage = (
    Storage(
        cfg.name,
        StorageArgs(
            efs=cfg.efs,
            cluster_name=cfg.name,
            vpc_id=network.vpc_id,
            cluster=cluster.ref,
            private_subnet_ids=[subnet.id for subnet in network.private_subnets],
        ),
        opts=aws_opts,
    )
    if cfg.efs.enabled
    else None
)
# Controllers that outlive what they clean up: the gateway's NLB Service is deleted
# while the nodes, Pod Identity agent and CoreDNS still run.
gateway = Gateway(
    cfg.name,
    GatewayArgs(
        stack=stack,
        gateway=cfg.gateway,
        network=cfg.network,
        k8s_provider=cluster.k8s_provider,
        cluster_name=cluster.cluster_name,
        vpc_id=network.vpc_id,
        api_keys=api_keys,
        controllers_depend_on=[cluster.system_node_group, *cluster.addons.values()],
        # Held requests (minReplicas 0) may be silent for a cold start: the plaintext NLB waits that long.
        nlb_idle_timeout_seconds=cfg.nlb_idle_timeout_seconds,
    ),
    opts=aws_opts,
)
monitoring = (
    Monitoring(
        cfg.name,
        MonitoringArgs(
            stack=stack,
            monitoring=cfg.monitoring,
            k8s_provider=cluster.k8s_provider,
            cluster_name=cluster.cluster_name,
            models=cfg.models,
            alert_webhook_url=alert_webhook_url,
        ),
        opts=aws_opts,
    )
    if cfg.monitoring.enabled
    else None
)
# CloudWatch Container Insights (opt-in, billed per observation): the amazon-cloudwatch-observability add-on.
container_insights = (
    ContainerInsights(cfg.name, ContainerInsightsArgs(monitoring=cfg.monitoring, cluster=cluster.ref), opts=aws_opts)
    if cfg.monitoring.cloudwatch.enabled
    else None
)
# Multi-node models: LWS controller, EFA device plugin, single-zone placement-group pools.
multinode_platform = (
    MultiNodePlatform(
        cfg.name,
        MultiNodePlatformArgs(
            stack=stack,
            pools=[cfg.node_pool(name) for name in sorted(multi_node)],
            efa_pools=frozenset(efa_pools(cfg)),
            placement_group_pools=frozenset(placement_group_pools(cfg)),
            cluster=cluster.ref,
            availability_zones=network.availability_zones,
            private_subnet_ids=network.private_subnet_ids,
            karpenter_node_role_name=karpenter.node_role.name,
            karpenter_ready=[karpenter.crd_release, karpenter.release],
            image_snapshots=image_snapshots,
        ),
        opts=aws_opts,
    )
    if multi_node
    else None
)
# Scale to zero (models[].minReplicas: 0): KEDA and its HTTP add-on, whose interceptor holds requests.
scale_to_zero = (
    ScaleToZero(
        cfg.name,
        ScaleToZeroArgs(
            cluster=cluster.ref,
            route_namespaces=[m.name for m in cfg.scale_to_zero_models],
            drain_seconds=[m.drain_seconds for m in cfg.scale_to_zero_models],
            gateway_namespace=gateway.gateway_namespace,
            gateway_pod_labels=gateway_manifests.nginx_dataplane_selector(gateway.gateway_name),
        ),
        opts=aws_opts,
    )
    if cfg.scale_to_zero_models
    else None
)

# Copies each snapshot once, in the cluster (a Job in the hf-mirror namespace, the only holder of the token).
weights_mirror = WeightsMirror(
    cfg.name,
    WeightsMirrorArgs(
        config=cfg,
        resolved=mirrors,
        cluster=cluster.ref,
        model_store=model_store,
        hf_token=hf_token,
        ngc_api_key=ngc_api_key,
    ),
    opts=pulumi.ResourceOptions.merge(aws_opts, pulumi.ResourceOptions(depends_on=[karpenter])),
)

served = {
    model.name: TritonLLM(
        model.name,
        TritonLLMArgs(
            model=model,
            site=cfg.site_of(model),
            cluster=cluster.ref,
            model_store=model_store,
            storage=storage,
            gateway=gateway,
            hf_token=hf_token,
            ngc_api_key=ngc_api_key,
            resolved_engine_build=engines.get(model.name),
            serving_image=model_images.get(model.name),
            weights=mirrors[model.name],
            weights_ready=weights_mirror.for_model(model.name),
        ),
        # GPU nodes and the PodMonitor CRD must exist before Triton pods are scheduled and scraped.
        opts=pulumi.ResourceOptions.merge(
            aws_opts,
            pulumi.ResourceOptions(
                depends_on=[r for r in (karpenter, monitoring, multinode_platform, scale_to_zero) if r is not None]
            ),
        ),
    )
    for model in cfg.models
}

pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
pulumi.export("bucketName", model_store.bucket_name)
pulumi.export("httpEndpoint", gateway.http_endpoint)
pulumi.export("grpcEndpoint", gateway.grpc_endpoint)
if gateway.ca_certificate is not None:
    # TLS with the program's own CA (no domain of the user's): what clients verify the endpoint against.
    pulumi.export(certificates.CA_OUTPUT, gateway.ca_certificate)
    pulumi.export("caCertificateCommand", certificates.ca_file_command())
if gateway.api_key_command:
    pulumi.export("apiKeyCommand", gateway.api_key_command)  # prints one `name:secret` key; never the key itself
pulumi.export("servedModels", [t.model_name for t in served.values()])
pulumi.export("clientCommands", {name: t.client_command for name, t in served.items()})
openai_models = [m.name for m in cfg.models if m.openai.enabled]
if openai_models:
    # OpenAI-compatible API (models[].openai.enabled): base URL per model, a curl and an `openai` SDK call.
    pulumi.export("openaiBaseUrls", {name: served[name].openai_base_url for name in openai_models})
    pulumi.export("openaiExamples", {name: served[name].openai_examples for name in openai_models})
pulumi.export(
    "updateKubeconfigCommand",
    pulumi.Output.concat("aws eks update-kubeconfig --region ", cfg.region, " --name ", cluster.cluster_name),
)
if model_images:
    # What each model with a built image runs (repository:tag@digest): `tritonllm nccl-test` reads
    # multinodeImage, node image pre-pulls may read servingImages.
    pulumi.export("servingImages", model_images)
    multinode_images = [uri for name, uri in model_images.items() if image_specs[name].name == "multinode"]
    if multinode_images:
        pulumi.export("multinodeImage", multinode_images[0])
if multinode_platform is not None:
    # Proof that the group's nodes talk over EFA: NCCL all-reduce across them, bus bandwidth printed.
    pulumi.export("ncclTestCommand", f"python -m tritonllm nccl-test --stack {pulumi.get_stack()}")
if monitoring is not None:
    pulumi.export("grafanaSecretName", monitoring.grafana_secret_name)
    pulumi.export("grafanaReadPasswordCommand", monitoring.grafana_read_password_command)
    pulumi.export("grafanaPortForwardCommand", monitoring.grafana_port_forward_command)
    pulumi.export("alertmanagerPortForwardCommand", monitoring.alertmanager_port_forward_command)
    if monitoring.alerts_topic_arn is not None:
        pulumi.export("alertsTopicArn", monitoring.alerts_topic_arn)
