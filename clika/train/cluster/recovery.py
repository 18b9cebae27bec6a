"""What the recovery pieces share (NaN guard, preemption, checkpoint fallback, W&B offline fallback): the
warning a recovered run leaves, and decisions every rank takes together."""

from __future__ import annotations

import logging
import warnings

import lightning.pytorch as pl

log = logging.getLogger(__name__)


class ReliabilityWarning(UserWarning):
    """Something was recovered from (fallback checkpoint, W&B offline, skipped batch): worth a look."""


def warn_recovered(msg: str) -> None:
    log.warning(msg)
    warnings.warn(msg, ReliabilityWarning, stacklevel=3)


def any_rank(trainer: pl.Trainer, flag: bool) -> bool:
    """True on every rank when it is true on any (a decision all ranks must take together)."""
    if trainer.world_size > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bool(flag), all=False))
    return bool(flag)
