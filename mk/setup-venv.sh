#!/bin/sh
# `make setup`: create the virtualenv and install every requirement, saying up front what takes
# long and printing a line per step with the time elapsed. Called by the Makefile with
#   PYTHON (interpreter that creates the venv), VENV (its directory) and the requirement files as arguments.
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
start=$(date +%s)
step() {
    now=$(date +%s)
    elapsed=$((now - start))
    printf 'setup [%dm%02ds] %s\n' $((elapsed / 60)) $((elapsed % 60)) "$*"
}

if [ ! -x "$VENV/bin/python" ]; then
    step "creating the virtualenv $VENV ($PYTHON -m venv)"
    "$PYTHON" -m venv "$VENV"
fi
# llama-cpp-python is published as a source package only: pip compiles llama.cpp from C/C++ (minutes)
# unless the pinned version is installed already or pip's wheel cache holds the wheel an earlier
# install built for this Python (then the install takes seconds). Say which before pip starts.
llama_pin=$(sed -n 's/^llama-cpp-python==\([0-9A-Za-z.+!]*\).*/\1/p' "$@" | head -n 1)
if [ -n "$llama_pin" ]; then
    llama_installed=$("$VENV/bin/python" -c \
        'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)
    if [ "$llama_installed" != "$llama_pin" ]; then
        python_tag=$("$VENV/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
        # pip names the wheel it builds llama_cpp_python-<version>-<tag>-<tag>-<platform>.whl
        llama_wheel=$("$VENV/bin/pip" cache list --format=abspath "llama_cpp_python-$llama_pin-$python_tag" \
                      2>/dev/null | head -n 1 || true)
        if [ -n "$llama_wheel" ]; then
            step "llama-cpp-python $llama_pin: pip's cache holds the wheel an earlier install built" \
                 "(${llama_wheel##*/}), so llama.cpp is not compiled again"
        elif ! command -v g++ >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
            step "error: no C/C++ compiler: llama-cpp-python compiles llama.cpp on its first install;" \
                 "install one (Debian/Ubuntu: apt-get install g++ make) and run make again"
            exit 1
        else
            step "first install: llama-cpp-python compiles llama.cpp from source with g++ (measured 9-10 minutes" \
                 "on 2 cores, longer on a busy machine); pip caches the wheel, so later installs take seconds." \
                 "pip prints 'still running...' every minute while it builds."
        fi
    fi
fi
step "upgrading pip"
"$VENV/bin/pip" install --upgrade pip
step "installing $* (pip output follows)"
"$VENV/bin/pip" install $(for f in "$@"; do printf -- '-r %s ' "$f"; done)
step "done: $VENV is ready"
