"""Pure builders for a multi-node TensorRT-LLM model: a LeaderWorkerSet of `nodes` pods per replica.

What the TritonLLM component registers for a model with `multiNode` (instead of a Deployment):

    Secret      `mpi-ssh`: client key, authorized_keys, one shared host key, known_hosts (all from
                Pulumi-generated keys, never in plain text in the program's inputs)
    ConfigMap   `mpi-launch`: the shell scripts below (SSH setup, worker, leader, hostfile)
    LeaderWorkerSet `triton-mn`: size = nodes, RecreateGroupOnPodRestart, startupPolicy LeaderCreated;
                every pod stages the engine (all ranks' files) and requests the node's GPUs + EFA;
                workers run sshd; the leader waits for every worker's sshd, then `mpirun`s one
                tritonserver per GPU (rank 0 serves HTTP/gRPC/metrics, ranks > 0 only host the engine)
    Service     `triton` selecting leaders only (worker-index 0): what the gateway routes reach
    PodMonitor (leaders), PodDisruptionBudget, HPA on the LWS scale subresource (whole groups)

Every pod of the group runs the multi-node serving image the program builds (images/multinode/Dockerfile,
components/serving/builders/serving_image.py): the Triton TRT-LLM image plus the EFA installer's libfabric,
aws-ofi-nccl and Open MPI 4.1, OpenSSH and nccl-tests; nothing is installed at pod start. Launch wiring,
checked against upstream:
- LWS v0.10.0 pod webhook: pod hostname `<lws>-<group>` (leader) / `<lws>-<group>-<index>` (workers),
  subdomain `<lws>` (headless Service, subdomainPolicy Shared), and env LWS_LEADER_ADDRESS =
  `<leader hostname>.<lws>.<namespace>`, LWS_GROUP_SIZE, LWS_WORKER_INDEX in every container. The
  hostfile is derived from those at start, so it always names the pods of this very group.
- startupPolicy LeaderCreated (the CRD default): workers are created with the leader, not after it
  is Ready. The leader only becomes Ready once tritonserver serves, which needs every worker: with
  LeaderReady the group would wait on itself forever.
- restartPolicy RecreateGroupOnPodRestart: a rank dying kills mpirun, the leader container exits,
  and LWS recreates the whole group (tests/multinode/test_launch.py runs this for real).
- Per-rank tritonserver arguments follow NVIDIA's multi-node guide (triton-inference-server/tutorials
  Deployment/Kubernetes/EKS_Multinode_Triton_TRTLLM/multinode_helm_chart/containers/server.py):
  `--disable-auto-complete-config`, ranks > 0 `--model-control-mode=explicit
  --load-model=tensorrt_llm` with HTTP/gRPC/metrics off; a per-rank Python shm prefix as
  TensorRT-LLM's scripts/launch_triton_server.py does.
- Open MPI is the EFA installer's (/opt/amazon/openmpi, the image's PATH and OPAL_PREFIX; HPC-X's is removed,
  as in the seed's containerfile), off an ssh session's PATH: mpirun runs with --prefix so the other pods'
  orted start (MPI_PREFIX_SNIPPET).
- Every rank runs through rank.sh with its own pod's container environment (saved by leader.sh and
  worker.sh), so ranks on the leader and on the workers run the same configuration; nothing is
  forwarded from the leader with -x.
- NCCL/EFA environment per the AWS EFA docs and seed 002's nccl_test.yaml: FI_PROVIDER=efa,
  FI_EFA_USE_DEVICE_RDMA=1 (p4d/p5 only), FI_EFA_FORK_SAFE=1, NCCL_DEBUG=INFO (NCCL logs the network
  it uses: "NCCL INFO Using network Libfabric" vs "Using network Socket"). The leader's mpirun output passes
  through nccl-watch.sh, which logs the network and libfabric provider NCCL selected; with multiNode.efa
  the leader's readiness (ready.sh) fails, naming what NCCL uses, unless that is aws-ofi-nccl on efa.
"""

from __future__ import annotations

import math
import shlex
from functools import partial
from typing import Any

from components.catalog import gpus as gpu_catalog
from components.config import ROLLOUT_SURGE_GROUPS, ModelConfig, ModelSite, MultiNodeConfig
from components.platform.builders import pod_security
from components.serving.builders import triton_manifests as tm

LWS_NAME = "triton-mn"  # LWS also creates a headless Service of this name; "triton" is the leader Service
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # LWS labels every pod with it
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
EFA_RESOURCE = "vpc.amazonaws.com/efa"

SSH_SECRET = "mpi-ssh"
LAUNCH_CONFIGMAP = "mpi-launch"
SSH_DIR = "/etc/tritonllm/ssh"
LAUNCH_DIR = "/etc/tritonllm/launch"
RUN_DIR = "/run/tritonllm"
SSH_PORT = 2222
# Keys of the SSH Secret (values come from Pulumi-generated keys).
SSH_CLIENT_KEY, SSH_AUTHORIZED_KEYS, SSH_HOST_KEY, SSH_KNOWN_HOSTS = (
    "id_ed25519",
    "authorized_keys",
    "ssh_host_ed25519_key",
    "known_hosts",
)
# Workers may still be pulling a ~20 GB image and staging engines when the leader starts.
WORKER_WAIT_SECONDS = 40 * 60
# The leader's container waits up to WORKER_WAIT_SECONDS for every worker's sshd, then its ranks load the
# engine. Its startup probe allows both: a worker that answers at the last moment still leaves the
# ranks the whole budget a single-node pod gets from container start to ready.
LEADER_STARTUP_BUDGET_SECONDS = WORKER_WAIT_SECONDS + tm.STARTUP_BUDGET_SECONDS

