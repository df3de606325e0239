"""The multi-node launch wiring, run for real: generated scripts, real sshd, real mpirun (Open MPI).

Two "pods" of one LeaderWorkerSet group on this machine: each is its own sshd (Debian
openssh-server) on its own loopback address, started by the generated worker.sh / leader.sh with the
environment the LeaderWorkerSet manifest gives its containers plus what LWS injects
(LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX). The only stand-ins: cluster DNS (an ssh_config
include maps the pods' DNS names to their loopback addresses) and tritonserver (a script that records
its rank, world size, pod, arguments and environment, then serves forever, i.e. sleeps).

Each "pod" runs in its own mount namespace laid out like the multi-node serving image
(images/multinode/Dockerfile): Open MPI lives only under /opt/amazon/openmpi (the EFA installer's place;
HPC-X's /opt/hpcx/ompi is removed; the pods' PATH and OPAL_PREFIX name it, as the image's ENV does), and
nothing of it is where an ssh session's default PATH or Open MPI's compiled-in prefix
looks (/usr/bin/orted, /usr/lib/x86_64-linux-gnu/openmpi, /usr/share/openmpi are hidden). So a
`mpirun` whose remote `orted` is found only through sshd's PATH fails here as in the image
(tensorrtllm_backend issue 698: "ORTE was unable to reliably start one or more daemons").

Needs `mpirun` (openmpi-bin), `sshd` (openssh-server) and `unshare` (util-linux); runs as root like
the Triton image does (so mpirun needs --allow-run-as-root, which leader.sh adds for uid 0), which
also lets it make the mount namespaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from components.config import parse_stack_config
from components.serving.builders import multinode
from components.serving.builders import triton_manifests as tm
from tests.unit.harness import load_stack_config

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("mpirun")
        and shutil.which("ompi_info")
        and Path("/usr/sbin/sshd").exists()
        and shutil.which("ssh-keygen")
        and shutil.which("unshare")
    ),
    reason="needs openmpi-bin, openssh-server and util-linux (apt-get install openmpi-bin openssh-server)",
)

ADMIN_KEY = "test-admin-key-0123456789abcdef"  # what the triton-admin Secret would hold
DEADLINE = 120  # seconds for anything to happen on a loaded 2-core machine; checks poll, never sleep blindly

# Where the multi-node serving image keeps Open MPI: the EFA installer's Open MPI 4.1 (images/multinode/
# Dockerfile removes HPC-X's /opt/hpcx/ompi, as NVIDIA's EKS multi-node containerfile does, and sets PATH
# and OPAL_PREFIX to /opt/amazon/openmpi).
OMPI_PREFIX = "/opt/amazon/openmpi"
# The environment the image sets: the Triton image's (server r25.12 build.py, dockerfile_prepare_container_linux
# and the tensorrtllm section) with the multi-node Dockerfile's ENV on top. The pods' own env comes from the manifest.
IMAGE_ENV = {
    "PATH": f"{OMPI_PREFIX}/bin:/opt/amazon/efa/bin:/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH": "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu:/opt/amazon/ofi-nccl/lib:/opt/amazon/efa/lib:"
    f"{OMPI_PREFIX}/lib:/usr/local/tensorrt/lib/:/opt/tritonserver/backends/tensorrtllm",
    "OPAL_PREFIX": OMPI_PREFIX,
    "TRITON_SERVER_VERSION": "2.64.0",
    "NVIDIA_TRITON_SERVER_VERSION": "25.12",
    "UCX_MEM_EVENTS": "no",
}


def _ompi_paths() -> dict[str, Path]:
    out = subprocess.run(["ompi_info", "--parsable", "--path", "all"], capture_output=True, text=True, check=True)
    return {k: Path(v) for k, v in (line.split(":", 2)[1:] for line in out.stdout.splitlines() if line.count(":") >= 2)}


def _open_mpi_binaries() -> set[str]:
    """Names in /usr/bin that belong to Open MPI (its launchers, daemons, wrappers, alternatives)."""
    prefixes = ("mpi", "orte", "ompi", "opal", "oshmem", "shmem", "aggregate_profile", "profile2mat")
    return {p.name for p in Path("/usr/bin").iterdir() if p.name.startswith(prefixes)}


class Image:
    """The pods' file system view: a mount namespace where Open MPI exists only at /opt/amazon/openmpi.

    Built once per test under `root`; `wrap(cmd)` runs cmd inside a fresh private mount namespace with
    /usr/bin (minus Open MPI), Open MPI's compiled-in library and help dirs (emptied) and /opt (HPC-X)
    replaced. Debian's Open MPI honours OPAL_PREFIX the way the installer's relocated build does, so with
    OPAL_PREFIX=/opt/amazon/openmpi it finds its components there, and without it nothing.
    """

    def __init__(self, root: Path):
        self.root = root
        paths = _ompi_paths()
        prefix = paths["prefix"]
        self.hidden = {"ompi-lib": paths["libdir"].parent, "ompi-share": paths["pkgdatadir"]}
        self.real = root / "real"
        for name in ("usr-bin", *self.hidden):
            (self.real / name).mkdir(parents=True)
        (root / "empty").mkdir()
        # /usr/bin without Open MPI: symlinks into the real /usr/bin, bind-mounted at real/usr-bin.
        farm = root / "usr-bin"
        farm.mkdir()
        hide = _open_mpi_binaries()
        assert {"mpirun", "orted", "orterun"} <= hide
        for entry in Path("/usr/bin").iterdir():
            if entry.name not in hide:
                (farm / entry.name).symlink_to(self.real / "usr-bin" / entry.name)
        # The installer's place: bin/ (copies: the binaries are small), lib/ and share/ pointing at the hidden dirs.
        ompi = root / "opt" / OMPI_PREFIX.removeprefix("/opt/")
        (ompi / "bin").mkdir(parents=True)
        for name, source in (("orterun", "orterun"), ("mpirun", "orterun"), ("mpiexec", "orterun"), ("orted", "orted")):
            shutil.copy2(Path("/usr/bin") / source, ompi / "bin" / name)
        for name, real_dir in self.hidden.items():
            link = ompi / real_dir.relative_to(prefix)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.real / name)

    def wrap(self, cmd: list[str]) -> list[str]:
        mounts = [
            f"mount --bind /usr/bin {self.real / 'usr-bin'}",
            *(f"mount --bind {real_dir} {self.real / name}" for name, real_dir in self.hidden.items()),
            *(f"mount --bind {self.root / 'empty'} {real_dir}" for real_dir in self.hidden.values()),
            f"mount --bind {self.root / 'opt'} /opt",
            f"mount --bind {self.root / 'usr-bin'} /usr/bin",  # last: `mount` itself lives in /usr/bin
        ]
        script = "set -eu\n" + "\n".join(mounts) + '\nexec "$@"\n'
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "pod", *cmd]


def _config():
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("multinode").items() if k.startswith("tritonllm:")}
    cfg = parse_stack_config(raw, {"hfToken"})
    (model,) = [m for m in cfg.models if m.multi_node]
    return cfg, model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _pod_processes(run_dir: Path) -> list[int]:
    """Every process of one "pod": its container processes and what sshd sessions started in it.

    A container's processes die with it whatever their parentage (orted daemonizes); here the pod
    boundary is the TRITONLLM_RUN_DIR in their environment (the pod's env, or sshd's SetEnv).
    """
    marker = f"TRITONLLM_RUN_DIR={run_dir}\0".encode()
    # sshd's listener rewrites its own argv/environ area (setproctitle), so its environment no longer
    # carries the marker: it is found by its config path, "-f <run dir>/sshd_config", instead.
    config = f"{run_dir}/sshd_config".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes() or config in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _processes_naming(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (what a test left running)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and _alive(int(entry.name)):
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _kill_pod(run_dir: Path, proc: subprocess.Popen | None = None) -> None:
    for pid in [*([proc.pid] if proc else []), *_pod_processes(run_dir)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc is not None:
        proc.wait(timeout=30)


def _wait_for(predicate, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Group:
    """One LWS group (leader + workers) as sshd processes on 127.0.0.x, from the generated scripts."""

    def __init__(self, tmp: Path, cfg, model, scripts: dict[str, str] | None = None, wrapper: list[str] | None = None):
        self.tmp, self.cfg, self.model = tmp, cfg, model
        self.wrapper = wrapper or []  # e.g. setpriv: the pods' capability set (pod_capabilities_wrapper)
        self.scripts = scripts or multinode.launch_scripts(model, cfg.site_of(model))
        self.nodes = model.multi_node.nodes
        self.procs: dict[int, subprocess.Popen] = {}
        self.port = _free_port()
        self.namespace = model.name
        self.leader_host = f"{multinode.LWS_NAME}-0"
        self.domain = f"{multinode.LWS_NAME}.{self.namespace}"
        self.ranks_dir = tmp / "ranks"
        self.ranks_dir.mkdir()
        self.image = Image(tmp / "image")
        self._write_secret()
        self._write_launch_dir()
        self._write_stand_in()
        self.manifest = multinode.leader_worker_set_manifest(
            model, cfg.site_of(model), bucket="bucket", engine_key="k" * 64
        )

    def _write_secret(self) -> None:
        keys = self.tmp / "keys"
        keys.mkdir()
        for name in ("client", "host"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
        data = multinode.ssh_secret_data(
            (keys / "client").read_text(),
            (keys / "client.pub").read_text(),
            (keys / "host").read_text(),
            (keys / "host.pub").read_text(),
        )
        self.secret_dir = self.tmp / "secret"
        self.secret_dir.mkdir()
        for key, value in data.items():
            (self.secret_dir / key).write_text(value)
            (self.secret_dir / key).chmod(0o400)

    def _write_launch_dir(self) -> None:
        self.launch_dir = self.tmp / "launch"
        self.launch_dir.mkdir()
        for name, text in self.scripts.items():
            (self.launch_dir / name).write_text(text)
            (self.launch_dir / name).chmod(0o555)

    def _write_stand_in(self) -> None:
        self.stand_in = self.tmp / "tritonserver"
        self.stand_in.write_text(f"""#!/bin/sh
