#!/usr/bin/env bash
# The test command: set up everything from nothing (system packages, .venv, pinned installs),
# check the import contracts (pyproject.toml [tool.importlinter]), then run the whole suite;
# napari tests run on a virtual display (pytest-xvfb). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/setup_env.sh
.venv/bin/lint-imports --no-cache
export NAPARI_FIBSEM_CACHE="${NAPARI_FIBSEM_CACHE:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
