"""SLURM job facts and the requeue signals from the first line of train.py on (no torch / Lightning imports).

A requeue signal (SIGUSR1; submitit's USR2 in a submitit job) that arrives while the process is still
starting would kill it (the default action) or let submitit requeue without a checkpoint: from the start it
is recorded instead, and `clika.train.cluster.slurm_requeue.SlurmRequeue` honours it once training runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

_STATE: dict[str, Any] = {"signum": None, "at": None, "started": time.time(), "preemption": None}


# ---------------------------------------------------------------- environment
def slurm_job_id(env=None) -> str | None:
    e = os.environ if env is None else env
    if e.get("SLURM_ARRAY_JOB_ID") and e.get("SLURM_ARRAY_TASK_ID"):
        return f"{e['SLURM_ARRAY_JOB_ID']}_{e['SLURM_ARRAY_TASK_ID']}"
    return e.get("SLURM_JOB_ID")


def restart_count(env=None) -> int:
    e = os.environ if env is None else env
    return int(e.get("SLURM_RESTART_COUNT") or 0)


def under_submitit(env=None) -> bool:
    return (os.environ if env is None else env).get("SUBMITIT_EXECUTOR") == "slurm"


def requeue_signals() -> set[int]:
    """SIGUSR1 (sbatch's `--signal=USR1@N`), plus submitit's signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL)."""
    sigs = {int(signal.SIGUSR1)}
    if under_submitit():
        from submitit.slurm.slurm import SlurmJobEnvironment

        sigs.add(int(SlurmJobEnvironment._usr_sig()))
    return sigs


# ---------------------------------------------------------------- signals before training
def _record(signum, frame) -> None:
    if _STATE["signum"] is None:
        _STATE["signum"], _STATE["at"] = signum, time.time()
    cb = _STATE["preemption"]
    if cb is not None and cb.received is None:
        cb.received = signum  # PreemptionCheckpoint checkpoints at the next batch end, then exits


def install_early_handlers() -> None:
    """In a SLURM job: record the requeue signals from now on (instead of dying, or submitit requeueing)."""
    if slurm_job_id() is None or threading.current_thread() is not threading.main_thread():
        return
    if not _STATE.get("installed"):
        _STATE["started"], _STATE["installed"] = time.time(), True
    for sig in requeue_signals():
        signal.signal(sig, _record)
    if under_submitit() and os.environ.get("SLURM_PROCID", "0") == "0":  # submitit appends every attempt to one log
        print(f"== attempt {restart_count() + 1} of job {slurm_job_id()} ({os.environ.get('SLURM_JOB_NAME', '?')}, "
              f"restart count {restart_count()}) on {os.environ.get('SLURM_JOB_NODELIST', '?')} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')} ==", flush=True)
