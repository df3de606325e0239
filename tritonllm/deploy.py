"""`python -m tritonllm deploy`: preview / up / destroy / outputs of a stack, for pipelines.

Uses the Pulumi Automation API on this project directory (a local program, so
`Pulumi.yaml` and `Pulumi.<stack>.yaml` are used exactly as `pulumi up` would).
For preview and up (the operations that run the program), first, before it looks for the
Pulumi CLI, it runs `tritonllm check` (tritonllm/check.py: the program's own config validation,
offline: no CLI, AWS or network), so a bad key fails in a second with its fix, and prints what
`up` would create; then it checks the Pulumi CLI and its login. Progress streams to stdout; any
failure exits non-zero.

Exit codes: 0 success; 1 the Pulumi operation failed; 2 bad arguments, a missing
stack file, invalid stack config, no Pulumi CLI or one older than the program needs
(versions.PULUMI_CLI_MIN_VERSION); 3 `preview --expect-no-changes` found changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonllm import check

PROJECT_DIR = Path(__file__).resolve().parents[1]
OPERATIONS = ("preview", "up", "destroy", "outputs")
# What runs the program, so what the offline check of the stack's config comes first for: destroy and
# outputs work from the stack's state (a stack whose config no longer validates can still be destroyed).
RUNS_THE_PROGRAM = ("preview", "up")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 3


class DeployError(Exception):
    """A problem found before running Pulumi: message says what and how to fix it."""


class StackConfigError(DeployError):
    """The stack's config is invalid (the program's message); its fixes may run the Pulumi CLI."""


@dataclass(frozen=True)
class DeployPlan:
    """Everything `deploy` will do, decided from the arguments and the files alone."""

    operation: str
    stack: str
    project_dir: Path
    stack_file: Path
    refresh: bool = False
    expect_no_changes: bool = False
    diff: bool = False
    parallel: int | None = None
    targets: tuple[str, ...] = ()
    show_secrets: bool = False
    json_output: bool = False
    config_keys: tuple[str, ...] = field(default=())
    check_report: tuple[str, ...] = ()  # what `tritonllm check` prints (preview and up)
    stack_config: Any = None  # the validated StackConfig (None for outputs, which reads no config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("operation", choices=OPERATIONS, help="what to do with the stack")
    parser.add_argument("--stack", "-s", required=True, help="stack name, e.g. dev (uses Pulumi.<stack>.yaml)")
    parser.add_argument("--cwd", type=Path, default=PROJECT_DIR, help="project directory (default: this repository)")
    parser.add_argument("--refresh", action="store_true", help="refresh state from the cloud first")
    parser.add_argument("--diff", action="store_true", help="show detailed property diffs")
    parser.add_argument(
        "--expect-no-changes",
        action="store_true",
        help="preview/up: fail (exit 3) if anything would change - for drift checks",
    )
    parser.add_argument("--parallel", type=int, help="resource operations to run in parallel")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="URN",
        help="limit the operation to this resource URN (repeatable)",
    )
    parser.add_argument("--yes", action="store_true", help="required for destroy: confirm deleting every resource")
    parser.add_argument("--show-secrets", action="store_true", help="outputs: print secret values in plain text")
    parser.add_argument("--json", action="store_true", help="outputs: print JSON instead of a table")


def plan_from_args(args: argparse.Namespace) -> DeployPlan:
    """Check the arguments and the stack file; raise DeployError naming the fix."""
    project_dir = Path(args.cwd).resolve()
    if not (project_dir / "Pulumi.yaml").is_file():
        raise DeployError(f"{project_dir} has no Pulumi.yaml; pass --cwd with the project directory")
    stack_file = project_dir / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        start = f"`cp {project_dir / ('Pulumi.' + known[0] + '.yaml')} {stack_file}`, edit it, then " if known else ""
        raise DeployError(
            f"no stack file {stack_file.name}; known stacks: {', '.join(known) or 'none'} "
            f"(to add one: {start}`pulumi -C {project_dir} stack init {args.stack}`)"
        )
    if args.operation == "destroy" and not args.yes:
        raise DeployError("destroy deletes every resource of the stack; pass --yes to confirm")
    if args.expect_no_changes and args.operation not in ("preview", "up"):
        raise DeployError("--expect-no-changes applies to preview and up only")
    if args.parallel is not None and args.parallel < 1:
        raise DeployError("--parallel must be at least 1")
    config_keys: tuple[str, ...] = ()
    report: tuple[str, ...] = ()
    stack_config = None
    if args.operation in RUNS_THE_PROGRAM:
        checked = validate_stack_file(stack_file, args.stack)
        config_keys, report = checked.keys, tuple(checked.lines())
        stack_config = checked.config
    return DeployPlan(
        operation=args.operation,
        stack=args.stack,
        project_dir=project_dir,
        stack_file=stack_file,
        refresh=args.refresh,
        expect_no_changes=args.expect_no_changes,
        diff=args.diff,
        parallel=args.parallel,
        targets=tuple(args.target),
        show_secrets=args.show_secrets,
        json_output=args.json,
        config_keys=config_keys,
        check_report=report,
        stack_config=stack_config,
    )


def validate_stack_file(stack_file: Path, stack: str | None = None) -> check.Report:
    """`tritonllm check` of the stack file: the program's validation, offline; the report it prints.

    A fix that is a `pulumi config set` command is given for this stack and project directory,
    so it runs as printed from anywhere (`-C <dir>`, `--stack <name>`)."""
    from components.config import ConfigError

    name = stack or stack_file.name[len("Pulumi.") : -len(".yaml")]
    try:
        return check.check_stack(stack_file.parent, name)
    except check.CheckError as exc:
        raise DeployError(str(exc)) from None
    except ConfigError as exc:
        message = str(exc)
        if stack:
            where = f"pulumi -C {stack_file.parent}"
            message = message.replace(  # the stack must exist in the backend before config can be set
                "`pulumi config set ", f"`{where} stack select --create {stack} && {where} config set --stack {stack} "
            ).replace("$(pulumi config get ", f"$({where} config get --stack {stack} ")
        raise StackConfigError(f"{stack_file.name}: {message}") from None


# --------------------------------------------------------------------------- can this machine reach the API?

CHECKIP_URL = "https://checkip.amazonaws.com"


@dataclass(frozen=True)
class MachineAddresses:
    """How the stack's API endpoint would see this machine."""

    towards_vpc: str | None  # the source address this machine's routes pick for the VPC (None: no route)
    public: str | None  # as the internet sees it (None: not looked up, or the lookup failed)


