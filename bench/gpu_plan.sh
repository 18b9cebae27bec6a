#!/usr/bin/env bash
# GPU plan (one GPU, < 10 minutes): MFU of full fine-tuning and LoRA on gemma3_270m in bf16 (plain loop and the
# project's Lightning module) and evaluation items/s (letter scorer vs official generate vs lm-eval vs bare forward).
# Every printed figure carries the GPU's name; all figures land in bench/gpu_results.json.
#   bash bench/gpu_plan.sh               # on the GPU machine (CUDA torch installed: make setup TORCH=...)
#   bash bench/gpu_plan.sh --dry-run     # CPU smoke of the same code paths (tiny model, minimal sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
if [ "${1:-}" != "--dry-run" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
exec timeout 590 "$PY" bench/gpu_plan.py "$@"
