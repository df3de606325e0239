"""The NetworkPolicy evaluator (tests/network_policy.py) against the networking/v1 rules it implements.

The cases follow the Kubernetes documentation's NetworkPolicy page (concepts/services-networking/
network-policies: "The two sorts of pod isolation", "Behavior of to and from selectors", "Default
policies", "Targeting a range of ports") and the API reference's field descriptions.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s_schema import validate_k8s_object
from tests.network_policy import Cluster, Peer, selector_matches

NAMESPACES = {"prod": {"team": "a"}, "dev": {"team": "b"}, "other": {}}
DB = Peer.pod("db", "prod", {"role": "db"}, {"pg": 5432}, ip="172.17.0.10")
FRONTEND = Peer.pod("frontend", "prod", {"role": "frontend"}, ip="172.17.0.11")
DEV_FRONTEND = Peer.pod("dev frontend", "dev", {"role": "frontend"}, ip="172.17.1.11")
OTHER = Peer.pod("other", "other", {"role": "frontend"}, ip="172.17.2.11")


def policy(spec: dict[str, Any], namespace: str = "prod", name: str = "p") -> dict[str, Any]:
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    validate_k8s_object(manifest)  # every case is a policy the API server would accept
    return manifest


def cluster(*policies: dict[str, Any]) -> Cluster:
    return Cluster(NAMESPACES, policies)


def test_no_policy_allows_everything():
    assert cluster().allowed(OTHER, DB, 5432)


def test_default_deny_selects_every_pod_of_its_namespace_only():
    c = cluster(policy({"podSelector": {}, "policyTypes": ["Ingress"]}))
    assert not c.allowed(FRONTEND, DB, 5432) and not c.allowed(OTHER, DB, 1)
    assert c.allowed(DB, OTHER, 80)  # egress not isolated, and `other` not selected
    assert c.allowed(DB, DEV_FRONTEND, 80)


def test_allow_all_rule_and_empty_peer_list():
    c = cluster(policy({"podSelector": {}, "ingress": [{}]}))
    assert c.allowed(OTHER, DB, 5432)
    c = cluster(policy({"podSelector": {}, "ingress": [{"from": [], "ports": []}]}))
    assert c.allowed(OTHER, DB, 9)


def test_pod_selector_peer_means_the_policys_namespace():
    c = cluster(
        policy(
            {
                "podSelector": {"matchLabels": {"role": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}],
            }
        )
    )
    assert c.allowed(FRONTEND, DB, 5432)
    assert not c.allowed(DEV_FRONTEND, DB, 5432) and not c.allowed(OTHER, DB, 5432)
    assert c.allowed(OTHER, FRONTEND, 80)  # frontend is not selected


def test_namespace_and_pod_selector_in_one_peer_is_an_and_in_two_peers_an_or():
    both = {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"role": "frontend"}}}
    c = cluster(policy({"podSelector": {}, "ingress": [{"from": [both]}]}))
    assert c.allowed(DEV_FRONTEND, DB, 1) and not c.allowed(OTHER, DB, 1) and not c.allowed(FRONTEND, DB, 1)
    either = [
        {"namespaceSelector": {"matchLabels": {"team": "b"}}},
        {"podSelector": {"matchLabels": {"role": "frontend"}}},
    ]
    c = cluster(policy({"podSelector": {}, "ingress": [{"from": either}]}))
    assert c.allowed(DEV_FRONTEND, DB, 1) and c.allowed(FRONTEND, DB, 1) and not c.allowed(OTHER, DB, 1)


def test_namespace_name_label_is_set_by_the_api_server():
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}
    c = cluster(policy({"podSelector": {}, "ingress": [{"from": [peer]}]}))
    assert c.allowed(OTHER, DB, 1) and not c.allowed(DEV_FRONTEND, DB, 1)


def test_ip_block_with_except():
    peer = {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}
    c = cluster(policy({"podSelector": {}, "ingress": [{"from": [peer]}]}))
    assert c.allowed(OTHER, DB, 1) and not c.allowed(DEV_FRONTEND, DB, 1)
    assert c.allowed(Peer.external("vm", "172.17.9.9"), DB, 1) and not c.allowed(Peer.external("x", "10.0.0.1"), DB, 1)


def test_ports_protocol_named_ports_and_ranges():
    rule = {
        "ports": [{"port": 5432}, {"protocol": "UDP", "port": 53}, {"port": "pg"}, {"port": 32000, "endPort": 32768}]
    }
    c = cluster(policy({"podSelector": {}, "ingress": [rule]}))
    assert c.allowed(OTHER, DB, 5432) and not c.allowed(OTHER, DB, 5433)
    assert c.allowed(OTHER, DB, 53, "UDP") and not c.allowed(OTHER, DB, 53, "TCP")
    assert c.allowed(OTHER, DB, 32000) and c.allowed(OTHER, DB, 32768) and not c.allowed(OTHER, DB, 32769)
    named_only = cluster(policy({"podSelector": {}, "ingress": [{"ports": [{"port": "pg"}]}]}))
    assert named_only.allowed(OTHER, DB, 5432) and not named_only.allowed(OTHER, FRONTEND, 5432)  # no `pg` port there


def test_policy_types_default_and_egress_isolation():
    # no policyTypes + an egress section: the policy governs both directions
    c = cluster(
        policy(
            {
                "podSelector": {"matchLabels": {"role": "frontend"}},
                "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "db"}}}]}],
            }
        )
    )
    assert c.allowed(FRONTEND, DB, 5432)
    assert not c.allowed(FRONTEND, OTHER, 80)  # egress isolated: only to db
    assert not c.allowed(OTHER, FRONTEND, 80)  # ingress isolated too (Ingress is always implied), no rule
    # Egress only: ingress untouched
    c = cluster(policy({"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"]}))
    assert c.allowed(OTHER, FRONTEND, 80) and not c.allowed(FRONTEND, OTHER, 80)


def test_a_connection_needs_both_ends():
    deny_egress = policy({"podSelector": {}, "policyTypes": ["Egress"]}, namespace="other")
    c = cluster(deny_egress, policy({"podSelector": {}, "ingress": [{}]}))
    assert not c.allowed(OTHER, DB, 5432)


def test_policies_add_up():
    only_db = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 5432}]}]}, name="a")
    also_http = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}, name="b")
    c = cluster(only_db, also_http)
    assert c.allowed(OTHER, DB, 5432) and c.allowed(OTHER, DB, 80) and not c.allowed(OTHER, DB, 81)


def test_the_node_is_never_blocked():
    c = cluster(policy({"podSelector": {}, "policyTypes": ["Ingress"]}))
    assert c.allowed(Peer.node(), DB, 5432)


@pytest.mark.parametrize(
    "selector, labels, matches",
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
    ],
)
def test_label_selectors(selector, labels, matches):
    assert selector_matches(selector, labels) is matches
