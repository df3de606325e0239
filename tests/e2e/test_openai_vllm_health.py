"""Issue 17 item 2: a dead vLLM engine fails the probes of an OpenAI-mode pod, on a real tritonserver (CPU).

In OpenAI mode the pod runs Triton's OpenAI frontend (server r25.12 python/openai/openai_frontend/
main.py), which embeds Triton in-process: `tritonserver.Server(model_repository=..., log_*=...)`
(main.py line 203), every other option at its default, model control NONE (core r25.12
python/tritonserver/_api/_server.py `Options`, line 280). The vLLM backend's health check unloads a
dead engine's model only in EXPLICIT mode (vllm_backend r25.12 docs/health_check.md; src/model.py
`_check_health`), so under main.py's defaults the dead model stays READY and the pod is never
restarted.

What runs here, end to end:
1. the OpenAI-mode container command of the llmapi stack's vLLM model, as rendered, with main.py
   replaced by a stand-in that builds its server as main.py r25.12 does, and the `tritonserver`
   module by a recorder: what comes out is the option set the in-process server would get;
2. a real tritonserver started with the same options as flags (`model_control_mode` ->
   `--model-control-mode`, `startup_models` -> `--load-model`: the same TRITONSERVER_ServerOptions
   calls), serving a model that dies as the vLLM backend's health check does
   (tests/e2e/test_vllm_health.py);
3. the pod's readiness and liveness probes asked of that server: they pass, the engine dies, they fail.
   A probe of the frontend's own /health/ready (port 9000) is asked as /v2/health/ready, which is what
   it answers from (routers/observability.py -> engine.ready() -> server.ready()).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import parse_stack_config
from components.serving.builders import openai as openai_frontend
from components.serving.builders import triton_manifests as tm
from tests.e2e import test_vllm_health as dying
from tests.unit.harness import load_stack_config
from tests.upstream_code import reference_file
from tests.weights_helpers import deployment_manifest

UPSTREAM_MAIN_PY = "triton-openai/server-r25.12/python/openai/openai_frontend/main.py"
# The keywords main.py r25.12 builds its server with (main.py lines 203-209), and no Options object.
MAIN_PY_SERVER_KEYWORDS = {"model_repository", "log_verbose", "log_info", "log_warn", "log_error"}

# A stand-in `tritonserver` module: records the options a Server is built with, defaults as in core
# r25.12 python/tritonserver/_api/_server.py `Options` (model_control_mode NONE, startup_models []).
FAKE_TRITONSERVER = """
import enum, json, os

class ModelControlMode(enum.Enum):
    NONE = 0
    POLL = 1
    EXPLICIT = 2

class Server:
    def __init__(self, options=None, **kwargs):
        if options is not None:
            raise TypeError("this recorder takes keyword options only")
        recorded = {"model_control_mode": ModelControlMode.NONE, "startup_models": [], **kwargs}
        recorded["model_control_mode"] = recorded["model_control_mode"].name.lower()
        with open(os.environ["RECORD_SERVER_OPTIONS"], "w") as f:
            json.dump(recorded, f)

    def start(self, wait_until_ready=False, polling_interval=0.1, timeout=None):
        return self
"""
# A stand-in main.py: what main.py r25.12 does up to its server (parse_args, then lines 203-209);
# it also imports a sibling module, as main.py imports engine/ and frontend/ next to it.
FAKE_MAIN = """
import argparse
import tritonserver
import sibling