# Every rank runs with its own pod's container environment (image ENV, pod spec env, the EFA libraries
# efa-check.sh found), saved here by leader.sh / worker.sh at start and loaded by rank.sh. Open MPI's own
# per-rank variables are left out of the file (mpirun/orted set them for each rank), and so are the
# shell's bookkeeping variables.
POD_ENV_FILE = "pod.env"
POD_ENV_EXCLUDED_PREFIXES = ("OMPI_", "PMIX_", "OPAL_")
POD_ENV_EXCLUDED = ("PWD", "OLDPWD", "SHLVL", "_")


def multi_node_of(model: ModelConfig) -> MultiNodeConfig:
    """The model's multiNode section: the LeaderWorkerSet and NCCL-test builders serve multi-node models only."""
    if model.multi_node is None:
        raise ValueError(f"model {model.name!r} has no multiNode")
    return model.multi_node


def instance_type(model: ModelConfig, site: ModelSite) -> gpu_catalog.GpuInstanceType:
    """The single instance type of a multi-node model's pool (config validation guarantees one)."""
    (itype,) = site.node_pool.catalog_types
    return itype


# --------------------------------------------------------------------------- environment


def nccl_env(model: ModelConfig, site: ModelSite) -> dict[str, str]:
    """NCCL / libfabric settings for every rank (and the NCCL test)."""
    itype = instance_type(model, site)
    env = {
        "NCCL_DEBUG": "INFO",  # one line per rank names the transport (OFI/efa or Socket)
        "NCCL_SOCKET_IFNAME": "^lo,docker",  # bootstrap over the pod's network, never loopback
    }
    if model.multi_node and model.multi_node.efa:
        env.update(
            {
                "FI_PROVIDER": "efa",
                "FI_EFA_FORK_SAFE": "1",  # Python backends fork; older libfabric needs this with EFA
                "NCCL_BUFFSIZE": "8388608",
                "NCCL_P2P_NET_CHUNKSIZE": "524288",
            }
        )
        if itype.efa_rdma:
            env["FI_EFA_USE_DEVICE_RDMA"] = "1"  # GPUDirect RDMA: p4d/p4de/p5 only
    return env


# --------------------------------------------------------------------------- launch scripts (pure)


# leader.sh's shell expands it (the leader container's env, from the triton-admin Secret) before mpirun
# starts the ranks, so ranks started over ssh get the value without it being forwarded to them.
ADMIN_KEY_SHELL_REF = "${" + tm.ADMIN_KEY_ENV + "}"


def rank_args(model: ModelConfig, rank: int) -> list[str]:
    world = model.parallel_gpus
    args = tm.tritonserver_args(
        tm.TRTLLM_REPOSITORY,
        rank=rank,
        world_size=world,
        admin_key=ADMIN_KEY_SHELL_REF,
        exit_timeout_seconds=model.drain_seconds,
    )
    if rank > 0:
        # As NVIDIA's multi-node server.py: only rank 0 serves; the others host the engine.
        args += ["--allow-http=false", "--allow-grpc=false", "--allow-metrics=false"]
    return [f"--id=rank{rank}", *args]


def setup_ssh_script() -> str:
    """Shared by leader and workers: make sure sshd/ssh exist, write their configs from the Secret.

    Environment: TRITONLLM_RUN_DIR (default /run/tritonllm), TRITONLLM_SSH_DIR (the mounted Secret),
    SSH_PORT, SSH_LISTEN_ADDRESS (default 0.0.0.0), POD_NAME (shown to ranks as TRITONLLM_POD).
    """
    return f"""#!/bin/sh
# Generated by tritonllm (components/serving/builders/multinode.py). Sourced by leader.sh and worker.sh.
set -eu
RUN_DIR="${{TRITONLLM_RUN_DIR:-{RUN_DIR}}}"
SSH_DIR="${{TRITONLLM_SSH_DIR:-{SSH_DIR}}}"
SSH_PORT="${{SSH_PORT:-{SSH_PORT}}}"
SSH_LISTEN_ADDRESS="${{SSH_LISTEN_ADDRESS:-0.0.0.0}}"
POD_NAME="${{POD_NAME:-$(hostname)}}"
mkdir -p "$RUN_DIR/bin" "$RUN_DIR/keys" "$RUN_DIR/ssh_config.d"

# The multi-node serving image (images/multinode/Dockerfile) has OpenSSH: nothing is installed at start.
SSHD="$(command -v sshd || echo /usr/sbin/sshd)"
if [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null 2>&1; then
  echo "tritonllm: no sshd/ssh in this image: multi-node pods run the image the program builds" \
       "(images/multinode), not the stock Triton image" >&2
  exit 1
fi

# Keys from the Secret, copied so their modes satisfy OpenSSH (Secret files are symlinks).
install -m 600 "$SSH_DIR/{SSH_HOST_KEY}" "$RUN_DIR/keys/host_key"
install -m 600 "$SSH_DIR/{SSH_CLIENT_KEY}" "$RUN_DIR/keys/id"
install -m 600 "$SSH_DIR/{SSH_AUTHORIZED_KEYS}" "$RUN_DIR/keys/authorized_keys"
install -m 600 "$SSH_DIR/{SSH_KNOWN_HOSTS}" "$RUN_DIR/keys/known_hosts"
mkdir -p /run/sshd  # privilege separation directory sshd requires
chmod 755 /run/sshd

cat > "$RUN_DIR/sshd_config" <<EOF
ListenAddress $SSH_LISTEN_ADDRESS
Port $SSH_PORT
HostKey $RUN_DIR/keys/host_key
AuthorizedKeysFile $RUN_DIR/keys/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PidFile $RUN_DIR/sshd.pid
SetEnv TRITONLLM_POD=$POD_NAME TRITONLLM_RUN_DIR=$RUN_DIR
LogLevel ERROR
EOF

# Client side: only the group's own key and host key are accepted (one shared host key per model).
cat > "$RUN_DIR/ssh_config" <<EOF
Include $RUN_DIR/ssh_config.d/*.conf
Host *
  Port $SSH_PORT
  IdentityFile $RUN_DIR/keys/id
  IdentitiesOnly yes
  UserKnownHostsFile $RUN_DIR/keys/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  ServerAliveInterval 5
  ServerAliveCountMax 3
  LogLevel ERROR
EOF
cat > "$RUN_DIR/bin/ssh" <<EOF
#!/bin/sh
exec ssh -F $RUN_DIR/ssh_config "\\$@"
EOF
chmod 755 "$RUN_DIR/bin/ssh"
"""


