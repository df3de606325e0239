"""The serving images' pure builders and Dockerfiles (components/serving/builders/serving_image.py, images/).

- the content key (the image tag) changes when, and only when, one of its inputs changes: every input is
  varied here (base image, each build argument, each file's bytes, a file added, the buildspec);
- images/multinode/Dockerfile's steps checked against seed 002's containerfile
  (../shared/reference/eks-multinode-tutorial/triton_trt_llm.containerfile) and the EFA installer's own
  documented options (EC2 user guide efa-installer-containers.html: -y --skip-kmod --skip-limit-conf
  --no-verify; efa-start.html: --mpi=openmpi4);
- verify-image.sh, the image's own layout check, run for real against file trees laid out like the image;
- the builder's IAM document scoped to one repository, one log group and the contexts prefix.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from components.catalog import versions
from components.serving.builders import serving_image as si
from tests import k8s_schema

MULTINODE_DIR = si.IMAGES_DIR / si.MULTINODE
SEED_CONTAINERFILE = "eks-multinode-tutorial/triton_trt_llm.containerfile"


def _spec() -> si.ImageSpec:
    return si.multinode_spec(versions.TRITON_TRTLLM_ENGINE_IMAGE)


def _files() -> dict[str, bytes]:
    return si.context_files(MULTINODE_DIR)


# --------------------------------------------------------------------------- the content key


def test_the_key_is_stable_for_the_same_inputs():
    assert si.image_key(_spec(), _files()) == si.image_key(_spec(), _files())
    assert re.fullmatch(r"[0-9a-f]{64}", si.image_key(_spec(), _files()))
    tag = si.image_tag(_spec(), si.image_key(_spec(), _files()))
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", tag)  # an ECR tag


def _variants() -> dict[str, tuple[si.ImageSpec, dict[str, bytes]]]:
    spec, files = _spec(), _files()
    out = {"base image": (dataclasses.replace(spec, base_image=spec.base_image + "x"), files)}
    for name in spec.build_args:
        args = {**spec.build_args, name: spec.build_args[name] + "-changed"}
        out[f"build arg {name}"] = (dataclasses.replace(spec, build_args=args), files)
    for path in files:
        out[f"bytes of {path}"] = (spec, {**files, path: files[path] + b"\n"})
    out["a file added"] = (spec, {**files, "extra.sh": b"#!/bin/sh\n"})
    out["a file renamed"] = (spec, {("renamed.sh" if p == "verify-image.sh" else p): d for p, d in files.items()})
    out["image name"] = (dataclasses.replace(spec, name="other"), files)
    return out


@pytest.mark.parametrize("what", list(_variants()))
def test_the_key_changes_with_every_input(what):
    spec, files = _variants()[what]
    assert si.image_key(spec, files) != si.image_key(_spec(), _files()), what


def test_every_pinned_version_is_a_build_argument_and_so_in_the_key():
    """The catalog's pins reach the key through the build arguments (varied above, one by one)."""
    args = _spec().build_args
    assert args["EFA_INSTALLER_VERSION"] == versions.EFA_INSTALLER_VERSION
    assert args["EFA_INSTALLER_MPI"] == versions.EFA_INSTALLER_MPI
    assert args["NCCL_TESTS_VERSION"] == versions.NCCL_TESTS_VERSION
    assert args["NCCL_TESTS_GENCODE"].split() == list(versions.NCCL_TESTS_GENCODE)
    assert args["OPENSSH_VERSION_PREFIX"] == versions.OPENSSH_VERSION_PREFIX
    assert args["BASE_IMAGE"] == versions.TRITON_TRTLLM_ENGINE_IMAGE
    # with extra packages the argument changes, so does the key
    extra = si.multinode_spec(versions.TRITON_TRTLLM_ENGINE_IMAGE, ("htop",))
    assert si.image_key(extra, _files()) != si.image_key(_spec(), _files())


def test_the_builder_environment_is_in_the_key(monkeypatch):
    before = si.image_key(_spec(), _files())
    monkeypatch.setattr(versions, "CODEBUILD_IMAGE", "aws/codebuild/amazonlinux-x86_64-standard:6.0")
    assert si.image_key(_spec(), _files()) != before


