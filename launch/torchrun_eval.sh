#!/bin/bash
# eval.py on one node's GPUs (or CPU ranks) with torchrun: each rank scores its shard, rank 0 writes.
#   NPROC_PER_NODE=4 launch/torchrun_eval.sh model=llama2_7b clika.protocol=paper
# NPROC_PER_NODE defaults to the GPUs on this node, else 1; OUT (default outputs/torchrun-eval/<time>) is the
# output dir every rank shares. CLIKA_DRY_RUN=1 prints the command.
set -euo pipefail

ROOT=${CLIKA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | wc -l || true)
  [[ "${NPROC_PER_NODE:-0}" -gt 0 ]] || NPROC_PER_NODE=1
fi
OUT=${OUT:-$ROOT/outputs/torchrun-eval/$(date +%Y-%m-%d_%H-%M-%S)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
CMD=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$NPROC_PER_NODE" eval.py "output_dir=$OUT" "$@")

if [[ -n "${CLIKA_DRY_RUN:-}" ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
exec "${CMD[@]}"
