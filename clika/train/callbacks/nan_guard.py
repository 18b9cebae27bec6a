"""NaN / inf training loss: stop the run with a ClikaError naming the global step and the batch's sources
(`mode=skip`: drop that update, up to `max_skips` times, then stop)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy

from clika.util.errors import ClikaError
from clika.train.data.datamodule import MixtureDataModule
from clika.train.cluster.recovery import any_rank, warn_recovered

log = logging.getLogger(__name__)


def batch_items(trainer: pl.Trainer, batch: Any, batch_idx: int | None) -> list[tuple[str, int]] | None:
    """(source, item) pairs of a training batch: from a `source` / `lang` field when batches carry one, else
    from the datamodule (MixtureDataModule.batch_items); None when they cannot be identified."""
    if not isinstance(batch, Mapping):
        return None
    for key in ("source", "sources", "lang"):
        if key in batch:
            vals = batch[key]
            vals = [vals] if isinstance(vals, str) else list(vals)
            return [(str(v), -1) for v in vals]
    dm = trainer.datamodule
    if not isinstance(dm, MixtureDataModule):
        return None
    try:
        return dm.batch_items(batch, batch_idx)
    except Exception as e:  # noqa: BLE001 - diagnosis must never mask the real error
        log.debug("batch items not identified: %s", e)
        return None


def describe_batch(trainer: pl.Trainer, batch: Any, batch_idx: int | None) -> str:
    """'batch 3 of epoch 1, items from source zh (lang zh) x5, en (lang en) x3' or why that is unknown."""
    where = f"batch {batch_idx} of epoch {trainer.current_epoch}"
    found = batch_items(trainer, batch, batch_idx)
    if not found:
        return f"{where} (its source could not be identified: batches carry no source field)"
    dm = trainer.datamodule
    specs = dm.specs if isinstance(dm, MixtureDataModule) else {}
    counts = Counter(name for name, _ in found)
    parts = [f"{n} (lang {specs[n].lang if n in specs else '?'}) x{c}" for n, c in counts.most_common()]
    first = ", ".join(f"{n}#{j}" for n, j in found[:4] if j >= 0)
    return f"{where}, items from source {', '.join(parts)}" + (f" [{first}{', ...' if len(found) > 4 else ''}]"
                                                               if first else "")


class NanGuard(pl.Callback):
    """Stop on a non-finite training loss (before its backward touches the weights), naming step and source.

    mode=stop: raise ClikaError at once. mode=skip: drop the whole optimizer update of that batch (all
    gradients cleared before the step), up to `max_skips` times per run (kept in checkpoints), then stop.
    DeepSpeed steps inside its engine: there, skip falls back to stop.
    """

    MODES = ("stop", "skip")

    def __init__(self, mode: str = "stop", max_skips: int = 10):
        if mode not in self.MODES:
            raise ClikaError(f"callbacks.nan_guard.mode: unknown mode '{mode}'", fix=f"use one of {self.MODES}")
        self.mode, self.max_skips = mode, int(max_skips)
        self.skipped: list[int] = []
        self._batch: Any = None
        self._batch_idx: int | None = None
        self._drop_update = False

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": list(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = list(state.get("skipped", []))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch, self._batch_idx = batch, batch_idx

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        value = loss.detach()
        bad = any_rank(trainer, not bool(torch.isfinite(value).all()))
        if not bad:
            return
        step = trainer.global_step
        kind = "nan" if bool(torch.isnan(value).any()) else ("inf" if not bool(torch.isfinite(value).all())
                                                             else "non-finite on another rank")
        where = describe_batch(trainer, self._batch, self._batch_idx)
        can_skip = self.mode == "skip" and not isinstance(trainer.strategy, DeepSpeedStrategy)
        if can_skip and len(self.skipped) < self.max_skips:
            self.skipped.append(step)
            self._drop_update = True
            warn_recovered(f"train loss is {kind} at global step {step}, {where}: update skipped "
                           f"({len(self.skipped)}/{self.max_skips})")
            return
        budget = f" after {len(self.skipped)} skipped update(s) (max_skips={self.max_skips})" if can_skip else ""
        raise ClikaError(
            f"train loss is {kind} at global step {step}, {where}{budget}",
            fix="lower method.lr or raise warmup, check that source's data, or tolerate a few bad batches with "
                "callbacks.nan_guard.mode=skip callbacks.nan_guard.max_skips=N")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._drop_update:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None  # AdamW leaves parameters without a gradient (and their state) untouched

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._drop_update and not trainer.fit_loop._should_accumulate():
            self._drop_update = False
        self._batch = None
