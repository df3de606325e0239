"""`make setup` (mk/setup-venv.sh) on a first install: it says before pip starts that llama.cpp
compiles for minutes and why, shows pip's own output (no --quiet) and a line per step with the
elapsed time, and stops at once, saying what to install, when there is no C/C++ compiler.
When pip will not compile (the pinned llama-cpp-python is installed, or pip's wheel cache holds
the wheel an earlier install built for this Python) it says so instead (issue 22).
Run for real with a stand-in virtualenv whose pip records how it was called and answers
`pip cache list` with the real pip over a wheel cache of the test's own (issue 13)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "mk" / "setup-venv.sh"
LLAMA_PIN = re.search(r"^llama-cpp-python==(\S+)", (REPO / "requirements-local.txt").read_text(), re.M).group(1)
PYTHON_TAG = "cp311"  # what the stand-in venv's python reports


def fake_venv(root: Path, llama_installed: str | None) -> Path:
    """A venv whose python reports `llama_installed` as llama-cpp-python's version (None: not installed)."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    version = f"echo {llama_installed}" if llama_installed else "exit 1"
    python.write_text("#!/bin/sh\n"
                      'case "$*" in\n'
                      f"  *importlib.metadata*) {version} ;;\n"
                      f"  *version_info*) echo {PYTHON_TAG} ;;\n"
                      "  *) exit 2 ;;\n"
                      "esac\n")
    pip = venv / "bin" / "pip"
    pip.write_text("#!/bin/sh\n"
                   f'if [ "$1" = cache ]; then exec "{sys.executable}" -m pip "$@"; fi\n'
                   f'echo "$@" >> {root / "pip.log"}\necho "Collecting something (from pip)"\n')
    python.chmod(0o755)
    pip.chmod(0o755)
    return venv


def cache_wheel(root: Path, filename: str) -> None:
    """A wheel in the test's pip cache, where pip keeps the wheels it built (wheels/<hash dirs>/)."""
    directory = root / "pip-cache" / "wheels" / "3f" / "a1" / "9c" / "0123456789abcdef"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_bytes(b"")


def tools_path(root: Path, with_compiler: bool) -> str:
    """A PATH with the basic tools the script uses, and g++ only if asked."""
    bin_dir = root / "tools"
    bin_dir.mkdir()
    for tool in ("sh", "date", "printf", "cat", "echo", "sed", "head"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if with_compiler:
        (bin_dir / "g++").symlink_to(shutil.which("true"))
    return str(bin_dir)


def run(root: Path, venv: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), "requirements-test.txt", "requirements-local.txt"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": path, "VENV": str(venv), "PYTHON": "python3", "HOME": str(root),
                               "PIP_CACHE_DIR": str(root / "pip-cache"), "PIP_CONFIG_FILE": os.devnull,
                               "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def test_first_install_announces_the_compile_then_shows_pip_progress(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=None)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=True))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    announce = next(i for i, ln in enumerate(lines) if "compiles llama.cpp from source" in ln)
    first_pip = next(i for i, ln in enumerate(lines) if "from pip" in ln)
    assert announce < first_pip, proc.stdout
    assert "minutes" in lines[announce] and "pip caches the wheel" in lines[announce]
    steps = [ln for ln in lines if re.match(r"setup \[\d+m\d{2}s\] ", ln)]
    assert len(steps) >= 4 and steps[-1].endswith("is ready"), steps
    calls = (tmp_path / "pip.log").read_text().splitlines()
    assert calls[-1].split() == ["install", "-r", "requirements-test.txt",
                                 "-r", "requirements-local.txt"]
    assert not any("--quiet" in c or " -q" in c for c in calls)


def test_later_installs_do_not_announce_a_compile(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=LLAMA_PIN)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=True))
    assert proc.returncode == 0 and "compiles llama.cpp" not in proc.stdout


def test_a_cached_wheel_is_not_announced_as_a_compile(tmp_path):
    """pip installs the wheel it built before: no compile, so no compiler needed and no '9-10 minutes'."""
    cache_wheel(tmp_path, f"llama_cpp_python-{LLAMA_PIN}-{PYTHON_TAG}-{PYTHON_TAG}-linux_x86_64.whl")
    venv = fake_venv(tmp_path, llama_installed=None)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=False))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiles llama.cpp" not in proc.stdout and "minutes" not in proc.stdout, proc.stdout
    assert (f"llama-cpp-python {LLAMA_PIN}: pip's cache holds the wheel an earlier install built "
            f"(llama_cpp_python-{LLAMA_PIN}-{PYTHON_TAG}-{PYTHON_TAG}-linux_x86_64.whl)") in proc.stdout
    assert (tmp_path / "pip.log").read_text().splitlines()[-1].startswith("install -r")


@pytest.mark.parametrize("installed, cached", [
    pytest.param(None, f"llama_cpp_python-0.0.1-{PYTHON_TAG}-{PYTHON_TAG}-linux_x86_64.whl", id="other-version-cached"),
    pytest.param(None, f"llama_cpp_python-{LLAMA_PIN}-cp39-cp39-linux_x86_64.whl", id="other-python-cached"),
    pytest.param(None, f"llama_cpp_python_extra-{LLAMA_PIN}-{PYTHON_TAG}-{PYTHON_TAG}-linux_x86_64.whl",
                 id="other-package-cached"),
    pytest.param("0.0.1", None, id="other-version-installed"),
])
def test_the_compile_is_announced_when_pip_will_build(tmp_path, installed, cached):
    if cached:
        cache_wheel(tmp_path, cached)
    venv = fake_venv(tmp_path, llama_installed=installed)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=True))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiles llama.cpp from source" in proc.stdout and "pip's cache holds" not in proc.stdout, proc.stdout


def test_no_compiler_stops_before_pip_with_what_to_install(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=None)
    path = tools_path(tmp_path, with_compiler=False)
    assert not any(shutil.which(c, path=path) for c in ("g++", "c++"))
    proc = run(tmp_path, venv, path)
    assert proc.returncode == 1
    assert "no C/C++ compiler" in proc.stdout and "apt-get install g++" in proc.stdout
    assert not (tmp_path / "pip.log").exists()


def test_makefile_installs_through_the_script():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("$(VENV)/.installed:"):].split("\n\n", 1)[0]
    assert "mk/setup-venv.sh" in recipe and "--quiet" not in recipe
    assert os.access(SCRIPT, os.R_OK)