# Where EFA software puts its two libraries, each looked for on its own (the EFA installer keeps them in
# separate folders): libfabric with the efa provider, and the aws-ofi-nccl NCCL net plugin.
# - EFA installer: /opt/amazon/efa/lib (lib64 on Amazon Linux) and /opt/amazon/ofi-nccl/lib, with
#   x86_64-linux-gnu/ (or aarch64-linux-gnu/) below it on Ubuntu;
# - older images and AMIs: /opt/amazon/aws-ofi-nccl/lib, /opt/aws-ofi-nccl/lib; source builds
#   /opt/aws-ofi-nccl/install/lib;
# - NVIDIA's EKS multi-node containerfile builds the plugin with --prefix=/opt/amazon/efa (one folder).
# The system's own folders come last (the loader finds those without LD_LIBRARY_PATH).
LIBFABRIC_DIRS = (
    "/opt/amazon/efa/lib",
    "/opt/amazon/efa/lib64",
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
)
OFI_NCCL_DIRS = (
    "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu",
    "/opt/amazon/ofi-nccl/lib/aarch64-linux-gnu",
    "/opt/amazon/ofi-nccl/lib",
    "/opt/amazon/ofi-nccl/lib64",
    "/opt/amazon/aws-ofi-nccl/lib",
    "/opt/aws-ofi-nccl/install/lib",
    "/opt/aws-ofi-nccl/lib",
    "/opt/amazon/efa/lib",
    "/opt/amazon/efa/lib64",
    "/usr/local/lib",
)


def efa_check_script() -> str:
    """Report (and put on LD_LIBRARY_PATH) libfabric's EFA provider and the aws-ofi-nccl plugin, each on its own."""
    return f"""#!/bin/sh
# Generated by tritonllm. Sourced by leader.sh and worker.sh: finds libfabric (EFA) and the aws-ofi-nccl
# NCCL plugin each in its own folder (components/serving/builders/multinode.py lists the layouts) and
# puts both folders on LD_LIBRARY_PATH (the plugin loads libfabric.so.1 through the loader).
tritonllm_first() {{  # first file matching $1 in the folders that follow
  tritonllm_pattern="$1"; shift
  for tritonllm_dir in "$@"; do
    for tritonllm_file in "$tritonllm_dir"/$tritonllm_pattern; do
      if [ -e "$tritonllm_file" ]; then echo "$tritonllm_file"; return 0; fi
    done
  done
  return 1
}}
FABRIC="$(tritonllm_first 'libfabric.so*' {" ".join(LIBFABRIC_DIRS)} || true)"
# NCCL loads libnccl-net.so by default; an installer built with --disable-nccl-net-library ships only
# libnccl-net-ofi.so, which NCCL loads with NCCL_NET_PLUGIN=ofi (src/plugin/net.cc, plugin_open.cc).
OFI_NCCL="$(tritonllm_first 'libnccl-net.so*' {" ".join(OFI_NCCL_DIRS)} || true)"
if [ -z "$OFI_NCCL" ]; then
  OFI_NCCL="$(tritonllm_first 'libnccl-net-ofi.so*' {" ".join(OFI_NCCL_DIRS)} || true)"
  if [ -n "$OFI_NCCL" ] && [ -z "${{NCCL_NET_PLUGIN:-}}" ]; then export NCCL_NET_PLUGIN=ofi; fi
fi
for tritonllm_file in "$OFI_NCCL" "$FABRIC"; do
  tritonllm_dir="${{tritonllm_file%/*}}"
  case "$tritonllm_dir" in ""|/usr/lib|/usr/lib/*|/lib|/lib/*|/usr/lib64|/lib64) continue ;; esac
  case ":${{LD_LIBRARY_PATH:-}}:" in
    *":$tritonllm_dir:"*) ;;
    *) LD_LIBRARY_PATH="$tritonllm_dir${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ;;
  esac
done
if [ -n "${{LD_LIBRARY_PATH:-}}" ]; then export LD_LIBRARY_PATH; fi
DEVICES="$(ls /dev/infiniband/uverbs* 2>/dev/null | tr '\n' ' ' || true)"
echo "tritonllm: EFA devices: ${{DEVICES:-none}}; libfabric: ${{FABRIC:-missing}}; aws-ofi-nccl: ${{OFI_NCCL:-missing}}"
if [ "${{FI_PROVIDER:-}}" = "efa" ]; then
  MISSING=""
  if [ -z "$FABRIC" ]; then MISSING="$MISSING libfabric"; fi
  if [ -z "$OFI_NCCL" ]; then MISSING="$MISSING aws-ofi-nccl"; fi
  if [ -z "$DEVICES" ]; then MISSING="$MISSING EFA-devices"; fi
  if [ -n "$MISSING" ]; then
    echo "tritonllm: WARNING: EFA requested but missing:$MISSING; NCCL falls back to TCP sockets" \
         "(its log then says 'NCCL INFO Using network Socket'; run the NCCL test)" >&2
  fi
fi
"""


