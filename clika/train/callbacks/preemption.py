"""Preemption: SIGTERM / SIGUSR1 (SLURM preemption) -> a checkpoint at the next batch end (or from
`on_exception` when Lightning aborts mid-validation), then exit with 128 + signal.

The checkpoint's line also goes to the run's log file (`<run dir>/train.log`, through logging): after `scancel`
or a requeue, srun stops relaying the job's output to the sbatch output file, so a line printed then is lost
there (seen on the local SLURM: the checkpoint was written, its line was not in the job's output)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from clika.train.cluster.recovery import any_rank

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """SIGTERM / SIGUSR1 -> save a checkpoint (top-k file + last.ckpt) at the next training batch end, then exit.

    Handlers are installed at train start, after Lightning's own (which they call: Lightning's SIGTERM
    flag, SLURM auto-requeue on SIGUSR1), and restored at teardown. A signal during validation or an
    evaluation callback is honoured from `on_exception` when Lightning aborts there. All ranks decide
    together. `exit_code=None` stops training normally instead (the rest of `train()` still runs).
    """

    def __init__(self, signals: Sequence[str] = ("SIGTERM", "SIGUSR1"), exit: bool = True):
        self.signals = [getattr(signal, s) if isinstance(s, str) else signal.Signals(s) for s in signals]
        self.exit = exit
        self.received: int | None = None
        self.saved_path: str | None = None
        self._previous: dict[int, Any] = {}
        self._saved_step: int | None = None

    # ---- handlers
    def _handler(self, signum, frame) -> None:
        self.received = signum
        print(f"[clika] received {signal.Signals(signum).name}: checkpoint at the end of this batch, then exit",
              file=sys.stderr, flush=True)
        prev = self._previous.get(signum)
        if callable(prev):
            prev(signum, frame)

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, prev in self._previous.items():
            if signal.getsignal(sig) == self._handler:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous = {}

    # ---- saving
    def save(self, trainer: "pl.Trainer") -> str:
        """Checkpoint now through the run's ModelCheckpoint (so last.ckpt and top-k stay consistent)."""
        step = trainer.global_step
        cb = trainer.checkpoint_callback
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            cands = cb._monitor_candidates(trainer)
            if cb._last_global_step_saved != step:
                cb._save_topk_checkpoint(trainer, cands)
            if cb._last_global_step_saved != step:  # top-k declined (monitored metric): save anyway
                cb._save_checkpoint(trainer, cb.format_checkpoint_name(cands))
            if cb.save_last:
                cb._save_last_checkpoint(trainer, cands)
            path = cb.last_model_path if cb.save_last else cb._last_checkpoint_saved
        else:
            path = str(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
            if trainer.is_global_zero and os.path.islink(path):
                os.remove(path)  # never write through a link into an older checkpoint
            trainer.save_checkpoint(path)
        self._saved_step, self.saved_path = step, str(path)
        signame = signal.Signals(self.received).name if self.received else "an abort"
        log.warning("[clika] preemption checkpoint at step %d (after %s): %s", step, signame, path)
        return str(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not any_rank(trainer, self.received is not None):
            return
        if self._saved_step != trainer.global_step:
            self.save(trainer)
        trainer.should_stop = True
        if self.exit:
            raise SIGTERMException(128 + int(self.received or signal.SIGTERM))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        preempted = self.received is not None or isinstance(exception, SIGTERMException)
        if isinstance(exception, SystemExit) and self.received is not None and not exception.code:
            # Lightning's own SIGTERM check (end of the batch loop) may raise first, with no exit code;
            # the scheduler must still see 128 + signal, so set it on the exception being re-raised.
            exception.code = 128 + int(self.received)
        if preempted and self._saved_step != trainer.global_step and trainer.state.fn == "fit" \
                and not trainer.sanity_checking:
            try:
                self.save(trainer)
            except Exception as e:  # noqa: BLE001 - already exiting; say why there is no checkpoint
                log.warning("[clika] preemption checkpoint failed: %s", e)
