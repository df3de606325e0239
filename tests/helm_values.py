"""Check Helm values against a chart's default values (the reference folder's `helm-values/`, reference/manifest.toml).

A key the chart's defaults do not contain is usually ignored silently by the
chart's templates, so a typo (`grafana.admin.existingSecrets`) deploys without
error and without effect. `assert_values_keys_exist` fails on every such key.

    from tests.helm_values import assert_values_keys_exist
    assert_values_keys_exist(values, "kube-prometheus-stack-88.5.3.yaml",
                             free_form={"prometheus.prometheusSpec.storageSpec", "*.nodeSelector"})

`free_form` holds dotted paths whose contents the chart passes through verbatim
(labels, annotations, nodeSelector, resources, storageSpec...): keys below them
are not checked. A path segment `*` matches any one key, so `*.podLabels` covers
`podLabels` at any depth below the top level and `podLabels` only the top level.
Lists are values, not key paths: their items are not checked (charts show
example items only in comments). A map set where the defaults hold null or a
scalar is reported unless it is free-form.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Iterable

import yaml

from tests.k8s_schema import defer_reference_check, reference_available, require_reference_dir


def reference_values(reference_file: str) -> dict[str, Any]:
    """A chart's default values from the reference dir (the test is skipped when the dir is absent)."""
    path = Path(reference_file)
    if not path.is_absolute():
        path = require_reference_dir() / "helm-values" / reference_file
    if not path.is_file():
        raise AssertionError(
            f"no reference values file {path}; pin the chart's default values in reference/manifest.toml (helm-values/) and run `make reference`"
        )
    return yaml.safe_load(path.read_text()) or {}


def _is_free(path: str, free_form: Iterable[str]) -> bool:
    parts = path.split(".")
    for pattern in free_form:
        pattern_parts = pattern.split(".")
        if len(pattern_parts) > len(parts):
            continue
        if pattern_parts[0] == "*":
            # "*.x.y": x.y at any depth
            tail = pattern_parts[1:]
            for start in range(len(parts) - len(tail) + 1):
                if all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts[start : start + len(tail)], tail)):
                    return True
        elif all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern_parts)):
            return True
    return False


def unknown_keys(values: dict[str, Any], defaults: dict[str, Any], free_form: Iterable[str] = ()) -> list[str]:
    """Dotted paths of keys in `values` that the defaults do not have (outside free-form maps)."""
    free_form = tuple(free_form)
    problems: list[str] = []

    def walk(node: dict[str, Any], ref: Any, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if _is_free(path, free_form):
                continue
            if not isinstance(ref, dict) or key not in ref:
                problems.append(path)
                continue
            if isinstance(value, dict):
                default = ref[key]
                if isinstance(default, dict):
                    walk(value, default, path)
                elif value and default is not None:
                    problems.append(f"{path} (a map, but the chart's default is {type(default).__name__})")
                elif value:
                    # default null / commented-out block: the chart documents no keys, check none
                    problems.append(
                        f"{path} (the chart's default is empty; list it in free_form if the chart passes it through)"
                    )

    walk(values, defaults, "")
    return problems


def assert_values_keys_exist(
    values: dict[str, Any], reference_file: str, free_form: set[str] | frozenset[str] = frozenset()
) -> None:
    """Fail, naming each key, if `values` sets a key the chart's defaults in `reference_file` lack.

    `reference_file` is a file name in the reference folder's helm-values/ (e.g.
    `versions.KUBE_PROMETHEUS_STACK.reference_values_file`) or an absolute path.
    """
    if not Path(reference_file).is_absolute() and not reference_available():
        defer_reference_check(f"Helm values keys against {reference_file}")
        return
    problems = unknown_keys(values, reference_values(reference_file), free_form)
    if problems:
        raise AssertionError(
            f"Helm values keys not in the defaults of {Path(reference_file).name} (the chart would ignore "
            "them):\n" + "\n".join(f"  {p}" for p in problems)
        )