def save_pod_env_snippet() -> str:
    """Shell lines (leader.sh, worker.sh) that save this pod's environment for rank.sh, mode 600 (as the
    container's own environment is private to it)."""
    names = "|".join(p.removesuffix("_") for p in POD_ENV_EXCLUDED_PREFIXES)
    return f"""export TRITONLLM_POD="$POD_NAME" TRITONLLM_RUN_DIR="$RUN_DIR"
(
  umask 077
  for name in {" ".join(POD_ENV_EXCLUDED)} $(env | sed -n -E 's/^(({names})_[A-Za-z0-9_]*)=.*/\\1/p'); do unset "$name"; done
  export -p > "$RUN_DIR/{POD_ENV_FILE}.tmp"
)
mv "$RUN_DIR/{POD_ENV_FILE}.tmp" "$RUN_DIR/{POD_ENV_FILE}"
"""


def rank_script() -> str:
    """Every rank starts through this, on whichever pod mpirun placed it."""
    return f"""#!/bin/sh
# Generated by tritonllm: a rank runs with its own pod's container environment (image ENV, pod spec env,
# the EFA libraries efa-check.sh found), whether mpirun forked it on the leader or orted started it
# through sshd, whose sessions carry none of it (sshd's default PATH, no image ENV, no pod env).
# NVIDIA's multi-node guide gets the same by starting ranks with `kubectl exec` into each pod
# (EKS_Multinode_Triton_TRTLLM server.py, plm_rsh_agent kubessh). What Open MPI sets for the rank
# (OMPI_*, PMIX_*, OPAL_*) is not in the saved file and stays.
set -eu
env_file="${{TRITONLLM_RUN_DIR:-{RUN_DIR}}}/{POD_ENV_FILE}"
if [ ! -r "$env_file" ]; then echo "tritonllm: $env_file missing on $(hostname)" >&2; exit 1; fi
. "$env_file"
exec "$@"
"""


def worker_script() -> str:
    return f"""#!/bin/sh
# Generated by tritonllm: a worker pod of the group only runs sshd; the leader's mpirun starts its ranks.
set -eu
. "${{TRITONLLM_LAUNCH_DIR:-{LAUNCH_DIR}}}/setup-ssh.sh"
. "${{TRITONLLM_LAUNCH_DIR:-{LAUNCH_DIR}}}/efa-check.sh"
{save_pod_env_snippet()}echo "tritonllm: worker $POD_NAME (LWS_WORKER_INDEX=${{LWS_WORKER_INDEX:-?}}) serving sshd on port $SSH_PORT"
exec "$SSHD" -D -e -f "$RUN_DIR/sshd_config"
"""


def hostfile_script(gpus_per_node: int) -> str:
    """Print the MPI hostfile for this group from the LWS env: leader first, then workers 1..size-1."""
    return f"""#!/bin/sh
# Generated by tritonllm: the group's hosts from LWS_LEADER_ADDRESS (<lws>-<group>.<lws>.<namespace>)
# and LWS_GROUP_SIZE; worker i is <lws>-<group>-<i>.<lws>.<namespace> (LWS pod webhook).
set -eu
: "${{LWS_LEADER_ADDRESS:?not set: this runs in a LeaderWorkerSet pod}}"
: "${{LWS_GROUP_SIZE:?not set: this runs in a LeaderWorkerSet pod}}"
leader_host="${{LWS_LEADER_ADDRESS%%.*}}"
domain="${{LWS_LEADER_ADDRESS#*.}}"
echo "$LWS_LEADER_ADDRESS slots={gpus_per_node} max_slots={gpus_per_node}"
i=1
while [ "$i" -lt "$LWS_GROUP_SIZE" ]; do
  echo "$leader_host-$i.$domain slots={gpus_per_node} max_slots={gpus_per_node}"
  i=$((i + 1))
done
"""


def mpirun_command(model: ModelConfig) -> list[str]:
    """mpirun's per-rank app contexts: rank.sh (the pod's environment), then tritonserver and its arguments."""
    world = model.parallel_gpus
    cmd: list[str] = []
    for rank in range(world):
        if rank:
            cmd.append(":")
        cmd += ["-n", "1", "$LAUNCH_DIR/rank.sh", "$TRITONSERVER", *rank_args(model, rank)]
    return cmd


# Open MPI for the ranks on other pods. An ssh session starts with sshd's default PATH
# (/usr/local/bin:/usr/bin:/bin...) and none of the image's ENV, and the serving image's Open MPI is the
# EFA installer's under /opt/amazon/openmpi (the image sets PATH and OPAL_PREFIX to it). A bare
# `mpirun` makes the remote command a bare `orted`: "orted: command not found", "ORTE was unable to
# reliably start one or more daemons" (tensorrtllm_backend issue 698). With --prefix (Open MPI 4.1
# mpirun(1); an absolute mpirun path implies it) plm_rsh runs `OPAL_PREFIX=... ; PATH=<prefix>/bin:$PATH ;
# LD_LIBRARY_PATH=<prefix>/lib:... ; <prefix>/bin/orted` (orte/mca/plm/rsh/plm_rsh_module.c, v4.1.x;
# OPAL_PREFIX only when set in mpirun's environment). The prefix is OPAL_PREFIX when it holds an
# mpirun (the image's own statement of where Open MPI lives), else the directory above mpirun's bin/.
MPI_PREFIX_SNIPPET = """MPIRUN="$(command -v "${MPIRUN:-mpirun}" || true)"
if [ -z "$MPIRUN" ]; then echo "tritonllm: no mpirun on PATH ($PATH); set MPIRUN" >&2; exit 1; fi
MPI_PREFIX="$(dirname "$(dirname "$MPIRUN")")"
if [ -n "${OPAL_PREFIX:-}" ] && [ -x "$OPAL_PREFIX/bin/mpirun" ]; then MPI_PREFIX="$OPAL_PREFIX"; fi
echo "tritonllm: Open MPI: $MPIRUN (prefix $MPI_PREFIX, given to the other pods' ssh sessions)"
"""


