#!/usr/bin/env bash
# The main job: the end-to-end demo on bundled synthetic data (opens napari when a display exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/napari-fibsem demo --out outputs/demo "$@"
