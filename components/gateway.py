"""Gateway: AWS Load Balancer Controller + NGINX Gateway Fabric behind one NLB.

Everything here is registered from the pure builders in `components.gateway_manifests`;
read that module for the routing scheme (what clients must send).

Why `pulumi destroy` leaves no load balancer behind
---------------------------------------------------
The NLB, its target groups, its security group and the rules it adds to the targets'
security group are created by the AWS Load Balancer Controller (LBC), outside Pulumi. The
controller deletes them only while it runs, when the Service they belong to is deleted:
the Service carries the LBC's finalizer `service.k8s.aws/resources`, so Kubernetes keeps
the Service until the controller has removed the AWS resources and dropped the finalizer.

So the one Service that becomes an NLB is a resource this component owns (NGF is told to
make its own NGINX Service ClusterIP), and it `depends_on` the LBC Helm release. Pulumi
destroys in reverse dependency order, and the Kubernetes provider's delete waits until the
object is really gone (finalizers included), so on destroy:

    1. the Service is deleted; Pulumi waits while the still-running LBC deletes the NLB,
       target groups and security groups and releases the finalizer;
    2. only then the LBC release, its Pod Identity association, its IAM policy and role
       (the association depends on the policy, so the controller keeps its permissions
       until it is gone), and after the release what it runs on (`controllers_depend_on`:
       system nodes, Pod Identity agent, CoreDNS, CNI);
    3. the cluster, then the VPC.

If the controller cannot clean up (say, it lost its permissions), the Service's deletion
times out and `pulumi destroy` fails loudly instead of leaking an NLB.

Nothing else here creates AWS resources: NGF's own Service is ClusterIP, and the LBC's
Service mutator webhook, Ingress class and Gateway API controllers are turned off.
tests/unit/test_gateway_component.py checks this graph under mocks.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as kubernetes

from components import iam, versions
from components import gateway_manifests as gm
from components.cluster import SYSTEM_NODE_SELECTOR
from components.config import StackConfig


def _helm_chart_args(chart: versions.Chart) -> dict:
    """Chart reference for helm.v3.Release: OCI charts by URL, others through a repository."""
    if chart.repo.startswith("oci://"):
        return {"chart": f"{chart.repo}/{chart.name}", "version": chart.version}
    return {
        "chart": chart.name,
        "version": chart.version,
        "repository_opts": kubernetes.helm.v3.RepositoryOptsArgs(repo=chart.repo),
    }


def _manifest_resource(
    name: str, manifest: dict, opts: pulumi.ResourceOptions
) -> kubernetes.apiextensions.CustomResource:
    return kubernetes.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )


class Gateway(pulumi.ComponentResource):
    """The cluster's inference entry point: NLB -> NGINX Gateway Fabric -> Triton routes.

    Attributes for wiring:
      gateway_name, gateway_namespace  where Triton's HTTPRoute/GRPCRoute attach (parentRefs)
      route_namespace_labels           labels a model namespace needs for its routes to attach
      hostname                         the NLB's DNS name (Output[str])
      http_endpoint, grpc_endpoint     `http://<host>:8000`, `<host>:8001` (Output[str])
      load_balancer_service            the Service that is the NLB (depend on it to wait for the NLB)
    Triton should create its routes with `depends_on=[gateway]` so they are created after,
    and deleted before, the Gateway and the CRDs.

    controllers_depend_on: what the two controllers run on, e.g.
    `[cluster.system_node_group, *cluster.addons.values()]`. Besides making the Helm installs
    wait for nodes, this keeps the nodes, the Pod Identity agent (credentials), CoreDNS and the
    CNI alive on destroy until the LBC has deleted the NLB.
    """

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        *,
        k8s_provider: pulumi.ProviderResource,
        cluster_name: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        system_node_selector: Mapping[str, str] | None = SYSTEM_NODE_SELECTOR,
        controllers_depend_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tritonllm:gateway:Gateway", name, None, opts)
        aws_opts = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=k8s_provider)

        self.gateway_name = gm.GATEWAY_NAME
        self.gateway_namespace = gm.NGF_NAMESPACE
        self.route_namespace_labels = gm.route_namespace_labels()

        # Gateway API CRDs (standard channel): the NGF chart ships only its own gateway.nginx.org CRDs.
        self.gateway_api_crds = kubernetes.yaml.v2.ConfigFile(
            f"{name}-gateway-api-crds", file=gm.GATEWAY_API_CRDS_URL, opts=k8s_opts
        )

        # --- AWS Load Balancer Controller: its own role through EKS Pod Identity.
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        lbc_role, _ = iam.pod_identity_role(
            f"{name}-lbc",
            cluster_name=cluster_name,
            namespace=gm.LBC_NAMESPACE,
            service_account=gm.LBC_SERVICE_ACCOUNT,
            account_id=account_id,
            associate=False,  # made below, after the policy: the controller keeps its permissions to the end
            opts=aws_opts,
        )
        lbc_policy = aws.iam.RolePolicy(
            f"{name}-lbc-policy",
            role=lbc_role.id,
            policy=json.dumps(gm.lbc_controller_policy_document(), separators=(",", ":")),
            opts=aws_opts,
        )
        lbc_association = aws.eks.PodIdentityAssociation(
            f"{name}-lbc",
            cluster_name=cluster_name,
            namespace=gm.LBC_NAMESPACE,
            service_account=gm.LBC_SERVICE_ACCOUNT,
            role_arn=lbc_role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[lbc_policy]),
        )
        self.lbc_release = kubernetes.helm.v3.Release(
            f"{name}-lbc",
            kubernetes.helm.v3.ReleaseArgs(
                name=gm.LBC_RELEASE_NAME,
                namespace=gm.LBC_NAMESPACE,
                values=gm.lbc_helm_values(
                    cluster_name=cluster_name,
                    region=cfg.region,
                    vpc_id=vpc_id,
                    node_selector=system_node_selector,
                    # The same tags the AWS provider puts on everything else (__main__.py).
                    tags={"tritonllm:stack": pulumi.get_stack(), **cfg.tags},
                ),
                timeout=600,
                **_helm_chart_args(versions.AWS_LOAD_BALANCER_CONTROLLER),
            ),
            # Credentials are injected at pod creation: the association must exist first. The
            # nodes and add-ons it runs on must outlive it on destroy (see module docstring).
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[lbc_association, *controllers_depend_on])
            ),
        )

        # --- NGINX Gateway Fabric (control plane; it provisions NGINX per Gateway).
        ngf_namespace = kubernetes.core.v1.Namespace(
            f"{name}-ngf",
            metadata={
                "name": gm.NGF_NAMESPACE,
                # The LBC keeps NGINX pods out of rotation until the NLB sees them healthy.
                "labels": {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"},
            },
            opts=k8s_opts,
        )
        self.ngf_release = kubernetes.helm.v3.Release(
            f"{name}-ngf",
            kubernetes.helm.v3.ReleaseArgs(
                name=gm.NGF_RELEASE_NAME,
                namespace=ngf_namespace.metadata.name,
                values=gm.ngf_helm_values(gateway_name=self.gateway_name, node_selector=system_node_selector),
                timeout=600,
                **_helm_chart_args(versions.NGINX_GATEWAY_FABRIC),
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.gateway_api_crds, *controllers_depend_on])
            ),
        )

        # --- The Gateway (GatewayClass comes with the NGF chart) and its NGINX settings.
        after_ngf = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[self.ngf_release, self.gateway_api_crds])
        )
        self.gateway = _manifest_resource(
            f"{name}-gateway", gm.gateway_manifest(self.gateway_name, self.gateway_namespace), after_ngf
        )
        after_gateway = pulumi.ResourceOptions.merge(after_ngf, pulumi.ResourceOptions(depends_on=[self.gateway]))
        _manifest_resource(
            f"{name}-proxy-settings",
            gm.proxy_settings_policy_manifest(self.gateway_name, self.gateway_namespace),
            after_gateway,
        )
        _manifest_resource(
            f"{name}-client-settings",
            gm.client_settings_policy_manifest(self.gateway_name, self.gateway_namespace),
            after_gateway,
        )

        # --- The NLB: a Service Pulumi owns, deleted (and awaited) while the LBC still runs.
        service = gm.load_balancer_service_manifest(
            scheme=cfg.gateway.scheme,
            allowed_cidrs=cfg.gateway.allowed_cidrs,
            gateway_name=self.gateway_name,
            namespace=self.gateway_namespace,
        )
        self.load_balancer_service = kubernetes.core.v1.Service(
            f"{name}-nlb",
            metadata=service["metadata"],
            spec=service["spec"],
            opts=pulumi.ResourceOptions.merge(
                k8s_opts,
                pulumi.ResourceOptions(
                    depends_on=[self.lbc_release, self.gateway, ngf_namespace],
                    # Creating an NLB and deleting one (finalizer) each take minutes.
                    custom_timeouts=pulumi.CustomTimeouts(create="20m", delete="20m"),
                ),
            ),
        )

        self.hostname = self.load_balancer_service.status.apply(gm.load_balancer_hostname)
        self.http_endpoint = self.hostname.apply(lambda h: gm.endpoints(h)["http"] if h else None)
        self.grpc_endpoint = self.hostname.apply(lambda h: gm.endpoints(h)["grpc"] if h else None)
        self.register_outputs({
            "gatewayName": self.gateway_name,
            "gatewayNamespace": self.gateway_namespace,
            "hostname": self.hostname,
            "httpEndpoint": self.http_endpoint,
            "grpcEndpoint": self.grpc_endpoint,
        })
