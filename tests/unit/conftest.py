"""Fixtures: the program run under mocks once per stack per session (runs are cached)."""

from __future__ import annotations

import pytest

from tests.unit.harness import ProgramRun, run_program, stack_files

_RUNS: dict[str, ProgramRun] = {}


def stack_run_for(stack: str) -> ProgramRun:
    """The (cached) mocked run of Pulumi.<stack>.yaml as committed."""
    if stack not in _RUNS:
        _RUNS[stack] = run_program(stack)
    return _RUNS[stack]


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    return stack_run_for("dev")


@pytest.fixture(scope="session")
def vllm_run() -> ProgramRun:
    return stack_run_for("vllm")


@pytest.fixture(scope="session", params=stack_files())
def stack_run(request) -> ProgramRun:
    """One run per Pulumi.<stack>.yaml in the repository (tests using it repeat for every stack)."""
    return stack_run_for(request.param)


# No network in unit tests: the Hugging Face revision API (hfRevision: main -> commit) is faked
# for the whole session, including the cached program runs above.
from components.providers import engine_build as _engine_build  # noqa: E402
from tests import hf_api as _hf_api  # noqa: E402

_hf_api.install(_engine_build)
