"""Every physical AWS name the program generates fits AWS's limit, even for the longest stack name."""

from __future__ import annotations

import pytest

from components.config import StackConfig
from tests.unit.harness import AWS_NAME_LIMITS, run_program, stack_files


def _max_name_length() -> int:
    return next(m.max_length for m in StackConfig.model_fields["name"].metadata if hasattr(m, "max_length"))


@pytest.mark.parametrize("stack", stack_files())
def test_physical_names_fit_aws_limits_with_the_longest_name(stack):
    run = run_program(stack, overrides={"name": "n" * _max_name_length()})
    too_long = []
    for r in run.resources:
        limit = AWS_NAME_LIMITS.get(r.type)
        name = r.outputs.get("nodeGroupName" if r.type == "aws:eks/nodeGroup:NodeGroup" else "name")
        if limit and isinstance(name, str) and len(name) > limit:
            too_long.append(f"{r.type} {name!r} ({len(name)} > {limit})")
    assert not too_long, "\n".join(too_long)
