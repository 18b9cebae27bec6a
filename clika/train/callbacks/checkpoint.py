"""Training callbacks: checkpoint at a step interval and at the final step; mixture summary logging."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also saves after the last training step (mid-epoch when max_steps ends it).

    Saving in on_train_batch_end keeps the loop state mid-epoch, so resuming with a larger max_steps
    continues at the exact next batch rather than at the next epoch.
    """

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        last_step = 0 < trainer.max_steps <= trainer.global_step or trainer.should_stop
        last_epoch = (trainer.max_epochs or -1) > 0 and trainer.current_epoch + 1 >= trainer.max_epochs
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch and last_epoch
        if (last_step or last_batch) and self._last_global_step_saved != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


class MixtureLogger(pl.Callback):
    """Logs the configured and realised token share per language and the packing efficiency once."""

    def on_train_start(self, trainer: "pl.Trainer", pl_module) -> None:
        dm = trainer.datamodule
        summary = getattr(dm, "summary", None)
        if not summary:
            return
        metrics = {f"data/share_{lang}": v for lang, v in summary["realised_share"].items()}
        metrics.update({f"data/configured_share_{lang}": v for lang, v in summary["configured_share"].items()})
        for name, s in summary["sources"].items():
            if "packing_efficiency" in s:
                metrics[f"data/packing_efficiency_{name}"] = s["packing_efficiency"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