out="{self.ranks_dir}/rank-$OMPI_COMM_WORLD_RANK"
env -0 > "$out.env"  # the rank's whole environment, NUL-separated
{{ echo "pid=$$"; echo "pod=${{TRITONLLM_POD:-}}"; echo "args=$*"
   env | grep -E '^(OMPI_COMM_WORLD_(RANK|SIZE|LOCAL_RANK)|(FI|NCCL|TRTLLM)_[A-Z0-9_]*)=' ; }} > "$out.tmp"
mv "$out.tmp" "$out"
echo "stand-in tritonserver: rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE on ${{TRITONLLM_POD:-?}}"
# what NCCL_DEBUG=INFO prints when a communicator comes up (aws-ofi-nccl, then NCCL's own line)
echo "$(hostname):$$:$$ [$OMPI_COMM_WORLD_LOCAL_RANK] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 4 nics)"
echo "$(hostname):$$:$$ [$OMPI_COMM_WORLD_LOCAL_RANK] NCCL INFO Using network Libfabric"
exec sleep 600
""")
        self.stand_in.chmod(0o755)

    def address(self, index: int) -> str:
        return f"127.0.0.{10 + index}"

    def hostname(self, index: int) -> str:
        return self.leader_host if index == 0 else f"{self.leader_host}-{index}"

    def env(self, index: int) -> dict[str, str]:
        template = "leaderTemplate" if index == 0 else "workerTemplate"
        container = self.manifest["spec"]["leaderWorkerTemplate"][template]["spec"]["containers"][0]
        # as the pod spec sets them (valueFrom: what the kubelet would resolve); the admin key of the
        # restricted repository API (leader only) is the test's own value, the other secrets placeholders
        secrets = {tm.ADMIN_KEY_SECRET: {tm.ADMIN_KEY_KEY: ADMIN_KEY}}
        env = {}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = secrets.get(ref["name"], {}).get(ref["key"], f"secret-{ref['name']}-{ref['key']}")
        run_dir = self.run_dir(index)
        (run_dir / "ssh_config.d").mkdir(parents=True, exist_ok=True)
        # Cluster DNS stand-in: the group's pod DNS names -> their loopback addresses.
        (run_dir / "ssh_config.d" / "dns.conf").write_text(
            "".join(f"Host {self.hostname(i)}.{self.domain}\n  HostName {self.address(i)}\n" for i in range(self.nodes))
        )
        env.update(
            {
                **IMAGE_ENV,
                "HOME": os.environ.get("HOME", "/root"),
                # injected by the LWS pod webhook
                "LWS_LEADER_ADDRESS": f"{self.leader_host}.{self.domain}",
                "LWS_GROUP_SIZE": str(self.nodes),
                "LWS_WORKER_INDEX": str(index),
                "POD_NAME": self.hostname(index),  # downward API metadata.name
                # where the Secret / ConfigMap / emptyDir are mounted in this "pod"
                "TRITONLLM_SSH_DIR": str(self.secret_dir),
                "TRITONLLM_LAUNCH_DIR": str(self.launch_dir),
                "TRITONLLM_RUN_DIR": str(run_dir),
                "SSH_PORT": str(self.port),
                "SSH_LISTEN_ADDRESS": self.address(index),
                "TRITONSERVER": str(self.stand_in),
                "WORKER_WAIT_SECONDS": str(DEADLINE),
            }
        )
        return env

    def start(self, index: int) -> subprocess.Popen:
        script = "leader.sh" if index == 0 else "worker.sh"
        log = open(self.tmp / f"pod-{index}.log", "w")
        proc = subprocess.Popen(
            self.image.wrap([*self.wrapper, "/bin/sh", str(self.launch_dir / script)]),
            env=self.env(index),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[index] = proc
        return proc

    def log(self, index: int) -> str:
        return (self.tmp / f"pod-{index}.log").read_text()

    def rank_env(self, rank: int) -> dict[str, str]:
        data = (self.ranks_dir / f"rank-{rank}.env").read_bytes().decode()
        return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)

    def ranks(self) -> dict[int, dict[str, str]]:
        found = {}
        for path in self.ranks_dir.glob("rank-*"):
            if path.name.endswith((".tmp", ".env")):
                continue
            lines = path.read_text().splitlines()
            found[int(path.name.split("-")[1])] = dict(line.split("=", 1) for line in lines if "=" in line)
        return found

    def run_dir(self, index: int) -> Path:
        return self.tmp / f"pod-{index}"

    def kill(self, index: int) -> None:
        _kill_pod(self.run_dir(index), self.procs.get(index))

    def stop(self) -> None:
        for index in range(self.nodes):
            self.kill(index)
        for rank in self.ranks().values():
            if "pid" in rank and _alive(int(rank["pid"])):
                os.kill(int(rank["pid"]), signal.SIGKILL)


def pod_capabilities_wrapper(container: dict) -> list[str]:
    """setpriv giving a process tree what the container's securityContext gives it: the bounding set
    reduced to the capabilities it adds after dropping ALL, and no_new_privs (allowPrivilegeEscalation false)."""
    context = container["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"] and context["allowPrivilegeEscalation"] is False
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in context["capabilities"].get("add", []))])
    return ["setpriv", "--no-new-privs", "--bounding-set", caps, "--inh-caps", "-all"]


@pytest.fixture(params=["root", "pod-securitycontext"])
def group(tmp_path, request):
    """The group as root with every capability, and with exactly the LeaderWorkerSet pods' securityContext
    (pod_security.ROOT_CAPABILITIES: the named exception must be enough for sshd and mpirun)."""
    cfg, model = _config()
    wrapper = None
    if request.param == "pod-securitycontext":
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux)")
        lws = multinode.leader_worker_set_manifest(model, cfg.site_of(model), bucket="bucket", engine_key="k" * 64)
        templates = lws["spec"]["leaderWorkerTemplate"]
        leader, worker = (templates[t]["spec"]["containers"][0] for t in ("leaderTemplate", "workerTemplate"))
        assert leader["securityContext"] == worker["securityContext"]
        wrapper = pod_capabilities_wrapper(leader)
    g = Group(tmp_path, cfg, model, wrapper=wrapper)
    yield g
    g.stop()
    # Every "pod" is gone after the test, its sshd listeners included (they used to outlive it).
    assert not _processes_naming(tmp_path), f"processes of the test's pods survived it: {_processes_naming(tmp_path)}"


def test_mpirun_over_sshd_starts_every_rank_with_its_environment_and_dies_with_a_worker(group):
    model, cfg = group.model, group.cfg
    world = model.parallel_gpus
    gpn = multinode.instance_type(model, cfg.site_of(model)).gpus
    assert group.nodes == 2 and world == 8 and gpn == 4  # the seed's shape: 2 nodes x 4 GPUs, TP4 x PP2

    # LeaderCreated: the leader starts first and must wait for its workers' sshd.
    leader = group.start(0)
    _wait_for(lambda: "hostfile:" in group.log(0), "the leader to write its hostfile")
    assert leader.poll() is None, group.log(0)
    workers = [group.start(i) for i in range(1, group.nodes)]

    def all_ranks():
        assert leader.poll() is None, f"the leader exited early:\n{group.log(0)}"
        return (r := group.ranks()) and len(r) == world and r

    ranks = _wait_for(all_ranks, f"{world} ranks to start")
    log = group.log(0)
    # The pods are laid out like the image: Open MPI only at /opt/amazon/openmpi, which an ssh session's
    # PATH does not reach; the leader started the other pods' daemons through --prefix.
    probe = subprocess.run(
        [str(group.run_dir(0) / "bin" / "ssh"), f"{group.hostname(1)}.{group.domain}", "command -v orted || echo none"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert probe.stdout.strip() == "none", (probe.stdout, probe.stderr)
    assert f"Open MPI: {OMPI_PREFIX}/bin/mpirun (prefix {OMPI_PREFIX}," in log, log
    hosts = [f"{group.hostname(i)}.{group.domain} slots={gpn} max_slots={gpn}" for i in range(group.nodes)]
    assert all(h in log for h in hosts), log

    expected_env = multinode.nccl_env(model, cfg.site_of(model))
    assert expected_env["FI_PROVIDER"] == "efa" and "FI_EFA_USE_DEVICE_RDMA" not in expected_env  # g5: no RDMA
    for rank, info in sorted(ranks.items()):
        assert info["OMPI_COMM_WORLD_SIZE"] == str(world)
        assert info["OMPI_COMM_WORLD_RANK"] == str(rank)
        # map-by slot: ranks 0-3 (pipeline stage 0, one TP group) on the leader, 4-7 on the worker
        assert info["pod"] == group.hostname(rank // gpn), (rank, info)
        assert info["OMPI_COMM_WORLD_LOCAL_RANK"] == str(rank % gpn)
        # ssh sessions start with a clean environment: the leader forwards NCCL/EFA settings (-x)
        for key, value in expected_env.items():
            assert info.get(key) == value, (rank, key, info)
        args = info["args"].split()
        assert f"--id=rank{rank}" in args and "--disable-auto-complete-config" in args
        assert f"--backend-config=python,shm-region-prefix-name=prefix{rank}_" in args
        restricted = {
            f"--http-restricted-api=model-repository:tritonllm-admin-key={ADMIN_KEY}",
            f"--grpc-restricted-protocol=model-repository:tritonllm-admin-key={ADMIN_KEY}",
        }
        if rank == 0:
            assert "--model-control-mode=none" in args and "--allow-http=false" not in args
            assert not restricted & set(args)
        else:
            assert {
                "--model-control-mode=explicit",
                "--load-model=tensorrt_llm",
                "--allow-http=false",
                "--allow-grpc=false",
                "--allow-metrics=false",
                *restricted,  # explicit mode: the repository API behind the admin key, expanded by the leader
            } <= set(args), args
    assert leader.poll() is None and all(w.poll() is None for w in workers)
    _every_rank_runs_with_its_own_pods_environment(group, gpn)
    # Every rank's output reached the leader's log through nccl-watch.sh, which named NCCL's network once.
    _wait_for(lambda: "tritonllm: NCCL network: Libfabric" in group.log(0), "the leader to log NCCL's network")
    log = group.log(0)
    assert log.count("tritonllm: NCCL network: Libfabric") == 1 and "tritonllm: NCCL provider: efa" in log
    assert all(f"stand-in tritonserver: rank {r} of {world}" in log for r in range(world)), log
    recorded = (group.run_dir(0) / multinode.NCCL_NETWORK_FILE).read_text().splitlines()
    assert sorted(recorded) == ["network Libfabric", "provider efa"]

    # A worker pod dies (its container: sshd and everything its sessions started there).
    group.kill(1)
    code = _wait_for(lambda: leader.poll(), "the leader to exit after losing a worker")
    assert code != 0  # the leader container fails -> RecreateGroupOnPodRestart recreates the group
    # mpirun takes its remaining ranks down with it: nothing of the group keeps serving.
    _wait_for(lambda: not any(_alive(int(r["pid"])) for r in group.ranks().values()), "every rank to stop", timeout=60)


# What legitimately differs between two pods of a group (the pod's identity) or is set per rank
# and per session by Open MPI and sshd, not by the image or the pod spec.
POD_IDENTITY = {"POD_NAME", "LWS_WORKER_INDEX", "HOSTNAME", "TRITONLLM_POD", "TRITONLLM_RUN_DIR", "SSH_LISTEN_ADDRESS"}
LAUNCHER_PREFIXES = ("OMPI_", "PMIX_", "SSH_")
# Leader only: the restricted repository API's key, which the leader's shell expands into every
# rank's tritonserver arguments (issue 18), so workers never hold it.
LEADER_ONLY = {tm.ADMIN_KEY_ENV}


def _every_rank_runs_with_its_own_pods_environment(group: Group, gpus_per_node: int) -> None:
    """A rank sees its own pod's container environment (image ENV + pod spec), wherever mpirun started it
    (as NVIDIA's multi-node guide gets by starting ranks with `kubectl exec`), so ranks on the leader and
    on the workers run the same configuration; only the pod's identity differs."""
    envs = {rank: group.rank_env(rank) for rank in range(group.model.parallel_gpus)}
    for rank, env in envs.items():
        pod_env = group.env(rank // gpus_per_node)
        missing = {k: v for k, v in pod_env.items() if k != "LD_LIBRARY_PATH" and env.get(k) != v}
        assert not missing, f"rank {rank} lacks or changes its pod's {sorted(missing)}: {[env.get(k) for k in missing]}"
        # efa-check.sh may only prepend the EFA libraries it found; the image's own paths stay.
        assert env["LD_LIBRARY_PATH"].endswith(pod_env["LD_LIBRARY_PATH"]), (rank, env["LD_LIBRARY_PATH"])

    def configuration(env: dict[str, str]) -> dict[str, str]:
        return {
            k: v for k, v in env.items() if k not in POD_IDENTITY | LEADER_ONLY and not k.startswith(LAUNCHER_PREFIXES)
        }

    leader_rank, worker_rank = 0, gpus_per_node  # rank 0 on the leader, rank 4 on the worker
    leader, worker = configuration(envs[leader_rank]), configuration(envs[worker_rank])
    differ = sorted(k for k in leader.keys() | worker.keys() if leader.get(k) != worker.get(k))
    assert not differ, {k: (leader.get(k), worker.get(k)) for k in differ}
    assert envs[leader_rank]["TRITONLLM_POD"] == group.hostname(0) and envs[worker_rank][
        "TRITONLLM_POD"
    ] == group.hostname(1)


def test_leader_gives_up_when_a_worker_never_answers(group, monkeypatch):
    """A worker that never comes up: the leader fails (so LWS recreates the group) instead of hanging."""
    env = group.env(0)
    env["WORKER_WAIT_SECONDS"] = "3"
    log = open(group.tmp / "pod-0.log", "w")
    proc = subprocess.Popen(
        group.image.wrap(["/bin/sh", str(group.launch_dir / "leader.sh")]),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    group.procs[0] = proc
    code = _wait_for(lambda: proc.poll(), "the leader to give up", timeout=60)
    assert code == 1
    assert f"{group.hostname(1)}.{group.domain} did not answer over ssh" in group.log(0)
    assert not group.ranks()


def test_hostfile_names_every_pod_of_the_group(tmp_path):
    script = tmp_path / "hostfile.sh"
    script.write_text(multinode.hostfile_script(8))
    env = {"PATH": os.environ["PATH"], "LWS_LEADER_ADDRESS": "triton-mn-3.triton-mn.big-model", "LWS_GROUP_SIZE": "3"}
    out = subprocess.run(["/bin/sh", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "triton-mn-3.triton-mn.big-model slots=8 max_slots=8",
        "triton-mn-3-1.triton-mn.big-model slots=8 max_slots=8",
        "triton-mn-3-2.triton-mn.big-model slots=8 max_slots=8",
    ]
    missing = subprocess.run(["/bin/sh", str(script)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert missing.returncode != 0 and "LWS_LEADER_ADDRESS" in missing.stderr


def test_nccl_test_launch_runs_all_reduce_on_every_gpu_of_the_group(tmp_path):
    """The NCCL test's leader script (same SSH wiring, all_reduce_perf instead of tritonserver), for real."""
    cfg, model = _config()
    group = Group(tmp_path, cfg, model, scripts=multinode.nccl_test_scripts(model, cfg.site_of(model)))
    stand_in = tmp_path / "all_reduce_perf"
    stand_in.write_text(f"""#!/bin/sh
echo "rank=$OMPI_COMM_WORLD_RANK size=$OMPI_COMM_WORLD_SIZE pod=$TRITONLLM_POD args=$* fi=${{FI_PROVIDER:-}}" \\
  > "{group.ranks_dir}/rank-$OMPI_COMM_WORLD_RANK"
if [ "$OMPI_COMM_WORLD_RANK" = 0 ]; then echo "# Avg bus bandwidth    : 1.2345"; fi
""")
    stand_in.chmod(0o755)
    try:
        envs = {0: {"ALL_REDUCE_PERF": str(stand_in), "MPIRUN": f"{OMPI_PREFIX}/bin/mpirun"}}
        for index in range(group.nodes):
            env = group.env(index)
            env.update(envs.get(index, {}))
            log = open(group.tmp / f"pod-{index}.log", "w")
            group.procs[index] = subprocess.Popen(
                group.image.wrap(["/bin/sh", str(group.launch_dir / ("leader.sh" if index == 0 else "worker.sh"))]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        code = _wait_for(
            lambda: group.procs[0].poll() is not None and [group.procs[0].returncode], "the NCCL test leader to finish"
        )
        assert code == [0], group.log(0)
        assert multinode.parse_bus_bandwidth(group.log(0)) == 1.2345
        lines = [p.read_text() for p in group.ranks_dir.glob("rank-*")]
        assert len(lines) == model.parallel_gpus
        assert all("size=8" in line and "fi=efa" in line and "-b 8 -e 2G" in line for line in lines), lines
        assert (
            sorted(line.split("pod=")[1].split()[0] for line in lines)
            == [group.hostname(0)] * 4 + [group.hostname(1)] * 4
        )
    finally:
        group.stop()
