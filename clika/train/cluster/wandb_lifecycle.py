"""The W&B run across preempted attempts: never let a dead W&B service crash a job after its checkpoint.

SLURM signals every process of a job step on requeue / scancel / preemption, the W&B service process
(wandb-core) included: it dies on the SIGTERM while training is still saving its preemption checkpoint.
Every later W&B call (a metric logged by the checkpoint's evaluation, the run's atexit teardown) then raised
`ConnectionResetError: Connection lost` and the attempt exited 1 with a traceback. Here:
- `guarded(logger, fn, ...)`: a W&B logging call that fails stops W&B logging for this attempt with one
  warning (the offline run keeps what was written; the next attempt continues the same run id);
- `end_attempt(trainer)`: on a preemption exit, finish the W&B run (marked preempting) while the service is
  alive and then shut the service down (`wandb.teardown()`), else release the dead connection quietly, so
  nothing raises at exit. The shutdown matters even after a clean finish: a requeue (ours or the scheduler's)
  SIGTERMs the still-running service, and W&B's own atexit hook then printed the `Connection lost` traceback
  into the job log (seen in CI; reproduced in tests/train/test_wandb_lifecycle.py).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


def _release_connection() -> None:
    """Shut down this process's W&B service (or drop the connection to a dead one); W&B's atexit hook is
    unregistered first, so the process exits without talking to a service that a signal may have killed."""
    try:
        import wandb

        wandb.teardown()
    except Exception:  # noqa: BLE001 - the service is gone; the point is only that nothing raises at exit
        pass


def guarded(logger: Any, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call a W&B logging method; on failure warn once, release the connection and ignore further calls."""
    if getattr(logger, "_clika_broken", False):
        return None
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - W&B trouble must never stop training or its checkpoint
        logger._clika_broken = True
        log.warning("W&B logging stopped for this attempt (%s: %s); the offline run keeps what was logged "
                    "and a resumed run continues it", type(e).__name__, str(e).splitlines()[0][:160] if str(e) else "")
        _release_connection()
        return None


def end_attempt(trainer: Any) -> None:
    """A preempted attempt ends: finish its W&B run (marked preempting) or, with the service dead, let go."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in getattr(trainer, "loggers", []):
        if not isinstance(logger, WandbLogger) or logger._experiment is None:
            continue
        if not getattr(logger, "_clika_broken", False):
            run = logger._experiment
            try:
                run.mark_preempting()
                run.finish(exit_code=1)  # resumable: the next attempt continues the same run id
            except Exception as e:  # noqa: BLE001
                logger._clika_broken = True
                log.warning("W&B run not finished cleanly (%s); the offline run keeps what was logged",
                            type(e).__name__)
        _release_connection()  # the service stops now, before a requeue's SIGTERM could kill it under W&B's atexit
