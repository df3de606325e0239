"""Pods that hold nothing they do not need: checkov's Kubernetes checks over every stack's manifests,
and the Pod Security Standards profile each of our pods and namespaces runs under.

checkov (requirements-checkov.txt) runs in its own virtualenv, `.cache/checkov-venv`, created on
first use ($TRITONLLM_CHECKOV names another checkov executable). It scans, per stack, every
Kubernetes object the program registers (tests/unit/harness.py), plus the pods we define that it
cannot see as such: the LeaderWorkerSet's leader and worker templates (a custom resource to
checkov) as Pods, and the TensorRT-LLM engine-build Job the dynamic provider creates.

What it may still report is in CHECKOV_SKIPS (a check we disagree with, for every resource) and
CHECKOV_EXCEPTIONS (a check that fails for a named pod, for a named reason); nothing else.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.catalog import versions
from components.config import parse_stack_config
from components.platform.builders import pod_security
from components.serving.builders import engine_build as eb
from components.serving.builders import multinode
from components.serving.builders import triton_manifests as tm
from tests.unit.conftest import VARIANTS, stack_run_for
from tests.unit.harness import REPO_ROOT, load_stack_config, stack_files
from tests.weights_helpers import mirror_of

CHECKOV_REQUIREMENTS = REPO_ROOT / "requirements-checkov.txt"
CHECKOV_VENV = Path(os.environ.get("TRITONLLM_CHECKOV_VENV", REPO_ROOT / ".cache" / "checkov-venv"))

# Checks we disagree with, by id, for every resource: the reason is the documentation.
CHECKOV_SKIPS: dict[str, str] = {
    "CKV_K8S_11": "CPU limits: Triton serves latency-bound requests; a CPU limit throttles the server "
    "(CFS quota) under load while the GPU waits. Pods request CPU and limit memory.",
    "CKV_K8S_15": "imagePullPolicy Always: Triton images are 15-20 GB; pulling on every start adds minutes to "
    "cold starts and scale-ups. Tags are immutable releases and digests pin them where confirmed "
    "(components/catalog/versions.py).",
    "CKV_K8S_40": "uid >= 10000: the Triton images' own non-root user is triton-server, uid 1000 (server "
    "build.py asserts it); a uid outside /etc/passwd breaks getpass.getuser() (PyTorch's cache dir in "
    "vLLM). The host conflict this check guards against needs an escape that no capability, no "
    "privilege escalation and the RuntimeDefault seccomp profile leave open.",
    "CKV2_K8S_6": "NetworkPolicy: pod-to-pod isolation is issue 18 item 1 (another change); drop this skip "
    "when the policies land, the check then passes on its own.",
}

# Images without a digest (versions.IMAGES entries with digest None) fail CKV_K8S_43; that is
# accepted only while an image of the pod is still unpinned (see test_unpinned_digest_skip_is_earned).
DIGEST_CHECK = "CKV_K8S_43"
UNPINNED_IMAGES = [image.ref for image in versions.IMAGES if image.digest is None]

# Checks that fail for one named pod, with the reason (pod_security.POD_SECURITY_EXCEPTIONS).
MULTINODE_POD = re.compile(r"^Pod\.[^.]+\.(triton-mn|nccl-test)-(leader|worker)$")
CHECKOV_EXCEPTIONS: dict[tuple[str, re.Pattern[str]], str] = {
    (check, MULTINODE_POD): pod_security.POD_SECURITY_EXCEPTIONS["multinode"]
    for check in (
        "CKV_K8S_23",  # root containers admitted
        "CKV_K8S_22",  # read-only root filesystem (sshd's /run/sshd and pid file)
        "CKV_K8S_25",  # capabilities added back after dropping ALL (SYS_CHROOT, SETUID, SETGID, ...)
    )
}
# Servers in explicit model-control mode (vLLM, multi-node leaders) get the restricted repository API's
# key from a Secret through the environment (issue 18 item 1); nothing else of ours does.
ADMIN_KEY_POD = re.compile(r"^(Deployment\.[^.]+\.triton|Pod\.[^.]+\.triton-mn-leader)$")
CHECKOV_EXCEPTIONS[("CKV_K8S_35", ADMIN_KEY_POD)] = pod_security.POD_SECURITY_EXCEPTIONS["admin-key"]
NCCL_TEST_POD = re.compile(r"^Pod\.[^.]+\.nccl-test-(leader|worker)$")
CHECKOV_EXCEPTIONS.update(
    {
        (check, NCCL_TEST_POD): "`tritonllm nccl-test` runs all_reduce_perf once, reads the result and deletes the "
        "pods: nothing serves, so there is nothing to probe"
        for check in ("CKV_K8S_8", "CKV_K8S_9")  # liveness, readiness probes
    }
)


# --------------------------------------------------------------------------- what we scan

# Every stack file, and the variants whose pods differ from their stack's: models[].weights.delivery mountpoint
# mounts a PersistentVolumeClaim (the node's Mountpoint volume) where the others have an emptyDir.
POD_STACKS = stack_files() + ["llmapi-mountpoint", "vllm-mountpoint"]
# Pod Security Standards, restricted profile, "Volume Types": the only volume sources it admits.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def stack_file_of(stack: str) -> str:
    """The Pulumi.<stack>.yaml a stack or a conftest.VARIANTS entry is made from."""
    return VARIANTS[stack][0] if stack in VARIANTS else stack


def lws_pods(lws: dict[str, Any]) -> list[dict[str, Any]]:
    """A LeaderWorkerSet's leader and worker templates as the Pods LWS creates from them."""
    out = []
    template = lws["spec"]["leaderWorkerTemplate"]
    for role in ("leader", "worker"):
        pod = copy.deepcopy(template[f"{role}Template"])
        name = f"{lws['metadata']['name']}-{role}"
        metadata = {**pod.get("metadata", {}), "name": name, "namespace": lws["metadata"]["namespace"]}
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod["spec"]})
    return out


