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
# install built for this Python. Say which before pip starts: ask pip for the cached wheels of the
# pinned version, then keep one only if pip would take it, i.e. its tags fit this Python and it sits
# where pip's cache keys it (the sdist's URL from origin.json, this interpreter's name and version).
llama_pin=$(sed -n 's/^llama-cpp-python==\([0-9A-Za-z.+!]*\).*/\1/p' "$@" | head -n 1)
if [ -n "$llama_pin" ]; then
    llama_wheels=$("$VENV/bin/pip" cache list --format=abspath "llama_cpp_python-$llama_pin-" 2>/dev/null || true)
    llama_state=$(LLAMA_PIN="$llama_pin" LLAMA_WHEELS="$llama_wheels" "$VENV/bin/python" - <<'PY' 2>/dev/null || echo build
import hashlib, json, os, sys
from importlib import metadata

pin = os.environ["LLAMA_PIN"]
try:
    if metadata.version("llama_cpp_python") == pin:
        sys.exit(print("installed"))
except metadata.PackageNotFoundError:
    pass
from pip._vendor.packaging.tags import interpreter_name, interpreter_version, sys_tags
from pip._vendor.packaging.utils import parse_wheel_filename

supported = set(sys_tags())
for path in filter(None, os.environ["LLAMA_WHEELS"].splitlines()):
    name = os.path.basename(path)
    if not supported & set(parse_wheel_filename(name)[3]):
        continue
    origin = os.path.join(os.path.dirname(path), "origin.json")
    if os.path.isfile(origin):  # pip's key: sha224 of the link's URL (and hash) and this interpreter
        with open(origin) as fh:
            info = json.load(fh)
        key = {"url": info["url"], "interpreter_name": interpreter_name(), "interpreter_version": interpreter_version()}
        keys = [key]
        algorithm, _, digest = ((info.get("archive_info") or {}).get("hash") or "").partition("=")
        if digest:
            keys.append({**key, algorithm: digest})
        hashes = [hashlib.sha224(json.dumps(k, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
                                 .encode("ascii")).hexdigest() for k in keys]
        if not any(path.endswith(os.path.join(h[:2], h[2:4], h[4:6], h[6:], name)) for h in hashes):
            continue
    sys.exit(print("cached " + path))
print("build")
PY
)
    case "$llama_state" in
        installed)
            step "llama-cpp-python $llama_pin is installed already, so llama.cpp is not compiled again" ;;
        cached*)
            step "llama-cpp-python $llama_pin: pip's cache holds the wheel an earlier install built" \
                 "(${llama_state##*/}), so llama.cpp is not compiled again" ;;
        *)
            if ! command -v g++ >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
                step "error: no C/C++ compiler: llama-cpp-python compiles llama.cpp on its first install;" \
                     "install one (Debian/Ubuntu: apt-get install g++ make) and run make again"
                exit 1
            fi
            step "first install: llama-cpp-python compiles llama.cpp from source with g++ (measured 9-10 minutes" \
                 "on 2 cores, longer on a busy machine); pip caches the wheel, so later installs take seconds." \
                 "pip prints 'still running...' every minute while it builds." ;;
    esac
fi
step "upgrading pip"
"$VENV/bin/pip" install --upgrade pip
step "installing $* (pip output follows)"
"$VENV/bin/pip" install $(for f in "$@"; do printf -- '-r %s ' "$f"; done)
step "done: $VENV is ready"