def test_context_archive_is_deterministic_and_holds_every_file():
    files = _files()
    first, second = si.context_archive(files), si.context_archive(dict(reversed(list(files.items()))))
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {i.filename: archive.read(i) for i in archive.infolist()} == files
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
    assert modes["verify-image.sh"] == 0o755 and modes["Dockerfile"] == 0o644


def test_context_files_refuse_symlinks(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "link").symlink_to(tmp_path / "Dockerfile")
    with pytest.raises(ValueError, match="symlinks"):
        si.context_files(tmp_path)


# --------------------------------------------------------------------------- Dockerfile parsing


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped (Dockerfile reference:
    a backslash at the end of a line continues it; comment lines inside a continuation are removed)."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def _runs(instructions) -> list[str]:
    return [args for word, args in instructions if word == "RUN"]


def _efa_installer_flags(instructions) -> list[str]:
    (command,) = [r for r in _runs(instructions) if "efa_installer.sh" in r]
    words = shlex.split(command.split("efa_installer.sh", 1)[1].split("&&", 1)[0])
    return words


def test_the_efa_installer_runs_with_the_flags_aws_documents_for_containers():
    flags = _efa_installer_flags(dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text()))
    # efa-installer-containers.html: `./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify`
    assert {"-y", "--skip-kmod", "--skip-limit-conf", "--no-verify"} <= set(flags), flags
    # efa-start.html: --mpi=openmpi4 installs Open MPI 4.1 only (the version comes as a build argument)
    assert "--mpi=${EFA_INSTALLER_MPI}" in flags
    assert versions.EFA_INSTALLER_MPI in ("openmpi4", "openmpi5")
    # no kernel-side options: -g/--enable-gdr installs a kernel module (installer README), no use in a container
    assert not {"-g", "--enable-gdr", "--minimal", "--uninstall"} & set(flags)


def test_the_installer_is_downloaded_at_the_pinned_version():
    text = (MULTINODE_DIR / "Dockerfile").read_text()
    assert "https://efa-installer.amazonaws.com/aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz" in text
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions.EFA_INSTALLER_VERSION)


def test_every_build_argument_is_declared_and_every_required_arg_is_given():
    instructions = dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text())
    declared = {args.split("=", 1)[0] for word, args in instructions if word == "ARG"}
    required = {args for word, args in instructions if word == "ARG" and "=" not in args}
    given = set(_spec().build_args)
    assert given <= declared, given - declared
    assert required <= given, required - given
    assert instructions[1] == ("FROM", "${BASE_IMAGE}")


def _reference(path: str) -> Path | None:
    file = k8s_schema.REFERENCE_DIR / path
    if not k8s_schema.reference_available() or not file.is_file():
        k8s_schema.defer_reference_check(f"reference file {path}")
        return None
    return file


def test_steps_follow_the_seed_containerfile():
    """Each step the seed takes for EFA/MPI/SSH is here too (or replaced by the installer, as documented)."""
    ours = dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text())
    our_runs = " ".join(_runs(ours))
    seed_file = _reference(SEED_CONTAINERFILE)
    if seed_file is None:
        return
    seed = dockerfile_instructions(seed_file.read_text())
    seed_runs = " ".join(_runs(seed))
    # 1. Ubuntu's verbs libraries out, the same packages as the seed
    removed = re.search(r"apt-get remove -y --allow-change-held-packages ([a-z0-9 -]+)", seed_runs)
    assert removed
    assert set(removed.group(1).split()) <= set(
        re.search(r"apt-get remove -y --allow-change-held-packages ([a-z0-9 -]+)", our_runs).group(1).split()
    )
    # 2. HPC-X's Open MPI (and what depends on it) removed, OPAL_PREFIX reset, then set to the installer's
    for path in ("/opt/hpcx/ompi", "/usr/local/mpi", "/opt/hpcx/nccl_rdma_sharp_plugin"):
        assert f"rm -rf {path}" in seed_runs.replace("rm -fr", "rm -rf") or path in seed_runs
        assert path in our_runs
    envs = " ".join(args for word, args in ours if word == "ENV")
    assert "OPAL_PREFIX=/opt/amazon/openmpi" in envs and "OPAL_PREFIX=" in envs
    # 3. OpenSSH server and client
    assert "openssh-server" in seed_runs and "openssh-server" in our_runs and "openssh-client" in our_runs
    # 4. the EFA installer with the seed's container flags (less -g/-d: GDR kernel module, debug packages)
    seed_flags = set(_efa_installer_flags(seed)) - {"-g", "-d"}
    assert seed_flags <= set(_efa_installer_flags(ours)), seed_flags
    # 5. aws-ofi-nccl: the seed builds it into /opt/amazon/efa; the pinned installer ships it in
    #    /opt/amazon/ofi-nccl (efa-start.html), which verify-image.sh requires and LD_LIBRARY_PATH names
    assert "aws-ofi-nccl" in seed_runs and "/opt/amazon/ofi-nccl/lib" in envs
    verify = (MULTINODE_DIR / "verify-image.sh").read_text()
    assert "need aws-ofi-nccl '/opt/amazon/ofi-nccl/lib/" in verify
    # 6. nccl-tests built with MPI against the installer's Open MPI
    assert "MPI=1" in seed_runs and "MPI_HOME=/opt/amazon/openmpi" in seed_runs
    assert "MPI=1" in our_runs and "MPI_HOME=/opt/amazon/openmpi" in our_runs


