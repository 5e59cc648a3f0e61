#!/usr/bin/env bash
# Create .venv if missing and install the pinned dependencies (requirements/constraints.txt).
# Re-running is cheap: nothing is reinstalled unless pyproject.toml or the pins changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${NAPARI_FIBSEM_EXTRAS:-test,onnx,sam,nnunet,fast}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.napari-fibsem-installed
want=$( (cat pyproject.toml requirements/constraints.txt; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (pinned: requirements/constraints.txt; extras: $EXTRAS)"
  # torch first, alone: its pinned build is the one large download-or-local-wheel step
  .venv/bin/python -m pip install -q -c requirements/constraints.txt torch torchvision
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[$EXTRAS]"
  # a .venv made before the move to PyQt6 still holds PyQt5, which qtpy would pick first
  .venv/bin/python -m pip uninstall -y -q PyQt5 PyQt5-Qt5 PyQt5_sip 2>/dev/null || true
  echo "$want" > "$stamp"
fi
