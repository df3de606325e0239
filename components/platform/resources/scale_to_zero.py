"""ScaleToZero: KEDA and its HTTP add-on, installed only when a model scales to zero (models[].minReplicas: 0).

- The keda namespace (restricted Pod Security enforced).
- KEDA (chart pinned in versions.py; its CRDs match ../shared/reference/crds/keda.sh_*) and the HTTP add-on
  (its CRDs: http.keda.sh_*), values from components/platform/builders/keda.py.
- The ReferenceGrant that lets the models' routes send to the interceptor's proxy Service, and the
  NetworkPolicies of the add-on's pods.

The per-model objects (InterceptorRoutes, ScaledObject, the routes through the interceptor) belong to each
model's TritonLLM (components/serving/builders/scale_to_zero.py), created after this component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.catalog import versions
from components.platform.builders import karpenter as kp
from components.platform.builders import keda
from components.platform.builders.cluster import SYSTEM_NODE_SELECTOR
from components.platform.resources.cluster import ClusterRef
from components.platform.resources.k8s_objects import k8s_object
from components.tokens import component_type


@dataclass(frozen=True)
class ScaleToZeroArgs:
    cluster: ClusterRef
    route_namespaces: Sequence[str]  # the namespaces of the models that scale to zero (their routes)
    drain_seconds: Sequence[int]  # their models[].drainSeconds: the interceptor drains as long as the longest
    gateway_namespace: str  # NGINX's pods, the only ones that reach the interceptor's proxy port
    gateway_pod_labels: Mapping[str, str]
    system_node_selector: Mapping[str, str] = field(default_factory=lambda: dict(SYSTEM_NODE_SELECTOR))


class ScaleToZero(pulumi.ComponentResource):
    """KEDA + HTTP add-on releases, ReferenceGrant, NetworkPolicies. Attributes: keda_release, http_add_on_release."""

    def __init__(self, name: str, args: ScaleToZeroArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "ScaleToZero"), name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.cluster.k8s_provider)
        system = pulumi.ResourceOptions.merge(
            k8s_opts, pulumi.ResourceOptions(depends_on=[args.cluster.system_node_group])
        )
        namespace_manifest = keda.namespace_manifest()
        namespace = k8s.core.v1.Namespace(f"{name}-keda-ns", metadata=namespace_manifest["metadata"], opts=system)
        in_namespace = pulumi.ResourceOptions.merge(system, pulumi.ResourceOptions(depends_on=[namespace]))
        self.keda_release = k8s.helm.v3.Release(
            f"{name}-keda",
            name=keda.KEDA_RELEASE,
            namespace=keda.NAMESPACE,
            **kp.chart_source(versions.KEDA),
            values=keda.keda_helm_values(args.system_node_selector),
            opts=in_namespace,
        )
        # The add-on's chart creates a ScaledObject for its own interceptor: KEDA's CRDs first.
        self.http_add_on_release = k8s.helm.v3.Release(
            f"{name}-keda-http-add-on",
            name=keda.HTTP_ADD_ON_RELEASE,
            namespace=keda.NAMESPACE,
            **kp.chart_source(versions.KEDA_HTTP_ADD_ON),
            values=keda.http_add_on_helm_values(
                drain_seconds=args.drain_seconds, node_selector=args.system_node_selector
            ),
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[self.keda_release])),
        )
        k8s_object(f"{name}-routes-to-interceptor", keda.reference_grant_manifest(args.route_namespaces), in_namespace)
        for policy in keda.network_policies(args.gateway_namespace, args.gateway_pod_labels):
            k8s_object(f"{name}-netpol-{policy['metadata']['name']}", policy, in_namespace)
        self.ready = [self.keda_release, self.http_add_on_release]
        self.register_outputs({})