def test_openssh_is_checked_against_the_pinned_series():
    text = (MULTINODE_DIR / "Dockerfile").read_text()
    assert "dpkg-query -W -f='${Version}' openssh-server" in text
    assert '"${OPENSSH_VERSION_PREFIX}"*)' in text


def test_the_image_checks_its_layout_before_it_is_pushed():
    instructions = dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text())
    assert instructions[-1] == ("RUN", "tritonllm-verify-image")


# --------------------------------------------------------------------------- verify-image.sh for real

IMAGE_FILES = (
    "usr/sbin/sshd",
    "usr/bin/ssh",
    "usr/bin/curl",
    "opt/amazon/openmpi/bin/mpirun",
    "opt/amazon/openmpi/bin/orted",
    "opt/amazon/openmpi/lib/libmpi.so.40",
    "opt/amazon/efa/lib/libfabric.so.1",
    "opt/amazon/efa/bin/fi_info",
    "opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net-ofi.so",
    "opt/nccl-tests/build/all_reduce_perf",
    "opt/tritonserver/bin/tritonserver",
    # the CUDA runtime under the name aws-ofi-nccl dlopen()s, in a folder of the loader's cache
    "etc/ld.so.conf.d/988_cuda-13.conf",
    "usr/local/cuda/targets/x86_64-linux/lib/libcudart.so",
)
CUDA_LIB = "/usr/local/cuda/targets/x86_64-linux/lib"


