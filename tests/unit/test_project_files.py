"""The files a user and CI act on stay consistent with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.config import reference as config_reference

REPO = Path(__file__).resolve().parents[2]
STACKS = sorted(p.name.split(".")[1] for p in REPO.glob("Pulumi.*.yaml"))


def test_pulumi_project_uses_python_with_pip_and_virtualenv():
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"] == {"toolchain": "pip", "virtualenv": ".venv"}


def test_at_least_a_trtllm_and_a_vllm_stack():
    assert {"dev", "vllm"} <= set(STACKS)


def test_ci_workflow_tests_and_previews_every_stack_with_a_pr_comment():
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    test_steps = workflow["jobs"]["test"]["steps"]
    assert any("bash .ci/run" in step.get("run", "") for step in test_steps)
    preview = workflow["jobs"]["preview"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == STACKS
    pulumi_step = next(s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions"))
    assert pulumi_step["with"]["command"] == "preview"
    assert pulumi_step["with"]["comment-on-pr"] is True


def test_ci_gives_the_tests_the_reference_data_and_refuses_to_skip_them():
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    job = workflow["jobs"]["test"]
    env = job["env"]
    assert env["TRITONLLM_REQUIRE_REFERENCE"] == "1"
    assert env["TRITONLLM_REFERENCE_DIR"].startswith("${{ github.workspace }}/")
    steps = job["steps"]
    # the data comes from upstream through `make reference` (reference/manifest.toml, every sha256
    # verified), into the folder the tests read, before they run; no other repository is checked out
    (fetch,) = [i for i, s in enumerate(steps) if "make reference" in s.get("run", "")]
    (tests,) = [i for i, s in enumerate(steps) if "bash .ci/run" in s.get("run", "")]
    assert fetch < tests
    assert 'REFERENCE_CACHE="$TRITONLLM_REFERENCE_DIR"' in steps[fetch]["run"]
    assert all(
        not s.get("with", {}).get("repository") and not s.get("with", {}).get("path")
        for s in steps
        if s.get("uses", "").startswith("actions/checkout")
    )
    # the variables reach the tests through sudo
    preserved = steps[tests]["run"].split("--preserve-env=")[1].split()[0].split(",")
    assert {"TRITONLLM_REFERENCE_DIR", "TRITONLLM_REQUIRE_REFERENCE"} <= set(preserved)
    # and .ci/run (also the local CI entry) keeps a given folder, finds or fetches one otherwise,
    # and never lets the tests skip
    script = (REPO / ".ci/run").read_text()
    assert 'if [ -z "${TRITONLLM_REFERENCE_DIR:-}" ]' in script and "make reference" in script
    assert "\nexport TRITONLLM_REQUIRE_REFERENCE=1\n" in script
    assert script.index("export TRITONLLM_REQUIRE_REFERENCE=1") < script.index("\nmake test")


def test_ci_script_runs_the_documented_test_command():
    readme = (REPO / "README.md").read_text()
    script = (REPO / ".ci/run").read_text()
    assert "make test" in readme and script.rstrip().endswith("make test")


def test_configuration_page_documents_every_config_key():
    page = (REPO / "docs/configuration.md").read_text()
    for marker in ("<!-- config-table:start -->", "<!-- config-table:end -->"):
        assert page.count(marker) == 1, f"docs/configuration.md needs one {marker}"
    missing = [key for key, *_ in config_reference.config_reference() if f"`{key}`" not in page]
    assert not missing, f"docs/configuration.md lacks config keys {missing}; run `make config-reference`"
    assert config_reference.with_reference_table(page) == page, (
        "docs/configuration.md's config table is stale; run `make config-reference`"
    )


def test_make_config_reference_writes_the_configuration_page():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nconfig-reference:", 1)[1].split("\n\n", 1)[0]
    assert "--write docs/configuration.md" in recipe, recipe


def test_python_packages_pinned_exactly_once():
    seen: dict[str, str] = {}
    for req in sorted(REPO.glob("requirements*.txt")):
        for line in req.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith("-"):
                continue
            assert "==" in line, f"{req.name}: {line!r} is not pinned with =="
            name = line.split("==")[0].split("[")[0].lower().replace("_", "-")
            assert name not in seen, f"{name} pinned in both {seen[name]} and {req.name}"
            seen[name] = req.name
