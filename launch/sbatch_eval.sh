#!/bin/bash
# sbatch template for eval.py: one SLURM task per GPU, `srun python eval.py ...`; each rank scores its shard of
# every request set, results are gathered once and rank 0 writes (clika/eval/distributed.py).
#
#   sbatch launch/sbatch_eval.sh model=llama2_7b clika.protocol=paper
#   sbatch --ntasks-per-node=4 --gpus-per-node=4 --partition=gpu --account=myproj launch/sbatch_eval.sh model=llama2_13b
#
# All ranks share one output dir (by job id, so a requeued attempt finds it). Preemption, as for training: SIGUSR1
# 120 s before the time limit (--signal) or SIGTERM (scancel, the scheduler preempting) stops every rank after the
# request set in flight (the journal holds every finished set), rank 0 requeues the job once after SIGUSR1
# (`scontrol requeue`; clika/eval/preemption.py), and the requeued attempt continues with resume=auto without
# scoring a finished set again. CLIKA_DRY_RUN=1 prints the srun line.
#SBATCH --job-name=clika-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=12:00:00
#SBATCH --output=outputs/slurm/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=SIGUSR1@120
#SBATCH --requeue
set -euo pipefail

ROOT=${CLIKA_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
JOB=${SLURM_JOB_ID:?run this through sbatch (or set SLURM_JOB_ID for a dry run)}
OUT=${CLIKA_RUN_DIR:-$ROOT/outputs/sbatch/${SLURM_JOB_NAME:-clika-eval}-$JOB}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
CMD=(srun --kill-on-bad-exit=1 "$PYTHON" eval.py "output_dir=$OUT" resume=auto "$@")

if [[ -n "${CLIKA_DRY_RUN:-}" ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
mkdir -p "$OUT"
echo "== attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )) of job $JOB on ${SLURM_JOB_NODELIST:-?} at $(date '+%F %T'), output $OUT =="
exec "${CMD[@]}"
