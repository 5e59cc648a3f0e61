#!/usr/bin/env bash
# The test command: set up everything from nothing (system packages, .venv, pinned installs),
# then run the whole suite; napari tests run on a virtual display (pytest-xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/setup_env.sh
export NAPARI_FIBSEM_CACHE="${NAPARI_FIBSEM_CACHE:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
