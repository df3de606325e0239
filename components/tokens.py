"""One type-token scheme for every ComponentResource: `tritonllm:<domain package>:<Class>`.

A component whose token changed (a rename, a move to another package) keeps every resource of an
existing stack by naming its earlier tokens as aliases (`previous`): Pulumi then maps the old URNs,
the component's and all its children's, to the new ones instead of replacing anything.
tests/unit/test_urn_aliases.py checks that every URN the shipped stacks had maps to a resource.
"""

from __future__ import annotations

import pulumi

PROJECT_PACKAGE = "tritonllm"
DOMAINS = ("platform", "serving", "gateway", "observability")


def component_type(domain: str, kind: str) -> str:
    """The type token of component `kind` in `domain` (one of DOMAINS)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown component domain {domain!r}; use one of {DOMAINS}")
    return f"{PROJECT_PACKAGE}:{domain}:{kind}"


def with_previous_types(opts: pulumi.ResourceOptions | None, *previous: str) -> pulumi.ResourceOptions:
    """`opts` plus an alias per earlier type token of the component."""
    return pulumi.ResourceOptions.merge(
        opts or pulumi.ResourceOptions(), pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=t) for t in previous])
    )