def source_address_towards(cidr: str) -> str | None:
    """The address this machine sends from towards `cidr` (routing table only: a UDP socket's connect
    sends nothing); None when there is no route."""
    import ipaddress
    import socket

    network = ipaddress.ip_network(cidr)
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(network.network_address + 1), 443))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def public_address(timeout: float = 3.0) -> str | None:
    """This machine's address as the internet sees it (checkip.amazonaws.com), or None."""
    import ipaddress
    import urllib.request

    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as response:  # noqa: S310 - fixed https URL
            return str(ipaddress.ip_address(response.read().decode().strip()))
    except (OSError, ValueError):
        return None


def machine_addresses(cfg: Any) -> MachineAddresses:
    """Look up what endpoint_access_notes needs; the public address only when the endpoint is public."""
    return MachineAddresses(
        towards_vpc=source_address_towards(cfg.network.vpc_cidr),
        public=public_address() if cfg.cluster.endpoint_public_access else None,
    )


def _covered(address: str | None, cidrs: list[str]) -> bool:
    import ipaddress

    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == ip.version)


def endpoint_access_notes(cfg: Any, machine: MachineAddresses, stack: str, project_dir: Path) -> list[str]:
    """What this machine needs to reach the stack's Kubernetes API (`pulumi up` talks to it for every
    in-cluster object): nothing when its address is covered, else the keys that would cover it.

    The private endpoint admits the cluster itself, `cluster.endpointPrivateAccessCidrs` and members of
    `cluster.endpointPrivateAccessSecurityGroupIds`, and only from networks routed to the VPC; the public
    one (`cluster.endpointPublicAccess`) admits `cluster.endpointPublicAccessCidrs`."""
    cluster, network = cfg.cluster, cfg.network
    config_set = f"pulumi -C {project_dir} config set --stack {stack} --path"
    vpc = [network.vpc_cidr, network.pod_cidr]
    inside = _covered(machine.towards_vpc, vpc)
    if _covered(machine.towards_vpc, cluster.endpoint_private_access_cidrs):
        return [
            f"API endpoint: this machine reaches the private endpoint as {machine.towards_vpc} "
            "(in cluster.endpointPrivateAccessCidrs)"
        ]
    if cluster.endpoint_public_access and _covered(machine.public, cluster.endpoint_public_access_cidrs):
        return [
            f"API endpoint: this machine reaches the public endpoint as {machine.public} "
            "(in cluster.endpointPublicAccessCidrs)"
        ]
    where = (
        f"inside the stack's VPC as {machine.towards_vpc}"
        if inside
        else f"outside the stack's VPC ({network.vpc_cidr}"
        + (f"; it routes there from {machine.towards_vpc})" if machine.towards_vpc else ")")
    )
    lines = [
        f"API endpoint: this machine is {where} and no config key admits it to the Kubernetes API, which "
        "`pulumi up` calls for every in-cluster object (a connection that times out). It needs one of:"
    ]
    private_count = len(cluster.endpoint_private_access_cidrs)
    if inside:
        lines.append(
            f"  - its address in cluster.endpointPrivateAccessCidrs: "
            f"`{config_set} 'tritonllm:cluster.endpointPrivateAccessCidrs[{private_count}]' {machine.towards_vpc}/"
            f"{32 if ':' not in str(machine.towards_vpc) else 128}`"
        )
    else:
        lines.append(
            "  - a route into the VPC (VPN, peering, Transit Gateway, or an SSM port-forward through an instance "
            "in it) and the address it arrives with in cluster.endpointPrivateAccessCidrs "
            f"(`{config_set} 'tritonllm:cluster.endpointPrivateAccessCidrs[{private_count}]' <cidr>`)"
        )
    groups = cluster.endpoint_private_access_security_group_ids
    lines.append(
        "  - or, on an instance in the VPC, a security group listed in cluster.endpointPrivateAccessSecurityGroupIds"
        + (f" (now: {', '.join(groups)})" if groups else "")
    )
    if cluster.endpoint_public_access:
        address = f"{machine.public}/32" if machine.public and ":" not in machine.public else None
        lines.append(
            "  - or its public address in cluster.endpointPublicAccessCidrs: "
            f"`{config_set} 'tritonllm:cluster.endpointPublicAccessCidrs[{len(cluster.endpoint_public_access_cidrs)}]' "
            + (address or f'"$(curl -s {CHECKIP_URL})/32"')
            + "`"
            + ("" if machine.public else f" (its public address could not be read from {CHECKIP_URL})")
        )
    else:
        lines.append(
            f"  - or the public endpoint, open to this machine only: `{config_set} "
            "'tritonllm:cluster.endpointPublicAccess' true` and "
            f"`{config_set} 'tritonllm:cluster.endpointPublicAccessCidrs[0]' \"$(curl -s {CHECKIP_URL})/32\"`"
        )
    return lines


