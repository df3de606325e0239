"""Hooks for the whole test tree.

A test that made every check it could but had to leave out some that need the upstream
reference folder (`make reference`; see tests/k8s_schema.py) is reported as skipped with the
checks it left out, never as passed. Its other assertions have run: a failure among them fails
the test as usual.
"""

from __future__ import annotations

import pytest

from tests import k8s_schema


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "setup":
        k8s_schema.take_deferred_checks()  # nothing carries over from an earlier test
    outcome = yield
    if call.when != "call":
        return
    deferred = k8s_schema.take_deferred_checks()
    report = outcome.get_result()
    if deferred and report.passed:
        shown = "; ".join(sorted(set(deferred))[:3]) + (" ..." if len(set(deferred)) > 3 else "")
        report.outcome = "skipped"
        report.longrepr = (
            str(item.path),
            (item.location[1] or 0) + 1,
            f"Skipped: upstream reference data not found at {k8s_schema.REFERENCE_DIR} "
            f"({k8s_schema.HOW_TO_GET}); every other check passed, {len(deferred)} "
            f"not made: {shown}",
        )
