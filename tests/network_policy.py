"""A NetworkPolicy evaluator: would the API's networking/v1 semantics let this connection through?

Nothing on the test machines enforces NetworkPolicy (no cluster, no CNI), so the tests judge the
policies the program renders with the rules the Kubernetes API reference gives for
`networking.k8s.io/v1` NetworkPolicy (NetworkPolicySpec, NetworkPolicyIngressRule/EgressRule,
NetworkPolicyPeer, NetworkPolicyPort, LabelSelector):

* A pod is isolated for ingress (egress) when at least one NetworkPolicy of its namespace selects
  it (`spec.podSelector`, `{}` selects every pod) and lists Ingress (Egress) in `policyTypes`.
  `policyTypes` left out means Ingress, plus Egress when the policy has an `egress` section.
* A non-isolated direction allows everything. An isolated one allows a connection when some rule of
  some selecting policy allows it; policies only add (their union), nothing subtracts.
* A rule without `from`/`to` (or with an empty list) matches every peer; without `ports` (or empty)
  every port. A peer is `ipBlock` (CIDR minus `except`), or `podSelector` (pods of the policy's own
  namespace), or `namespaceSelector` (every pod of the selected namespaces), or both selectors
  (those pods in those namespaces). A port: `protocol` (default TCP), `port` (number, or the name of
  a container port of the destination pod), `endPort` (a range).
* A connection is allowed when the source's egress and the destination's ingress both allow it.
  Namespaces carry the label `kubernetes.io/metadata.name: <name>` (set by the API server).
* Traffic from a pod's own node (kubelet probes, hostNetwork pods) is never blocked: Kubernetes says a
  pod cannot block "access from their resident node", and the VPC CNI's agent allows the node IP
  (components/serving/builders/network_policies.py cites both). The evaluator models it as
  `Peer.node()`, always allowed into a pod on that node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (namespace, labels, named container ports, IP), something
    outside the cluster (an IP only), or the pod's own node."""

    name: str
    namespace: str | None = None  # None: not a pod
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports
    ip: str = "100.64.0.1"
    is_node: bool = False

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None and not self.is_node

    @classmethod
    def pod(
        cls,
        name: str,
        namespace: str,
        labels: Mapping[str, str],
        ports: Mapping[str, int] | None = None,
        ip: str = "100.64.0.1",
    ) -> Peer:
        return cls(name, namespace, dict(labels), dict(ports or {}), ip)

    @classmethod
    def external(cls, name: str, ip: str) -> Peer:
        return cls(name, None, {}, {}, ip)

    @classmethod
    def node(cls, ip: str = "10.0.0.10") -> Peer:
        return cls("node (kubelet)", None, {}, {}, ip, is_node=True)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels AND every matchExpressions requirement; `{}` matches all."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


class Cluster:
    """Namespaces (name -> labels) and every NetworkPolicy manifest in them."""

    def __init__(self, namespaces: Mapping[str, Mapping[str, str]], policies: Iterable[Mapping[str, Any]]):
        self.namespace_labels = {name: {**labels, NAMESPACE_NAME_LABEL: name} for name, labels in namespaces.items()}
        self.policies = list(policies)
        for policy in self.policies:
            namespace = policy["metadata"]["namespace"]
            if namespace not in self.namespace_labels:
                raise ValueError(f"NetworkPolicy {policy['metadata']['name']!r} in unknown namespace {namespace!r}")

    # ---- which policies apply

    @staticmethod
    def policy_types(policy: Mapping[str, Any]) -> list[str]:
        spec = policy["spec"]
        if spec.get("policyTypes"):
            return list(spec["policyTypes"])
        return ["Ingress"] + (["Egress"] if "egress" in spec else [])

    def selecting(self, pod: Peer, direction: str) -> list[Mapping[str, Any]]:
        """Policies of the pod's namespace that select it and govern `direction` (Ingress or Egress)."""
        if not pod.is_pod:
            return []
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and selector_matches(p["spec"].get("podSelector", {}), pod.labels)
            and direction in self.policy_types(p)
        ]

    # ---- rule matching

    def _peer_matches(self, peer: Mapping[str, Any], policy_namespace: str, other: Peer) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            ip = ipaddress.ip_address(other.ip)
            inside = ip in ipaddress.ip_network(block["cidr"])
            return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
        if not other.is_pod:
            return False  # selectors match pods only
        pod_selector, ns_selector = peer.get("podSelector"), peer.get("namespaceSelector")
        if ns_selector is not None:
            if not selector_matches(ns_selector, self.namespace_labels.get(other.namespace or "", {})):
                return False
        elif other.namespace != policy_namespace:
            return False  # podSelector alone: the policy's own namespace
        return pod_selector is None or selector_matches(pod_selector, other.labels)

    @staticmethod
    def _port_matches(rule_ports: list[Mapping[str, Any]] | None, port: int, protocol: str, destination: Peer) -> bool:
        if not rule_ports:
            return True
        for entry in rule_ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):  # a named port of the destination pod
                number = destination.ports.get(wanted)
                if number is not None and number == port:
                    return True
                continue
            end = entry.get("endPort", wanted)
            if wanted <= port <= end:
                return True
        return False

    def _direction_allows(
        self, pod: Peer, other: Peer, port: int, protocol: str, direction: str, destination: Peer
    ) -> bool:
        policies = self.selecting(pod, direction)
        if not policies:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(p, policy["metadata"]["namespace"], other) for p in peers):
                    continue
                if self._port_matches(rule.get("ports"), port, protocol, destination):
                    return True
        return False

    def allowed(self, source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection from `source` to `destination`:`port` gets through."""
        if source.is_node:  # a pod's own node: never blocked (kubelet probes)
            return True
        egress = self._direction_allows(source, destination, port, protocol, "Egress", destination)
        ingress = self._direction_allows(destination, source, port, protocol, "Ingress", destination)
        return egress and ingress

    def why(self, source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> str:
        """For assertion messages: which policies isolate the two ends."""
        names = lambda ps: [p["metadata"]["name"] for p in ps]  # noqa: E731
        return (
            f"{source.name} -> {destination.name}:{port}/{protocol}: egress policies of the source "
            f"{names(self.selecting(source, 'Egress'))}, ingress policies of the destination "
            f"{names(self.selecting(destination, 'Ingress'))}"
        )
