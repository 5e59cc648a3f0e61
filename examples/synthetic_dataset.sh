#!/usr/bin/env bash
# Example: a synthetic dataset from the command line, then a check of it.
# Usage: bash examples/synthetic_dataset.sh [OUT] [N] [SIZE]
set -euo pipefail
out=${1:-outputs/example_cli_dataset}
napari-fibsem synth --out "$out" --n "${2:-10}" --size "${3:-1024x1536}" --seed 0
napari-fibsem check "$out"
