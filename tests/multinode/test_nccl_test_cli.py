"""`python -m tritonllm nccl-test`: renders, applies, follows the leader's log, prints the bus bandwidth, cleans up.

kubectl is replaced by a recorder (no cluster here); the manifests it receives are validated against
the Kubernetes schema and the upstream LWS CRD.
"""

from __future__ import annotations

import argparse
import io
import subprocess

import yaml

from tests.k8s_schema import validate_manifest
from tritonllm import nccl_test
from tritonllm.__main__ import build_parser

# NCCL_DEBUG=INFO lines in the formats of NCCL v2.30.7-1 (src/debug.cc: "<host>:<pid>:<tid> [<dev>] NCCL INFO
# <msg>", WARN adds "<file>:<line>"; src/init.cc: "Using network %s" once per communicator, naming the net
# plugin NCCL selected; src/plugin/net.cc: "Failed to initialize NET plugin %s") and aws-ofi-nccl
# (include/nccl_ofi_log.h prefixes "NET/OFI "; src/nccl_ofi_net.cpp: "Selected provider is %s, fabric is
# %s (found %d nics)", "Unable to find a protocol that worked.  Failing initialization."; the plugin is
# named "Libfabric", or "AWS Libfabric" with NCCL_NET="AWS Libfabric", src/nccl_ofi_interface_nvidia.cpp).
LOG = """\
nccl-test-0:25:25 [0] NCCL INFO NET/Plugin: Loaded net plugin Libfabric (v10)
nccl-test-0:25:25 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.0
nccl-test-0:25:25 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 1 nics)
nccl-test-0:25:25 [0] NCCL INFO Initialized NET plugin Libfabric
nccl-test-0:25:25 [0] NCCL INFO Using network Libfabric
nccl-test-0-1:31:31 [1] NCCL INFO Using network Libfabric
#  Rank  0 Group  0 Pid     25 on nccl-test-0 device  0 [0x00] NVIDIA A10G
  1073741824     268435456     float     sum      -1  98231.4   10.93   19.13      0  98102.1   10.95   19.16      0
# Avg bus bandwidth    : 7.4512
"""

# The plugin loads and logs NET/OFI lines, cannot initialise, and NCCL falls back to its socket transport.
SOCKET_FALLBACK = """\
nccl-test-0:25:25 [0] NCCL INFO NET/Plugin: Loaded net plugin Libfabric (v10)
nccl-test-0:25:25 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.0
nccl-test-0:25:25 [0] NCCL INFO NET/OFI Using Libfabric version 2.1
nccl-test-0:25:25 [0] nccl_ofi_net.cpp:334 NCCL WARN NET/OFI Unable to find a protocol that worked.  Failing initialization.
nccl-test-0:25:25 [0] NCCL INFO Failed to initialize NET plugin Libfabric
nccl-test-0:25:25 [0] NCCL INFO NET/Socket : Using [0]eth0:10.3.1.23<0>
nccl-test-0:25:25 [0] NCCL INFO Initialized NET plugin Socket
nccl-test-0:25:25 [0] NCCL INFO Using network Socket
nccl-test-0-1:31:31 [1] NCCL INFO Using network Socket
"""

# aws-ofi-nccl initialises, but libfabric picked its TCP provider (no EFA device in the pod).
OFI_OVER_TCP = """\
[1,0]<stdout>:nccl-test-0:25:25 [0] NCCL INFO NET/OFI Selected provider is tcp, fabric is 10.3.0.0/16 (found 1 nics)
[1,0]<stdout>:nccl-test-0:25:25 [0] NCCL INFO Using network AWS Libfabric
"""


# What `pulumi stack output multinodeImage` prints once the stack built its multi-node serving image.
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonllm/serving:multinode-" + "a" * 64 + "@sha256:" + "b" * 64


class Kubectl:
    """kubectl (and the one `pulumi stack output` call) as a recorder."""

    def __init__(self, image: str | None = IMAGE):
        self.calls: list[list[str]] = []
        self.applied: list[dict] = []
        self.image = image

    def __call__(self, cmd, input=None, **kwargs):
        if cmd[0] == "pulumi":
            assert cmd[1:4] == ["stack", "output", nccl_test.IMAGE_OUTPUT] and cmd[-2:] == ["--stack", "multinode"]
            if self.image is None:
                return subprocess.CompletedProcess(
                    cmd, 255, stdout="", stderr="error: current stack does not have output"
                )
            return subprocess.CompletedProcess(cmd, 0, stdout=self.image + "\n", stderr="")
        self.calls.append(cmd)
        if cmd[1] == "apply":
            self.applied = list(yaml.safe_load_all(input))
        stdout = "Running" if cmd[1:2] == ["-n"] and "get" in cmd else ""
        return subprocess.CompletedProcess(cmd, 0, stdout=stdout, stderr="")