def leader_script(model: ModelConfig, gpus_per_node: int) -> str:
    """Leader: own sshd (uniform hostfile), hostfile, wait for every worker, then exec mpirun."""
    world = model.parallel_gpus
    # "${...}" arguments (the admin key) are expanded by the leader's shell, not quoted away
    contexts = " ".join(f'"{a}"' if a.startswith("$") or "${" in a else shlex.quote(a) for a in mpirun_command(model))
    return f"""#!/bin/sh
# Generated by tritonllm: the leader of a multi-node TensorRT-LLM group.
set -eu
LAUNCH_DIR="${{TRITONLLM_LAUNCH_DIR:-{LAUNCH_DIR}}}"
. "$LAUNCH_DIR/setup-ssh.sh"
. "$LAUNCH_DIR/efa-check.sh"
TRITONSERVER="${{TRITONSERVER:-tritonserver}}"
{MPI_PREFIX_SNIPPET}WAIT_SECONDS="${{WORKER_WAIT_SECONDS:-{WORKER_WAIT_SECONDS}}}"

{save_pod_env_snippet()}"$SSHD" -D -e -f "$RUN_DIR/sshd_config" &  # the leader's own ranks may be started over ssh too
sh "$LAUNCH_DIR/hostfile.sh" > "$RUN_DIR/hostfile"
echo "tritonllm: hostfile:"; cat "$RUN_DIR/hostfile"

# Wait until every host answers over ssh (workers start sshd only after staging the engine).
deadline=$(( $(date +%s) + WAIT_SECONDS ))
for host in $(cut -d' ' -f1 "$RUN_DIR/hostfile"); do
  until "$RUN_DIR/bin/ssh" "$host" true 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "tritonllm: $host did not answer over ssh within ${{WAIT_SECONDS}}s; exiting so LWS recreates the group" >&2
      exit 1
    fi
    sleep 2
  done
  echo "tritonllm: $host is up"
done

ROOT_FLAG=""
if [ "$(id -u)" = 0 ]; then ROOT_FLAG="--allow-run-as-root"; fi  # Triton images run as root

echo "tritonllm: mpirun {world} ranks ({model.tensor_parallel} TP x {model.pipeline_parallel} PP, {gpus_per_node} per node)"
{NCCL_WATCH_SNIPPET}# shellcheck disable=SC2086
"$MPIRUN" --prefix "$MPI_PREFIX" $ROOT_FLAG --hostfile "$RUN_DIR/hostfile" --map-by slot --bind-to none \\
  --tag-output --mca plm_rsh_agent "$RUN_DIR/bin/ssh" --mca plm_rsh_no_tree_spawn 1 --mca orte_keep_fqdn_hostnames 1 \\
  --mca pml ob1 --mca btl tcp,self \\
  {contexts}{MPIRUN_WAIT}"""


# What NCCL says about its network (NCCL_DEBUG=INFO): "NCCL INFO Using network <name>" once per
# communicator and rank (NCCL src/init.cc), <name> "Libfabric" or "AWS Libfabric" for aws-ofi-nccl, "Socket"
# or "IB" for NCCL's own transports; and aws-ofi-nccl's "NET/OFI Selected provider is <p>, fabric is ..."
# (src/nccl_ofi_net.cpp; "Selected Provider" in older releases). Same patterns as tritonllm/nccl_test.py.
NCCL_NETWORK_FILE = "nccl-network"
OFI_NETWORKS = ("Libfabric", "AWS Libfabric")


def nccl_watch_script() -> str:
    """Reads mpirun's output (every rank's, --tag-output), copies it to the container log, and records in
    $RUN_DIR/nccl-network each network and libfabric provider NCCL reports, logging each the first time."""
    return f"""#!/bin/sh
# Generated by tritonllm: mpirun's output passes through here (leader.sh), line by line, unchanged.
RUN_DIR="${{TRITONLLM_RUN_DIR:-{RUN_DIR}}}"
out="$RUN_DIR/{NCCL_NETWORK_FILE}"
record() {{  # record <kind> <value>: once per distinct value
  if ! grep -qxF "$1 $2" "$out" 2>/dev/null; then
    echo "$1 $2" >> "$out"
    echo "tritonllm: NCCL $1: $2"
  fi
}}
while IFS= read -r line || [ -n "$line" ]; do
  printf '%s\n' "$line"
  case "$line" in
    *"NCCL INFO Using network "*)
      value="${{line##*NCCL INFO Using network }}"
      record network "${{value%"${{value##*[![:space:]]}}"}}" ;;
    *"NET/OFI Selected provider is "*|*"NET/OFI Selected Provider is "*)
      value="${{line##*rovider is }}"
      record provider "${{value%%[, ]*}}" ;;
  esac
done
"""


def ready_script() -> str:
    """The leader's readiness: with TRITONLLM_REQUIRE_EFA=1 (multiNode.efa), NCCL must have reported only
    aws-ofi-nccl networks on the efa provider, else the probe fails and says why; then Triton's own check."""
    ofi = " ".join(f'"{n}"' for n in OFI_NETWORKS)
    return f"""#!/bin/sh
# Generated by tritonllm: ready.sh <port> <path> (the HTTP check the probe would make).
RUN_DIR="${{TRITONLLM_RUN_DIR:-{RUN_DIR}}}"
file="$RUN_DIR/{NCCL_NETWORK_FILE}"
if [ "${{TRITONLLM_REQUIRE_EFA:-0}}" = 1 ]; then
  if ! grep -q '^network ' "$file" 2>/dev/null; then
    echo "not ready: NCCL has not reported its network yet (no 'NCCL INFO Using network' line; NCCL_DEBUG=INFO?)"
    exit 1
  fi
  other=""
  while IFS= read -r entry; do
    case "$entry" in
      "network "*)
        name="${{entry#network }}"; ok=0
        for allowed in {ofi}; do [ "$name" = "$allowed" ] && ok=1; done
        [ "$ok" = 1 ] || other="$other network '$name';" ;;
      "provider "*)
        [ "${{entry#provider }}" = efa ] || other="$other libfabric provider '${{entry#provider }}';" ;;
    esac
  done < "$file"
  if ! grep -qx 'provider efa' "$file"; then other="$other no 'NET/OFI Selected provider is efa' line;"; fi
  if [ -n "$other" ]; then
    echo "not ready: multiNode.efa is true but NCCL is not on EFA:$other run 'python -m tritonllm nccl-test'"
    exit 1
  fi
fi
exec curl -fsS -o /dev/null --max-time 4 "http://127.0.0.1:$1$2"
"""


