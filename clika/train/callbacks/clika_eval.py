"""Lightning callback that scores CLiKA alignment on the live model during training.

Glue only: items, prompts, scoring and metrics come from `clika`; this decides *when* (step 0, every
N optimizer steps, at checkpoints, at the end), shards items over ranks, and writes what rank 0 logs:
logger metrics, `alignment.csv`, `alignment_curves.png` and W&B table / chart / heatmap.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from clika.report.curves import (CIRCULAR_COLUMNS, COLUMNS, append_rows, metrics_to_rows, plot_curves, read_rows,
                          truncate_after, typed)
from clika.fictional.task import FictionalTask
from clika.report.results import plot_co_heatmap
from clika.scoring.suite import Suite, load_suite_items, suite_metrics, suite_tasks
from clika.scoring.api import run_tasks
from clika.util.errors import ClikaError

log = logging.getLogger(__name__)
# alignment.csv columns logged as clika/<dataset>/<lang>/<key> (bias_* as .../bias/<share|entropy|rstd>)
SUITE_AT = ("every", "ends")
LOGGED = ("acc", "ra", "en_co", "acc_type0", "acc_type1", "xrr", *CIRCULAR_COLUMNS, "bias_share", "bias_entropy",
          "bias_rstd")


def _gather(obj: Any) -> list:
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, obj)
    return parts


class ClikaEvalCallback(pl.Callback):
    def __init__(self, suite: dict | None, output_dir: str, every_n_steps: int = 0, on_start: bool = True,
                 on_checkpoint: bool = True, on_end: bool = True, fictional: dict | None = None,
                 limit: int | None = None, langs: list[str] | None = None, bootstrap: int | None = 0,
                 circular: bool | None = None, suite_at: str = "every", redraw_every_s: float = 60.0):
        """`suite` is the `clika` config (eval suite); `limit` / `langs` / `bootstrap` / `circular` override it
        for cheap curves (bootstrap 0: no confidence interval, which was an eighth of an evaluation's cost;
        circular null: clika.circular). `fictional` is a `conf/fictional` config (the Fictional probe), or None.
        `suite_at`: `every` evaluation scores the suite, or only the `ends` (the first and the last; the Fictional
        probe still runs at every one). `redraw_every_s`: alignment_curves.png is redrawn at most this often and
        at the end of the run (0: after every evaluation); alignment.csv and the loggers get every evaluation."""
        if suite_at not in SUITE_AT:
            raise ClikaError(f"callbacks.clika.suite_at: unknown '{suite_at}'", fix=f"use one of {SUITE_AT}")
        self.suite_at = suite_at
        self.suite_cfg = dict(suite or {})
        if circular is not None:
            self.suite_cfg["circular"] = circular
        if bootstrap is not None:
            self.suite_cfg["bootstrap"] = bootstrap
        if limit is not None:
            self.suite_cfg["limit"] = limit
        if langs is not None:
            self.suite_cfg["langs"] = list(langs)
        self.output_dir = Path(output_dir)
        self.every_n_steps, self.on_start, self.on_checkpoint, self.on_end = every_n_steps, on_start, on_checkpoint, on_end
        self.fictional_cfg = fictional
        self.evaluated: list[int] = []
        self.seconds = 0.0
        self._suite: Suite | None = None
        self._tasks: list = []
        self._fictional: FictionalTask | None = None
        self.rows: list[dict] = []  # rank 0: every alignment.csv row of this run (W&B tables are built from it)
        self._defined = False
        self._plotter: threading.Thread | None = None
        self.redraw_every_s = float(redraw_every_s)
        self._drawn_at = time.monotonic()  # the first drawing waits as the later ones do
        self._stale = False  # rows were added since the last drawing
        self.last_logged: dict[str, float] = {}  # rank 0: the metrics of the latest evaluation (optimized_metric)

    # ---------------------------------------------------------------- setup and state
    @property
    def csv_path(self) -> Path:
        return self.output_dir / "alignment.csv"

    @property
    def png_path(self) -> Path:
        return self.output_dir / "alignment_curves.png"

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self._suite is None and self.suite_cfg.get("data_root") and self.suite_cfg.get("datasets") != []:
            self._suite = Suite.from_dict(self.suite_cfg)
            # items are read now: bad data fails before training
            self._tasks = suite_tasks(self._suite, load_suite_items(self._suite))
        if self._fictional is None and self.fictional_cfg:
            self._fictional = FictionalTask.from_config(self.fictional_cfg)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluated": list(self.evaluated), "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluated = list(state.get("evaluated", []))
        self.seconds = float(state.get("seconds", 0.0))

    # ---------------------------------------------------------------- hooks
    def on_train_start(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if step > 0 and trainer.is_global_zero:  # resumed: evaluations after the checkpoint are redone
            dropped = truncate_after(self.csv_path, step)
            if dropped:
                log.info("alignment.csv: dropped %d rows after resumed step %d", dropped, step)
            self.rows = typed(read_rows(self.csv_path))
        self.evaluated = [s for s in self.evaluated if s <= step]
        if self.on_start and step not in self.evaluated:
            self.evaluate(trainer, pl_module, end=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step not in self.evaluated:
            self.evaluate(trainer, pl_module, end=self._last_step(trainer))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.on_checkpoint and trainer.state.fn == "fit" and trainer.global_step not in self.evaluated:
            self.evaluate(trainer, pl_module, end=self._last_step(trainer))
            checkpoint.setdefault("callbacks", {})  # state of this eval is included by Lightning afterwards

    @staticmethod
    def _last_step(trainer) -> bool:
        try:
            return trainer.global_step >= int(trainer.estimated_stepping_batches)
        except Exception:  # no estimate (an unsized loader): the end hook scores the last step
            return False

    def on_train_end(self, trainer, pl_module) -> None:
        if self.on_end and trainer.global_step not in self.evaluated:
            self.evaluate(trainer, pl_module, end=True)
        self._redraw(now=False, final=True)
        self.wait_for_plot()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._redraw(now=False, final=True)  # an interrupted run (preemption, an error) leaves its curves drawn
        self.wait_for_plot()

    # ---------------------------------------------------------------- curves PNG (off the training path)
    def _redraw(self, now: bool = True, final: bool = False) -> None:
        """Redraw alignment_curves.png on a worker thread: drawing 20 panels costs 1-3 s of one core, which
        would otherwise stall every rank at each evaluation. At most every `redraw_every_s` (`now`: rows were
        just added; `final`: the run ends, draw what is not drawn yet). One drawing at a time; it reads the CSV
        that rank 0 just wrote, and the next write waits for it."""
        if now:
            self._stale = True
        if not self._stale or (not final and time.monotonic() - self._drawn_at < self.redraw_every_s):
            return
        self._stale, self._drawn_at = False, time.monotonic()
        self.wait_for_plot()
        self._plotter = threading.Thread(target=self._plot, name="clika-curves", daemon=False)
        self._plotter.start()

    def _plot(self) -> None:
        try:
            plot_curves([self.csv_path], self.png_path)
        except Exception as e:  # a figure must never stop training
            log.warning("alignment_curves.png not redrawn: %s", e)

    def wait_for_plot(self) -> None:
        if self._plotter is not None:
            self._plotter.join()
            self._plotter = None

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, trainer, pl_module, end: bool = False) -> dict:
        """Score the live model (no copy), every rank its shard; rank 0 writes and logs. `end`: the first or the
        last evaluation of the run (suite_at=ends scores the suite only then)."""
        started = time.perf_counter()
        model, tokenizer = pl_module.model, pl_module.tokenizer
        world, rank = trainer.world_size, trainer.global_rank
        gather = _gather if world > 1 else None
        was_training = model.training
        model.eval()
        suite_tasks_now = self._tasks if (end or self.suite_at == "every") else []
        tasks = [*suite_tasks_now, *([self._fictional] if self._fictional is not None else [])]
        try:
            with torch.no_grad():
                # progress=False: scorer bars would interleave with the trainer's
                outs = run_tasks(model, tokenizer, tasks, rank, world, gather, progress=False)
        finally:
            model.train(was_training)
        metrics: dict = {"datasets": {}, "summary": {"streams": {}}, "protocol": None}
        if self._suite is not None and suite_tasks_now:
            metrics = suite_metrics(self._suite, {t.name: outs[t.name].metrics for t in suite_tasks_now})
        if self._fictional is not None:  # its entry names its own (gating) scorer
            dataset, stream = self._fictional.stream(outs[self._fictional.name].metrics)
            metrics["datasets"]["fictional"] = dataset
            metrics["summary"]["streams"]["fictional"] = stream
        step = trainer.global_step
        self.evaluated.append(step)
        self.seconds += time.perf_counter() - started
        if trainer.is_global_zero:
            self._write_and_log(trainer, pl_module, metrics, step)
        return metrics

    def _write_and_log(self, trainer, pl_module, metrics: dict, step: int) -> None:
        tokens = int(getattr(pl_module, "tokens_seen", 0))
        rows = metrics_to_rows(metrics, step, tokens, trainer.current_epoch, self._trained_langs(trainer))
        if rows:
            self.wait_for_plot()  # the drawing of the previous evaluation reads the CSV
            append_rows(self.csv_path, rows)
            self.rows += rows
            self._redraw()
        flat: dict[str, float] = {"tokens_seen": float(tokens), "clika/eval_seconds": self.seconds}
        for r in rows:
            for key in LOGGED:
                if r.get(key) is not None:
                    flat[f"clika/{r['dataset']}/{r['lang']}/{key.replace('bias_', 'bias/')}"] = float(r[key])
        for stream, vals in metrics.get("summary", {}).get("streams", {}).items():
            for key, val in vals.items():
                if isinstance(val, (int, float)) and val is not None:
                    flat[f"clika/{stream}/{key}"] = float(val)
        self.last_logged = dict(flat)
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=step)
        self._wandb_extras(trainer, metrics, step)

    @staticmethod
    def _trained_langs(trainer) -> list[str]:
        """Languages of the training data (the datamodule's realised token shares), marked in the curves."""
        summary = getattr(getattr(trainer, "datamodule", None), "summary", None) or {}
        return sorted({l for label in summary.get("realised_share", {}) for l in label.split("+")})

    def _wandb_extras(self, trainer, metrics: dict, step: int) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            try:
                import wandb  # deferred: 0.3 s of `python -X importtime` in every run that logs to CSV only

                exp = logger.experiment
                if not self._defined:
                    exp.define_metric("tokens_seen")
                    exp.define_metric("clika/*", step_metric="tokens_seen")
                    self._defined = True
                all_rows = self.rows
                payload: dict[str, Any] = {"trainer/global_step": step}
                payload["clika/table"] = wandb.Table(columns=COLUMNS, data=[[r.get(c) for c in COLUMNS] for r in all_rows])
                for ds in sorted({r["dataset"] for r in all_rows}):
                    langs = [l for l in dict.fromkeys(r["lang"] for r in all_rows if r["dataset"] == ds)]
                    steps = sorted({int(r["step"]) for r in all_rows if r["dataset"] == ds})
                    ys = [[float(next((r["acc"] for r in all_rows if r["dataset"] == ds and r["lang"] == l
                                       and int(r["step"]) == s and r["acc"] is not None), "nan")) for s in steps]
                          for l in langs]
                    payload[f"clika/curves/{ds}"] = wandb.plot.line_series(
                        xs=steps, ys=ys, keys=langs, title=f"{ds} accuracy per language", xname="step")
                mc = {k: v for k, v in metrics.get("datasets", {}).items() if "co_matrix" in v}
                if mc:
                    self.wait_for_plot()  # one matplotlib drawing at a time (its font cache is shared)
                    png = plot_co_heatmap({"datasets": mc}, self.output_dir / "co_heatmap.png", step=step)
                    payload["clika/co_heatmap"] = wandb.Image(str(png))
                exp.log(payload)
            except Exception as e:  # W&B trouble must never stop training
                log.warning("W&B extras not logged at step %d: %s", step, e)
