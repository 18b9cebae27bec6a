#!/bin/bash
# torchrun on N nodes x G GPUs: run this same command on every node (or once per node from srun / pdsh).
# Rendezvous from the environment:
#   NNODES (default 1), NPROC_PER_NODE (default: GPUs on this node, else 1),
#   MASTER_ADDR (rendezvous host; default: first host of SLURM_JOB_NODELIST, else localhost),
#   MASTER_PORT (default 29500), RDZV_ID (shared run id; default SLURM_JOB_ID, else "clika").
#
#   NNODES=2 MASTER_ADDR=node001 RDZV_ID=exp42 launch/torchrun_multinode.sh experiment=continued_pretrain_de \
#       strategy=deepspeed_zero2 trainer=gpu
#
# Lightning detects torchrun (TorchElasticEnvironment) and never starts processes itself. trainer.devices /
# trainer.num_nodes are set from NPROC_PER_NODE / NNODES, and every rank on every node gets the same
# run dir (CLIKA_RUN_DIR, derived from RDZV_ID). CLIKA_DRY_RUN=1 prints the command.
set -euo pipefail

ROOT=${CLIKA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
NNODES=${NNODES:-${SLURM_JOB_NUM_NODES:-1}}
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
  NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | wc -l || true)
  [[ "${NPROC_PER_NODE:-0}" -gt 0 ]] || NPROC_PER_NODE=1
fi
if [[ -z "${MASTER_ADDR:-}" ]]; then
  if [[ -n "${SLURM_JOB_NODELIST:-}" ]] && command -v scontrol >/dev/null; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  else
    MASTER_ADDR=localhost
  fi
fi
MASTER_PORT=${MASTER_PORT:-29500}
RDZV_ID=${RDZV_ID:-${SLURM_JOB_ID:-clika}}
export CLIKA_RUN_DIR=${CLIKA_RUN_DIR:-$ROOT/outputs/torchrun/$RDZV_ID}
export WANDB_MODE=${WANDB_MODE:-offline}

CMD=("$PYTHON" -m torch.distributed.run
     --nnodes="$NNODES" --nproc-per-node="$NPROC_PER_NODE"
     --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$RDZV_ID"
     train.py "trainer.devices=$NPROC_PER_NODE" "trainer.num_nodes=$NNODES"
     "hydra.run.dir=$CLIKA_RUN_DIR" resume=auto "$@")

if [[ -n "${CLIKA_DRY_RUN:-}" ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
exec "${CMD[@]}"
