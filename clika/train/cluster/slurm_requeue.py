"""Who requeues a preempted SLURM job, and when it should stop: one owner, one requeue per preemption.

Three parties could react to the time-limit signal (`--signal=USR1@N`, submitit's `USR2@signal_delay_s`):
Lightning's SLURM environment (auto-requeue on SIGUSR1: an extra `hpc_ckpt_N.ckpt` written from inside the
signal handler, at any point of a step, then `scontrol requeue`), submitit (on its signal: `scontrol
requeue`, then `sys.exit` from inside the handler, before any checkpoint), and CLiKA's `PreemptionCheckpoint`
(checkpoint at the next batch end, on every rank together). This project's choice: CLiKA owns it under
sbatch and under the submitit launcher alike.
- Lightning's auto-requeue is off (`cluster_plugins()`: `SLURMEnvironment(auto_requeue=False)`).
- `install_early_handlers()` (first thing in `train()`) takes the requeue signals (SIGUSR1, and submitit's
  signal in a submitit job) from the default action (which kills the process) and from submitit's handler,
  and records them; a signal during start-up is honoured once training runs.
- `SlurmRequeue` (callback): when `PreemptionCheckpoint` has saved and the run exits on a requeue signal,
  global rank 0 finishes the W&B run and runs `scontrol requeue <job>` once. SIGTERM (scancel, `scontrol
  requeue`, the scheduler preempting) is never requeued here: SLURM already decided.
- Attempts that make no progress (signalled before their first training step: start-up longer than the
  signal lead) are counted in `<run dir>/slurm_requeue.json`; after `max_stalled` in a row the job is not
  requeued again, with one line naming the cause and the fix. Under submitit `hydra.launcher.max_num_timeout`
  bounds the requeues as before.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import lightning.pytorch as pl

from clika.train.callbacks.preemption import PreemptionCheckpoint
from clika.train.cluster import requeue_ledger as ledger
from clika.train.cluster.requeue_ledger import STATE_FILE
from clika.train.cluster.slurm_signals import _STATE, requeue_signals, restart_count, slurm_job_id, under_submitit


def cluster_plugins() -> list:
    """Trainer plugins: in a SLURM job, Lightning's SLURM environment without its own auto-requeue."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _say(msg: str) -> None:
    print(f"[clika] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the callback
class SlurmRequeue(pl.Callback):
    """Requeue a SLURM job once per preemption signal, after its checkpoint; stop when attempts stall."""

    def __init__(self, max_stalled: int = 2, max_requeues: int | None = None):
        self.max_stalled = int(max_stalled)
        self.max_requeues = max_requeues
        self._start_step: int | None = None
        self._first_step_at: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        cb = next((c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)), None)
        _STATE["preemption"] = cb
        if cb is not None and cb.received is None and _STATE["signum"] is not None:
            cb.received = _STATE["signum"]

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step, self._first_step_at = trainer.global_step, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._first_step_at is None and self._start_step is not None and trainer.global_step > self._start_step:
            self._first_step_at = time.time()

    def _limit(self) -> int | None:
        if self.max_requeues is not None:
            return int(self.max_requeues)
        if under_submitit():
            try:
                from hydra.core.hydra_config import HydraConfig

                return int(HydraConfig.get().launcher.max_num_timeout)
            except Exception:  # noqa: BLE001 - no Hydra job config: no count limit
                return None
        return None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        cb = _STATE["preemption"]
        sig = (cb.received if cb is not None else None) or _STATE["signum"]
        if sig is None or not isinstance(exception, SystemExit):
            return
        from clika.train.cluster.wandb_lifecycle import end_attempt

        end_attempt(trainer)  # any preemption: the W&B run ends cleanly (or lets go of a dead service)
        job = slurm_job_id()
        if job is None or int(sig) not in requeue_signals() or not trainer.is_global_zero:
            return
        self._decide_and_requeue(trainer, job, int(sig))

    def _decide_and_requeue(self, trainer, job: str, sig: int) -> None:
        name = signal.Signals(sig).name
        restart = restart_count()
        path = Path(trainer.default_root_dir) / STATE_FILE
        state = ledger.load(path, job)
        at = _STATE["at"] or time.time()
        after = at - _STATE["started"]
        progress = self._first_step_at is not None and at > self._first_step_at
        ledger.record(state, {"restart": restart, "signal": name, "seconds_after_start": round(after, 1),
                              "start_step": self._start_step, "end_step": trainer.global_step}, progress)
        limit = self._limit()
        reason = None
        if state["stalled"] >= self.max_stalled:
            reason = (f"not requeueing job {job}: {state['stalled']} attempt(s) in a row were signalled ({name}) before "
                      f"their first training step (this one {after:.0f}s after it started): start-up takes longer "
                      f"than the signal lead. fix: resubmit with a longer lead, {ledger.longer_lead(name)}, or a "
                      f"longer --time")
        elif limit is not None and restart >= limit:
            reason = (f"not requeueing job {job}: it was requeued {restart} time(s) already "
                      f"(hydra.launcher.max_num_timeout={limit}). fix: resubmit with resume=auto to continue")
        why = ledger.settle(path, state, job, reason)
        if why is not None:
            _say(why if reason else f"{why}; resubmit with resume=auto to continue")
            return
        _say(f"requeued job {job} after {name} (restart {restart + 1} resumes from step {trainer.global_step})")
        # SLURM now sends SIGTERM to this job's processes: the checkpoint is written and W&B finished, so
        # let the exit finish instead of re-entering the preemption handler.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
