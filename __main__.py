"""Triton LLM serving on Amazon EKS: config in, components in the middle, outputs out."""
import pulumi
import pulumi_aws as aws

from components.cluster import Cluster
from components.config import read_pulumi_config
from components.karpenter import Karpenter
from components.network import Network
from components.storage import Storage

cfg = read_pulumi_config()  # raises ConfigError (every bad key, with its fix) before any resource exists
secrets = pulumi.Config("tritonllm")
hf_token = secrets.get_secret("hfToken")
ngc_api_key = secrets.get_secret("ngcApiKey")

aws_provider = aws.Provider("aws", region=cfg.region, default_tags={"tags": {"tritonllm:stack": pulumi.get_stack(), **cfg.tags}})
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})

network = Network(cfg.name, cfg, opts=aws_opts)
cluster = Cluster(cfg.name, cfg, network, opts=aws_opts)
karpenter = Karpenter(cfg.name, cfg, cluster, network, opts=aws_opts)
storage = Storage(cfg.name, cfg, cluster, network, opts=aws_opts) if cfg.efs.enabled else None

pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
