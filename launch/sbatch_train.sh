#!/bin/bash
# sbatch template: one SLURM task per GPU, `srun python train.py ...`; Lightning's SLURMEnvironment reads the
# ranks from srun, so Lightning never starts processes itself and Hydra runs once per rank.
#
#   sbatch launch/sbatch_train.sh experiment=continued_pretrain_de model=llama2_7b strategy=deepspeed_zero2
#   sbatch --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 --partition=gpu --account=myproj --time=48:00:00 \
#          launch/sbatch_train.sh experiment=continued_pretrain_de ...
#
# The #SBATCH lines are defaults; sbatch's command-line options override them. trainer.devices and
# trainer.num_nodes are taken from the allocation (SLURM_NTASKS_PER_NODE, SLURM_JOB_NUM_NODES), so they
# always agree. All ranks share one run dir (by job id; kept across requeues) and resume=auto continues a
# requeued job from its last checkpoint (SIGUSR1: checkpoint, then CLiKA requeues once; clika/train/cluster/slurm_requeue.py).
# Every attempt appends to the output file under an "== attempt N" header. CLIKA_DRY_RUN=1 prints the srun line.
#SBATCH --job-name=clika
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
#SBATCH --output=outputs/slurm/%x-%j.out
#SBATCH --open-mode=append
set -euo pipefail

ROOT=${CLIKA_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
JOB=${SLURM_JOB_ID:?run this through sbatch (or set SLURM_JOB_ID for a dry run)}
NTASKS_PER_NODE=${SLURM_NTASKS_PER_NODE:-1}
NTASKS_PER_NODE=${NTASKS_PER_NODE%%(*}            # "8(x2)" -> 8
NODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
export CLIKA_RUN_DIR=${CLIKA_RUN_DIR:-$ROOT/outputs/sbatch/${SLURM_JOB_NAME:-clika}-$JOB}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export WANDB_MODE=${WANDB_MODE:-offline}          # compute nodes often lack network: launch/wandb_sync.sh later
CMD=(srun --kill-on-bad-exit=1 "$PYTHON" train.py
     "trainer.devices=$NTASKS_PER_NODE" "trainer.num_nodes=$NODES"
     "hydra.run.dir=$CLIKA_RUN_DIR" resume=auto "$@")

if [[ -n "${CLIKA_DRY_RUN:-}" ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
mkdir -p "$CLIKA_RUN_DIR"
# every attempt appends to the same output file (--open-mode=append): say which attempt this is
echo "== attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )) of job $JOB (${SLURM_JOB_NAME:-clika}, restart count" \
     "${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?} at $(date '+%F %T'), run dir $CLIKA_RUN_DIR =="
exec "${CMD[@]}"