parser = argparse.ArgumentParser()
parser.add_argument("--model-repository", required=True)
parser.add_argument("--tritonserver-log-verbose-level", type=int, default=0)
args, _ = parser.parse_known_args()
server = tritonserver.Server(
    model_repository=args.model_repository,
    log_verbose=args.tritonserver_log_verbose_level,
    log_info=True,
    log_warn=True,
    log_error=True,
).start(wait_until_ready=True)
"""


def openai_vllm_model():
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("llmapi").items() if k.startswith("tritonllm:")}
    cfg = parse_stack_config(raw, {"hfToken"})
    model = next(m for m in cfg.models if m.backend == "vllm" and m.openai.enabled)
    return model, cfg.site_of(model)


def in_process_server_options(command: list[str], tmp_path: Path, main_source: str = FAKE_MAIN) -> dict:
    """Run the container command with main.py and `tritonserver` replaced by the recorders."""
    fake = tmp_path / "fake"
    (fake / "tritonserver").mkdir(parents=True)
    (fake / "tritonserver" / "__init__.py").write_text(FAKE_TRITONSERVER)
    frontend = tmp_path / "openai_frontend"
    frontend.mkdir()
    (frontend / "main.py").write_text(main_source)
    (frontend / "sibling.py").write_text("")
    assert openai_frontend.FRONTEND_MAIN in command
    argv = [str(frontend / "main.py") if a == openai_frontend.FRONTEND_MAIN else a for a in command]
    assert argv[0] == "python3"
    record = tmp_path / "options.json"
    env = {**os.environ, "PYTHONPATH": str(fake), "RECORD_SERVER_OPTIONS": str(record)}
    done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(record.read_text())


def as_tritonserver_flags(options: dict) -> list[str]:
    """The in-process options as tritonserver flags (the same TRITONSERVER_ServerOptions setters)."""
    flags = [f"--model-control-mode={options['model_control_mode']}"]
    return flags + [f"--load-model={m}" for m in options["startup_models"]]


def probe_url(server, probe: dict) -> str:
    get = probe["httpGet"]
    if get["port"] == openai_frontend.OPENAI_PORT:
        assert get["path"] == openai_frontend.READY_PATH
        return server.http_url + "/v2/health/ready"  # what the frontend's /health/ready answers from
    assert get["port"] == "http", get
    return server.http_url + get["path"]


def test_the_launcher_passes_the_options_and_runs_main_unchanged(tmp_path):
    model, site = openai_vllm_model()
    command = deployment_manifest(model, site, bucket="b")["spec"]["template"]["spec"]["containers"][0]["command"]
    options = in_process_server_options(command, tmp_path)
    assert options["model_control_mode"] == "explicit"
    assert options["startup_models"] == [model.name]
    # main.py's own options arrive untouched, with the repository the pod stages
    assert options["model_repository"] == tm.STAGED_REPOSITORY
    assert options["log_info"] is True


def test_main_py_builds_its_server_from_keywords_only():
    """The launcher adds its options to the keywords main.py passes; an Options object would bypass it
    (it then exits, saying so). Checked on main.py r25.12 itself when the reference folder has it."""
    path = reference_file(UPSTREAM_MAIN_PY)
    if path is None:
        keywords = MAIN_PY_SERVER_KEYWORDS  # transcribed: main.py r25.12 lines 203-209
        positional = 0
    else:
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Server"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "tritonserver"
        ]
        assert len(calls) == 1
        keywords = {k.arg for k in calls[0].keywords}
        positional = len(calls[0].args)
    assert positional == 0
    assert keywords == MAIN_PY_SERVER_KEYWORDS
    assert not keywords & set(openai_frontend.server_options(openai_vllm_model()[0]))


def test_a_dead_engine_fails_the_openai_pods_probes(tmp_path):
    model, site = openai_vllm_model()
    container = deployment_manifest(model, site, bucket="b")["spec"]["template"]["spec"]["containers"][0]
    flags = as_tritonserver_flags(in_process_server_options(container["command"], tmp_path))
    probes = {name: container[name] for name in ("readinessProbe", "livenessProbe")}

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(dying, "MODEL", model.name)  # the dying model under the served name
    try:
        server = dying.serve(tmp_path, flags)
        try:
            urls = {name: probe_url(server, probe) for name, probe in probes.items()}
            assert all(dying.status(u) == 200 for u in urls.values()), urls
            # The request fails either way: with the health check's UNAVAILABLE after the unload, or
            # (model control NONE) with the refused unload's exception, leaving the model loaded.
            died = dying.kill_engine(server)
            assert dying.wait_for(lambda: all(dying.status(u) != 200 for u in urls.values())), (
                f"after the engine died, still 200: "
                f"{[name for name, u in urls.items() if dying.status(u) == 200]} (server flags {flags}; {died})"
            )
        finally:
            server.stop()
    finally:
        monkeypatch.undo()


def test_the_launcher_refuses_a_main_py_that_passes_an_options_object(tmp_path):
    """Should a later main.py build its server from an Options object, the launcher's keywords would be
    ignored and the pod would silently lose its health check: it stops instead, saying why."""
    model, site = openai_vllm_model()
    command = deployment_manifest(model, site, bucket="b")["spec"]["template"]["spec"]["containers"][0]["command"]
    passes_options = "import tritonserver\ntritonserver.Server(object())\n"
    with pytest.raises(AssertionError, match="main.py passed tritonserver.Options"):
        in_process_server_options(command, tmp_path, main_source=passes_options)
