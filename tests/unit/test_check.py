"""`python -m tritonllm check --stack NAME` (tritonllm/check.py): the program's config validation of a
stack file, offline, and what `pulumi up` would create (issue 22 item 2).

- Every shipped stack passes once its secrets are set the way `pulumi config set --secret` stores
  them (encrypted `secure:` values, which count as set), and what the check lists (NodePools, each
  model's workload, GPUs and replicas, the NLB's listeners) is what the program registers under mocks.
- Every bad-config case of the mocked-program tests (tests/unit/test_config_errors.py CASES,
  tests/unit/test_config_checks.py MORE_CASES, tests/multinode/test_config.py CASES), written as a
  stack file, fails with exactly the `invalid stack config:` message the program raises under mocks;
  the one case that needs the network (an hfRevision Hugging Face cannot resolve) passes offline and
  the check says it skipped that resolution.
- No network: the check runs in a network namespace with no interface up (`unshare -rn`, when the
  kernel allows it here) under an audit hook that stops the process at its first socket connect,
  send or name lookup, and in-process with every socket connect and name lookup refused and recorded.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import config as config_module
from tests.multinode import test_config as multinode_config
from tests.unit import test_config_checks, test_config_errors
from tests.unit.conftest import stack_run_for
from tests.unit.harness import DEFAULT_SECRETS, load_stack_config, run_program, set_path, stack_files
from tests.unit.test_config_errors import BadConfig
from tritonllm import check

REPO = Path(__file__).resolve().parents[2]
ENCRYPTED = {"secure": "v1:AAABAG+mock+encrypted+value"}  # what `pulumi config set --secret` writes
ALL_CASES = [*test_config_errors.CASES, *test_config_checks.MORE_CASES, *multinode_config.CASES]
NEEDS_THE_NETWORK = {"hf-revision-unresolvable"}  # the program fails only after asking Hugging Face


def write_project(root: Path, stacks: dict[str, dict]) -> Path:
    """A project directory with this repository's Pulumi.yaml and the given stack files' `config:`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    for name, config in stacks.items():
        (root / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return root


def with_secrets_set(stack: str) -> dict:
    """The committed stack file after README's step 3 (hfToken and apiKeys set as secrets)."""
    config = load_stack_config(stack)
    config.update({"tritonllm:hfToken": dict(ENCRYPTED), "tritonllm:apiKeys": dict(ENCRYPTED)})
    return config


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("shipped"), {s: with_secrets_set(s) for s in stack_files()})