def _image_tree(root: Path, files=IMAGE_FILES) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{CUDA_LIB}\n".encode() if name.endswith(".conf") else b"\x7fELF")
    return root


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", str(MULTINODE_DIR / "verify-image.sh")],
        env={"PATH": os.environ["PATH"], "TRITONLLM_IMAGE_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_verify_image_accepts_the_layout_the_launch_scripts_use(tmp_path):
    result = _verify(_image_tree(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "aws-ofi-nccl: /opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net-ofi.so" in result.stdout
    assert result.stdout.rstrip().endswith("tritonllm-verify-image: ok")


@pytest.mark.parametrize(
    "left_out", ["usr/sbin/sshd", "opt/amazon/ofi-nccl/lib/x86_64-linux-gnu/libnccl-net-ofi.so", "usr/bin/curl"]
)
def test_verify_image_fails_naming_what_is_missing(tmp_path, left_out):
    result = _verify(_image_tree(tmp_path, [f for f in IMAGE_FILES if f != left_out]))
    assert result.returncode == 1
    assert "missing:" in result.stderr


def test_verify_image_fails_when_the_plugin_needs_a_library_the_image_lacks(tmp_path):
    """ldd of the plugin (a stand-in printing what ldd prints for a plugin built for CUDA 12 on a CUDA 13 base)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ldd").write_text(
        "#!/bin/sh\ncase \"$1\" in *libnccl-net*) echo '\tlibcudart.so.12 => not found'; "
        "echo '\tlibcuda.so.1 => not found' ;; esac\n"
    )
    (bin_dir / "ldd").chmod(0o755)
    root = _image_tree(tmp_path / "image")
    result = subprocess.run(
        ["/bin/sh", str(MULTINODE_DIR / "verify-image.sh")],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "TRITONLLM_IMAGE_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "libnccl-net-ofi.so does not load here: libcudart.so.12 => not found" in result.stderr
    assert "libcuda.so.1" not in result.stderr  # the driver's, present on the node at run time


def test_the_image_selects_the_installers_plugin_by_name(tmp_path):
    """NCCL_NET_PLUGIN=ofi in the image: NCCL loads libnccl-net-ofi.so (NCCL src/plugin/plugin_open.cc) whatever
    the base image sets (NGC images: aws-ofi, spcx), and verify-image.sh requires that very file."""
    envs = " ".join(a for w, a in dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text()) if w == "ENV")
    assert "NCCL_NET_PLUGIN=ofi" in envs.split()
    only_default_name = [f.replace("libnccl-net-ofi.so", "libnccl-net.so") for f in IMAGE_FILES]
    result = _verify(_image_tree(tmp_path, only_default_name))
    assert result.returncode == 1 and "missing: aws-ofi-nccl" in result.stderr


def test_verify_image_fails_when_the_loader_finds_no_unversioned_libcudart(tmp_path):
    """The installer's aws-ofi-nccl dlopen()s "libcudart.so" (aws/aws-ofi-nccl contrib/debian-template/rules:
    --enable-cudart-dynamic; src/nccl_ofi_cuda.cpp): a runtime-only CUDA (libcudart.so.13 alone) fails the build."""
    files = [f for f in IMAGE_FILES if not f.endswith("/libcudart.so")]
    result = _verify(_image_tree(tmp_path, [*files, f"{CUDA_LIB.lstrip('/')}/libcudart.so.13"]))
    assert result.returncode == 1
    assert "missing: libcudart.so" in result.stderr


def test_verify_image_looks_for_libcudart_where_the_loader_does(tmp_path):
    # in a folder of the loader's cache (ld.so.conf.d) ...
    assert (
        f"libcudart.so (dlopen()ed by aws-ofi-nccl): {CUDA_LIB}/libcudart.so" in _verify(_image_tree(tmp_path)).stdout
    )
    # ... not in a folder the loader does not search
    root = _image_tree(tmp_path / "no-conf", [f for f in IMAGE_FILES if not f.endswith(".conf")])
    assert _verify(root).returncode == 1
    # ... or on LD_LIBRARY_PATH (the image's ENV)
    result = subprocess.run(
        ["/bin/sh", str(MULTINODE_DIR / "verify-image.sh")],
        env={"PATH": os.environ["PATH"], "TRITONLLM_IMAGE_ROOT": str(root), "LD_LIBRARY_PATH": f"/opt/x:{CUDA_LIB}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def _cudart_step() -> str:
    (step,) = [
        r for r in _runs(dockerfile_instructions((MULTINODE_DIR / "Dockerfile").read_text())) if "libcudart" in r
    ]
    return step


def _run_cudart_step(tmp_path: Path, cache: list[str]) -> subprocess.CompletedProcess:
    """The Dockerfile's libcudart step, run by /bin/sh with an `ldconfig` that prints `cache` for -p."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = "".join(f"\t{line}\n" for line in [f"{len(cache)} libs found in cache `/etc/ld.so.cache'", *cache])
    (bin_dir / "ldconfig").write_text(f"#!/bin/sh\nif [ \"$1\" = -p ]; then printf '%s' {shlex.quote(listing)}; fi\n")
    (bin_dir / "ldconfig").chmod(0o755)
    return subprocess.run(
        ["/bin/sh", "-c", _cudart_step()],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_image_names_its_cuda_runtime_libcudart_so_when_only_the_versioned_one_is_there(tmp_path):
    lib = tmp_path / "cuda" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudart.so.13").write_bytes(b"\x7fELF")
    result = _run_cudart_step(tmp_path, [f"libcudart.so.13 (libc6,x86-64) => {lib}/libcudart.so.13"])
    assert result.returncode == 0, result.stderr
    assert os.readlink(lib / "libcudart.so") == "libcudart.so.13"  # next to it: in the loader's cache folder


def test_the_image_keeps_its_own_libcudart_so(tmp_path):
    lib = tmp_path / "cuda" / "lib"
    lib.mkdir(parents=True)
    result = _run_cudart_step(
        tmp_path,
        [
            f"libcudart.so.13 (libc6,x86-64) => {lib}/libcudart.so.13",
            f"libcudart.so (libc6,x86-64) => {lib}/libcudart.so",
        ],
    )
    assert result.returncode == 0, result.stderr
    assert "libcudart.so is in the image" in result.stdout
    assert not (lib / "libcudart.so").exists()


def test_verify_image_fails_while_hpcx_open_mpi_is_left(tmp_path):
    result = _verify(_image_tree(tmp_path, [*IMAGE_FILES, "opt/hpcx/ompi/bin/mpirun"]))
    assert result.returncode == 1 and "/opt/hpcx/ompi" in result.stderr


# --------------------------------------------------------------------------- buildspec, IAM, ECR


def test_buildspec_is_valid_yaml_that_builds_with_the_arguments_and_pushes():
    spec = yaml.safe_load(si.buildspec())
    assert spec["version"] == "0.2"
    commands = " ".join(c for phase in spec["phases"].values() for c in phase["commands"])
    assert "docker login --username AWS --password-stdin" in commands
    assert "$BUILD_ARGS" in commands and "docker push" in commands
    assert "CODEBUILD_BUILD_SUCCEEDING" in commands  # post_build runs after a failed build too


def test_build_args_are_quoted_for_the_shell():
    text = si.build_args_string({"A": "x y", "B": "$(reboot)"})
    assert shlex.split(text) == ["--build-arg", "A=x y", "--build-arg", "B=$(reboot)"]


def test_builder_policy_is_scoped_to_one_repository_log_group_and_prefix():
    repo = "arn:aws:ecr:us-east-1:123456789012:repository/tritonllm/serving"
    logs = "arn:aws:logs:us-east-1:123456789012:log-group:/tritonllm/tritonllm/image-builds"
    bucket = "arn:aws:s3:::models"
    doc = si.builder_policy(repository_arn=repo, log_group_arn=logs, bucket_arn=bucket)
    wildcard = [s for s in doc["Statement"] if s["Resource"] == "*"]
    assert wildcard == [
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}
    ]
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["PushToTheRepository"]["Resource"] == repo
    assert by_sid["BuildLogs"]["Resource"] == [logs, f"{logs}:*"]
    assert by_sid["ReadBuildContexts"]["Resource"] == f"{bucket}/{si.CONTEXT_PREFIX}/*"
    # CodeBuild's documented minimum service role (userguide setting-up-service-role.html, "S3BucketIdentity"),
    # on the context bucket only.
    assert by_sid["BuildContextBucketIdentity"] == {
        "Sid": "BuildContextBucketIdentity",
        "Effect": "Allow",
        "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
        "Resource": bucket,
    }
    assert not any(a.endswith("*") for s in doc["Statement"] for a in s["Action"])
    assert si.builder_trust_policy()["Statement"][0]["Principal"] == {"Service": "codebuild.amazonaws.com"}


def test_lifecycle_policy_expires_untagged_and_keeps_the_newest():
    rules = si.lifecycle_policy()["rules"]
    assert [r["rulePriority"] for r in rules] == [1, 2]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
    assert rules[1]["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": si.KEEP_IMAGES,
    }
    json.dumps(rules)


def test_repository_name():
    assert si.repository_name("tritonllm") == "tritonllm/serving"
    with pytest.raises(ValueError):
        si.repository_name("Bad_")


def test_failed_phases_name_status_and_messages():
    build = {
        "phases": [
            {"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
            {
                "phaseType": "BUILD",
                "phaseStatus": "FAILED",
                "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "exit status 1"}],
            },
            {"phaseType": "COMPLETED"},
        ]
    }
    assert si.failed_phases(build) == ["BUILD: FAILED (exit status 1)"]