def engine_build_jobs(stack: str) -> list[dict[str, Any]]:
    """The engine-build Job of each TRT-LLM engine model (created by the provider at `up`)."""
    raw = {
        k.split(":", 1)[1]: v for k, v in load_stack_config(stack_file_of(stack)).items() if k.startswith("tritonllm:")
    }
    cfg = parse_stack_config(raw, {"hfToken"})
    return [
        eb.engine_build_job_manifest(
            model, cfg.site_of(model), key="0" * 64, namespace=model.name, bucket="bucket", weights=mirror_of(model)
        )
        for model in cfg.models
        if model.builds_engine
    ]


def weights_mirror_jobs(stack: str) -> list[dict[str, Any]]:
    """The weights mirror Jobs (created by the HfSnapshotMirror provider at `up`), as the program renders them."""
    jobs = [r.inputs["job"] for r in stack_run_for(stack).resources if r.type.endswith("HfSnapshotMirror")]
    assert jobs, f"stack {stack} mirrors no snapshot"
    return jobs


def nccl_test_manifests(stack: str) -> list[dict[str, Any]]:
    """`tritonllm nccl-test`'s LeaderWorkerSet in a multi-node model's namespace."""
    raw = {
        k.split(":", 1)[1]: v for k, v in load_stack_config(stack_file_of(stack)).items() if k.startswith("tritonllm:")
    }
    cfg = parse_stack_config(raw, {"hfToken"})
    return [
        m for model in cfg.models if model.multi_node for m in multinode.nccl_test_manifests(model, cfg.site_of(model))
    ]


def scanned_manifests(stack: str) -> list[dict[str, Any]]:
    manifests = stack_run_for(stack).manifests() + nccl_test_manifests(stack)
    for lws in [m for m in manifests if m["kind"] == "LeaderWorkerSet"]:
        manifests += lws_pods(lws)
    return manifests + engine_build_jobs(stack) + weights_mirror_jobs(stack)