def run_check(project: Path, stack: str, *extra: str, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    code = check.main(parser.parse_args(["--stack", stack, "--cwd", str(project), *extra]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_check_knows_the_namespace_and_secrets_of_the_config_package():
    assert (check.NAMESPACE, check.SECRET_KEYS) == (config_module.NAMESPACE, config_module.SECRET_KEYS)


# --------------------------------------------------------------------------- shipped stacks


@pytest.mark.parametrize("stack", stack_files())
def test_every_shipped_stack_passes_and_lists_what_the_program_creates(shipped, stack, capsys):
    code, out, err = run_check(shipped, stack, capsys=capsys)
    assert code == 0, err
    assert out.startswith(f"Pulumi.{stack}.yaml: valid (") and "hfToken set (encrypted" in out, out
    run = stack_run_for(stack)  # the program under mocks (tests/unit/harness.py)
    cfg = check.check_stack(shipped, stack).config
    sections = re.findall(r"^  (\S.*?)  ", out, flags=re.M)
    assert {"Network", "Cluster", "Karpenter", "ModelStore", "Gateway", "Monitoring"} <= set(sections), sections
    assert [s for s in sections if s.startswith("TritonLLM ")] == [f"TritonLLM {m.name}" for m in cfg.models]
    # NodePools: the names the check lists are the NodePools the program registers.
    listed = {name for group in re.findall(r"NodePools \[(.*?)\]", out) for name in group.split(", ") if name}
    assert listed == {m["metadata"]["name"] for m in run.manifests("NodePool")}, out
    # Each model: its workload kind, GPUs per pod and replica range, as registered.
    for model in cfg.models:
        section = out.split(f"TritonLLM {model.name}", 1)[1].split("\n  T", 1)[0]
        kind = "LeaderWorkerSet" if model.multi_node else "Deployment"
        (workload,) = [m for m in run.manifests(kind) if m["metadata"]["namespace"] == model.name]
        spec = workload["spec"]
        pod = spec["leaderWorkerTemplate"]["leaderTemplate"]["spec"] if model.multi_node else spec["template"]["spec"]
        gpus = pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        assert f"{kind}" in section and f"{gpus} GPU(s) per pod" in section, section
        if model.min_replicas == 0:  # KEDA's ScaledObject owns the HPA (docs/autoscaling.md "Scale to zero")
            (so,) = [m for m in run.manifests("ScaledObject") if m["metadata"]["namespace"] == model.name]
            bounds = (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"])
            assert f"to zero after {so['spec']['cooldownPeriod']} s idle (KEDA)" in section, section
        else:
            (hpa,) = [m for m in run.manifests("HorizontalPodAutoscaler") if m["metadata"]["namespace"] == model.name]
            bounds = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        assert f"replicas {bounds[0]}-{bounds[1]} " in section, section
        image = pod["containers"][0]["image"]
        # a built image (multi-node): its repository and content tag, the digest is ECR's after the build
        assert (image.split("@")[0].split("/", 1)[1] if ".dkr.ecr." in image else image) in section, section
    # The NLB: the listeners of the Service the program registers.
    (nlb,) = [m for m in run.manifests("Service") if m["spec"].get("type") == "LoadBalancer"]
    ports = ", ".join(f"{p['port']} ({p['name']})" for p in nlb["spec"]["ports"])
    assert f"listeners {ports}, admitting {', '.join(nlb['spec']['loadBalancerSourceRanges'])}" in out


@pytest.mark.parametrize("stack", stack_files())
def test_a_shipped_stack_without_its_secrets_fails_as_the_program_does(stack, tmp_path, capsys):
    """As committed (no secrets yet) the stacks fail like `pulumi up` would; --assume-secrets checks the rest."""
    project = write_project(tmp_path, {stack: load_stack_config(stack)})
    run = run_program(stack, secrets={"hfToken": None, "apiKeys": None}, check=False)
    assert isinstance(run.error, config_module.ConfigError)
    code, out, err = run_check(project, stack, capsys=capsys)
    assert code == 1 and str(run.error) in err and out == "", err
    code, out, err = run_check(project, stack, "--assume-secrets", capsys=capsys)
    assert code == 0, err
    assert "hfToken assumed set (--assume-secrets" in out and "ngcApiKey not set" in out, out


# --------------------------------------------------------------------------- bad configs


def case_config(case: BadConfig) -> dict:
    """The case's stack file: the committed one with its overrides; the default secrets encrypted as
    `pulumi config set --secret` stores them, the case's own secrets in plain text (their values are
    what the case is about, and the check can read only plain text)."""
    config = load_stack_config(case.stack)
    for path, value in case.overrides.items():
        set_path(config, path, copy.deepcopy(value))
    for key, value in {**DEFAULT_SECRETS, **case.secrets}.items():
        full = f"tritonllm:{key}"
        if key in case.overrides:  # the case sets it as plain config itself (issue 18 item 4's cases)
            continue
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value if key in case.secrets else dict(ENCRYPTED)
    return config


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_every_bad_config_fails_with_the_programs_message(case, tmp_path, capsys):
    project = write_project(tmp_path, {case.stack: case_config(case)})
    # The case's own secrets are in the file in plain text (the check reads no encrypted value), so the
    # program gets them the same way: as plain config, which it refuses as well (issue 18 item 4).
    run = run_program(
        case.stack,
        overrides={**case.overrides, **case.secrets},
        secrets={key: None for key in case.secrets},
        check=False,
    )
    assert isinstance(run.error, config_module.ConfigError), run.error
    code, out, err = run_check(project, case.stack, capsys=capsys)
    if case.id in NEEDS_THE_NETWORK:
        assert code == 0, err
        assert f"skipped: {case.key} " in out and "needs the Hugging Face API" in out, out
        return
    assert code == 1, out
    assert err.startswith(f"tritonllm check: Pulumi.{case.stack}.yaml: {run.error}\n"), (err, str(run.error))
    # A case's own secret is refused for being in plain text before its value is judged, by both.
    fix = "pulumi config set --secret" if case.secrets else case.fix
    assert f"tritonllm:{case.key}: " in err and fix in err
    with pytest.raises(config_module.ConfigError) as raised:
        check.check_stack(project, case.stack)
    assert raised.value.problems == run.error.problems


def test_values_only_pulumi_can_decrypt_are_named_not_guessed(tmp_path, capsys):
    config = load_stack_config("vllm")
    config["tritonllm:hfToken"] = dict(ENCRYPTED)
    config["tritonllm:apiKeys"] = dict(ENCRYPTED)
    config["tritonllm:region"] = dict(ENCRYPTED)  # `pulumi config set --secret` on a plain key
    config["tritonllm:gateway"] = {"tls": {"certificateArn": dict(ENCRYPTED)}}  # --path --secret
    code, _, err = run_check(write_project(tmp_path, {"vllm": config}), "vllm", capsys=capsys)
    assert code == 1, err
    assert "tritonllm:region, tritonllm:gateway.tls.certificateArn encrypted (secure:)" in err, err
    assert "set the value in plain text" in err


def test_missing_stack_file_and_broken_yaml(tmp_path, capsys):
    project = write_project(tmp_path, {"dev": with_secrets_set("dev")})
    code, _, err = run_check(project, "prod", capsys=capsys)
    assert code == 2 and "no stack file Pulumi.prod.yaml" in err and "known stacks: dev" in err
    (project / "Pulumi.bad.yaml").write_text("config:\n  tritonllm:models: [oops\n")
    code, _, err = run_check(project, "bad", capsys=capsys)
    assert code == 1 and "Pulumi.bad.yaml is not valid YAML" in err


def test_an_unquoted_date_is_checked_as_the_text_the_program_gets(tmp_path, capsys):
    """YAML would read `amiVersion: 2026-07-14` as a date; Pulumi hands the program the text."""
    (case,) = [c for c in ALL_CASES if c.id == "ami-version-not-a-release"]
    text = yaml.safe_dump({"config": case_config(case)}, sort_keys=False).replace("'2026-07-14'", "2026-07-14")
    assert "amiVersion: 2026-07-14\n" in text
    project = write_project(tmp_path, {})
    (project / f"Pulumi.{case.stack}.yaml").write_text(text)
    run = run_program(case.stack, overrides=case.overrides, secrets=case.secrets, check=False)
    code, _, err = run_check(project, case.stack, capsys=capsys)
    assert code == 1 and str(run.error) in err, err


def test_project_config_is_read_under_the_stack_file(tmp_path, capsys):
    """Pulumi.yaml's project-level values (a key without namespace is the project's) apply unless the
    stack file sets the key, as with `pulumi up`."""
    config = with_secrets_set("vllm")
    region = config.pop("tritonllm:region")
    project = write_project(tmp_path, {"vllm": config})
    (project / "Pulumi.yaml").write_text(
        (project / "Pulumi.yaml").read_text()
        + f"  region:\n    value: {region}\n  tritonllm:name:\n    default: other\n"
    )
    code, out, err = run_check(project, "vllm", capsys=capsys)
    assert code == 0, err
    assert f"over 3 AZs of {region}" in out and "cluster tritonllm-vllm," in out, out


# --------------------------------------------------------------------------- no network


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Every way out of the process through a socket refused and recorded."""
    attempts: list[str] = []

    def refuse(what):
        def deny(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise NetworkUsed(f"{what} called")

        return deny

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket.socket, "sendto", refuse("socket.sendto"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    return attempts


def test_no_network_connection_or_name_lookup_in_process(shipped, tmp_path, no_network, capsys):
    for stack in stack_files():
        assert run_check(shipped, stack, capsys=capsys)[0] == 0
    (case,) = [c for c in ALL_CASES if c.id in NEEDS_THE_NETWORK]  # where the program asks Hugging Face
    project = write_project(tmp_path, {case.stack: case_config(case)})
    code, out, err = run_check(project, case.stack, capsys=capsys)
    assert code == 0 and "skipped: models[0].hfRevision" in out, err
    assert no_network == []
    with pytest.raises(NetworkUsed):  # the guard itself works
        socket.create_connection(("127.0.0.1", 9))


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30).returncode == 0


# Run `python -m tritonllm ...` with an audit hook (PEP 578) that ends the process, exit 97, at the first
# socket connect, send or name lookup: an attempt shows even where the code would catch the error.
AUDITED = (
    "import os, runpy, sys\n"
    "def hook(event, args):\n"
    "    if event in ('socket.connect', 'socket.sendto', 'socket.sendmsg', 'socket.getaddrinfo',\n"
    "                 'socket.gethostbyname', 'socket.gethostbyaddr'):\n"
    "        os.write(2, f'network used: {event} {args[1:]!r}\\n'.encode()); os._exit(97)\n"
    "sys.addaudithook(hook)\n"
    "sys.argv = ['tritonllm', *sys.argv[1:]]\n"
    "runpy.run_module('tritonllm', run_name='__main__')\n"
)


@pytest.mark.skipif(not _unshare_works(), reason="unshare -rn (a user + network namespace) is not allowed here")
def test_the_check_runs_with_no_network_at_all(shipped, tmp_path):
    """In a network namespace with no interface up (`unshare -rn`), every socket connect, send and
    name lookup audited: the same output as outside it, and not one attempt."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        probe = subprocess.run(
            [
                "unshare",
                "-rn",
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {port}), 5)",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        listener.close()
    assert probe.returncode != 0 and "Error" in probe.stderr, "the namespace still reaches the host's loopback"
    (case,) = [c for c in ALL_CASES if c.id in NEEDS_THE_NETWORK]
    bad = [c for c in ALL_CASES if c.id == "cidr-overlap"][0]
    project = write_project(tmp_path, {"revision": case_config(case), "overlap": case_config(bad)})
    runs = [(shipped, s, 0) for s in stack_files()] + [(project, "revision", 0), (project, "overlap", 1)]
    for where, stack, expected in runs:
        argv = [sys.executable, "-c", AUDITED, "check", "--stack", stack, "--cwd", str(where)]
        outside = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
        inside = subprocess.run(["unshare", "-rn", *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert inside.returncode == expected, f"{stack}: {inside.stdout}{inside.stderr}"
        assert (inside.stdout, inside.stderr) == (outside.stdout, outside.stderr), stack
        assert "network used" not in inside.stderr
