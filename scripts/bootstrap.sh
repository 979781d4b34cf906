#!/usr/bin/env bash
# Set up everything mmsctl needs on a fresh Debian/Ubuntu machine:
# Java 17 (MMS's frontend) if `java` is missing, a Python 3.11 venv in .venv with
# the pinned wheels (runtime, tests, and the documentation site's mkdocs), and mmsctl itself (editable).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MMSCTL_VENV:-.venv}"

if ! command -v java >/dev/null 2>&1; then
    echo "bootstrap: installing OpenJDK 17 (headless) for MMS's frontend" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "bootstrap: mxnet 1.9.1 with numpy<1.24 needs Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -r requirements/runtime.txt -r requirements/test.txt -r requirements/docs.txt
# onnxruntime separately and --no-deps: it must never move numpy off 1.23.5 (requirements/onnxruntime.txt).
"${PIP[@]}" --no-deps -r requirements/onnxruntime.txt
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" -c 'import mxnet, numpy; assert numpy.__version__ == "1.23.5", numpy.__version__'
"$VENV/bin/python" -c 'import onnx, onnxruntime; onnx.mapping'
echo "bootstrap: ready ($VENV, $("$VENV/bin/python" --version), $(java -version 2>&1 | head -n1))" >&2