# leader.sh: mpirun's output goes through nccl-watch.sh (a FIFO). The shell stays the container's process:
# it forwards SIGTERM to mpirun (as mpirun had it when exec'd), and after mpirun ends it waits for the
# watcher, so mpirun's last lines (nccl-tests' summary) reach the log before the container ends.
NCCL_WATCH_SNIPPET = """rm -f "$RUN_DIR/mpirun.out" "$RUN_DIR/nccl-network"
mkfifo "$RUN_DIR/mpirun.out"
sh "$LAUNCH_DIR/nccl-watch.sh" < "$RUN_DIR/mpirun.out" &
watch_pid=$!
"""
MPIRUN_WAIT = """ > "$RUN_DIR/mpirun.out" 2>&1 &
mpirun_pid=$!
trap 'kill -TERM "$mpirun_pid" 2>/dev/null' TERM INT
while :; do
  status=0
  wait "$mpirun_pid" || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # a trapped signal interrupted wait: mpirun still drains
done
wait "$watch_pid" || true
exit "$status"
"""


def launch_scripts(model: ModelConfig, site: ModelSite) -> dict[str, str]:
    """The ConfigMap data: every script the pods run."""
    gpn = instance_type(model, site).gpus
    return {
        "setup-ssh.sh": setup_ssh_script(),
        "efa-check.sh": efa_check_script(),
        "hostfile.sh": hostfile_script(gpn),
        "worker.sh": worker_script(),
        "rank.sh": rank_script(),
        "leader.sh": leader_script(model, gpn),
        "nccl-watch.sh": nccl_watch_script(),
        "ready.sh": ready_script(),
    }


def launch_configmap_manifest(model: ModelConfig, site: ModelSite) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": tm._meta(LAUNCH_CONFIGMAP, model.name, model),
        "data": launch_scripts(model, site),
    }


