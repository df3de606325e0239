"""The configuration reference (docs): every key with its type, default and meaning, from the models."""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from components.config.stack import StackConfig


def config_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key: the configuration reference (docs/configuration.md)."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            key = prefix + (field.alias or name)
            annotation = field.annotation
            nested = _nested_model(annotation)
            type_name = _type_name(annotation)
            default = "required" if field.is_required() else _default_text(field)
            rows.append((key, type_name, default, field.description or ""))
            if nested is not None:
                if type_name.startswith("list"):
                    walk(nested, key + "[].")
                elif type_name == "map":
                    walk(nested, key + ".<name>.")  # a map of objects keyed by a name (e.g. a model's)
                else:
                    walk(nested, key + ".")

    walk(StackConfig, "")
    rows.append(("hfToken", "secret string", "required for gated models", "Hugging Face token (Pulumi secret)"))
    rows.append(("ngcApiKey", "secret string", "unset", "NGC API key; becomes an image pull secret for nvcr.io"))
    rows.append(
        (
            "apiKeys",
            "secret list of string",
            "required while gateway.auth.enabled",
            "API keys `name:secret` the gateway accepts (HTTP Basic credentials); several for rotation",
        )
    )
    rows.append(
        (
            "alertWebhookUrl",
            "secret string",
            "unset",
            "http(s) URL Alertmanager posts every alert to (its webhook_config); kept in a Kubernetes Secret "
            "with the Alertmanager configuration, never in Helm values",
        )
    )
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    args = getattr(annotation, "__args__", ())
    for candidate in (annotation, *args):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    """Readable type for the reference table: `int`, `"a" | "b"`, `list of object`, `map`."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin is list:
        return "list of " + _type_name(args[0])
    if origin is dict:
        return "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "see below" if isinstance(value, BaseModel) else json.dumps(value)
    return json.dumps(field.default)


def reference_markdown() -> str:
    lines = ["| key (`tritonllm:`) | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, type_name, default, description in config_reference():
        lines.append(f"| `{key}` | {type_name} | {default} | {description} |".replace("`|", "`\\|"))
    return "\n".join(lines)


TABLE_START, TABLE_END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def with_reference_table(readme: str) -> str:
    """A page's text with the generated config table between its markers."""
    head, _, rest = readme.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{reference_markdown()}\n{TABLE_END}{tail}"


def main() -> None:
    """`python -m components.config [--write FILE]`: print the table, or refresh it in FILE (`make config-reference`)."""
    import sys

    if sys.argv[1:2] in (["--write"], ["--write-readme"]):  # --write-readme: the earlier name
        path = sys.argv[2] if len(sys.argv) > 2 else "docs/configuration.md"
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if TABLE_START not in text:
            sys.exit(f"{path} has no {TABLE_START} marker")
        with open(path, "w", encoding="utf-8") as f:
            f.write(with_reference_table(text))
    else:
        print(reference_markdown())
