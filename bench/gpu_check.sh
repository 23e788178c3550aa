#!/usr/bin/env bash
# The device check (at most ~8 minutes): the guard's whole step (answer watch on every row,
# flagged rows' plans, the fused kernel) against an 8B-shaped decode step, on one GPU.
# Needs PyTorch, Triton and transformers; no vLLM, no network. Writes
# bench/results/gpu-check/results.json with the device named.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-}:$PWD"
python3 -m pytest -q tests/unit/test_kernel.py tests/unit/test_rows.py -p no:cacheprovider || true
timeout 420 python3 -m bench.gpu_check "$@"