def ssh_secret_manifest(model: ModelConfig) -> dict[str, Any]:
    """Metadata only: the component adds stringData from Pulumi secrets (see ssh_secret_data)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": tm._meta(SSH_SECRET, model.name, model)}


def ssh_secret_data(client_private: str, client_public: str, host_private: str, host_public: str) -> dict[str, str]:
    """Secret contents from two OpenSSH key pairs (client, shared host key)."""
    return {
        SSH_CLIENT_KEY: client_private if client_private.endswith("\n") else client_private + "\n",
        SSH_AUTHORIZED_KEYS: client_public.strip() + "\n",
        SSH_HOST_KEY: host_private if host_private.endswith("\n") else host_private + "\n",
        # Any host of the group presents the one host key; ports other than 22 are "[host]:port".
        SSH_KNOWN_HOSTS: f"* {host_public.strip()}\n",
    }


# --------------------------------------------------------------------------- the LeaderWorkerSet


# What a builder renders when no built image was handed to it (tools that only print manifests): a name
# that can never be pulled, so a forgotten wiring fails at the pod's image pull, never runs the stock image.
UNWIRED_IMAGE = "tritonllm.invalid/multinode-serving-image-not-built:unset@sha256:" + "0" * 64


def leader_readiness_probe(container: dict[str, Any]) -> dict[str, Any]:
    """The leader's readiness probe as an exec of ready.sh: the NCCL network check, then the same HTTP GET
    (path, port) the Triton probe makes; period and thresholds unchanged."""
    probe = dict(container["readinessProbe"])
    http = probe.pop("httpGet")
    port = http["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
    probe["exec"] = {"command": ["/bin/sh", f"{LAUNCH_DIR}/ready.sh", str(port), http["path"]]}
    return probe


def _pod_spec(
    model: ModelConfig,
    site: ModelSite,
    multi_node: MultiNodeConfig,
    *,
    leader: bool,
    bucket: str,
    engine_key: str,
    shared_claim_name: str | None,
    image_pull_secret: str | None,
    image: str,
) -> dict[str, Any]:
    """Leader or worker pod: the single-node Deployment's pod, re-commanded for the group, on the
    multi-node serving image."""
    base = tm.deployment_manifest(
        model,
        site,
        bucket=bucket,
        engine_key=engine_key,
        shared_claim_name=shared_claim_name,
        image_pull_secret=image_pull_secret,
    )
    template = base["spec"]["template"]
    spec = template["spec"]
    itype = instance_type(model, site)
    gpus = str(model.gpus_per_pod)
    container = spec["containers"][0]
    requests = {**container["resources"]["requests"], tm.GPU_RESOURCE: gpus}
    limits = {**container["resources"]["limits"], tm.GPU_RESOURCE: gpus}
    if multi_node.efa:
        efa = str(itype.efa_interfaces)  # every EFA interface of the node: one pod per node
        requests[EFA_RESOURCE] = efa
        limits[EFA_RESOURCE] = efa
    env = [
        # the admin key: only the leader's shell needs it (it expands it into the ranks' arguments)
        *(e for e in container["env"] if leader or e["name"] != tm.ADMIN_KEY_ENV),
        *({"name": k, "value": v} for k, v in nccl_env(model, site).items()),
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if multi_node.efa:
        env.append({"name": "TRITONLLM_REQUIRE_EFA", "value": "1"})  # ready.sh: not on EFA = not ready
    mounts = [
        *container["volumeMounts"],
        {"name": "mpi-ssh", "mountPath": SSH_DIR, "readOnly": True},
        {"name": "mpi-launch", "mountPath": LAUNCH_DIR, "readOnly": True},
        {"name": "mpi-run", "mountPath": RUN_DIR},
    ]
    container.update(
        {
            "name": "triton" if leader else "worker",
            "image": image,
            "command": ["/bin/sh", f"{LAUNCH_DIR}/{'leader' if leader else 'worker'}.sh"],
            "env": [e for e in env if e["name"] not in ("HOME", "USER")],  # root's own HOME
            "resources": {"requests": requests, "limits": limits},
            "volumeMounts": [m for m in mounts if m["name"] != pod_security.HOME_VOLUME],
            # The named exception (pod_security.POD_SECURITY_EXCEPTIONS["multinode"]): sshd runs as root.
            "securityContext": pod_security.container_security_context(root=True),
        }
    )
    spec["securityContext"] = pod_security.pod_security_context(root=True)
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != pod_security.HOME_VOLUME]
    if leader:
        container["ports"] = [*container["ports"], {"name": "ssh", "containerPort": SSH_PORT, "protocol": "TCP"}]
        container["env"] = [*container["env"], {"name": "WORKER_WAIT_SECONDS", "value": str(WORKER_WAIT_SECONDS)}]
        startup = container["startupProbe"]
        startup["failureThreshold"] = math.ceil(LEADER_STARTUP_BUDGET_SECONDS / startup["periodSeconds"])
        container["readinessProbe"] = leader_readiness_probe(container)
    else:
        container["ports"] = [{"name": "ssh", "containerPort": SSH_PORT, "protocol": "TCP"}]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container.pop(probe, None)
        container["readinessProbe"] = {"tcpSocket": {"port": "ssh"}, "periodSeconds": 5, "failureThreshold": 3}
        # Workers host ranks > 0: they stay until the leader has drained (its preStop drains rank 0).
        container["lifecycle"] = {
            "preStop": {"exec": {"command": ["/bin/sh", "-c", tm.mpi_worker_wait_script(tm.drain_budget(model))]}}
        }
        # sshd comes up after staging: the same start budget as Triton's,
        # then a worker whose sshd died is restarted (its group is recreated: RecreateGroupOnPodRestart).
        container["startupProbe"] = {
            "tcpSocket": {"port": "ssh"},
            "periodSeconds": tm.STARTUP_PERIOD_SECONDS,
            "failureThreshold": -(-tm.STARTUP_BUDGET_SECONDS // tm.STARTUP_PERIOD_SECONDS),
        }
        container["livenessProbe"] = {"tcpSocket": {"port": "ssh"}, "periodSeconds": 10, "failureThreshold": 6}
    spec["volumes"] = [
        *spec["volumes"],
        {"name": "mpi-ssh", "secret": {"secretName": SSH_SECRET, "defaultMode": 0o400}},
        {"name": "mpi-launch", "configMap": {"name": LAUNCH_CONFIGMAP, "defaultMode": 0o555}},
        {"name": "mpi-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    # One pod per node: the group spreads over `nodes` nodes of the pool (same zone by the pool).
    spec.pop("topologySpreadConstraints", None)
    spec["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": tm.pod_labels(model)}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }
    annotations = {**template.get("metadata", {}).get("annotations", {}), DO_NOT_DISRUPT: "true"}
    return {"metadata": {"labels": tm.object_labels(model), "annotations": annotations}, "spec": spec}


def leader_worker_set_manifest(
    model: ModelConfig,
    site: ModelSite,
    *,
    bucket: str,
    engine_key: str,
    shared_claim_name: str | None = None,
    image_pull_secret: str | None = None,
    image: str = UNWIRED_IMAGE,
) -> dict[str, Any]:
    """The model's LeaderWorkerSet; `image` is the multi-node serving image (ServingImages' image_uri)."""
    multi_node = multi_node_of(model)
    pod_spec = partial(
        _pod_spec,
        model,
        site,
        multi_node,
        bucket=bucket,
        engine_key=engine_key,
        shared_claim_name=shared_claim_name,
        image_pull_secret=image_pull_secret,
        image=image,
    )
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": tm._meta(LWS_NAME, model.name, model),
        "spec": {
            "replicas": model.min_replicas,  # the HPA owns it afterwards (through the scale subresource)
            "startupPolicy": "LeaderCreated",
            "networkConfig": {"subdomainPolicy": "Shared"},
            # Surge whole groups, never take one down first: LWS v0.10.0's default (no
            # rollingUpdateConfiguration) is maxSurge 0 / maxUnavailable 1, which deletes the only group
            # of a one-replica model on every template change (new engine key, image). The config check
            # makes the pool's maxGpus hold maxReplicas + the surge groups (components/config/stack.py).
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {
                    "maxSurge": ROLLOUT_SURGE_GROUPS,
                    "maxUnavailable": 0,
                    "partition": 0,
                },
            },
            "leaderWorkerTemplate": {
                "size": multi_node.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_spec(leader=True),
                "workerTemplate": pod_spec(leader=False),
            },
        },
    }


def leader_selector(model: ModelConfig) -> dict[str, str]:
    return {**tm.pod_labels(model), WORKER_INDEX_LABEL: "0"}


def leader_service_manifest(model: ModelConfig) -> dict[str, Any]:
    """The model's `triton` Service, selecting leaders only (workers serve nothing but ssh)."""
    service = tm.service_manifest(model)
    service["spec"]["selector"] = leader_selector(model)
    return service


def pod_monitor_manifest(model: ModelConfig, site: ModelSite) -> dict[str, Any]:
    monitor = tm.pod_monitor_manifest(model, site)
    monitor["spec"]["selector"]["matchLabels"] = {**monitor["spec"]["selector"]["matchLabels"], WORKER_INDEX_LABEL: "0"}
    return monitor


