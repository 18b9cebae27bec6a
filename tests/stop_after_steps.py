"""A test-only Lightning callback (tests are on sys.path through conftest): `+callbacks.stop._target_=
stop_after_steps.StopAfterSteps +callbacks.stop.steps=N` ends a fit after N optimizer steps, as a preemption would."""

import lightning.pytorch as pl


class StopAfterSteps(pl.Callback):
    """Stop this fit after `steps` optimizer steps (time-boxed jobs, preemption drills); the final-step
    checkpoint is still written, and `resume` continues exactly there."""

    def __init__(self, steps: int):
        self.steps = steps
        self._start: int | None = None

    def on_train_start(self, trainer: "pl.Trainer", pl_module) -> None:
        self._start = trainer.global_step

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step - (self._start or 0) >= self.steps:
            trainer.should_stop = True
