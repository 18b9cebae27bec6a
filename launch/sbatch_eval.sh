#!/bin/bash
# sbatch template for eval.py: one SLURM task per GPU, `srun python eval.py ...`; each rank scores its shard of
# every request set, results are gathered once and rank 0 writes (clika/eval/distributed.py).
#
#   sbatch launch/sbatch_eval.sh model=llama2_7b clika.protocol=paper
#   sbatch --ntasks-per-node=4 --gpus-per-node=4 --partition=gpu --account=myproj launch/sbatch_eval.sh model=llama2_13b
#
# All ranks share one output dir (by job id). No --signal / --requeue yet: a preempted evaluation starts over
# (resuming an evaluation is open work, issue #22). CLIKA_DRY_RUN=1 prints the srun line.
#SBATCH --job-name=clika-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=12:00:00
#SBATCH --output=outputs/slurm/%x-%j.out
#SBATCH --open-mode=append
set -euo pipefail

ROOT=${CLIKA_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
JOB=${SLURM_JOB_ID:?run this through sbatch (or set SLURM_JOB_ID for a dry run)}
OUT=${CLIKA_RUN_DIR:-$ROOT/outputs/sbatch/${SLURM_JOB_NAME:-clika-eval}-$JOB}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
CMD=(srun --kill-on-bad-exit=1 "$PYTHON" eval.py "output_dir=$OUT" "$@")

if [[ -n "${CLIKA_DRY_RUN:-}" ]]; then
  printf '%q ' "${CMD[@]}"; echo
  exit 0
fi
mkdir -p "$OUT"
echo "== attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )) of job $JOB on ${SLURM_JOB_NODELIST:-?} at $(date '+%F %T'), output $OUT =="
exec "${CMD[@]}"
