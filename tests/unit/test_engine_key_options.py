"""The engine cache key covers every engine build option: change any one and the key changes.

Iterates over all fields of the options model (`EngineBuildOptions`), so an option added later
is covered without editing this file; an option that must stay out of the key (it cannot change
the uploaded engine or repository) is listed in NOT_IN_KEY, and the test checks it really is out.
Uses only the public key functions (`engine_key_parts`, `engine_cache_key`).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from components.serving.builders import engine_build as eb
from components.config import EngineBuildOptions, ModelConfig, StackConfig, parse_stack_config
from tests.unit.harness import load_stack_config

# Options that do not change the engine bytes or the filled repository (so no rebuild).
NOT_IN_KEY = {"timeout_minutes"}


def dev_config() -> tuple[ModelConfig, StackConfig]:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("dev").items() if k.startswith("tritonllm:")}
    cfg = parse_stack_config(raw, {"hfToken"})
    (model,) = [m for m in cfg.models if m.backend == "trtllm"]
    return model, cfg


COMMIT = "9213176726f574b556790deb65791e0c5aa438b6"  # hfRevision as resolved to a commit


def key(model: ModelConfig, cfg: StackConfig, commit: str = COMMIT) -> str:
    return eb.engine_cache_key(eb.engine_key_parts(model, cfg.site_of(model), revision_sha=commit))


def _candidates(annotation: Any, value: Any) -> list[Any]:
    """Other values of the field's type, in order of preference (validated by the caller)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        out = [] if value is None else [None]
        for a in inner:
            out += _candidates(a, value if value is not None else _zero(a))
        return out
    if origin is Literal:
        return [a for a in args if a != value]
    if annotation is bool:
        return [not value]
    if annotation is int:
        return [value + 1, value - 1, value * 2, value // 2, 1]
    if annotation is float:
        return [value / 2, value * 0.9, value + 0.01, 0.5]
    if annotation is str:
        return [f"{value}x", "x"]
    if origin is dict or annotation is dict:
        return [{**(value or {}), "tritonllm_test_option": 1}]
    if origin is list or annotation is list:
        return [[*(value or []), *(value or [])] or ["x"]]
    raise AssertionError(f"no test values for a field of type {annotation!r}; teach _candidates about it")


def _zero(annotation: Any) -> Any:
    return {int: 64, float: 0.5, str: "x", bool: False}.get(annotation)


def options_pair(options: EngineBuildOptions, field: str) -> tuple[EngineBuildOptions, EngineBuildOptions]:
    """Two valid option sets that differ in `field` only.

    The first is `options`, or, when no other value of `field` is valid with the rest as they are
    (pagedKvCache false needs the features that depend on it off), `options` with the other
    on/off options turned off."""
    model_type = type(options)
    current = options.model_dump(by_alias=False)
    bases = [
        current,
        {**current, **{name: False for name, value in current.items() if isinstance(value, bool) and name != field}},
    ]
    annotation = model_type.model_fields[field].annotation
    for base in bases:
        try:
            base_options = model_type.model_validate(base)
        except ValidationError:
            continue
        for candidate in _candidates(annotation, base[field]):
            if candidate == base[field]:
                continue
            try:
                new = model_type.model_validate({**base, field: candidate})
            except ValidationError:
                continue
            if getattr(new, field) != getattr(base_options, field):
                return base_options, new
    raise AssertionError(f"found no other valid value for engine option {field!r}; extend _candidates")


OPTION_FIELDS = sorted(EngineBuildOptions.model_fields)


def test_the_options_model_is_what_the_key_reads():
    assert issubclass(EngineBuildOptions, BaseModel) and OPTION_FIELDS
    assert NOT_IN_KEY <= set(OPTION_FIELDS), "NOT_IN_KEY names an option that no longer exists"


@pytest.mark.parametrize("field", [f for f in OPTION_FIELDS if f not in NOT_IN_KEY])
def test_every_engine_option_changes_the_key(field):
    model, cfg = dev_config()
    before, after = options_pair(model.engine, field)
    base, changed = (model.model_copy(update={"engine": options}) for options in (before, after))
    assert key(changed, cfg) != key(base, cfg), (
        f"engines.{field} is not part of the engine cache key: changing it would reuse a stale engine"
    )


@pytest.mark.parametrize("field", sorted(NOT_IN_KEY))
def test_options_that_cannot_change_the_engine_leave_the_key_alone(field):
    model, cfg = dev_config()
    before, after = options_pair(model.engine, field)
    base, changed = (model.model_copy(update={"engine": options}) for options in (before, after))
    assert key(changed, cfg) == key(base, cfg)


@pytest.mark.parametrize(
    "update",
    [
        {"hf_model_id": "meta-llama/Llama-3.2-3B-Instruct"},
        {"tensor_parallel": 2},
        {"pipeline_parallel": 2},
        {"name": "another-name"},  # the served model name is written into the repository
    ],
)
def test_model_fields_that_shape_the_engine_change_the_key(update):
    model, cfg = dev_config()
    assert key(model.model_copy(update=update), cfg) != key(model, cfg)


def test_the_resolved_commit_changes_the_key():
    model, cfg = dev_config()
    assert key(model, cfg, "0123456789abcdef0123456789abcdef01234567") != key(model, cfg)
