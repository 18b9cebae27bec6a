#!/bin/bash
# Upload offline W&B runs: `wandb sync` over every offline-run-* dir under a folder, each with a timeout.
#   launch/wandb_sync.sh [DIR=outputs] [TIMEOUT_S=600]
#   WANDB_API_KEY=... launch/wandb_sync.sh outputs/train/runs/2025-01-01_12-00-00 300
# Runs already synced (wandb leaves a *.synced marker) are skipped; exit code 1 if any sync failed / timed out.
set -uo pipefail

DIR=${1:-outputs}
TIMEOUT_S=${2:-600}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WANDB=${WANDB:-$ROOT/.venv/bin/wandb}
command -v "$WANDB" >/dev/null 2>&1 || WANDB=wandb
[[ -d "$DIR" ]] || { echo "error: $DIR is not a directory" >&2; exit 2; }

failed=0; n=0
while IFS= read -r -d '' run; do
  if compgen -G "$run/*.wandb.synced" >/dev/null; then
    echo "skip (synced) $run"; continue
  fi
  n=$((n + 1))
  echo "sync $run"
  if ! timeout "$TIMEOUT_S" "$WANDB" sync "$run"; then
    echo "FAILED or timed out after ${TIMEOUT_S}s: $run" >&2
    failed=1
  fi
done < <(find "$DIR" -type d -name 'offline-run-*' -print0 | sort -z)
echo "$n offline run(s) processed under $DIR"
exit $failed