def hpa_manifest(model: ModelConfig) -> dict[str, Any]:
    """Scales whole groups: LWS's scale subresource (.spec.replicas) with the leaders as the metric pods
    (.status.hpaPodSelector selects leader pods)."""
    hpa = tm.hpa_manifest(model)
    hpa["spec"]["scaleTargetRef"] = {"apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet", "name": LWS_NAME}
    # A new group needs `nodes` GPU nodes: one group at a time in both directions.
    hpa["spec"]["behavior"]["scaleUp"]["policies"] = [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"] = "Max"
    return hpa


def pdb_manifest(model: ModelConfig) -> dict[str, Any]:
    """At most one pod of the model's groups evicted at a time (an evicted pod restarts its whole group)."""
    return tm.pdb_manifest(model)


# --------------------------------------------------------------------------- NCCL all-reduce test

NCCL_TEST_NAME = "nccl-test"


def nccl_test_scripts(model: ModelConfig, site: ModelSite) -> dict[str, str]:
    """The same SSH wiring, with all_reduce_perf instead of tritonserver (one rank per GPU)."""
    gpn = instance_type(model, site).gpus
    world = model.parallel_gpus
    leader = leader_script(model, gpn)
    head, _, _ = leader.partition('"$MPIRUN" --prefix')
    leader = head + (
        '"$MPIRUN" --prefix "$MPI_PREFIX" $ROOT_FLAG --hostfile "$RUN_DIR/hostfile" --map-by slot --bind-to none \\\n'
        '  --mca plm_rsh_agent "$RUN_DIR/bin/ssh" --mca plm_rsh_no_tree_spawn 1 --mca orte_keep_fqdn_hostnames 1 \\\n'
        "  --mca pml ^cm,ucx --mca btl tcp,self \\\n"
        f'  -np {world} "$LAUNCH_DIR/rank.sh" "${{ALL_REDUCE_PERF:-/opt/nccl-tests/build/all_reduce_perf}}" '
        "-b 8 -e 2G -f 2 -g 1 -c 1 -n 50" + MPIRUN_WAIT
    )
    return {
        **launch_scripts(model, site),
        "leader.sh": leader.replace("tritonllm: mpirun", "tritonllm: nccl-test mpirun"),
    }


def nccl_test_manifests(model: ModelConfig, site: ModelSite, image: str = UNWIRED_IMAGE) -> list[dict[str, Any]]:
    """ConfigMap + LeaderWorkerSet (size = nodes, one replica) running all_reduce_perf across the group.

    Uses the model's own `mpi-ssh` Secret and pool; `python -m tritonllm nccl-test` applies, waits,
    prints the bus bandwidth and deletes them.
    """
    multi_node = multi_node_of(model)
    itype = instance_type(model, site)
    gpus, efa = str(itype.gpus), str(itype.efa_interfaces)
    labels = {"app.kubernetes.io/name": NCCL_TEST_NAME, "app.kubernetes.io/part-of": "tritonllm"}
    resources: dict[str, Any] = {
        "requests": {"cpu": "4", "memory": "16Gi", tm.GPU_RESOURCE: gpus},
        "limits": {"memory": "16Gi", tm.GPU_RESOURCE: gpus},
    }
    if multi_node.efa:
        resources["requests"][EFA_RESOURCE] = efa
        resources["limits"][EFA_RESOURCE] = efa

    def pod(role: str) -> dict[str, Any]:
        return {
            "metadata": {"labels": labels, "annotations": {DO_NOT_DISRUPT: "true"}},
            "spec": {
                "nodeSelector": tm.node_selector_for(model.node_pool),
                "tolerations": tm.gpu_tolerations(),
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                # The ranks' sshd, as in the serving group: the named root exception (pod_security).
                "securityContext": pod_security.pod_security_context(root=True),
                "containers": [
                    {
                        "name": role,
                        "image": image,
                        "securityContext": pod_security.container_security_context(root=True),
                        "command": ["/bin/sh", f"{LAUNCH_DIR}/{role}.sh"],
                        "env": [
                            *({"name": k, "value": v} for k, v in nccl_env(model, site).items()),
                            {"name": "MPIRUN", "value": "/opt/amazon/openmpi/bin/mpirun"},
                            {"name": "ALL_REDUCE_PERF", "value": "/opt/nccl-tests/build/all_reduce_perf"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        ],
                        "resources": resources,
                        "volumeMounts": [
                            {"name": "mpi-ssh", "mountPath": SSH_DIR, "readOnly": True},
                            {"name": "launch", "mountPath": LAUNCH_DIR, "readOnly": True},
                            {"name": "run", "mountPath": RUN_DIR},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "mpi-ssh", "secret": {"secretName": SSH_SECRET, "defaultMode": 0o400}},
                    {"name": "launch", "configMap": {"name": f"{NCCL_TEST_NAME}-launch", "defaultMode": 0o555}},
                    {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                ],
            },
        }

    leader_pod = pod("leader")  # restarts after the run; `tritonllm nccl-test` reads the first run, then deletes it
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{NCCL_TEST_NAME}-launch", "namespace": model.name, "labels": labels},
            "data": nccl_test_scripts(model, site),
        },
        {
            "apiVersion": LWS_API_VERSION,
            "kind": "LeaderWorkerSet",
            "metadata": {"name": NCCL_TEST_NAME, "namespace": model.name, "labels": labels},
            "spec": {
                "replicas": 1,
                "startupPolicy": "LeaderCreated",
                "leaderWorkerTemplate": {
                    "size": multi_node.nodes,
                    "restartPolicy": "None",
                    "leaderTemplate": leader_pod,
                    "workerTemplate": pod("worker"),
                },
            },
        },
    ]


def parse_bus_bandwidth(log: str) -> float | None:
    """nccl-tests' summary line `# Avg bus bandwidth    : 12.3456` (GB/s), or None."""
    for line in log.splitlines():
        _, found, rest = line.partition("Avg bus bandwidth")
        if found:
            try:
                return float(rest.split(":", 1)[1].split()[0])
            except (IndexError, ValueError):
                return None
    return None
