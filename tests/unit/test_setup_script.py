"""`make setup` (mk/setup-venv.sh) on a first install: it says before pip starts that llama.cpp
compiles for minutes and why, shows pip's own output (no --quiet) and a line per step with the
elapsed time, and stops at once, saying what to install, when there is no C/C++ compiler.
Run for real with a stand-in virtualenv whose pip records how it was called (issue 13)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "mk" / "setup-venv.sh"


def fake_venv(root: Path, llama_installed: bool) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexit {0 if llama_installed else 1}\n")  # `import llama_cpp`
    pip = venv / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> {root / "pip.log"}\necho "Collecting something (from pip)"\n')
    python.chmod(0o755)
    pip.chmod(0o755)
    return venv


def tools_path(root: Path, with_compiler: bool) -> str:
    """A PATH with the basic tools the script uses, and g++ only if asked."""
    bin_dir = root / "tools"
    bin_dir.mkdir()
    for tool in ("sh", "date", "printf", "cat", "echo"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if with_compiler:
        (bin_dir / "g++").symlink_to(shutil.which("true"))
    return str(bin_dir)


def run(root: Path, venv: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), "requirements-test.txt", "requirements-local.txt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "VENV": str(venv), "PYTHON": "python3"},
    )


def test_first_install_announces_the_compile_then_shows_pip_progress(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=False)
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
    assert calls[-1].split() == ["install", "-r", "requirements-test.txt", "-r", "requirements-local.txt"]
    assert not any("--quiet" in c or " -q" in c for c in calls)


def test_later_installs_do_not_announce_a_compile(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=True)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=True))
    assert proc.returncode == 0 and "compiles llama.cpp" not in proc.stdout


def test_no_compiler_stops_before_pip_with_what_to_install(tmp_path):
    venv = fake_venv(tmp_path, llama_installed=False)
    path = tools_path(tmp_path, with_compiler=False)
    assert not any(shutil.which(c, path=path) for c in ("g++", "c++"))
    proc = run(tmp_path, venv, path)
    assert proc.returncode == 1
    assert "no C/C++ compiler" in proc.stdout and "apt-get install g++" in proc.stdout
    assert not (tmp_path / "pip.log").exists()


def test_makefile_installs_through_the_script():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("$(VENV)/.installed:") :].split("\n\n", 1)[0]
    assert "mk/setup-venv.sh" in recipe and "--quiet" not in recipe
    assert os.access(SCRIPT, os.R_OK)
