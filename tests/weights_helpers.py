"""The weights mirror a test gives the builders (what resolve_mirrors returns at program start)."""

from __future__ import annotations

from typing import Any

from components.serving.builders import triton_manifests as tm
from components.serving.builders import weights_mirror as wm

TEST_COMMIT = "5" * 40


def mirror_of(model: Any, commit: str = TEST_COMMIT) -> wm.ResolvedMirror:
    return wm.resolved_mirror(model.hf_model_id, commit)


def deployment_manifest(model: Any, site: Any, **kwargs: Any) -> dict[str, Any]:
    """tm.deployment_manifest with the model's mirror, as TritonLLM calls it."""
    kwargs.setdefault("weights", mirror_of(model))
    return tm.deployment_manifest(model, site, **kwargs)
