"""`make setup` (mk/setup-venv.sh) on a first install: it says before pip starts that llama.cpp
compiles for minutes and why, shows pip's own output (no --quiet) and a line per step with the
elapsed time, and stops at once, saying what to install, when there is no C/C++ compiler.
When pip will not compile (the pinned llama-cpp-python is installed, or pip's wheel cache holds
the wheel an earlier install built for this Python) it says so instead (issues 13 and 22).

Run for real: a real virtualenv (its own python and pip answer the script's questions), a wheel
cache of the test's own filled by that pip building a stand-in llama-cpp-python sdist, and a
`pip` that records the install commands instead of running them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "mk" / "setup-venv.sh"
_PIN = re.search(r"^llama-cpp-python==(\S+)", (REPO / "requirements-local.txt").read_text(), re.M)
assert _PIN is not None, "requirements-local.txt pins llama-cpp-python"
LLAMA_PIN = _PIN.group(1)

# A PEP 517 backend with no requirements: pip builds the stand-in sdist offline, in isolation.
BACKEND = """
import os, zipfile
NAME, VERSION = "llama_cpp_python", {version!r}
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = f"{{NAME}}-{{VERSION}}.dist-info"
    files = {{f"{{dist}}/METADATA": f"Metadata-Version: 2.1\\nName: llama-cpp-python\\nVersion: {{VERSION}}\\n",
             f"{{dist}}/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}}
    files[f"{{dist}}/RECORD"] = "".join(f"{{name}},,\\n" for name in [*files, f"{{dist}}/RECORD"])
    name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return name
"""


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(root),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INDEX": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A real venv (python -m venv, pip from ensurepip) and a pip wheel cache holding the wheel that
    venv's pip built from an sdist named llama_cpp_python-<pin>.tar.gz, as a first install leaves it."""
    root = tmp_path_factory.mktemp("setup-template")
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run(
        [str(base_python if base_python.exists() else sys.executable), "-m", "venv", str(root / "venv")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    src = root / "src" / f"llama_cpp_python-{LLAMA_PIN}"
    src.mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (src / "backend.py").write_text(BACKEND.format(version=LLAMA_PIN))
    sdist = root / f"llama_cpp_python-{LLAMA_PIN}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "-w", str(root / "out"), str(sdist)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, **_env(root)},
    )
    return root


def cached_wheels(root: Path) -> list[Path]:
    return sorted((root / "pip-cache" / "wheels").rglob("llama_cpp_python-*.whl"))


def setup_tree(template: Path, root: Path, *, cache: bool = True, installed: str | None = None) -> Path:
    """A copy of the template venv in `root` (with llama-cpp-python `installed` at that version, as a
    dist-info) and, if `cache`, of its wheel cache; its bin/pip records install commands in pip.log."""
    venv = root / "venv"
    shutil.copytree(template / "venv", venv, symlinks=True)
    if cache:
        shutil.copytree(template / "pip-cache", root / "pip-cache", symlinks=True)
    if installed:
        purelib = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dist = Path(purelib) / f"llama_cpp_python-{installed}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: llama-cpp-python\nVersion: {installed}\n")
    pip = venv / "bin" / "pip"
    pip.unlink()
    pip.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = cache ]; then exec "{venv / "bin" / "python"}" -m pip "$@"; fi\n'
        f'echo "$@" >> {root / "pip.log"}\necho "Collecting something (from pip)"\n'
    )
    pip.chmod(0o755)
    return venv


def tools_path(root: Path, with_compiler: bool) -> str:
    """A PATH with the basic tools the script uses, and g++ only if asked."""
    bin_dir = root / "tools"
    bin_dir.mkdir()
    for tool in ("sh", "date", "printf", "cat", "echo", "sed", "head"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if with_compiler:
        true = shutil.which("true")
        assert true is not None
        (bin_dir / "g++").symlink_to(true)
    return str(bin_dir)


def run(root: Path, venv: Path, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), "requirements-test.txt", "requirements-local.txt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(root, PATH=path, VENV=str(venv), PYTHON="python3"),
    )


