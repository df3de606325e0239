"""efa-check.sh (sourced by every pod before its ranks start) against the layouts EFA software comes in.

Each case lays out /opt as an image would have it and runs the generated script for real, in a private
mount namespace where that tree is /opt (so the script reads the very paths it names):

- the EFA installer: libfabric in /opt/amazon/efa/lib, aws-ofi-nccl in its own /opt/amazon/ofi-nccl/lib
  (x86_64-linux-gnu/ below it on Ubuntu; lib64 on Amazon Linux), two folders;
- a plugin built from source into /opt/aws-ofi-nccl/install/lib;
- NVIDIA's EKS multi-node containerfile, which builds aws-ofi-nccl with --prefix=/opt/amazon/efa
  (../shared/reference/eks-multinode-tutorial/triton_trt_llm.containerfile): one folder;
- an installer built with --disable-nccl-net-library (aws-ofi-nccl configure.ac): only
  libnccl-net-ofi.so, which NCCL loads only with NCCL_NET_PLUGIN=ofi (NCCL src/plugin/plugin_open.cc
  tries libnccl-net-<name>.so; the default name is libnccl-net.so, src/plugin/net.cc).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components.serving.builders import multinode

pytestmark = pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare (and root)")

IMAGE_LD_LIBRARY_PATH = "/usr/local/tensorrt/lib/:/opt/tritonserver/backends/tensorrtllm"


def _run(tmp_path: Path, files: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    opt = tmp_path / "opt"
    opt.mkdir()
    for name in files:
        path = opt / name.removeprefix("/opt/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF")
    script = tmp_path / "efa-check.sh"
    script.write_text(multinode.efa_check_script())
    probe = (
        f"mount --bind {opt} /opt\n"
        f". {script}\n"
        'printf "LD_LIBRARY_PATH=%s\\nNCCL_NET_PLUGIN=%s\\n" "${LD_LIBRARY_PATH:-}" "${NCCL_NET_PLUGIN:-}"\n'
    )
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FI_PROVIDER": "efa", "LD_LIBRARY_PATH": IMAGE_LD_LIBRARY_PATH}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-euc", probe],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _found(result: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


@pytest.mark.parametrize(
    ("files", "folders", "plugin"),
    [
        (  # EFA installer on Ubuntu (what AWS's docs list in their EFA checks)
            ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net.so"],
            ["/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu", "/opt/amazon/efa/lib"],
            "",
        ),
        (  # EFA installer, plugin straight in lib/ (the layout the issue names)
            ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/amazon/ofi-nccl/lib/libnccl-net.so"],
            ["/opt/amazon/ofi-nccl/lib", "/opt/amazon/efa/lib"],
            "",
        ),
        (  # Amazon Linux paths
            ["/opt/amazon/efa/lib64/libfabric.so.1", "/opt/amazon/ofi-nccl/lib64/libnccl-net.so"],
            ["/opt/amazon/ofi-nccl/lib64", "/opt/amazon/efa/lib64"],
            "",
        ),
        (  # built from source
            ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/aws-ofi-nccl/install/lib/libnccl-net.so"],
            ["/opt/aws-ofi-nccl/install/lib", "/opt/amazon/efa/lib"],
            "",
        ),
        (  # NVIDIA's containerfile: both in the EFA prefix
            ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/amazon/efa/lib/libnccl-net.so"],
            ["/opt/amazon/efa/lib"],
            "",
        ),
        (  # --disable-nccl-net-library: only libnccl-net-ofi.so
            ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so"],
            ["/opt/amazon/ofi-nccl/lib", "/opt/amazon/efa/lib"],
            "ofi",
        ),
    ],
    ids=["installer-ubuntu", "installer-lib", "installer-al2", "source-build", "nvidia-containerfile", "ofi-only"],
)
def test_each_library_is_found_in_its_own_folder(tmp_path, files, folders, plugin):
    result = _run(tmp_path, files)
    found = _found(result)
    path = found["LD_LIBRARY_PATH"].split(":")
    # Both libraries' folders come first (the plugin dlopens libfabric.so.1), the image's own paths stay.
    assert sorted(path[: len(folders)]) == sorted(folders), found["LD_LIBRARY_PATH"]
    assert found["LD_LIBRARY_PATH"].endswith(IMAGE_LD_LIBRARY_PATH)
    assert found["NCCL_NET_PLUGIN"] == plugin
    libfabric = next(f for f in files if "libfabric" in f)
    ofi_nccl = next(f for f in files if "libnccl-net" in f)
    assert f"libfabric: {libfabric}" in result.stdout and f"aws-ofi-nccl: {ofi_nccl}" in result.stdout


def test_a_user_choice_of_plugin_is_kept(tmp_path):
    files = ["/opt/amazon/efa/lib/libfabric.so.1", "/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so"]
    assert _found(_run(tmp_path, files, {"NCCL_NET_PLUGIN": "custom"}))["NCCL_NET_PLUGIN"] == "custom"


def test_no_plugin_warns_that_nccl_falls_back_to_sockets(tmp_path):
    result = _run(tmp_path, [])
    assert _found(result)["LD_LIBRARY_PATH"] == IMAGE_LD_LIBRARY_PATH
    assert "aws-ofi-nccl: missing" in result.stdout
    assert "NCCL falls back to TCP sockets" in result.stderr and "aws-ofi-nccl" in result.stderr
