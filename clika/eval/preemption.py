"""An evaluation under SLURM survives preemption, with training's requeue discipline
(clika/train/cluster/slurm_requeue.py): one requeue per preemption signal, by global rank 0, once the work is safe.

- `Preemption().install()` (first thing in eval.py's tasks), in a SLURM job only: SIGUSR1 (sbatch's
  `--signal=USR1@N`; submitit's signal under hydra/launcher=slurm) and SIGTERM (scancel, `scontrol requeue`, the
  scheduler preempting) are recorded instead of killing the process (or submitit requeueing at once).
- `watch(world)` is the `should_stop` the scoring loop checks between request sets
  (clika.scoring.api.score_sets): true on every rank once any rank received a signal (one all-reduce per set),
  so the ranks stop together after the set in flight; the journal (clika.scoring.journal) holds every finished set.
- `stop(...)`: global rank 0 requeues the job once (`scontrol requeue <job>`) after a requeue signal. SIGTERM is
  never requeued here: SLURM already decided. Every rank then exits with 128 + signal; the requeued attempt runs
  the same command and, with resume=auto (launch/sbatch_eval.sh; the launch checks insist under
  hydra/launcher=slurm), continues from the journal.
- An attempt that finished no request set is counted in `<output dir>/slurm_requeue.json`; after `MAX_STALLED`
  such attempts in a row the job is not requeued again, with one line naming the cause and the fix.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, NoReturn

import torch
import torch.distributed as dist

from clika.eval.distributed import EvalWorld
from clika.scoring.api import Stopped
from clika.train.cluster import requeue_ledger as ledger
from clika.train.cluster.requeue_ledger import STATE_FILE
from clika.train.cluster.slurm_signals import requeue_signals, restart_count, slurm_job_id, under_submitit

log = logging.getLogger(__name__)
MAX_STALLED = 2


def _say(msg: str) -> None:
    """Into the job's log: through logging where Hydra set it up (console and <run dir>/eval.log, which keeps it
    when srun stops relaying output after a requeue), else on stderr."""
    if logging.getLogger().handlers:
        log.warning(f"[clika] {msg}")
    else:
        print(f"[clika] {msg}", file=sys.stderr, flush=True)


class Preemption:
    """The preemption signals of a SLURM job: recorded by `install`, honoured between request sets."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.started = time.time()
        self.installed = False

    def install(self) -> "Preemption":
        if slurm_job_id() is None or threading.current_thread() is not threading.main_thread():
            return self  # not a SLURM job: signals keep their default action
        for sig in {int(signal.SIGTERM), *requeue_signals()}:
            signal.signal(sig, self._record)
        self.installed = True
        if under_submitit() and os.environ.get("SLURM_PROCID", "0") == "0":
            # submitit appends every attempt to one log (launch/sbatch_eval.sh prints this line under sbatch)
            print(f"== attempt {restart_count() + 1} of job {slurm_job_id()} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} ==", flush=True)
        return self

    def _record(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = int(signum)

    def watch(self, world: EvalWorld) -> Callable[[], bool] | None:
        """The scoring loop's `should_stop` (None outside a SLURM job: nothing to watch)."""
        if not self.installed:
            return None

        def should_stop() -> bool:
            if world.world > 1:  # every rank stops after the same set; SIGTERM (15) outranks USR1/USR2 (10, 12)
                flag = torch.tensor([self.signum or 0], device=world.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                self.signum = int(flag.item()) or None
            return self.signum is not None

        return should_stop

    def stop(self, world: EvalWorld, out_dir: Path, stopped: Stopped) -> NoReturn:
        """After the scoring loop stopped: rank 0 requeues (a requeue signal) or lets SLURM decide; all exit."""
        sig = int(self.signum or signal.SIGTERM)
        name = signal.Signals(sig).name
        if world.is_zero:
            _say(f"stopped after {name} with {stopped.remaining} of {stopped.total} request sets left "
                 f"({stopped.scored} scored in this attempt, every finished one journalled in {out_dir / '.journal'})")
            job = slurm_job_id()
            if job is not None and sig in requeue_signals():
                self._requeue(job, name, Path(out_dir), stopped)
        world.barrier()  # rank 0 has requeued before any rank exits (srun --kill-on-bad-exit would end it)
        raise SystemExit(128 + sig)

    def _requeue(self, job: str, name: str, out_dir: Path, stopped: Stopped) -> None:
        path = out_dir / STATE_FILE
        state = ledger.load(path, job)
        progress = stopped.scored > 0
        attempt = {"restart": restart_count(), "signal": name,
                   "seconds_after_start": round(time.time() - self.started, 1), "sets_scored": stopped.scored,
                   "sets_left": stopped.remaining}
        ledger.record(state, attempt, progress)
        reason = None
        if state["stalled"] >= MAX_STALLED:
            reason = (f"not requeueing job {job}: {state['stalled']} attempt(s) in a row were signalled ({name}) "
                      f"before they finished a request set: start-up and one set take longer than the signal lead. fix: "
                      f"resubmit with resume=auto and a longer lead, {ledger.longer_lead(name)}, or a longer --time")
        why = ledger.settle(path, state, job, reason)
        if why is not None:
            _say(why if reason else f"{why}; resubmit with resume=auto output_dir={out_dir} to continue")
            return
        _say(f"requeued job {job} after {name} (restart {restart_count() + 1} resumes with {stopped.remaining} "
             f"request sets left)")
