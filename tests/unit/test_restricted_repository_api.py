"""The model repository API behind a secret header, wherever model control is explicit (issue 18).

Every tritonserver of every stack that runs `--model-control-mode=explicit` (vLLM pods; ranks > 0 of
TensorRT-LLM leader mode, in one pod or over a multi-node group) also gets
`--http-restricted-api=model-repository:tritonllm-admin-key=...` and
`--grpc-restricted-protocol=...` (server r25.12 src/command_line_parser.cc). The value is generated
(pulumi_random), a Pulumi secret, in the cluster only as the `triton-admin` Secret, and reaches
tritonserver through its environment: no manifest holds it. tests/e2e/test_restricted_repository_api.py
starts a real Triton with these arguments.
"""

from __future__ import annotations

import json

import pytest

from components.catalog.triton_server import ADMIN_KEY_HEADER, restricted_api_args
from components.serving.builders import multinode
from components.serving.builders import triton_manifests as tm
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, plain_occurrences, stack_files
from tests.unit.test_network import _cfg

PASSWORD = "random:index/randomPassword:RandomPassword"


def _tritonserver_invocations(words: list[str]) -> list[list[str]]:
    """Each tritonserver's own arguments in a command line (mpirun runs several, `:`-separated)."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for word in words:
        if word.endswith("tritonserver") or word == '"$TRITONSERVER"':
            current = []
            found.append(current)
        elif word == ":":
            current = None
        elif current is not None:
            current.append(word)
    return found


def _invocations(run: ProgramRun, model) -> list[list[str]]:
    """Every tritonserver the model's pods start, with its arguments as the pod spec or launch script has them."""
    if model.multi_node is not None:
        (cm,) = [
            m
            for m in run.manifests("ConfigMap")
            if m["metadata"]["namespace"] == model.name and m["metadata"]["name"] == multinode.LAUNCH_CONFIGMAP
        ]
        script = cm["data"]["leader.sh"]
        exec_line = (
            script[script.index('"$MPIRUN" --prefix') :].split(' > "$RUN_DIR/mpirun.out"')[0].replace("\\\n", " ")
        )
        return _tritonserver_invocations([w.strip("'\"") if w != '"$TRITONSERVER"' else w for w in exec_line.split()])
    (deployment,) = [d for d in run.manifests("Deployment") if d["metadata"]["namespace"] == model.name]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    if command[:2] == ["/bin/sh", "-c"]:
        return _tritonserver_invocations(command[2].split())
    return _tritonserver_invocations(command)


@pytest.fixture(scope="module", params=stack_files())
def run(request) -> ProgramRun:
    return stack_run_for(request.param)


def test_every_explicit_mode_server_restricts_the_repository_api(run):
    cfg = _cfg(run)
    explicit_models = 0
    for model in cfg.models:
        if model.openai.enabled:
            # Triton's OpenAI frontend embeds the server with its default model control (none): no
            # tritonserver command, nothing explicit, nothing to restrict.
            (deployment,) = [d for d in run.manifests("Deployment") if d["metadata"]["namespace"] == model.name]
            command = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["command"])
            assert "openai_frontend/main.py" in command and "model-control-mode" not in command
            assert not tm.explicit_model_control(model)
            continue
        servers = _invocations(run, model)
        assert servers, f"{model.name}: no tritonserver found"
        explicit = [args for args in servers if "--model-control-mode=explicit" in args]
        assert bool(explicit) == tm.explicit_model_control(model), (model.name, servers)
        ref = multinode.ADMIN_KEY_SHELL_REF if model.multi_node else tm.ADMIN_KEY_REF
        for args in servers:
            restricted = [a for a in args if a.startswith(("--http-restricted-api", "--grpc-restricted-protocol"))]
            if "--model-control-mode=explicit" in args:
                assert sorted(a.strip('"') for a in restricted) == sorted(restricted_api_args(ref)), args
            else:
                assert not restricted, args  # mode none: the repository API cannot load anything anyway
        explicit_models += bool(explicit)
    if run.stack in ("vllm", "multinode"):  # the stacks the issue names: vLLM pods and multi-node ranks
        assert explicit_models == len(cfg.models)


def test_the_key_reaches_the_server_from_the_secret_only(run):
    cfg = _cfg(run)
    secrets = {
        s["metadata"]["namespace"]: s for s in run.manifests("Secret") if s["metadata"]["name"] == tm.ADMIN_KEY_SECRET
    }
    for model in cfg.models:
        if not tm.explicit_model_control(model):
            assert model.name not in secrets
            continue
        assert set(secrets[model.name]["stringData"]) == {tm.ADMIN_KEY_KEY}
        if model.multi_node is not None:
            (lws,) = [m for m in run.manifests("LeaderWorkerSet") if m["metadata"]["namespace"] == model.name]
            templates = lws["spec"]["leaderWorkerTemplate"]
            pods = {"leader": templates["leaderTemplate"]["spec"], "worker": templates["workerTemplate"]["spec"]}
        else:
            (deployment,) = [d for d in run.manifests("Deployment") if d["metadata"]["namespace"] == model.name]
            pods = {"server": deployment["spec"]["template"]["spec"]}
        for role, spec in pods.items():
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            if role == "worker":  # ranks on workers get the expanded arguments from the leader's mpirun
                assert tm.ADMIN_KEY_ENV not in env
                continue
            assert env[tm.ADMIN_KEY_ENV]["valueFrom"] == {
                "secretKeyRef": {"name": tm.ADMIN_KEY_SECRET, "key": tm.ADMIN_KEY_KEY}
            }


def test_the_key_is_generated_and_never_in_plain_text(run):
    """Each explicit-mode model gets its own generated key; only its Secret's stringData holds it, marked secret."""
    cfg = _cfg(run)
    keys = [p for p in run.of_type(PASSWORD) if p.name.endswith("-admin-key")]
    assert len(keys) == sum(tm.explicit_model_control(m) for m in cfg.models)
    for password in keys:
        assert password.inputs["length"] >= 32 and password.inputs["special"] is False  # safe in a header and argv
        value = password.outputs["result"]
        holders = []
        for resource in run.resources:
            if resource is password:
                continue
            for path in plain_occurrences(resource.inputs, value):
                assert resource.is_secret(path), f"{resource.type} {resource.name}: {path} holds the admin key unmarked"
                holders.append((resource.type, path))
        assert holders == [("kubernetes:core/v1:Secret", f"stringData.{tm.ADMIN_KEY_KEY}")]
        assert not plain_occurrences(run.outputs, value)


def test_restricted_args_follow_tritonservers_syntax():
    """<apis>:<key>=<value>, the gRPC option spelled --grpc-restricted-protocol (server r25.12
    src/command_line_parser.cc); the header key has no `=` and `:` (the parser splits on them)."""
    assert restricted_api_args("v") == [
        "--http-restricted-api=model-repository:tritonllm-admin-key=v",
        "--grpc-restricted-protocol=model-repository:tritonllm-admin-key=v",
    ]
    assert "=" not in ADMIN_KEY_HEADER and ":" not in ADMIN_KEY_HEADER
    assert json.dumps(ADMIN_KEY_HEADER) == f'"{ADMIN_KEY_HEADER.lower()}"'  # lower case: a valid gRPC metadata key