def pod_specs(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    kind = manifest["kind"]
    if kind == "Pod":
        return [(manifest["metadata"]["name"], manifest["spec"])]
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return [(manifest["metadata"]["name"], manifest["spec"]["template"]["spec"])]
    if kind == "LeaderWorkerSet":
        t = manifest["spec"]["leaderWorkerTemplate"]
        return [(f"{manifest['metadata']['name']}-{r}", t[f"{r}Template"]["spec"]) for r in ("leader", "worker")]
    return []


# --------------------------------------------------------------------------- checkov


def checkov_executable() -> Path:
    explicit = os.environ.get("TRITONLLM_CHECKOV")
    if explicit:
        return Path(explicit)
    import fcntl

    wanted = CHECKOV_REQUIREMENTS.read_text()
    marker = CHECKOV_VENV / ".tritonllm-requirements"
    exe = CHECKOV_VENV / "bin" / "checkov"
    CHECKOV_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(CHECKOV_VENV.parent / ".checkov-venv.lock", "w") as lock:  # pytest-xdist workers wait for one
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == wanted and exe.is_file():
            return exe
        if not (CHECKOV_VENV / "bin" / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True)
        venv_python = str(CHECKOV_VENV / "bin" / "python")
        subprocess.run([venv_python, "-m", "pip", "install", "--quiet", "-r", str(CHECKOV_REQUIREMENTS)], check=True)
        marker.write_text(wanted)
        return exe


@pytest.fixture(scope="module")
def checkov() -> Path:
    return checkov_executable()


def run_checkov(checkov: Path, manifests: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    for i, manifest in enumerate(manifests):
        name = f"{i:03d}-{manifest['kind']}-{manifest['metadata']['name']}.yaml"
        (workdir / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
    proc = subprocess.run(
        [str(checkov), "-d", str(workdir), "--framework", "kubernetes", "-o", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_NO_UPDATE_CHECK": "1"},
    )
    if proc.returncode not in (0, 1):  # 1: some check failed
        raise AssertionError(f"checkov exited {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


def unexplained(failed: list[dict[str, Any]], unpinned: list[str]) -> list[str]:
    """Failures that neither CHECKOV_SKIPS nor CHECKOV_EXCEPTIONS (nor an unpinned image) explain."""
    left = []
    for f in failed:
        check, resource = f["check_id"], f["resource"]
        if check in CHECKOV_SKIPS:
            continue
        if check == DIGEST_CHECK and unpinned:
            continue
        if any(check == c and pattern.match(resource) for c, pattern in CHECKOV_EXCEPTIONS):
            continue
        left.append(f"{check} {f['check_name']}: {resource} ({f.get('file_path')})")
    return left


@pytest.mark.parametrize("stack", POD_STACKS)
def test_checkov_finds_nothing_beyond_the_named_skips(stack, checkov, tmp_path):
    manifests = scanned_manifests(stack)
    images = {c["image"] for m in manifests for _, spec in pod_specs(m) for c in _containers(spec)}
    unpinned = sorted(i for i in images if "@sha256:" not in i)
    assert set(unpinned) <= set(UNPINNED_IMAGES), "an image without digest that versions.IMAGES does not list"
    report = run_checkov(checkov, manifests, tmp_path / stack)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, summary  # it really scanned our objects
    failed = report["results"]["failed_checks"]
    left = unexplained(failed, unpinned)
    assert not left, "checkov failures without a named, reasoned skip:\n" + "\n".join(left)
    if any(m["kind"] == "LeaderWorkerSet" for m in manifests):  # no exception stays once it is not needed
        used = {
            (c, p) for f in failed for (c, p) in CHECKOV_EXCEPTIONS if c == f["check_id"] and p.match(f["resource"])
        }
        assert used == set(CHECKOV_EXCEPTIONS), f"exceptions no longer needed: {set(CHECKOV_EXCEPTIONS) - used}"
    # Every pod we define was scanned, LeaderWorkerSet templates, the engine-build and weights mirror Jobs included.
    scanned = {c["resource"] for c in report["results"]["passed_checks"]}
    for manifest in manifests:
        if manifest["kind"] in ("Pod", "Deployment", "Job"):
            ident = f"{manifest['kind']}.{manifest['metadata']['namespace']}.{manifest['metadata']['name']}"
            assert any(r == ident or r.startswith(ident + ".") for r in scanned), ident


def test_unexplained_reports_what_the_pods_used_to_do():
    """The filter is no blanket: a root container outside the multi-node exception is reported."""
    failed = [
        {"check_id": "CKV_K8S_23", "check_name": "root", "resource": "Deployment.llama.triton"},
        {"check_id": "CKV_K8S_23", "check_name": "root", "resource": "Pod.llama-3-8b.triton-mn-worker"},
        {"check_id": "CKV_K8S_11", "check_name": "cpu", "resource": "Deployment.llama.triton"},
        {"check_id": DIGEST_CHECK, "check_name": "digest", "resource": "Deployment.llama.triton"},
    ]
    assert unexplained(failed, unpinned=["x:1"]) == ["CKV_K8S_23 root: Deployment.llama.triton (None)"]
    assert len(unexplained(failed, unpinned=[])) == 2  # the digest check counts once every image is pinned


def test_every_skip_and_exception_has_a_reason():
    for check, reason in [*CHECKOV_SKIPS.items(), *((c, r) for (c, _), r in CHECKOV_EXCEPTIONS.items())]:
        assert re.match(r"^CKV2?_K8S_\d+$", check) and len(reason) > 40, check


# --------------------------------------------------------------------------- our own reading


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _is_multinode_pod(name: str) -> bool:
    return name.startswith(("triton-mn-", "nccl-test-"))


@pytest.mark.parametrize("stack", POD_STACKS)
def test_every_pod_we_define_runs_restricted_or_is_a_named_exception(stack):
    """PSS restricted: non-root with a uid, no privilege escalation, ALL capabilities dropped,
    RuntimeDefault seccomp; plus a read-only root filesystem with the writable emptyDirs mounted."""
    found = 0
    for manifest in scanned_manifests(stack):
        if manifest["kind"] == "LeaderWorkerSet":
            continue  # checked as its Pods
        for name, spec in pod_specs(manifest):
            found += 1
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert spec.get("automountServiceAccountToken") is False, name
            exception = _is_multinode_pod(name)
            if not exception:  # restricted admits these volume sources only (hostPath never)
                kinds = {k for v in spec.get("volumes", []) for k in v if k != "name"}
                assert kinds <= RESTRICTED_VOLUME_TYPES, (name, kinds - RESTRICTED_VOLUME_TYPES)
            for c in _containers(spec):
                ctx = c["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False and not ctx.get("privileged"), (name, c["name"])
                assert ctx["capabilities"]["drop"] == ["ALL"], (name, c["name"])
                # secrets as files, but the restricted repository API's key (a named exception, above)
                assert all(
                    "secretKeyRef" not in e.get("valueFrom", {}) or e["name"] == tm.ADMIN_KEY_ENV
                    for e in c.get("env", [])
                ), (name, c["name"])
                if exception and c["name"] in ("triton", "worker", "leader"):
                    assert ctx["runAsUser"] == 0
                    assert set(ctx["capabilities"]["add"]) == set(pod_security.ROOT_CAPABILITIES)
                    continue
                assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == pod_security.TRITON_UID, (name, c["name"])
                assert "add" not in ctx["capabilities"], (name, c["name"])
                assert ctx["readOnlyRootFilesystem"] is True, (name, c["name"])
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, (name, c["name"])  # every container can write its temporary files
                if c["image"].startswith("nvcr.io/nvidia/tritonserver"):
                    assert {pod_security.TRITON_HOME, "/dev/shm"} <= mounts, (name, c["name"])
                    env = {e["name"]: e.get("value") for e in c.get("env", [])}
                    assert env["HOME"] == pod_security.TRITON_HOME, (name, c["name"])
    assert found, "no pod found"


@pytest.mark.parametrize("stack", stack_files())
def test_namespaces_enforce_pod_security(stack):
    run = stack_run_for(stack)
    labels = {m["metadata"]["name"]: m["metadata"].get("labels", {}) for m in run.manifests("Namespace")}
    cfg = {m["name"]: m for m in run.config["tritonllm:models"]}
    label = pod_security.PSS_LABEL
    for name, model in cfg.items():
        want = "baseline" if model.get("multiNode") else "restricted"
        assert labels[name][f"{label}/enforce"] == want, name
        assert labels[name][f"{label}/warn"] == labels[name][f"{label}/audit"] == "restricted", name
        assert labels[name][f"{label}/enforce-version"] == f"v{versions.EKS_VERSION}"
    assert labels["nginx-gateway"][f"{label}/enforce"] == "baseline"
    assert labels["monitoring"][f"{label}/enforce"] == "privileged"
    assert labels["monitoring"][f"{label}/audit"] == "baseline"


def test_image_digest_pin():
    pinned = versions.Image("nvcr.io/nvidia/tritonserver", "25.12-vllm-python-py3", "sha256:" + "ab" * 32)
    assert pinned.ref == "nvcr.io/nvidia/tritonserver:25.12-vllm-python-py3@sha256:" + "ab" * 32
    with pytest.raises(ValueError, match="sha256"):
        versions.Image("x", "1", "sha256:short")
    assert [versions.triton_image(r) for r in versions.RUNTIMES] == [
        versions.TRITON_VLLM.ref,
        versions.TRITON_TRTLLM_LLMAPI.ref,
        versions.TRITON_TRTLLM_ENGINE.ref,
    ]


def test_checkov_is_pinned_once():
    pins = [line for line in CHECKOV_REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert pins == ["checkov==3.3.30"]  # the venv is built from exactly this file (checkov_executable)
