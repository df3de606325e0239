"""NetworkPolicies of a served model's namespace: nothing in the cluster reaches Triton around the gateway.

Without them any pod of the cluster can call a model's Triton on 8000/8001 with no API key (the
key is checked by the gateway only), and, where explicit model control is on (vLLM pods,
multi-node ranks), its model repository API, which loads models with file overrides (Triton
`docs/customization_guide/deploy.md`: arbitrary code execution, with the pod's S3 role and HF
token in reach). The VPC CNI enforces them (`enableNetworkPolicy`, components/platform/builders/
cluster.py). Per model namespace:

    default-deny-ingress   every pod of the namespace: no ingress unless a policy below allows it
    triton-from-gateway    NGINX Gateway Fabric's data-plane pods (namespace nginx-gateway, the
                           Gateway's pod labels) -> the serving pods' inference ports: HTTP 8000,
                           gRPC 8001, and the OpenAI frontend's 9000 when openai.enabled
    triton-from-interceptor  instead, for a model that scales to zero (minReplicas 0): the KEDA HTTP
                           add-on's interceptor pods (namespace keda), which NGINX sends that model's
                           requests to (components/serving/builders/scale_to_zero.py), -> the same ports
    triton-from-prometheus kube-prometheus-stack's Prometheus pods (namespace monitoring) -> the
                           metrics port the PodMonitor scrapes (8002; 9000 with the OpenAI frontend)
    triton-from-loadtest   `tritonllm loadtest` Job pods of this namespace -> HTTP 8000 (they call the
                           Service directly, by design: the gateway is not what they measure)
    multi-node models (registered by the multi-node group):
    triton-group           the model's pods -> each other, every port: ssh (2222), mpirun's ORTE
                           daemons and NCCL's bootstrap and socket transport use ports chosen at run
                           time (EFA traffic is not IP and is not subject to NetworkPolicy)
    nccl-test-group        `tritonllm nccl-test` pods -> each other, every port (the same wiring)

Ingress only, on purpose: what these pods send (DNS to kube-dns, S3 and STS over HTTPS, Hugging
Face, the Pod Identity agent on the node's link-local address) reaches no model control, and an egress list would have to follow AWS's and Hugging
Face's address ranges. Traffic inside a pod (the OpenAI frontend and Triton in one process, loopback)
is never subject to NetworkPolicy.

Kubelet probes come from the node and stay allowed: Kubernetes NetworkPolicy does not let a pod
block "access from their resident node" (kubernetes.io network-policies "What you can't do"), and
the VPC CNI's network policy agent adds the node IP as allow-all to every policy map (aws-network-
policy-agent v1.2.7, the agent of VPC CNI v1.20.4: pkg/fwruleprocessor/fw_rule_processor.go "Traffic
from the local node should always be allowed"; aws/aws-network-policy-agent#56 and #65).
"""

from __future__ import annotations

from typing import Any

from components.catalog.serving_metrics import METRICS_PORT_NAME
from components.catalog.triton_server import GRPC_PORT, HTTP_PORT
from components.config import ModelConfig, ModelSite
from components.gateway.builders import manifests as gateway_manifests
from components.observability.builders import monitoring_values
from components.serving.builders import multinode, scale_to_zero
from components.serving.builders import openai as openai_frontend
from components.serving.builders import triton_manifests as tm

API_VERSION = "networking.k8s.io/v1"
# Kubernetes sets this label on every namespace to its name (NamespaceDefaultLabelName, GA in 1.22).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# `tritonllm loadtest` labels its Job's pods so (tritonllm/loadtest.py, checked by the tests).
LOADTEST_POD_LABELS = {"app.kubernetes.io/name": "tritonllm-loadtest"}
# `tritonllm nccl-test` (components/serving/builders/multinode.py nccl_test_manifests).
NCCL_TEST_POD_LABELS = {"app.kubernetes.io/name": multinode.NCCL_TEST_NAME}


def _policy(
    model: ModelConfig, name: str, pod_selector: dict[str, str], ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": tm._meta(name, model.name, model),
        "spec": {
            "podSelector": {"matchLabels": dict(pod_selector)} if pod_selector else {},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def serving_pod_labels(model: ModelConfig) -> dict[str, str]:
    """The pods that serve the model's Service (multi-node: the leaders, whose rank 0 serves)."""
    return multinode.leader_selector(model) if model.multi_node is not None else tm.pod_labels(model)


def inference_ports(model: ModelConfig) -> list[int]:
    """What the gateway's routes reach: KServe HTTP and gRPC, and the OpenAI frontend when on."""
    return [HTTP_PORT, GRPC_PORT] + ([openai_frontend.OPENAI_PORT] if model.openai.enabled else [])


def metrics_port(model: ModelConfig) -> int:
    """The container port named `metrics` (what the PodMonitor scrapes)."""
    return dict(tm.container_ports(model))[METRICS_PORT_NAME]


def gateway_peer() -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: gateway_manifests.NGF_NAMESPACE}},
        "podSelector": {"matchLabels": gateway_manifests.nginx_dataplane_selector()},
    }


def prometheus_peer() -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: monitoring_values.NAMESPACE}},
        "podSelector": {"matchLabels": dict(monitoring_values.PROMETHEUS_POD_LABELS)},
    }


def model_network_policies(model: ModelConfig, site: ModelSite) -> list[dict[str, Any]]:
    """Every model's namespace: default deny, then the gateway, Prometheus and loadtest flows."""
    serving = serving_pod_labels(model)
    # The one hop in front of Triton: NGINX, or for a model that scales to zero the interceptor that holds
    # its requests (NGINX reaches the interceptor only: components/platform/builders/keda.py).
    front_name, front = (
        ("triton-from-interceptor", scale_to_zero.interceptor_peer())
        if model.scales_to_zero
        else ("triton-from-gateway", gateway_peer())
    )
    policies = [
        _policy(model, "default-deny-ingress", {}, []),
        _policy(model, front_name, serving, [{"from": [front], "ports": _tcp(*inference_ports(model))}]),
        _policy(
            model,
            "triton-from-loadtest",
            serving,
            [{"from": [{"podSelector": {"matchLabels": dict(LOADTEST_POD_LABELS)}}], "ports": _tcp(HTTP_PORT)}],
        ),
    ]
    if site.monitoring_enabled:  # no Prometheus without the monitoring stack
        policies.append(
            _policy(
                model,
                "triton-from-prometheus",
                serving,
                [{"from": [prometheus_peer()], "ports": _tcp(metrics_port(model))}],
            )
        )
    return policies


def group_network_policies(model: ModelConfig) -> list[dict[str, Any]]:
    """A multi-node model's namespace: its ranks talk to each other on any port, and so do NCCL test pods."""
    if model.multi_node is None:
        raise ValueError(f"model {model.name!r} has no multiNode")
    group = tm.pod_labels(model)
    return [
        _policy(model, "triton-group", group, [{"from": [{"podSelector": {"matchLabels": dict(group)}}]}]),
        _policy(
            model,
            "nccl-test-group",
            NCCL_TEST_POD_LABELS,
            [{"from": [{"podSelector": {"matchLabels": dict(NCCL_TEST_POD_LABELS)}}]}],
        ),
    ]
