"""Loggers of a training run: which ones (conf/logger), the W&B run id kept per run dir, W&B in the mode the
user's setup gives (clika.app.env.wandb_mode) with a fallback to offline, and a CSV logger whose header rewrites
are atomic."""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

from clika.util.jsonl import atomic_write_text
from clika.app.env import wandb_mode
from clika.app.launch import global_rank
from clika.train.cluster.recovery import warn_recovered
from clika.train.cluster.wandb_lifecycle import guarded

WANDB_ID_FILE = "wandb_run_id"


def build_loggers(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> list[Logger]:
    """The loggers of `cfg.logger` (W&B gets the run id of this run dir); rank 0 logs the config to W&B."""
    loggers = []
    for node in (cfg.logger or {}).values():
        if node is None or "_target_" not in node:
            continue
        extra = {"id": wandb_run_id(run_dir, ckpt_path)} if "Wandb" in node._target_ else {}
        logger = instantiate(node, **extra)
        loggers.append(logger)
        if isinstance(logger, WandbLogger) and global_rank() == 0:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return loggers


def wandb_run_id(run_dir: Path, ckpt_path: str | None) -> str | None:
    """One W&B run per run dir: the id is kept in <run dir>/wandb_run_id so a resume continues that run.

    Rank 0 writes it here, before the Trainer exists, i.e. before Lightning's DDP launcher starts the other
    ranks, which read it. Ranks that srun / torchrun start together with rank 0 may find none yet: they get
    None, and they never open a W&B run (only rank 0 logs)."""
    candidates = [run_dir / WANDB_ID_FILE]
    if ckpt_path:
        candidates.insert(0, Path(ckpt_path).parent.parent / WANDB_ID_FILE)
    for f in candidates:
        if f.exists():
            return f.read_text().strip()
    if global_rank() != 0:
        return None
    run_id = uuid.uuid4().hex[:8]
    atomic_write_text(run_dir / WANDB_ID_FILE, run_id)
    return run_id


def finish_wandb(trainer: pl.Trainer) -> str | None:
    """Close the W&B run of this fit; its local run dir (for `wandb sync`), or None without W&B."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run_dir = str(Path(logger.experiment.dir).parent)
            guarded(logger, logger.experiment.finish)
            return run_dir
    return None


def wandb_mode_note(trainer: pl.Trainer) -> str | None:
    """Which mode the fit's W&B run used and why, in one line ('offline: no W&B credentials ...'); None without
    W&B."""
    for logger in trainer.loggers:
        if isinstance(logger, ResilientWandbLogger):
            return f"{logger.mode}: {logger.mode_reason}"
        if isinstance(logger, WandbLogger):  # Lightning's own, as `_target_`: W&B decides (WANDB_MODE, else online)
            return "offline: logger.wandb.offline=true" if logger._offline else \
                f"{os.environ.get('WANDB_MODE') or 'online'}: Lightning's WandbLogger (WANDB_MODE, else online)"
    return None


class ResilientWandbLogger(WandbLogger):
    """WandbLogger in the mode of the user's W&B setup unless the config sets one (`logger.wandb.mode` /
    `offline`): WANDB_MODE, else online when W&B has credentials for its base URL (WANDB_API_KEY, the netrc entry
    of `wandb login`), else offline (`clika.app.env.wandb_mode`). Its first online `wandb.init` is bounded by
    `init_timeout` seconds; on any failure (no server, bad key, timeout) it warns and continues offline in the
    same dir with the same run id (sync later with `wandb sync <run_dir>/wandb/offline-run-*`). `mode` and
    `mode_reason` say what it did and why (the training summary prints them)."""

    def __init__(self, *args, init_timeout: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns "anonymous setting has no effect" when passed
            self._wandb_init.pop("anonymous", None)
        self.init_timeout = float(init_timeout)
        self.fell_back_offline = False
        if self._offline:
            self.mode, self.mode_reason = "offline", "logger.wandb.offline=true"
        elif self._wandb_init.get("mode"):
            self.mode = str(self._wandb_init["mode"])
            self.mode_reason = f"logger.wandb.mode={self.mode}"
        else:
            self.mode, self.mode_reason = wandb_mode()
            self._wandb_init["mode"] = self.mode

    @property
    def experiment(self):  # noqa: D401 - same contract as WandbLogger.experiment
        if self._experiment is not None:
            return self._experiment
        import wandb  # deferred: 0.3 s of `python -X importtime` in every process of a run that logs to CSV only

        if self.mode in ("offline", "dryrun", "disabled") or self._offline:
            return super().experiment
        settings = self._wandb_init.get("settings")
        try:
            if settings is None:
                settings = wandb.Settings(init_timeout=self.init_timeout)
            elif isinstance(settings, dict):
                settings = wandb.Settings(**{"init_timeout": self.init_timeout, **settings})
            self._wandb_init["settings"] = settings
            return super().experiment
        except Exception as e:  # noqa: BLE001 - any online failure: keep training, offline
            first = str(e).splitlines()[0][:200] if str(e) else ""
            warn_recovered(f"W&B online ({self.mode_reason}) failed ({type(e).__name__}: {first}); continuing "
                           f"offline (upload later: wandb sync {self._save_dir or '.'}/wandb/offline-run-*)")
            try:
                wandb.teardown()  # the failed online run holds its id in the service process
            except Exception:  # noqa: BLE001
                pass
            self._experiment = None
            self._wandb_init["mode"] = "offline"
            self._wandb_init.pop("settings", None)
            os.environ["WANDB_MODE"] = "offline"
            self.fell_back_offline = True
            self.mode = "offline"
            self.mode_reason = f"online failed ({type(e).__name__}), fell back to offline; online because {self.mode_reason}"
            return super().experiment

    def log_metrics(self, metrics, step=None):  # a W&B service killed by SLURM's SIGTERM must not crash the job
        return guarded(self, super().log_metrics, metrics, step)


class _AtomicExperimentWriter(ExperimentWriter):
    """Lightning rewrites metrics.csv in place whenever a new metric name appears (each CLiKA evaluation
    adds some); a kill during that rewrite lost the whole log. Rewrite to a temp file, then rename; a failed
    save forgets the new names so the next save rewrites the header again (and keeps the unsaved rows)."""

    def save(self) -> None:
        keys = list(self.metrics_keys)
        try:
            super().save()
        except BaseException:
            self.metrics_keys = keys
            raise

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_file_path, buf.getvalue())


class AtomicCSVLogger(CSVLogger):
    """lightning's CSVLogger whose header rewrites are atomic (appends of new rows stay appends)."""

    @property
    def experiment(self):
        exp = super().experiment
        if type(exp) is ExperimentWriter:  # local files only; remote filesystems keep Lightning's writer
            exp.__class__ = _AtomicExperimentWriter
        return exp