def _args(**kw):
    parser = build_parser()
    return parser.parse_args(["nccl-test", "--stack", "multinode", *kw.get("extra", [])])


def test_prints_bus_bandwidth_and_transport_then_deletes_the_test():
    kubectl, out = Kubectl(), io.StringIO()
    code = nccl_test.run(
        _args(), runner=kubectl, follow=lambda cmd: iter(LOG.splitlines(keepends=True)), sleep=lambda s: None, out=out
    )
    assert code == 0
    assert "Avg bus bandwidth: 7.45 GB/s across 2 x g5.12xlarge (8 GPUs); transport: EFA" in out.getvalue()
    assert [c[1] for c in kubectl.calls][0] == "apply" and kubectl.calls[-1][1] == "delete"
    assert {m["kind"] for m in kubectl.applied} == {"ConfigMap", "LeaderWorkerSet"}
    for manifest in kubectl.applied:
        validate_manifest(manifest)
    # the ranks run the stack's own multi-node serving image, the one serving runs
    (lws,) = [m for m in kubectl.applied if m["kind"] == "LeaderWorkerSet"]
    templates = lws["spec"]["leaderWorkerTemplate"]
    images = {t["spec"]["containers"][0]["image"] for t in (templates["leaderTemplate"], templates["workerTemplate"])}
    assert images == {IMAGE}


def test_without_the_stack_output_it_asks_for_up_or_image():
    import pytest

    with pytest.raises(SystemExit, match="no multinodeImage output on stack multinode"):
        nccl_test.run(_args(), runner=Kubectl(image=None), follow=lambda cmd: iter([]), sleep=lambda s: None)


def test_an_explicit_image_wins():
    kubectl = Kubectl(image=None)
    nccl_test.run(
        _args(extra=["--image", "my/image@sha256:" + "c" * 64]),
        runner=kubectl,
        follow=lambda cmd: iter(LOG.splitlines(keepends=True)),
        sleep=lambda s: None,
        out=io.StringIO(),
    )
    (lws,) = [m for m in kubectl.applied if m["kind"] == "LeaderWorkerSet"]
    assert lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["image"].startswith(
        "my/image"
    )


def test_a_run_without_summary_fails_and_still_cleans_up():
    kubectl = Kubectl()
    code = nccl_test.run(
        _args(),
        runner=kubectl,
        follow=lambda cmd: iter(["NCCL WARN NET/Socket: connect failed\n"]),
        sleep=lambda s: None,
        out=io.StringIO(),
    )
    assert code == 1 and kubectl.calls[-1][1] == "delete"


def test_transport_is_the_network_nccl_selected_not_any_plugin_line():
    assert nccl_test.transport(LOG).startswith("EFA")
    # NET/OFI lines are there, but NCCL uses its socket transport: not EFA.
    assert "NET/OFI" in SOCKET_FALLBACK
    assert nccl_test.transport(SOCKET_FALLBACK).startswith("TCP sockets (EFA NOT used)")
    assert "EFA NOT used" in nccl_test.transport(OFI_OVER_TCP) and "tcp" in nccl_test.transport(OFI_OVER_TCP)
    # one rank on sockets is a group on sockets
    mixed = LOG.replace(
        "nccl-test-0-1:31:31 [1] NCCL INFO Using network Libfabric", "x:1:1 [1] NCCL INFO Using network Socket"
    )
    assert "EFA NOT used" in nccl_test.transport(mixed)
    assert nccl_test.transport("no NCCL lines").startswith("unknown")


def test_a_socket_fallback_is_printed(capsys):
    kubectl, out = Kubectl(), io.StringIO()
    log = SOCKET_FALLBACK + "# Avg bus bandwidth    : 1.0312\n"
    code = nccl_test.run(
        _args(), runner=kubectl, follow=lambda cmd: iter(log.splitlines(keepends=True)), sleep=lambda s: None, out=out
    )
    assert code == 0 and "transport: TCP sockets (EFA NOT used)" in out.getvalue()


def test_print_manifests_needs_no_cluster(capsys):
    args = argparse.Namespace(
        stack="multinode", model=None, timeout=1, kubectl="false", keep=False, print_manifests=True, image=IMAGE
    )
    assert nccl_test.run(args) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "LeaderWorkerSet"]
