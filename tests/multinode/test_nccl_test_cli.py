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

LOG = """\
[1,0]<stdout>:nccl-test-0:25:25 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 1 nics)
#  Rank  0 Group  0 Pid     25 on nccl-test-0 device  0 [0x00] NVIDIA A10G
  1073741824     268435456     float     sum      -1  98231.4   10.93   19.13      0  98102.1   10.95   19.16      0
# Avg bus bandwidth    : 7.4512
"""


class Kubectl:
    def __init__(self):
        self.calls: list[list[str]] = []
        self.applied: list[dict] = []

    def __call__(self, cmd, input=None, **kwargs):
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


def test_transport_names_a_socket_fallback():
    assert nccl_test.transport("NCCL INFO NET/Socket : Using [0]eth0") == "TCP sockets (EFA NOT used)"
    assert nccl_test.transport(LOG).startswith("EFA")


def test_print_manifests_needs_no_cluster(capsys):
    args = argparse.Namespace(
        stack="multinode", model=None, timeout=1, kubectl="false", keep=False, print_manifests=True
    )
    assert nccl_test.run(args) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "LeaderWorkerSet"]
