#!/usr/bin/env bash
# Set up (idempotent) and run the main job: build the default archive, start the
# server, scale it to one worker, classify the bundled cat photo, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/mmsctl quickstart "$@"
