#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
