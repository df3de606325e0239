"""Scale-down drain: the budgets of every rendered Triton pod, read back from the manifests.

One key, `models[].drainSeconds`, sets Triton's `--exit-timeout-secs`, the container's preStop and the
pod's terminationGracePeriodSeconds (components/serving/builders/triton_manifests.py drain_budget). Here
the three are read from what the program renders, for every committed stack and the variants that change
the container's main process (tritonserver, mpirun, Triton's OpenAI frontend, multi-node leader and
workers), and checked against each other and against the gateway's request timeout:

    kubelet: t=0 pod deleted -> preStop (endpoint already leaving) -> SIGTERM -> ... -> SIGKILL at t=grace
    needed:  preStop delay + Triton's exit timeout + its unload/exit  <=  grace
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from components.config.models import DEFAULT_DRAIN_SECONDS
from components.serving.builders import triton_manifests as tm
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ProgramRun, run_program, stack_files


@dataclass
class PodDrain:
    where: str
    grace: int  # terminationGracePeriodSeconds
    prestop_delay: int  # seconds before anything is signalled
    prestop_wait: int  # how long the hook then waits for rank 0 / the ranks (0: sleep action)
    signals_rank0: bool  # exec hook that SIGTERMs the rank-0 tritonserver
    exit_timeouts: list[int]  # every --exit-timeout-secs the pod's tritonserver processes get
    main: str  # the container's main process: tritonserver, mpirun, openai, worker


def _exit_timeouts(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"--exit-timeout-secs[= ](\d+)", text)]


def _pod_drain(where: str, spec: dict[str, Any], launch_scripts: dict[str, str]) -> PodDrain:
    (container,) = spec["containers"]
    hook = container["lifecycle"]["preStop"]
    command = " ".join(container["command"])
    if "leader.sh" in command:
        text, main = launch_scripts["leader.sh"], "mpirun"
    elif "worker.sh" in command:
        text, main = "", "worker"
    else:
        text = command
        main = "openai" if "openai_frontend/main.py" in command else "mpirun" if "mpirun" in command else "tritonserver"
    if "sleep" in hook:
        delay, wait, signals = hook["sleep"]["seconds"], 0, False
    else:
        script = hook["exec"]["command"][-1]
        sleeps = re.findall(r"^sleep (\d+)$", script, re.MULTILINE)
        delay = int(sleeps[0]) if sleeps else 0
        (wait,) = (int(v) for v in re.findall(r"-lt (\d+) \]", script))
        signals = "kill -TERM" in script and "OMPI_COMM_WORLD_RANK=0" in script
    return PodDrain(where, spec["terminationGracePeriodSeconds"], delay, wait, signals, _exit_timeouts(text), main)


def triton_pods(run: ProgramRun) -> dict[str, tuple[PodDrain, str]]:
    """Every Triton pod template the run renders -> (its drain, the model's namespace)."""
    scripts: dict[str, dict[str, str]] = {}
    for cm in run.manifests("ConfigMap"):
        if cm["metadata"]["name"] == "mpi-launch":
            scripts[cm["metadata"]["namespace"]] = cm["data"]
    pods = {}
    for d in run.manifests("Deployment"):
        if d["metadata"]["name"] == tm.DEPLOYMENT_NAME and "tritonllm.io/model" in d["metadata"]["labels"]:
            ns = d["metadata"]["namespace"]
            pods[f"{run.stack}/{ns}"] = (_pod_drain(f"{run.stack}/{ns}", d["spec"]["template"]["spec"], {}), ns)
    for lws in run.manifests("LeaderWorkerSet"):
        ns = lws["metadata"]["namespace"]
        template = lws["spec"]["leaderWorkerTemplate"]
        for role in ("leaderTemplate", "workerTemplate"):
            where = f"{run.stack}/{ns}/{role}"
            pods[where] = (_pod_drain(where, template[role]["spec"], scripts.get(ns, {})), ns)
    return pods


def _drain_of(run: ProgramRun, namespace: str) -> int:
    from tests.unit.harness import _qualify

    models = run.config[_qualify("models")]
    model = next(m for m in models if m["name"] == namespace)
    return int(model.get("drainSeconds", DEFAULT_DRAIN_SECONDS))


def _request_timeout(run: ProgramRun) -> int:
    gateway = run.config.get("tritonllm:gateway") or {}
    return int(gateway.get("requestTimeoutSeconds", 300))


VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # the container's main process changes with these
    "openai-frontend": ("vllm", {"models[0].openai": {"enabled": True}}),
    "trtllm-tp2-mpirun": (
        "dev",
        {"models[0].tensorParallel": 2, "models[0].maxReplicas": 4, "nodePools[0].instanceTypes": ["g6e.12xlarge"]},
    ),
    "short-drain": (
        "dev",
        {"models[0].drainSeconds": 45, "gateway.requestTimeoutSeconds": 40},
    ),
    "long-drain": ("vllm", {"models[0].drainSeconds": 900}),
    "multinode-long-drain": ("multinode", {"models[0].drainSeconds": 600}),
    "llmapi-drain": ("llmapi", {"models[0].drainSeconds": 420}),
}


