"""Fixtures: the program run under mocks once per stack per session (runs are cached)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.harness import ProgramRun, run_program, stack_files

_RUNS: dict[str, ProgramRun] = {}

# The opt-ins no stack file turns on (they cost money or need an address), on top of the vllm stack, so
# the IAM goldens and the security checks cover what they add: an SNS topic for alerts with e-mail
# subscribers and Alertmanager's publisher role, a webhook, CloudWatch Container Insights, and the GPU pool
# on Bottlerocket with its images pre-pulled on a snapshot (nodePools[].imageCache: the build instance's role,
# with pull from the repository of the extra-packages image ServingImages builds).
WEBHOOK_URL = "https://hooks.example.com/services/T000/B000/mock-webhook-token"
OPT_IN_OVERRIDES = {
    "monitoring.alerts.sns": {"enabled": True, "emails": ["oncall@example.com", "ml-platform@example.com"]},
    "monitoring.cloudwatch.enabled": True,
    "nodePools[0].amiFamily": "Bottlerocket",
    "nodePools[0].amiVersion": "v1.47.0",
    "nodePools[0].imageCache": {"enabled": True, "fastSnapshotRestore": True},
    "servingImage.extraAptPackages": ["htop"],
}
OPT_IN_SECRETS: dict[str, str | None] = {"alertWebhookUrl": WEBHOOK_URL}
# Variant name -> (stack file, overrides, secrets); golden files live in tests/golden/iam/<variant>/.
# models[].weights.delivery mountpoint (docs/weights.md "Per node: the Mountpoint volume"), off by default: the
# first model of the vllm stack (the second keeps staging) and of the llmapi stack.
MOUNTPOINT_OVERRIDES = {"models[0].weights.delivery": "mountpoint"}
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, str | None]]] = {
    "vllm-opt-ins": ("vllm", OPT_IN_OVERRIDES, OPT_IN_SECRETS),
    "vllm-mountpoint": ("vllm", MOUNTPOINT_OVERRIDES, {}),
    "llmapi-mountpoint": ("llmapi", MOUNTPOINT_OVERRIDES, {}),
}


def stack_run_for(stack: str) -> ProgramRun:
    """The (cached) mocked run of Pulumi.<stack>.yaml as committed, or of a VARIANTS entry."""
    if stack not in _RUNS:
        if stack in VARIANTS:
            base, overrides, secrets = VARIANTS[stack]
            _RUNS[stack] = run_program(base, overrides=overrides, secrets=secrets)
        else:
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


@pytest.fixture(scope="session", params=stack_files() + sorted(VARIANTS))
def stack_or_variant_run(request) -> ProgramRun:
    """stack_run, plus the opt-in VARIANTS (for the IAM goldens and the trust checks)."""
    return stack_run_for(request.param)


# No network in unit tests: the Hugging Face revision API (hfRevision: main -> commit) is faked
# for the whole session, including the cached program runs above.
from components.providers import engine_build as _engine_build  # noqa: E402
from tests import hf_api as _hf_api  # noqa: E402

_hf_api.install(_engine_build)
