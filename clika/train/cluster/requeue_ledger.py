"""The requeue ledger both preemption paths keep (training's SlurmRequeue callback, eval.py's preemption): one
`slurm_requeue.json` per run / output dir recording each attempt of a SLURM job, the count of attempts in a row that
made no progress, and the `scontrol requeue` call itself. What counts as progress (a training step, a finished
request set) and what the messages say stay with each caller."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from clika.train.cluster.slurm_signals import under_submitit
from clika.util.jsonl import atomic_write_text

STATE_FILE = "slurm_requeue.json"


def load(path: Path, job: str) -> dict:
    """The ledger of `job` (a fresh one when the file is missing, unreadable or of another job)."""
    try:
        state = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        state = {}
    return state if state.get("job") == job else {"job": job, "stalled": 0, "attempts": []}


def record(state: dict, attempt: dict, progress: bool) -> None:
    """Append an attempt; a run of attempts without progress is counted in `stalled`, reset by progress."""
    state["stalled"] = 0 if progress else int(state.get("stalled", 0)) + 1
    state["attempts"].append({**attempt, "progress": progress})


def save(path: Path, state: dict) -> None:
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def longer_lead(signal_name: str) -> str:
    """How to give the job more time between the signal and the end: submitit's delay or sbatch's --signal."""
    return ("hydra.launcher.signal_delay_s=<more seconds>" if under_submitit()
            else f"--signal={signal_name[3:]}@<more seconds>")


def scontrol_requeue(job: str) -> str | None:
    """Requeue the job; None when SLURM accepted it, else why not."""
    try:
        r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr or r.stdout).strip()


def settle(path: Path, state: dict, job: str, refusal: str | None) -> str | None:
    """Record whether this attempt is requeued (not when there is a `refusal`), save the ledger, then requeue. None
    when SLURM accepted the requeue, else what to tell the user: the refusal, or `scontrol requeue <job> failed (<why>)`."""
    state["attempts"][-1]["requeued"] = refusal is None
    save(path, state)
    if refusal is not None:
        return refusal
    err = scontrol_requeue(job)
    return None if err is None else f"scontrol requeue {job} failed ({err})"
