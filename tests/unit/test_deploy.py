"""`tritonllm deploy`: argument handling, stack selection and exit codes.

The Pulumi CLI cannot run here, so the Automation API module is replaced by a
recording fake; everything decided before Pulumi runs is tested for real.
"""

from __future__ import annotations

import argparse
import re
import shutil
import types
from pathlib import Path

import pytest

from tritonllm import deploy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    """A copy of this project's Pulumi files with the HF token set the way
    `pulumi config set --secret` stores it (the committed stack files have none)."""
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    for stack_file in REPO.glob("Pulumi.*.yaml"):
        text = (
            stack_file.read_text()
            + "  tritonllm:hfToken:\n    secure: v1:AAAAencrypted\n"
            + "  tritonllm:apiKeys:\n    secure: v1:AAAAencrypted\n"
        )
        (tmp_path / stack_file.name).write_text(text)
    return tmp_path


def parse(*argv: str, cwd: Path | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    deploy.add_arguments(parser)
    return parser.parse_args(list(argv) + (["--cwd", str(cwd)] if cwd else []))


class FakeStack:
    def __init__(self, calls, preview_changes=None, result="succeeded"):
        self.calls, self.preview_changes, self.result = calls, preview_changes or {"same": 40}, result

    def _record(self, op, kwargs):
        self.calls.append((op, kwargs))
        kwargs["on_output"](f"{op} progress line")

    def refresh(self, **kw):
        self._record("refresh", kw)

    def preview(self, **kw):
        self._record("preview", kw)
        return types.SimpleNamespace(change_summary=self.preview_changes)

    def up(self, **kw):
        self._record("up", kw)
        summary = types.SimpleNamespace(result=self.result, resource_changes={"create": 3})
        outputs = {
            "clusterName": types.SimpleNamespace(value="tritonllm-dev", secret=False),
            "kubeconfig": types.SimpleNamespace(value="apiVersion: v1 ...token", secret=True),
        }
        return types.SimpleNamespace(summary=summary, outputs=outputs)

    def destroy(self, **kw):
        self._record("destroy", kw)
        return types.SimpleNamespace(summary=types.SimpleNamespace(result=self.result, resource_changes={"delete": 3}))

    def outputs(self):
        return {"region": types.SimpleNamespace(value="us-west-2", secret=False)}


def fake_automation(stack: FakeStack, selected: list):
    def select_stack(stack_name, work_dir, opts=None):
        selected.append((stack_name, work_dir))
        return stack

    class StackNotFoundError(Exception):
        pass

    class CommandError(Exception):
        pass

    return types.SimpleNamespace(
        select_stack=select_stack,
        StackNotFoundError=StackNotFoundError,
        CommandError=CommandError,
        LocalWorkspaceOptions=lambda **kw: types.SimpleNamespace(**kw),
    )


def test_plan_uses_the_named_stack_file_and_project(project):
    plan = deploy.plan_from_args(parse("preview", "--stack", "dev", cwd=project))
    assert plan.stack_file == project / "Pulumi.dev.yaml"
    assert plan.project_dir == project
    assert "models" in plan.config_keys and "nodePools" in plan.config_keys


@pytest.mark.parametrize("stack", sorted(p.name.split(".")[1] for p in REPO.glob("Pulumi.*.yaml")))
def test_every_stack_file_validates(project, stack):
    assert deploy.plan_from_args(parse("preview", "--stack", stack, cwd=project)).stack == stack


def test_committed_stacks_need_the_hf_token_for_gated_models():
    with pytest.raises(deploy.DeployError, match=r"config set --stack dev --secret tritonllm:hfToken"):
        deploy.plan_from_args(parse("preview", "--stack", "dev"))


def test_unknown_stack_names_the_known_ones(project):
    with pytest.raises(deploy.DeployError, match=r"no stack file Pulumi.prod.yaml; known stacks: .*dev"):
        deploy.plan_from_args(parse("up", "--stack", "prod", cwd=project))


def test_destroy_requires_yes(project):
    with pytest.raises(deploy.DeployError, match="--yes"):
        deploy.plan_from_args(parse("destroy", "--stack", "dev", cwd=project))
    assert deploy.plan_from_args(parse("destroy", "--stack", "dev", "--yes", cwd=project)).operation == "destroy"


def test_destroy_and_outputs_work_from_the_state_whatever_the_config(tmp_path):
    """They do not run the program: a stack whose config no longer validates can still be destroyed."""
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    (tmp_path / "Pulumi.old.yaml").write_text("config:\n  tritonllm:region: nowhere\n")
    for argv in (("destroy", "--yes"), ("outputs",)):
        plan = deploy.plan_from_args(parse(argv[0], "--stack", "old", *argv[1:], "--cwd", str(tmp_path)))
        assert plan.check_report == () and plan.config_keys == ()
    with pytest.raises(deploy.DeployError, match="tritonllm:region: String should match pattern"):
        deploy.plan_from_args(parse("up", "--stack", "old", "--cwd", str(tmp_path)))


def test_expect_no_changes_only_for_preview_and_up(project):
    with pytest.raises(deploy.DeployError, match="preview and up only"):
        deploy.plan_from_args(parse("outputs", "--stack", "dev", "--expect-no-changes", cwd=project))


def test_invalid_stack_config_fails_before_pulumi(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    (tmp_path / "Pulumi.bad.yaml").write_text(
        "config:\n  tritonllm:region: us-west-2\n  tritonllm:nodePools: [{name: g5, instanceFamilies: [g5]}]\n"
        "  tritonllm:models: [{name: m, backend: vllm, hfModelId: a/b, nodePool: g6}]\n"
    )
    with pytest.raises(deploy.DeployError, match=r"models\[0\].nodePool: 'g6' is not a nodePools entry"):
        deploy.plan_from_args(parse("preview", "--stack", "bad", "--cwd", str(tmp_path)))


def test_secure_values_count_as_set(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    body = (
        "config:\n  tritonllm:region: us-west-2\n  tritonllm:nodePools: [{name: g5, instanceFamilies: [g5]}]\n"
        "  tritonllm:models: [{name: m, backend: vllm, hfModelId: meta-llama/Llama-2-7b-chat-hf, nodePool: g5}]\n"
        "  tritonllm:gateway: {tls: {plaintextInsideVpc: true}}\n  tritonllm:apiKeys:\n    secure: v1:abc\n"
    )
    (tmp_path / "Pulumi.nosecret.yaml").write_text(body)
    with pytest.raises(deploy.DeployError, match="hfToken is not set"):
        deploy.plan_from_args(parse("preview", "--stack", "nosecret", "--cwd", str(tmp_path)))
    (tmp_path / "Pulumi.secret.yaml").write_text(body + "  tritonllm:hfToken:\n    secure: v1:abc\n")
    plan = deploy.plan_from_args(parse("preview", "--stack", "secret", "--cwd", str(tmp_path)))
    assert "hfToken" in plan.config_keys


def test_secrets_in_plain_text_are_refused_with_the_command_that_encrypts_them(tmp_path):
    """apiKeys/hfToken/ngcApiKey set without --secret sit in the stack file in plain text (issue 18)."""
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    token = "hf_plain_text_token_0123456789"
    (tmp_path / "Pulumi.plain.yaml").write_text(
        "config:\n  tritonllm:region: us-west-2\n  tritonllm:nodePools: [{name: g5, instanceFamilies: [g5]}]\n"
        "  tritonllm:models: [{name: m, backend: vllm, hfModelId: meta-llama/Llama-2-7b-chat-hf, nodePool: g5}]\n"
        "  tritonllm:gateway: {tls: {plaintextInsideVpc: true}}\n  tritonllm:apiKeys:\n    secure: v1:abc\n"
        f"  tritonllm:hfToken: {token}\n"
    )
    with pytest.raises(deploy.DeployError) as info:
        deploy.plan_from_args(parse("preview", "--stack", "plain", "--cwd", str(tmp_path)))
    message = str(info.value)
    assert "tritonllm:hfToken: is stored in plain text" in message and token not in message
    where = f"pulumi -C {tmp_path}"
    assert (
        f'{where} config set --stack plain --secret tritonllm:hfToken "$({where} config get --stack plain '
        'tritonllm:hfToken)"' in message
    )


def test_main_without_cli_exits_2_with_install_hint(project, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert deploy.main(parse("preview", "--stack", "dev", cwd=project)) == deploy.EXIT_USAGE
    assert "Pulumi CLI is not on PATH" in capsys.readouterr().err


def test_preview_streams_and_selects_stack(project):
    calls, selected, lines = [], [], []
    plan = deploy.plan_from_args(parse("preview", "--stack", "vllm", "--refresh", "--parallel", "4", cwd=project))
    code = deploy.run_plan(plan, fake_automation(FakeStack(calls), selected), lines.append)
    assert code == 0
    assert selected == [("vllm", str(project))]
    assert [c[0] for c in calls] == ["refresh", "preview"]
    assert calls[1][1]["parallel"] == 4
    assert "preview progress line" in lines
    assert lines[-1] == "preview of vllm: 40 same"


def test_preview_expect_no_changes_exits_3_on_drift(project):
    plan = deploy.plan_from_args(parse("preview", "--stack", "dev", "--expect-no-changes", cwd=project))
    stack = FakeStack([], preview_changes={"same": 10, "update": 2})
    assert deploy.run_plan(plan, fake_automation(stack, []), lambda _: None) == deploy.EXIT_CHANGES


def test_up_hides_secret_outputs_and_reports_failure(project):
    lines = []
    plan = deploy.plan_from_args(parse("up", "--stack", "dev", cwd=project))
    assert deploy.run_plan(plan, fake_automation(FakeStack([]), []), lines.append) == 0
    assert "kubeconfig: [secret]" in lines and "clusterName: tritonllm-dev" in lines
    assert not any("token" in line for line in lines)
    failed = FakeStack([], result="failed")
    assert deploy.run_plan(plan, fake_automation(failed, []), lambda _: None) == deploy.EXIT_FAILED


def test_destroy_passes_targets(project):
    calls = []
    plan = deploy.plan_from_args(parse("destroy", "--stack", "dev", "--yes", "--target", "urn:a", cwd=project))
    assert deploy.run_plan(plan, fake_automation(FakeStack(calls), []), lambda _: None) == 0
    assert calls[0][0] == "destroy" and calls[0][1]["target"] == ["urn:a"]


def test_outputs_json(project, capsys):
    lines = []
    plan = deploy.plan_from_args(parse("outputs", "--stack", "dev", "--json", cwd=project))
    deploy.run_plan(plan, fake_automation(FakeStack([]), []), lines.append)
    assert '"region": "us-west-2"' in lines[0]


# ---------------------------------------------------------------- the offline check first, runnable fixes
# Issue 22: deploy runs `tritonllm check` (no CLI, AWS or network) before it looks for the Pulumi CLI.
# Issue 13: a config fix that runs the Pulumi CLI says so when the CLI is missing or not logged in.


def fake_pulumi(bin_dir: Path, whoami_rc: int = 0, log: Path | None = None, version: str = "v3.208.0") -> Path:
    """A `pulumi` executable that records its arguments; `whoami` fails when not logged in;
    `version` prints `version` (as the real CLI: `v3.208.0`)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    cli = bin_dir / "pulumi"
    record = f'echo "$@" >> {log}\n' if log else ""
    cli.write_text(
        "#!/bin/sh\n"
        + record
        + f'if [ "$1" = version ]; then echo {version}; exit 0; fi\n'
        + f'if [ "$1" = whoami ]; then\n  [ {whoami_rc} -eq 0 ] && echo alice && exit 0\n'
        '  echo "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions" >&2\n'
        f"  exit {whoami_rc}\nfi\nexit 0\n"
    )
    cli.chmod(0o755)
    return cli


def test_the_offline_check_runs_before_the_cli_is_looked_for(project, monkeypatch, tmp_path, capsys):
    """A valid stack with no Pulumi CLI: the check's report comes out first, then the missing CLI."""
    order = []
    real_check, real_find = deploy.check.check_stack, deploy.find_pulumi_cli
    monkeypatch.setattr(deploy.check, "check_stack", lambda *a, **k: order.append("check") or real_check(*a, **k))
    monkeypatch.setattr(deploy, "find_pulumi_cli", lambda: order.append("cli") or real_find())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert deploy.main(parse("preview", "--stack", "dev", cwd=project)) == deploy.EXIT_USAGE
    out, err = capsys.readouterr()
    assert order == ["check", "cli"]
    assert out.startswith("Pulumi.dev.yaml: valid (") and "what `pulumi up` would create" in out, out
    assert "TritonLLM llama-3-2-1b" in out
    assert "Pulumi CLI is not on PATH" in err and "curl -fsSL https://get.pulumi.com | sh" in err


def test_a_config_error_comes_first_and_names_the_missing_cli_its_fix_needs(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert deploy.main(parse("preview", "--stack", "dev")) == deploy.EXIT_USAGE  # shipped dev: no hfToken
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("tritonllm deploy: Pulumi.dev.yaml: invalid stack config:\n"), err
    assert "hfToken is not set" in err and "Pulumi CLI is not on PATH" in err
    assert err.index("hfToken is not set") < err.index("the fixes above run the Pulumi CLI")
    assert "curl -fsSL https://get.pulumi.com | sh" in err and "pulumi login --local" in err


def test_a_config_error_names_the_login_its_fix_needs(monkeypatch, tmp_path, capsys):
    log = tmp_path / "calls.log"
    fake_pulumi(tmp_path / "bin", whoami_rc=255, log=log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert deploy.main(parse("preview", "--stack", "dev")) == deploy.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.index("hfToken is not set") < err.index("not logged in"), err
    assert "PULUMI_ACCESS_TOKEN" in err and "pulumi login --local" in err
    assert log.read_text().split() == ["version", "whoami", "--non-interactive"]


def test_login_is_checked_after_the_offline_check(project, monkeypatch, tmp_path, capsys):
    log = tmp_path / "calls.log"
    fake_pulumi(tmp_path / "bin", whoami_rc=255, log=log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert deploy.main(parse("preview", "--stack", "vllm", cwd=project)) == deploy.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out.startswith("Pulumi.vllm.yaml: valid (") and "not logged in" in err and "invalid" not in err
    assert log.read_text().split() == ["version", "whoami", "--non-interactive"]


def test_config_fix_runs_as_printed(monkeypatch, tmp_path, capsys):
    """With the CLI present and logged in, the config error's fix is a command that works from any
    directory: it names the project (-C) and the stack, and creates the stack if needed."""
    log = tmp_path / "calls.log"
    fake_pulumi(tmp_path / "bin", log=log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert deploy.main(parse("preview", "--stack", "dev")) == deploy.EXIT_USAGE
    err = capsys.readouterr().err
    fix = err[err.index("`pulumi -C") + 1 :]
    fix = fix[: fix.index("`")].replace("hf_...", "hf_test")
    assert "stack select --create dev && " in fix and " config set --stack dev --secret tritonllm:" in fix, err
    log.write_text("")
    import subprocess

    subprocess.run(fix, shell=True, check=True, cwd=tmp_path, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    calls = [line.split() for line in log.read_text().splitlines()]
    assert calls[0] == ["-C", str(REPO), "stack", "select", "--create", "dev"]
    assert calls[1][:6] == ["-C", str(REPO), "config", "set", "--stack", "dev"] and calls[1][6] == "--secret"
    assert calls[1][7].startswith("tritonllm:") and len(calls[1]) == 9  # key and value, nothing left unfilled


def test_missing_stack_file_fix_names_a_file_to_start_from(project):
    with pytest.raises(deploy.DeployError) as info:
        deploy.plan_from_args(parse("up", "--stack", "prod", cwd=project))
    message = str(info.value)
    assert f"`cp {project / 'Pulumi.dev.yaml'} {project / 'Pulumi.prod.yaml'}`" in message
    assert f"`pulumi -C {project} stack init prod`" in message


def test_the_docs_say_what_deploy_checks_first():
    """Every sentence of README and docs/ about what `deploy` does first says what main() does: the
    offline config check, before it looks for the Pulumi CLI (issue 22: two descriptions disagreed)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    about_deploy_first = []
    for page in pages:
        units = re.split(r"\n\s*\n|\n(?=\|)| \| ", page.read_text())  # paragraphs, table rows and cells
        sentences = [s for unit in units for s in re.split(r"(?<=[.;:])\s+(?=[A-Z`])", re.sub(r"\s+", " ", unit))]
        for sentence in sentences:
            if re.search(r"`(tritonllm )?deploy`", sentence) and re.search(r"\bfirst\b", sentence):
                about_deploy_first.append((page.name, sentence))
    assert {page for page, _ in about_deploy_first} >= {"README.md", "deploy.md"}, about_deploy_first
    for page, sentence in about_deploy_first:
        assert re.search(r"check first, before it looks for the Pulumi CLI", sentence), (page, sentence)


# --------------------------------------------------------------------------- can this machine reach the API?


def _stack_config(project: Path, stack: str, **overrides):
    plan = deploy.plan_from_args(parse("preview", "--stack", stack, cwd=project))
    cfg = plan.stack_config
    cluster = cfg.cluster.model_copy(update=overrides)
    return cfg.model_copy(update={"cluster": cluster})


def test_machine_outside_the_vpc_is_told_every_way_in(project):
    cfg = _stack_config(project, "dev")  # private endpoint, nothing admitted: the committed default
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses("192.168.1.5", None), "dev", project)
    text = "\n".join(notes)
    assert "outside the stack's VPC (10.1.0.0/16; it routes there from 192.168.1.5)" in notes[0]
    assert "cluster.endpointPrivateAccessCidrs" in text and "SSM port-forward" in text
    assert "cluster.endpointPrivateAccessSecurityGroupIds" in text
    assert f"pulumi -C {project} config set --stack dev --path 'tritonllm:cluster.endpointPublicAccess' true" in text


def test_machine_inside_the_vpc_gets_its_own_address_as_the_fix(project, tmp_path):
    cfg = _stack_config(project, "dev")
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses("10.1.4.7", None), "dev", project)
    assert "inside the stack's VPC as 10.1.4.7" in notes[0]
    command = next(n for n in notes if "10.1.4.7/32" in n)
    command = command[command.index("`") + 1 : command.rindex("`")]
    # the fix runs as printed: the fake CLI records exactly the arguments Pulumi would get
    log = tmp_path / "calls.log"
    fake_pulumi(tmp_path / "bin", log=log)
    import subprocess

    subprocess.run(command, shell=True, check=True, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert log.read_text().split() == [
        "-C", str(project), "config", "set", "--stack", "dev", "--path",
        "tritonllm:cluster.endpointPrivateAccessCidrs[0]", "10.1.4.7/32",
    ]  # fmt: skip


def test_a_covered_machine_is_told_so_and_nothing_else(project):
    cfg = _stack_config(project, "dev", endpoint_private_access_cidrs=["10.1.4.0/24"])
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses("10.1.4.7", None), "dev", project)
    assert notes == [
        "API endpoint: this machine reaches the private endpoint as 10.1.4.7 (in cluster.endpointPrivateAccessCidrs)"
    ]
    cfg = _stack_config(project, "dev", endpoint_public_access=True, endpoint_public_access_cidrs=["198.51.100.0/24"])
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses("192.168.1.5", "198.51.100.9"), "dev", project)
    assert notes == [
        "API endpoint: this machine reaches the public endpoint as 198.51.100.9 (in cluster.endpointPublicAccessCidrs)"
    ]


def test_public_endpoint_not_listing_this_machine_names_its_address(project):
    cfg = _stack_config(project, "dev", endpoint_public_access=True, endpoint_public_access_cidrs=["203.0.113.0/24"])
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses("192.168.1.5", "198.51.100.9"), "dev", project)
    assert any("'tritonllm:cluster.endpointPublicAccessCidrs[1]' 198.51.100.9/32" in n for n in notes), notes
    # the lookup failed: the command looks the address up itself
    notes = deploy.endpoint_access_notes(cfg, deploy.MachineAddresses(None, None), "dev", project)
    assert any('"$(curl -s https://checkip.amazonaws.com)/32"' in n and "could not be read" in n for n in notes)


def test_main_prints_the_notes_before_pulumi_runs(project, monkeypatch, capsys, tmp_path):
    fake_pulumi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(deploy, "machine_addresses", lambda cfg: deploy.MachineAddresses("192.168.1.5", None))
    import pulumi.automation

    def select_stack(**kw):
        raise pulumi.automation.StackNotFoundError(Exception("no stack"))

    monkeypatch.setattr(pulumi.automation, "select_stack", select_stack)
    deploy.main(parse("preview", "--stack", "dev", cwd=project))
    out = capsys.readouterr().out
    assert "tritonllm deploy: API endpoint: this machine is outside the stack's VPC" in out


# ---------------------------------------------------------------- the CLI's version, through the SDK's own check
# The program needs CLI >= versions.PULUMI_CLI_MIN_VERSION (pulumi.Stash); the Automation API holds the CLI only to
# its own minimum, 3.1.0 (pulumi/automation/_minimum_version.py), unless a PulumiCommand asks for more. These run
# the SDK's real PulumiCommand against a fake `pulumi` that answers `version`.


def test_a_cli_older_than_the_program_needs_is_refused_before_anything_runs(project, monkeypatch, tmp_path, capsys):
    log = tmp_path / "calls.log"
    fake_pulumi(tmp_path / "bin", log=log, version="v3.207.1")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
    assert deploy.main(parse("up", "--stack", "dev", cwd=project)) == deploy.EXIT_USAGE
    err = capsys.readouterr().err
    assert "is not one this program runs on" in err and "your current CLI version is 3.207.1" in err, err
    assert "3.208.0 or newer" in err
    assert "curl -fsSL https://get.pulumi.com | sh" in err
    assert log.read_text().split() == ["version"]  # no login, no stack selected, nothing run


def test_the_workspace_runs_the_version_checked_cli(project, monkeypatch, tmp_path):
    import pulumi.automation

    cli = fake_pulumi(tmp_path / "bin", version="v3.208.0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(deploy, "machine_addresses", lambda cfg: deploy.MachineAddresses(None, None))
    selected = {}

    def select_stack(**kw):
        selected.update(kw)
        raise pulumi.automation.StackNotFoundError(Exception("no stack"))

    monkeypatch.setattr(pulumi.automation, "select_stack", select_stack)
    assert deploy.main(parse("preview", "--stack", "dev", cwd=project)) == deploy.EXIT_USAGE
    command = selected["opts"].pulumi_command
    assert isinstance(command, pulumi.automation.PulumiCommand)
    assert command.command == str(cli) and str(command.version) == "3.208.0"


def test_the_minimum_cli_is_the_one_the_docs_name():
    from components.catalog.versions import PULUMI_CLI_MIN_VERSION

    major_minor = ".".join(PULUMI_CLI_MIN_VERSION.split(".")[:2])
    for page in ("README.md", "docs/deploy.md"):
        assert f"Pulumi CLI](https://www.pulumi.com/docs/install/) ({major_minor} or newer" in (REPO / page).read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ("preview", "--refresh", "--diff", "--expect-no-changes", "--parallel", "4", "--target", "urn:a"),
        ("up", "--refresh", "--diff", "--parallel", "4", "--target", "urn:a"),
        ("destroy", "--yes", "--parallel", "4", "--target", "urn:a"),
    ],
)
def test_every_keyword_run_plan_passes_is_one_the_pinned_sdk_takes(project, argv):
    """The fake stack takes any keyword; the pinned SDK's Stack methods (pulumi/automation/_stack.py) do not."""
    import inspect

    from pulumi.automation import Stack

    calls = []
    plan = deploy.plan_from_args(parse(argv[0], "--stack", "dev", *argv[1:], cwd=project))
    deploy.run_plan(plan, fake_automation(FakeStack(calls), []), lambda _: None)
    assert calls
    for operation, kwargs in calls:
        inspect.signature(getattr(Stack, operation)).bind(None, **kwargs)  # TypeError on an unknown keyword


# ---------------------------------------------------------------- a passphrase-encrypted stack in a pipeline


@pytest.mark.parametrize("operation", ["preview", "outputs"])
def test_a_passphrase_stack_without_the_passphrase_is_stopped_with_the_variable_to_set(
    project, monkeypatch, tmp_path, capsys, operation
):
    fake_pulumi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(deploy, "machine_addresses", lambda cfg: deploy.MachineAddresses(None, None))
    for name in deploy.PASSPHRASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text("encryptionsalt: v1:c2FsdA==:v1:AAAA:BBBB\n" + stack_file.read_text())
    assert deploy.main(parse(operation, "--stack", "dev", cwd=project)) == deploy.EXIT_USAGE
    assert "export PULUMI_CONFIG_PASSPHRASE" in capsys.readouterr().err


def test_the_passphrase_check_follows_the_secrets_provider(tmp_path):
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text("encryptionsalt: v1:salt\nconfig: {}\n")
    with pytest.raises(deploy.DeployError):
        deploy.check_secrets_passphrase(stack_file, environ={})
    deploy.check_secrets_passphrase(stack_file, environ={"PULUMI_CONFIG_PASSPHRASE": ""})  # empty, but set
    deploy.check_secrets_passphrase(stack_file, environ={"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/secrets/p"})
    stack_file.write_text("secretsprovider: awskms://alias/pulumi\nencryptedkey: AQID\nconfig: {}\n")
    deploy.check_secrets_passphrase(stack_file, environ={})  # a KMS key: nothing to ask for
    stack_file.write_text("config: {}\n")
    deploy.check_secrets_passphrase(stack_file, environ={})  # Pulumi Cloud's provider


def test_a_locked_stack_is_told_how_to_release_the_lock(project, monkeypatch, tmp_path, capsys):
    """The SDK maps the CLI's lock conflict to ConcurrentUpdateError (pulumi/automation/errors.py
    create_command_error); deploy names the wait and the `pulumi cancel` that frees a stale lock."""
    import pulumi.automation
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import create_command_error

    fake_pulumi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(deploy, "machine_addresses", lambda cfg: deploy.MachineAddresses(None, None))
    stderr = "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end"

    def select_stack(**kw):
        raise create_command_error(CommandResult(stdout="", stderr=stderr, code=255))

    monkeypatch.setattr(pulumi.automation, "select_stack", select_stack)
    assert deploy.main(parse("up", "--stack", "dev", cwd=project)) == deploy.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"`pulumi -C {project} cancel --stack dev --yes`" in err and "locked by 1 lock(s)" in err, err


# ---------------------------------------------------------------- run_plan through the pinned SDK, to a recording CLI
# The fakes above stop at the Automation API's interface. Here the real pulumi.automation (LocalWorkspace, Stack,
# its gRPC event server for CLIs > 3.205) drives a `pulumi` stand-in that records the arguments it gets and sends
# the engine's summary event back the way the CLI does (--event-log tcp://..., pulumirpc.Events/StreamEvents).

RECORDING_CLI = """#!{python}
import json, sys
argv = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(argv) + "\\n")
words = [a for a in argv if not a.startswith("-")]
if argv == ["version"]:
    print("v3.208.0"); sys.exit(0)
if "whoami" in words:
    print("alice"); sys.exit(0)
if words[:2] == ["stack", "output"]:
    secret = "--show-secrets" in argv
    print(json.dumps({{"clusterName": "tritonllm-dev", "kubeconfig": "apiVersion: v1 token" if secret else "[secret]"}}))
    sys.exit(0)
if words[:2] == ["stack", "history"]:
    print(json.dumps([{{"kind": "update", "startTime": "2026-12-07T06:00:00.000Z", "message": "", "environment": {{}},
                        "config": {{}}, "result": "succeeded", "resourceChanges": {{"create": 3}}}}]))
    sys.exit(0)
if words and words[0] in ("preview", "up") and "--expect-no-changes" in argv:  # the CLI's drift failures
    said = {{"preview": "were proposed", "up": "occurred"}}[words[0]]
    print("error: no changes were expected but changes " + said, file=sys.stderr); sys.exit(255)
if words and words[0] in ("preview", "up") and "--event-log" in argv:  # up asks for events only with on_event
    import grpc
    from pulumi.runtime.proto import events_pb2, events_pb2_grpc
    address = argv[argv.index("--event-log") + 1]
    assert address.startswith("tcp://"), address
    summary = {{"sequence": 1, "timestamp": 0, "summaryEvent": {{"maybeCorrupt": False, "durationSeconds": 1,
               "resourceChanges": {{"create": 3, "same": 40}}, "PolicyPacks": {{}}}}}}
    with grpc.insecure_channel(address[len("tcp://"):]) as channel:
        events_pb2_grpc.EventsStub(channel).StreamEvents(iter([events_pb2.EventRequest(event=json.dumps(summary))]))
if words and words[0] in ("preview", "up", "refresh"):
    print(words[0] + " progress line")
sys.exit(0)
"""


@pytest.fixture
def recording_cli(tmp_path, monkeypatch):
    import sys

    bin_dir, log = tmp_path / "bin", tmp_path / "argv.jsonl"
    bin_dir.mkdir()
    cli = bin_dir / "pulumi"
    cli.write_text(RECORDING_CLI.format(python=sys.executable, log=str(log)))
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)

    def calls():
        import json

        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls


def test_preview_through_the_real_sdk_passes_every_flag_to_the_cli(project, recording_cli):
    from pulumi import automation

    argv = ("preview", "--stack", "dev", "--diff", "--parallel", "4", "--target", "urn:a", "--refresh")
    plan = deploy.plan_from_args(parse(*argv, cwd=project))
    command = deploy.check_pulumi_version(shutil.which("pulumi"))
    lines = []
    assert deploy.run_plan(plan, automation, lines.append, command) == deploy.EXIT_OK
    preview = next(c for c in recording_cli() if "preview" in c)
    assert preview[0] == "--non-interactive" and "--diff" in preview
    assert preview[preview.index("--parallel") + 1] == "4" and preview[preview.index("--target") + 1] == "urn:a"
    assert preview[preview.index("--stack") + 1] == "dev"
    assert "refresh" in [w for c in recording_cli() for w in c]  # --refresh: a refresh before the preview
    assert "preview progress line" in lines and lines[-1] == "preview of dev: 3 create, 40 same"


def test_up_through_the_real_sdk_hides_secret_outputs(project, recording_cli):
    from pulumi import automation

    plan = deploy.plan_from_args(parse("up", "--stack", "dev", cwd=project))
    lines = []
    code = deploy.run_plan(plan, automation, lines.append, deploy.check_pulumi_version(shutil.which("pulumi")))
    assert code == deploy.EXIT_OK, lines
    up = next(c for c in recording_cli() if "up" in c)
    assert "--yes" in up and "--skip-preview" in up and up[up.index("--stack") + 1] == "dev"
    assert "up of dev: succeeded, 3 create" in lines
    assert "clusterName: tritonllm-dev" in lines and "kubeconfig: [secret]" in lines
    assert not any("token" in line for line in lines)


@pytest.mark.parametrize("operation", ["preview", "up"])
def test_drift_found_by_the_cli_exits_3_through_the_real_sdk(project, recording_cli, monkeypatch, capsys, operation):
    """pulumi/pulumi pkg/cmd/pulumi: preview fails "no changes were expected but changes were proposed", up
    "... changes occurred"; the SDK raises CommandError (exit 255) and deploy maps both to exit 3."""
    monkeypatch.setattr(deploy, "machine_addresses", lambda cfg: deploy.MachineAddresses(None, None))
    assert deploy.main(parse(operation, "--stack", "dev", "--expect-no-changes", cwd=project)) == deploy.EXIT_CHANGES
    assert "no changes were expected" in capsys.readouterr().err
    assert "--expect-no-changes" in next(c for c in recording_cli() if operation in c)
