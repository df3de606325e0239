"""Triton LLM serving on Amazon EKS: config in, components in the middle, outputs out."""
import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.config import read_pulumi_config
from components.engine_build import resolve_engines
from components.gateway import Gateway
from components.karpenter import Karpenter
from components.model_store import ModelStore
from components.monitoring import Monitoring
from components.multinode import multi_node_pools
from components.multinode_platform import MultiNodePlatform
from components.network import Network
from components.storage import Storage
from components.triton import TritonLLM

cfg = read_pulumi_config()  # raises ConfigError (every bad key, with its fix) before any resource exists
secrets = pulumi.Config("tritonllm")
hf_token = secrets.get_secret("hfToken")
ngc_api_key = secrets.get_secret("ngcApiKey")
api_keys = secrets.get_secret("apiKeys")
# TRT-LLM engine keys: hfRevision resolved to its commit now (Hugging Face API, with the token for
# gated models); a failure is a ConfigError before any resource exists. The token stays in memory.
engines = resolve_engines(cfg, secrets.get("hfToken"))

aws_provider = aws.Provider(
    "aws", region=cfg.region, default_tags={"tags": {"tritonllm:stack": pulumi.get_stack(), **cfg.tags}}
)
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})

network = Network(cfg.name, cfg, opts=aws_opts)
cluster = Cluster(cfg.name, cfg, network, opts=aws_opts)
karpenter = Karpenter(cfg.name, cfg, cluster, network, opts=aws_opts)
storage = Storage(cfg.name, cfg, cluster, network, opts=aws_opts) if cfg.efs.enabled else None
model_store = ModelStore(cfg.name, cfg, opts=aws_opts)
# Controllers that outlive what they clean up: the gateway's NLB Service is deleted
# while the nodes, Pod Identity agent and CoreDNS still run.
gateway = Gateway(
    cfg.name, cfg, k8s_provider=cluster.k8s_provider, cluster_name=cluster.cluster_name, vpc_id=network.vpc_id,
    controllers_depend_on=[cluster.system_node_group, *cluster.addons.values()], api_keys=api_keys, opts=aws_opts,
)
monitoring = Monitoring(cfg.name, cfg, cluster.k8s_provider, opts=aws_opts) if cfg.monitoring.enabled else None
# Multi-node models: LWS controller, EFA device plugin, single-zone placement-group pools.
multinode_platform = (MultiNodePlatform(cfg.name, cfg, cluster, network, karpenter, opts=aws_opts)
                      if multi_node_pools(cfg) else None)

served = {
    model.name: TritonLLM(
        model.name, model, cfg, cluster=cluster, model_store=model_store, storage=storage, gateway=gateway,
        hf_token=hf_token, ngc_api_key=ngc_api_key, resolved_engine_build=engines.get(model.name),
        # GPU nodes and the PodMonitor CRD must exist before Triton pods are scheduled and scraped.
        opts=pulumi.ResourceOptions.merge(
            aws_opts, pulumi.ResourceOptions(depends_on=[r for r in (karpenter, monitoring, multinode_platform) if r is not None])
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
if gateway.api_key_command:
    pulumi.export("apiKeyCommand", gateway.api_key_command)  # prints one `name:secret` key; never the key itself
pulumi.export("servedModels", [t.model_name for t in served.values()])
pulumi.export("clientCommands", {name: t.client_command for name, t in served.items()})
pulumi.export("updateKubeconfigCommand", pulumi.Output.concat(
    "aws eks update-kubeconfig --region ", cfg.region, " --name ", cluster.cluster_name))
if multinode_platform is not None:
    # Proof that the group's nodes talk over EFA: NCCL all-reduce across them, bus bandwidth printed.
    pulumi.export("ncclTestCommand", f"python -m tritonllm nccl-test --stack {pulumi.get_stack()}")
if monitoring is not None:
    pulumi.export("grafanaSecretName", monitoring.grafana_secret_name)
    pulumi.export("grafanaReadPasswordCommand", monitoring.grafana_read_password_command)
    pulumi.export("grafanaPortForwardCommand", monitoring.grafana_port_forward_command)
