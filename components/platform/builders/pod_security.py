"""Pod Security: the securityContexts of every pod we define and the namespaces' Pod Security labels.

Our pods run under the Pod Security Standards "restricted" profile
(kubernetes.io/docs/concepts/security/pod-security-standards): non-root with a numeric uid,
no privilege escalation, every capability dropped, the RuntimeDefault seccomp profile, and
on top of the profile a read-only root filesystem, with emptyDirs where the server writes
(/tmp, $HOME and its caches, /dev/shm). The namespaces we create say which profile the API
server enforces (`pod-security.kubernetes.io/*` labels), so a pod that drifts from it is
refused at admission rather than found in a scan.

The uid is the one the Triton images ship for this: NGC's tritonserver images are generated
by triton-inference-server/server `build.py` (create_dockerfile_linux), which creates the
user `triton-server` and asserts `id -u` and `id -g` are 1000, and copies /opt/tritonserver
with `--chown=1000:1000`. The images still start as root by default; we pick that user.
A uid outside /etc/passwd would break `getpass.getuser()` (PyTorch's inductor cache
directory, used by vLLM) and leave $HOME unset, so the image's own user is the right one.

Exceptions, each with its reason (POD_SECURITY_EXCEPTIONS; docs/security.md lists them):

* multi-node ranks (LeaderWorkerSet leader and workers) run sshd, which needs root: its
  privilege separation chroots and changes uid (SYS_CHROOT, SETUID, SETGID); OpenSSH comes
  with the multi-node serving image (images/multinode), nothing is installed at start. Their
  namespace enforces
  "baseline" (root is allowed, privileged mode, host namespaces and capabilities beyond the
  baseline set are not) and audits/warns at "restricted".
* the monitoring namespace holds node-exporter (host network, host PID, hostPath) and the
  DCGM exporter: "privileged" is enforced there explicitly, audited at "baseline".
* the gateway namespace holds NGINX Gateway Fabric's pods, rendered by its chart and
  controller, not by us: "baseline" enforced, "restricted" audited and warned.
"""

from __future__ import annotations

from typing import Any, Literal

from components.catalog import versions

# server build.py (create_dockerfile_linux): `useradd triton-server`, then `[ $(id -u) -eq 1000 ]`.
TRITON_UID = 1000
TRITON_GID = 1000
TRITON_HOME = "/home/triton-server"  # its passwd entry; useradd without -m does not create it

Level = Literal["privileged", "baseline", "restricted"]
PSS_LABEL = "pod-security.kubernetes.io"
# The policy version the API server applies: the cluster's own minor version, so an EKS upgrade
# does not change what is enforced until this pin moves with it.
PSS_VERSION = f"v{versions.EKS_VERSION}"

# Writable places on a read-only root filesystem (emptyDirs; /dev/shm is the pod's own).
TMP_VOLUME = "tmp"
HOME_VOLUME = "home"
TMP_SIZE = "16Gi"  # torch/vLLM compile caches, TRT-LLM temporary files
HOME_SIZE = "8Gi"  # ~/.cache (vLLM, Triton kernels, torch), ~/.config

POD_SECURITY_EXCEPTIONS: dict[str, str] = {
    "multinode": "sshd between ranks runs as root: privilege separation needs SYS_CHROOT, SETUID and SETGID, "
    "and sshd writes its privilege separation directory and pid file (writable root filesystem); OpenSSH comes "
    "with the multi-node serving image the program builds (images/multinode), nothing is installed at start",
    "monitoring": "node-exporter uses the host's network, PID namespace and filesystem; the DCGM exporter "
    "reads the GPUs through the host",
    "gateway": "NGINX Gateway Fabric's pods are rendered by its chart and controller, not by this program",
    "admin-key": "the model repository API's generated key reaches tritonserver as an environment variable: "
    "Kubernetes expands `$(VAR)` in a container's args only from its environment, and the multi-node leader's "
    "shell expands it into every rank's arguments; the key unlocks nothing outside the pod's own server",
}


def namespace_labels(enforce: Level, *, audit: Level | None = None, warn: Level | None = None) -> dict[str, str]:
    """`pod-security.kubernetes.io/{enforce,audit,warn}` (+ `-version`) labels for a namespace."""
    labels: dict[str, str] = {}
    for mode, level in (("enforce", enforce), ("audit", audit or enforce), ("warn", warn or enforce)):
        labels[f"{PSS_LABEL}/{mode}"] = level
        labels[f"{PSS_LABEL}/{mode}-version"] = PSS_VERSION
    return labels


def restricted_namespace_labels() -> dict[str, str]:
    return namespace_labels("restricted")


def pod_security_context(*, root: bool = False) -> dict[str, Any]:
    """The pod's securityContext: RuntimeDefault seccomp; the Triton user unless `root` (an exception)."""
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if not root:
        context.update(
            {
                "runAsNonRoot": True,
                "runAsUser": TRITON_UID,
                "runAsGroup": TRITON_GID,
                # emptyDirs and projected volumes group-owned by the server's group
                "fsGroup": TRITON_GID,
            }
        )
    return context


# Capabilities sshd needs as root (all within the "baseline" profile's allowed set): privilege
# separation (SYS_CHROOT, SETUID, SETGID) and KILL for sshd/mpirun signalling their children. The
# dpkg ones (CHOWN, DAC_OVERRIDE, FOWNER, FSETID) went with the apt-get install at start: the
# multi-node image has OpenSSH (tests/multinode/test_launch.py runs sshd + mpirun with exactly these).
ROOT_CAPABILITIES = ("KILL", "SETGID", "SETUID", "SYS_CHROOT")


def container_security_context(*, root: bool = False, read_only_root: bool = True) -> dict[str, Any]:
    """A container's securityContext: no privilege escalation, no capabilities, read-only root.

    `root` (the multi-node exception): uid 0 with only ROOT_CAPABILITIES added back, root
    filesystem writable (sshd's privilege separation directory /run/sshd)."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root and not root,
    }
    if root:
        context["capabilities"]["add"] = list(ROOT_CAPABILITIES)
        context["runAsUser"] = 0
        context["runAsNonRoot"] = False
    else:
        # Set on the container too, so it holds in a pod whose other container is an exception.
        context.update({"runAsNonRoot": True, "runAsUser": TRITON_UID, "runAsGroup": TRITON_GID})
    return context


def writable_volumes(tmp_size: str = TMP_SIZE, home_size: str = HOME_SIZE) -> list[dict[str, Any]]:
    """emptyDirs for /tmp and $HOME (on the node's encrypted root volume)."""
    return [
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": tmp_size}},
        {"name": HOME_VOLUME, "emptyDir": {"sizeLimit": home_size}},
    ]


def writable_mounts(home: str = TRITON_HOME) -> list[dict[str, Any]]:
    return [{"name": TMP_VOLUME, "mountPath": "/tmp"}, {"name": HOME_VOLUME, "mountPath": home}]


def home_env(home: str = TRITON_HOME) -> list[dict[str, str]]:
    """HOME and USER explicitly: images that start as root set HOME=/root in their environment."""
    return [{"name": "HOME", "value": home}, {"name": "USER", "value": "triton-server"}]
