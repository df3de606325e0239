"""Register a manifest dict from a pure builder as a Kubernetes resource: the typed pulumi-kubernetes
class for the built-in kinds (their fields as snake_case keyword arguments), CustomResource otherwise.
One helper for every component that registers builder output (TritonLLM, WeightsMirror, ScaleToZero)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

# Built-in kinds -> typed pulumi-kubernetes classes (custom resources go through CustomResource).
_TYPED = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


def k8s_object(
    name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions, **extra: Any
) -> pulumi.CustomResource:
    """Register a manifest dict: typed class for built-in kinds, CustomResource otherwise."""
    cls = _TYPED.get((manifest["apiVersion"], manifest["kind"]))
    fields = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    fields.update(extra)
    if cls is None:
        return k8s.apiextensions.CustomResource(
            name, api_version=manifest["apiVersion"], kind=manifest["kind"], opts=opts, **fields
        )
    # Typed classes take spec fields as keyword arguments in snake_case.
    renamed = {_snake(k): v for k, v in fields.items()}
    return cls(name, opts=opts, **renamed)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
