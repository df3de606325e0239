"""Schema validation for Kubernetes objects and custom resources.

Built-in kinds validate against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package ships (always available); custom resources against the upstream
CRDs in the reference folder's crds/ (reference/manifest.toml pins every file of it).

The reference folder is, first found: $TRITONLLM_REFERENCE_DIR; .cache/reference when it holds
every manifest file (`make reference` downloads them there); ../shared/reference beside the clone
(an offline copy on machines without internet).

When the reference folder is absent, only what needs it is left out: a custom-resource or
Helm-values check records itself as not made (`defer_reference_check`) and the test goes on;
tests/conftest.py reports a test that otherwise passed as skipped, naming the checks it could
not make. A test that needs the data itself calls `require_reference_dir()` (skips at once).
With TRITONLLM_REQUIRE_REFERENCE=1 (CI) a missing folder fails instead of skipping.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from components.catalog import versions
from tools import reference as reference_data

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR_ENV = "TRITONLLM_REFERENCE_DIR"
REQUIRE_REFERENCE_ENV = "TRITONLLM_REQUIRE_REFERENCE"
HOW_TO_GET = f"run `make reference`, or set {REFERENCE_DIR_ENV}"


def resolve_reference_dir(
    environ: Mapping[str, str], repo_root: Path, entries: list[reference_data.Entry] | None = None
) -> tuple[Path, bool]:
    """(reference folder, whether it is there): $TRITONLLM_REFERENCE_DIR if set; else the repository's
    .cache/reference if it holds every manifest file; else ../shared/reference if present; else the
    cache path, not there (`make reference` fills it)."""
    if environ.get(REFERENCE_DIR_ENV):
        path = Path(environ[REFERENCE_DIR_ENV])
        return path, path.is_dir()
    cache = repo_root / ".cache" / "reference"
    if reference_data.is_complete(cache, entries):
        return cache, True
    shared = repo_root.parent / "shared" / "reference"
    if shared.is_dir():
        return shared, True
    return cache, False


REFERENCE_DIR, REFERENCE_FOUND = resolve_reference_dir(os.environ, REPO_ROOT)

# Kinds whose schema kubernetes-validate does not know come from these CRDs.
CUSTOM_GROUPS = (
    "karpenter.sh",
    "karpenter.k8s.aws",
    "monitoring.coreos.com",
    "gateway.networking.k8s.io",
    "gateway.nginx.org",
    "leaderworkerset.x-k8s.io",
    "keda.sh",
    "http.keda.sh",
)

_DEFERRED: list[str] = []  # reference checks the running test could not make


def reference_available() -> bool:
    """Whether the reference folder is there; fails the test when it must be (TRITONLLM_REQUIRE_REFERENCE)."""
    if REFERENCE_FOUND:
        return True
    if os.environ.get(REQUIRE_REFERENCE_ENV, "") not in ("", "0"):
        pytest.fail(
            f"upstream reference data not found at {REFERENCE_DIR} and {REQUIRE_REFERENCE_ENV} is set ({HOW_TO_GET})",
            pytrace=False,
        )
    return False


def require_reference_dir() -> Path:
    if not reference_available():
        pytest.skip(f"upstream reference data not found at {REFERENCE_DIR} ({HOW_TO_GET})")
    return REFERENCE_DIR


def defer_reference_check(what: str) -> None:
    """Record a check that needs the absent reference folder; the test continues."""
    _DEFERRED.append(what)


def take_deferred_checks() -> list[str]:
    """The checks recorded since the last call (tests/conftest.py calls it around each test)."""
    taken = list(_DEFERRED)
    _DEFERRED.clear()
    return taken


@functools.cache
def _crd_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema for every reference CRD."""
    schemas = {}
    for path in sorted((require_reference_dir() / "crds").glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(schema: Any) -> Any:
    """Make objects with declared properties reject unknown fields, as the API server's
    structural-schema pruning would silently drop them (a typo must fail the test)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(key: tuple[str, str, str]) -> jsonschema.Draft7Validator:
    """One validator per CRD version for the session: building it (and _strict's copy of the schema) for
    every object cost more than validating it. A validator keeps no state between `iter_errors` calls."""
    return jsonschema.Draft7Validator(_strict(_crd_schemas()[key]))


def is_custom_resource(manifest: dict[str, Any]) -> bool:
    return manifest.get("apiVersion", "").split("/")[0] in CUSTOM_GROUPS


def validate_custom_resource(manifest: dict[str, Any]) -> None:
    """Validate a custom resource against its upstream CRD's openAPIV3Schema (unknown fields rejected)."""
    if not reference_available():
        name = manifest.get("metadata", {}).get("name", "?")
        defer_reference_check(f"{manifest.get('kind')} {name!r} against its CRD")
        return
    group, _, version = manifest["apiVersion"].partition("/")
    key = (group, version, manifest["kind"])
    schemas = _crd_schemas()
    if key not in schemas:
        raise AssertionError(
            f"no reference CRD for {manifest['apiVersion']} {manifest['kind']}; known: {sorted(schemas)}"
        )
    body = {k: v for k, v in manifest.items() if k != "metadata"}
    if "metadata" in schemas[key].get("required", ()):  # e.g. NGF's AuthenticationFilter; names are checked below
        body["metadata"] = {}
    errors = sorted(_crd_validator(key).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        name = manifest.get("metadata", {}).get("name", "?")
        detail = "\n".join(f"  {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:20])
        raise AssertionError(f"{manifest['kind']} {name!r} does not match its CRD schema:\n{detail}")
    if not manifest.get("metadata", {}).get("name"):
        raise AssertionError(f"{manifest['kind']} has no metadata.name")


def validate_k8s_object(manifest: dict[str, Any], kubernetes_version: str | None = None) -> None:
    """Validate a built-in Kubernetes object (strict: unknown fields fail) against the cluster version's schema."""
    version = kubernetes_version or versions.EKS_VERSION
    validator = _k8s_validator(f"{version}.0", manifest["apiVersion"], manifest["kind"])
    try:
        validator.validate(manifest)
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        name = manifest.get("metadata", {}).get("name", "?")
        raise AssertionError(f"{manifest.get('kind')} {name!r} invalid at {path or '(root)'}: {exc.message}") from None


@functools.cache
def _k8s_validator(desired_version: str, api_version: str, kind: str) -> jsonschema.Validator:
    """The validator `kubernetes_validate.validate(manifest, desired_version, strict=True)` builds, built
    once per (version, apiVersion, kind) for the session. Upstream builds it on every call, parsing the
    1.4 MB `_definitions.json` each time (most of the unit layer's schema-check time). Same steps as
    kubernetes-validate 1.37.0 kubernetes_validate/utils.py `validate` (its schema files, schema-version
    choice, registry and Draft 2020-12 validator); `validator.validate` raises the same
    jsonschema.ValidationError (best match) that upstream wraps in its ValidationError."""
    from kubernetes_validate import utils

    if utils.major_minor(desired_version) > utils.latest_version():
        raise utils.VersionNotSupportedError(version=utils.major_minor(desired_version))
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(desired_version)][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{schema_dir}/{kind.lower()}-{api}.json", desired_version)
    except FileNotFoundError:
        raise utils.SchemaNotFoundError(
            version=utils.major_minor(desired_version), kind=kind, api_version=api_version
        ) from None
    definitions = utils.schema_contents(f"{schema_dir}/_definitions.json", desired_version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Dispatch: custom resources to their CRD, everything else to the Kubernetes schema."""
    if is_custom_resource(manifest):
        validate_custom_resource(manifest)
    else:
        validate_k8s_object(manifest)