INSTALL_PULUMI = (
    "install it with `curl -fsSL https://get.pulumi.com | sh` (or see "
    "https://www.pulumi.com/docs/install/), then `export PATH=$HOME/.pulumi/bin:$PATH`"
)
LOGIN_PULUMI = (
    "log in to a state backend: `pulumi login --local` (state in ~/.pulumi), `pulumi login` "
    "(Pulumi Cloud) or `pulumi login s3://<bucket>`"
)


def find_pulumi_cli() -> str:
    found = shutil.which("pulumi")
    if not found:
        raise DeployError(f"the Pulumi CLI is not on PATH: {INSTALL_PULUMI}; then {LOGIN_PULUMI}")
    return found


def check_pulumi_login(cli: str, project_dir: Path, timeout: float = 60) -> None:
    """`pulumi whoami` fails when no backend is logged in; every operation would fail the same way."""
    import subprocess

    try:
        proc = subprocess.run(
            [cli, "whoami", "--non-interactive"], cwd=project_dir, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"`{cli} whoami` did not answer ({exc}); {LOGIN_PULUMI}") from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise DeployError(
            f"the Pulumi CLI is not logged in ({said[-1] if said else 'pulumi whoami failed'}): {LOGIN_PULUMI}"
        )


def check_pulumi_version(cli: str) -> Any:
    """The Automation API's `PulumiCommand` for `cli`, held to the oldest CLI the program runs on.

    The SDK's own check (pulumi/automation/_cmd.py `PulumiCommand(version=...)`: `pulumi version`, then
    InvalidVersionError below the minimum) with our minimum instead of the SDK's 3.1.0: an older CLI would
    run `up` until the engine met the program's pulumi.Stash and fail half-way. The SDK's opt-out,
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK, skips it as for any Automation API program."""
    import subprocess

    from pulumi.automation import InvalidVersionError, PulumiCommand
    from semver import VersionInfo

    from components.catalog.versions import PULUMI_CLI_MIN_VERSION

    path = Path(cli)
    root = str(path.parent.parent) if path.name == "pulumi" and path.parent.name == "bin" else None
    try:
        return PulumiCommand(root=root, version=VersionInfo.parse(PULUMI_CLI_MIN_VERSION))
    except InvalidVersionError as exc:
        raise DeployError(
            f"the Pulumi CLI {cli} is not one this program runs on ({exc}); it needs {PULUMI_CLI_MIN_VERSION} "
            f"or newer in 3.x (pulumi.Stash; the SDK, requirements.txt, is 3.x): `pulumi version` says which you "
            f"have; {INSTALL_PULUMI}"
        ) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DeployError(f"`{cli} version` failed ({exc}); {INSTALL_PULUMI}") from None


PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


def check_secrets_passphrase(stack_file: Path, environ: Any = os.environ) -> None:
    """A stack whose secrets provider is the passphrase one (the stack file has `encryptionsalt` and no other
    `secretsprovider`) cannot decrypt its config without the passphrase, and the Automation API runs the CLI
    with --non-interactive, so it cannot ask: "passphrase must be set with PULUMI_CONFIG_PASSPHRASE or
    PULUMI_CONFIG_PASSPHRASE_FILE environment variables" (pulumi/pulumi pkg/secrets/passphrase, read with
    os.LookupEnv: an empty passphrase, set, counts). Said here, before anything runs, with the fix."""
    import yaml

    try:
        settings = yaml.safe_load(stack_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # the offline check (preview, up) or Pulumi itself reports an unreadable stack file
    provider = settings.get("secretsprovider") if isinstance(settings, dict) else None
    passphrase = isinstance(settings, dict) and "encryptionsalt" in settings and provider in (None, "passphrase")
    if passphrase and not any(name in environ for name in PASSPHRASE_VARIABLES):
        raise DeployError(
            f"{stack_file.name} keeps its secrets with a passphrase (encryptionsalt), and deploy runs Pulumi "
            "non-interactively, so it cannot ask for it: export PULUMI_CONFIG_PASSPHRASE (or "
            "PULUMI_CONFIG_PASSPHRASE_FILE, a file holding it) in the environment that runs deploy, e.g. from "
            "the CI system's secret store"
        )


def check_tools(project_dir: Path, stack_file: Path | None = None) -> Any:
    """The tools every operation needs, before anything else: they come first in a fix.
    Returns the checked CLI as the Automation API's PulumiCommand, for run_plan."""
    cli = find_pulumi_cli()
    command = check_pulumi_version(cli)
    check_pulumi_login(cli, project_dir)
    if stack_file is not None:
        check_secrets_passphrase(stack_file)
    return command


def run_plan(plan: DeployPlan, automation: Any, out: Callable[[str], None], pulumi_command: Any = None) -> int:
    """Run the plan with the Automation API module `automation`; return the exit code.

    `pulumi_command` (check_tools' PulumiCommand, version checked) is the CLI the workspace runs;
    without it the SDK would make its own, held only to the SDK's minimum (3.1.0)."""
    options = automation.LocalWorkspaceOptions(pulumi_command=pulumi_command) if pulumi_command else None
    stack = automation.select_stack(stack_name=plan.stack, work_dir=str(plan.project_dir), opts=options)
    stream = dict(on_output=out, on_error=lambda line: out(line))
    if plan.refresh and plan.operation != "outputs":
        stack.refresh(**stream)
    common = dict(parallel=plan.parallel, target=list(plan.targets) or None, diff=plan.diff or None)
    if plan.operation == "preview":
        result = stack.preview(expect_no_changes=plan.expect_no_changes or None, **common, **stream)
        changes = {k: v for k, v in (result.change_summary or {}).items() if k != "same" and v}
        out(f"preview of {plan.stack}: {_summary(result.change_summary)}")
        if plan.expect_no_changes and changes:
            return EXIT_CHANGES
        return EXIT_OK
    if plan.operation == "up":
        result = stack.up(expect_no_changes=plan.expect_no_changes or None, show_secrets=False, **common, **stream)
        out(f"up of {plan.stack}: {result.summary.result}, {_summary(result.summary.resource_changes)}")
        _print_outputs(result.outputs, plan, out)
        return EXIT_OK if result.summary.result == "succeeded" else EXIT_FAILED
    if plan.operation == "destroy":
        result = stack.destroy(parallel=plan.parallel, target=list(plan.targets) or None, show_secrets=False, **stream)
        out(f"destroy of {plan.stack}: {result.summary.result}, {_summary(result.summary.resource_changes)}")
        return EXIT_OK if result.summary.result == "succeeded" else EXIT_FAILED
    _print_outputs(stack.outputs(), plan, out)
    return EXIT_OK


def _summary(changes: dict[str, int] | None) -> str:
    return ", ".join(f"{n} {op}" for op, n in sorted((changes or {}).items())) or "no changes"


def _print_outputs(outputs: dict[str, Any], plan: DeployPlan, out: Callable[[str], None]) -> None:
    shown = {}
    for name, output in sorted(outputs.items()):
        secret = getattr(output, "secret", False)
        value = getattr(output, "value", output)
        shown[name] = "[secret]" if secret and not plan.show_secrets else value
    if plan.json_output:
        out(json.dumps(shown, indent=2, default=str))
        return
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out(f"{name}: {text}")


def main(args: argparse.Namespace) -> int:
    def out(line: str) -> None:
        print(line.rstrip("\n"), flush=True)

    try:
        # The offline check first (tritonllm check: no CLI, AWS or network), then the tools.
        plan = plan_from_args(args)
    except StackConfigError as exc:
        print(f"tritonllm deploy: {exc}", file=sys.stderr)
        if "`pulumi -C" in str(exc):  # the fixes run the Pulumi CLI: say now if it is missing or logged out
            try:
                check_tools(Path(args.cwd).resolve())
            except DeployError as tools:
                print(f"tritonllm deploy: the fixes above run the Pulumi CLI, and {tools}", file=sys.stderr)
        return EXIT_USAGE
    except DeployError as exc:
        print(f"tritonllm deploy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in plan.check_report:
        out(line)
    try:
        pulumi_command = check_tools(plan.project_dir, plan.stack_file)
    except DeployError as exc:
        print(f"tritonllm deploy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if plan.stack_config is not None:  # preview, up, destroy: they all call the cluster's API
        for line in endpoint_access_notes(
            plan.stack_config, machine_addresses(plan.stack_config), plan.stack, plan.project_dir
        ):
            out(f"tritonllm deploy: {line}")
    from pulumi import automation

    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    try:
        return run_plan(plan, automation, out, pulumi_command)
    except automation.StackNotFoundError:
        print(
            f"tritonllm deploy: stack {plan.stack!r} does not exist in the current backend; create it with "
            f"`pulumi -C {plan.project_dir} stack init {plan.stack}`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except automation.ConcurrentUpdateError as exc:  # a CommandError: caught first (pulumi/automation/errors.py)
        print(
            f"tritonllm deploy: {plan.operation} of {plan.stack} did not start: the stack is locked by another "
            f"update (Pulumi Cloud's 409, or a DIY backend's lock file). Wait for it to finish; if none is running "
            f"(a killed run left its lock), `pulumi -C {plan.project_dir} cancel --stack {plan.stack} --yes` "
            f"releases it.\n{exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except automation.CommandError as exc:
        print(f"tritonllm deploy: {plan.operation} of {plan.stack} failed:\n{exc}", file=sys.stderr)
        return EXIT_CHANGES if plan.expect_no_changes and "no changes were expected" in str(exc) else EXIT_FAILED