def test_the_template_cache_is_what_pip_leaves(template):
    """The stand-in is real: pip built the wheel and filed it under its own key, with origin.json."""
    (wheel,) = cached_wheels(template)
    assert wheel.name == f"llama_cpp_python-{LLAMA_PIN}-py3-none-any.whl"
    assert (wheel.parent / "origin.json").is_file()
    assert len(wheel.relative_to(template / "pip-cache" / "wheels").parts) == 5  # ab/cd/ef/<rest>/<wheel>


def test_first_install_announces_the_compile_then_shows_pip_progress(template, tmp_path):
    venv = setup_tree(template, tmp_path, cache=False)
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


def test_later_installs_do_not_announce_a_compile(template, tmp_path):
    """The pinned version installed already: setup says so, and needs no compiler."""
    venv = setup_tree(template, tmp_path, cache=False, installed=LLAMA_PIN)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=False))
    assert proc.returncode == 0 and "compiles llama.cpp" not in proc.stdout and "pip's cache" not in proc.stdout
    assert f"llama-cpp-python {LLAMA_PIN} is installed already, so llama.cpp is not compiled again" in proc.stdout


@pytest.mark.parametrize("installed", [None, "0.0.1"], ids=["first-install", "upgrade"])
def test_a_cached_wheel_is_not_announced_as_a_compile(template, tmp_path, installed):
    """pip installs the wheel it built before: no compile, so no compiler needed and no '9-10 minutes'."""
    venv = setup_tree(template, tmp_path, installed=installed)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=False))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiles llama.cpp" not in proc.stdout and "minutes" not in proc.stdout, proc.stdout
    assert (
        f"llama-cpp-python {LLAMA_PIN}: pip's cache holds the wheel an earlier install built "
        f"(llama_cpp_python-{LLAMA_PIN}-py3-none-any.whl), so llama.cpp is not compiled again"
    ) in proc.stdout
    assert (tmp_path / "pip.log").read_text().splitlines()[-1].startswith("install -r")


def _move_entry(root: Path, new_parts: tuple[str, ...] | None = None, new_name: str | None = None) -> None:
    (wheel,) = cached_wheels(root)
    entry = wheel.parent
    if new_name:
        wheel.rename(entry / new_name)
    if new_parts:
        target = root / "pip-cache" / "wheels" / Path(*new_parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        entry.rename(target)


@pytest.mark.parametrize(
    "installed, change",
    [
        # pip keys its cache by the interpreter too: an entry under another key is another Python's
        pytest.param(
            None,
            {"new_parts": ("00", "11", "22", "3344556677889900aabbccddeeff00112233445566778899aabb")},
            id="cached-for-another-python",
        ),
        pytest.param(
            None,
            {"new_name": f"llama_cpp_python-{LLAMA_PIN}-cp27-cp27mu-linux_x86_64.whl"},
            id="cached-wheel-does-not-fit-this-python",
        ),
        pytest.param(None, {"new_name": "llama_cpp_python-0.0.1-py3-none-any.whl"}, id="cached-other-version"),
        pytest.param("0.0.1", None, id="other-version-installed-nothing-cached"),
    ],
)
def test_the_compile_is_announced_when_pip_will_build(template, tmp_path, installed, change):
    venv = setup_tree(template, tmp_path, installed=installed, cache=change is not None)
    if change:
        _move_entry(tmp_path, **change)
    proc = run(tmp_path, venv, tools_path(tmp_path, with_compiler=True))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compiles llama.cpp from source" in proc.stdout and "pip's cache holds" not in proc.stdout, proc.stdout


def test_no_compiler_stops_before_pip_with_what_to_install(template, tmp_path):
    venv = setup_tree(template, tmp_path, cache=False)
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