def _runs() -> list[ProgramRun]:
    return [stack_run_for(s) for s in stack_files()] + [
        run_program(stack, overrides=overrides) for stack, overrides in VARIANTS.values()
    ]


@pytest.fixture(scope="module")
def pods() -> list[tuple[ProgramRun, PodDrain, int]]:
    found = []
    for run in _runs():
        for drain, ns in triton_pods(run).values():
            found.append((run, drain, _drain_of(run, ns)))
    return found


def test_every_kind_of_triton_pod_is_covered(pods):
    mains = {drain.main for _, drain, _ in pods}
    assert mains == {"tritonserver", "mpirun", "openai", "worker"}, mains
    assert {drain_seconds for _, _, drain_seconds in pods} >= {DEFAULT_DRAIN_SECONDS, 45, 420, 600, 900}


def test_triton_waits_exactly_drain_seconds_for_requests_in_flight(pods):
    for _, drain, drain_seconds in pods:
        if drain.main in ("tritonserver", "mpirun"):
            assert drain.exit_timeouts, f"{drain.where}: no --exit-timeout-secs"
            assert set(drain.exit_timeouts) == {drain_seconds}, (drain.where, drain.exit_timeouts, drain_seconds)


def test_new_requests_stop_first_then_streams_get_the_drain_then_triton_exits(pods):
    for run, drain, drain_seconds in pods:
        if drain.main != "worker":  # workers serve nothing but ssh
            assert drain.prestop_delay >= 5, f"{drain.where}: no time for the gateway to stop routing to the pod"
        if drain.main in ("tritonserver", "openai"):
            # preStop sleeps, then SIGTERM reaches the main process, which drains for drainSeconds
            assert not drain.signals_rank0
            needed = drain.prestop_delay + drain_seconds + tm.UNLOAD_SECONDS
            assert needed <= drain.grace, (drain.where, needed, drain.grace)
        elif drain.main == "mpirun":
            # mpirun would kill the ranks at once: the hook drains rank 0 itself and waits for it, and the
            # kubelet's SIGTERM to mpirun still comes before the SIGKILL deadline
            assert drain.signals_rank0, f"{drain.where}: mpirun pod without the rank-0 drain"
            assert drain.prestop_wait >= drain_seconds + tm.UNLOAD_SECONDS, drain
            assert drain.prestop_delay + drain.prestop_wait + tm.MAIN_EXIT_SECONDS <= drain.grace, drain
        else:  # multi-node worker: outlives its leader's drain
            assert not drain.signals_rank0
            assert drain.prestop_wait >= tm.PRESTOP_SLEEP_SECONDS + drain_seconds, drain
            assert drain.prestop_wait <= drain.grace, drain
        assert drain_seconds >= _request_timeout(run), (drain.where, drain_seconds, _request_timeout(run))


def test_the_budget_is_derived_from_one_key():
    budget = tm.DrainBudget(120)
    assert budget.exit_timeout_seconds == 120
    assert budget.termination_grace_seconds == tm.PRESTOP_SLEEP_SECONDS + 120 + tm.EXIT_MARGIN_SECONDS
