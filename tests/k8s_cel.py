"""The CEL rules of a CRD (`x-kubernetes-validations`), evaluated on a custom resource as the API server would.

tests/k8s_schema.py checks a custom resource against its CRD's OpenAPI schema only; the API server also
runs every `x-kubernetes-validations` rule of the schema nodes the object has (CustomResourceDefinition
"Validation rules": a rule's `self` is the value at the node that declares it; a rule that reads `oldSelf`
is a transition rule and only runs on updates). This module evaluates them with cel-python (`celpy`, a
CEL implementation on PyPI), so a rule such as the InterceptorRoute's "exactly one of 'port' or 'portName'
must be set" fails a test instead of the `pulumi up`.

    from tests.k8s_cel import assert_cel_rules_hold
    assert_cel_rules_hold(manifest)      # AssertionError naming the path, the rule and its message

Rules are evaluated where the object has a value (a rule on an absent optional field does not run), after
the schema's defaults are filled in.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s_schema import _crd_schemas, defer_reference_check, reference_available


def _rules(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema.get("x-kubernetes-validations") or ())


def _with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's `default`s filled in where a field is absent, as the API server defaults an
    object before it validates it (an HTTPRoute backendRef's `group: ""` and `kind: Service`)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, child in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            out[key] = _with_defaults(sub, child)
        for key, sub in properties.items():
            if key not in out and "default" in sub:
                out[key] = _with_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_defaults(schema["items"], item) for item in value]
    return value


def _walk(schema: dict[str, Any], value: Any, path: str, out: list[tuple[str, dict[str, Any], Any]]) -> None:
    """(path, rule, value) for every rule on the nodes `value` has, depth first."""
    for rule in _rules(schema):
        out.append((path, rule, value))
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                _walk(properties[key], child, f"{path}.{key}" if path else key, out)
            elif isinstance(extra, dict):
                _walk(extra, child, f"{path}.{key}" if path else key, out)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", out)


def cel_rules(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """Every (path, rule, value) the API server would evaluate on create for `manifest`."""
    group, _, version = manifest["apiVersion"].partition("/")
    schema = _crd_schemas()[(group, version, manifest["kind"])]
    found: list[tuple[str, dict[str, Any], Any]] = []
    _walk(schema, _with_defaults(schema, manifest), "", found)
    return [(p, r, v) for p, r, v in found if "oldSelf" not in r["rule"]]


def rule_holds(rule: str, value: Any) -> bool:
    import celpy  # cel-python (requirements-test.txt)

    env = celpy.Environment()
    program = env.program(env.compile(rule))
    result = program.evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, Exception):
        raise AssertionError(f"CEL rule {rule!r} did not evaluate: {result}")
    return bool(result)


def assert_cel_rules_hold(manifest: dict[str, Any]) -> int:
    """Fail naming each rule of the manifest's CRD that `manifest` breaks; returns how many rules ran."""
    if not reference_available():
        defer_reference_check(f"CEL rules of {manifest.get('kind')} {manifest.get('metadata', {}).get('name')!r}")
        return 0
    broken = [
        f"  {path or '(root)'}: {rule.get('message', rule['rule'])} (rule: {rule['rule']})"
        for path, rule, value in cel_rules(manifest)
        if not rule_holds(rule["rule"], value)
    ]
    if broken:
        name = manifest.get("metadata", {}).get("name", "?")
        raise AssertionError(f"{manifest['kind']} {name!r} breaks CEL rules of its CRD:\n" + "\n".join(broken))
    return len(cel_rules(manifest))
