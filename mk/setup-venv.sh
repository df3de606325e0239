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
if ! "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
    # llama-cpp-python is published as a source package only: pip builds llama.cpp from C/C++.
    if ! command -v g++ >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
        step "error: no C/C++ compiler: llama-cpp-python compiles llama.cpp on its first install;" \
             "install one (Debian/Ubuntu: apt-get install g++ make) and run make again"
        exit 1
    fi
    step "first install: llama-cpp-python compiles llama.cpp from source with g++ (measured 9-10 minutes" \
         "on 2 cores, longer on a busy machine); pip caches the wheel, so later installs take seconds." \
         "pip prints 'still running...' every minute while it builds."
fi
step "upgrading pip"
"$VENV/bin/pip" install --upgrade pip
step "installing $* (pip output follows)"
"$VENV/bin/pip" install $(for f in "$@"; do printf -- '-r %s ' "$f"; done)
step "done: $VENV is ready"
