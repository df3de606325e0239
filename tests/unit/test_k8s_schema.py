"""tests/k8s_schema.py keeps one validator per kind for the session (building one per object was most of
the schema checks' time). What every schema test relies on, checked here: the cached validators still
reject what they rejected before, however many objects they accepted in between, and for built-in kinds
they give upstream's own verdict (`kubernetes_validate.validate`, kubernetes-validate 1.37.0) with the
same path and message.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from components.catalog import versions
from tests import k8s_schema
from tests.unit.conftest import stack_run_for


def _breakages(manifest: dict) -> list[tuple[str, dict]]:
    unknown = copy.deepcopy(manifest)
    unknown.setdefault("spec", {})["notAField"] = 1  # strict: the API server would drop it silently
    wrong_type = copy.deepcopy(manifest)
    wrong_type["metadata"]["name"] = 123
    return [("unknown field", unknown), ("wrong type", wrong_type)]


def _upstream_verdict(manifest: dict) -> tuple[list, str] | None:
    try:
        kubernetes_validate.validate(manifest, f"{versions.EKS_VERSION}.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        return list(exc.path), exc.message
    return None


def _our_verdict(manifest: dict) -> str | None:
    try:
        k8s_schema.validate_k8s_object(manifest)
    except AssertionError as exc:
        return str(exc)
    return None


def test_builtin_kinds_get_upstreams_verdict_every_time():
    run = stack_run_for("dev")
    # One object of each built-in kind the stack renders (upstream's validate parses its schema files per call).
    builtin = {(m["apiVersion"], m["kind"]): m for m in run.manifests() if not k8s_schema.is_custom_resource(m)}
    kinds = {kind for _, kind in builtin}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler"} <= kinds, kinds
    for manifest in builtin.values():
        assert _upstream_verdict(manifest) is None and _our_verdict(manifest) is None, manifest["kind"]
        for what, broken in _breakages(manifest):
            path, message = _upstream_verdict(broken) or pytest.fail(f"upstream accepts {what} in {manifest['kind']}")
            ours = _our_verdict(broken)
            name = broken["metadata"]["name"]
            where = ".".join(map(str, path)) or "(root)"
            assert ours == f"{manifest['kind']} {name!r} invalid at {where}: {message}", (what, ours)
        assert _our_verdict(manifest) is None  # the validator that just refused keeps no state


def test_custom_resources_reject_unknown_fields_after_accepting_valid_ones():
    if not k8s_schema.reference_available():
        pytest.skip(f"no reference CRDs at {k8s_schema.REFERENCE_DIR} ({k8s_schema.HOW_TO_GET})")
    run = stack_run_for("dev")
    custom = [m for m in run.manifests() if k8s_schema.is_custom_resource(m)]
    assert {"NodePool", "EC2NodeClass"} <= {m["kind"] for m in custom}
    for manifest in custom:
        k8s_schema.validate_custom_resource(manifest)
        broken = copy.deepcopy(manifest)
        broken.setdefault("spec", {})["notAField"] = 1
        with pytest.raises(AssertionError, match=r"does not match its CRD schema:\n  spec: Additional properties"):
            k8s_schema.validate_custom_resource(broken)
        k8s_schema.validate_custom_resource(manifest)
