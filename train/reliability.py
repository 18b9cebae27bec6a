"""Reliability: keep long runs alive and honest when things go wrong.

- `NanGuard`: a NaN / inf loss stops the run with a ClikaError naming the global step and the batch's
  source (`mode=skip`: drop that update, up to `max_skips` times, then stop).
- `PreemptionCheckpoint`: SIGTERM / SIGUSR1 (SLURM preemption) -> a checkpoint at the next batch end
  (or from `on_exception` when Lightning aborts mid-validation), then exit with 128 + signal.
- `find_resumable_checkpoint`: a truncated / corrupt last checkpoint is detected and the newest good one
  is used instead, with a warning.
- `AtomicCheckpointIO` (Trainer plugin) / `AtomicCheckpoints` (callback installing it): checkpoints are
  written to a temp file in the same folder, fsynced, then renamed over the target.
- `ResilientWandbLogger`: W&B online with no reachable server falls back to offline within `init_timeout`.
- Input checks that need no training: LoRA targets, DeepSpeed config vs Trainer, writable output dir,
  Hydra group choices (`check_group_choices`), and the Hydra callback `InputChecks` running them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from clika.cli import check_group_choices  # noqa: F401  (moved to clika.cli; re-exported)
from clika.errors import ClikaError

log = logging.getLogger(__name__)


class ReliabilityWarning(UserWarning):
    """Something was recovered from (fallback checkpoint, W&B offline, skipped batch): worth a look."""


def _warn(msg: str) -> None:
    log.warning(msg)
    warnings.warn(msg, ReliabilityWarning, stacklevel=3)


def _any_rank(trainer: "pl.Trainer", flag: bool) -> bool:
    """True on every rank when it is true on any (a decision all ranks must take together)."""
    if trainer.world_size > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bool(flag), all=False))
    return bool(flag)


# ================================================================ NaN / inf loss
def batch_items(trainer: "pl.Trainer", batch: Any, batch_idx: int | None) -> list[tuple[str, int]] | None:
    """(source, item) pairs of a training batch, or None when they cannot be identified.

    Batches carry only tensors (input_ids, labels, attention_mask); the items are found from the
    datamodule's `train_items` and this rank's sampler order, and verified token for token.
    """
    if isinstance(batch, Mapping):
        for key in ("source", "sources", "lang"):
            if key in batch:
                vals = batch[key]
                vals = [vals] if isinstance(vals, str) else list(vals)
                return [(str(v), -1) for v in vals]
    dm = getattr(trainer, "datamodule", None)
    items, sources = getattr(dm, "train_items", None), getattr(dm, "sources", None)
    if not items or not sources or not isinstance(batch, Mapping) or "input_ids" not in batch:
        return None
    ids, mask = batch["input_ids"].cpu(), batch.get("attention_mask")
    rows = [ids[k][: int(mask[k].sum())] if mask is not None else ids[k] for k in range(len(ids))]

    def item_ids(i: int) -> torch.Tensor:
        name, j = items[i]
        return torch.as_tensor(sources[name].item(j)[0].astype("int64"))

    def same(i: int, row: torch.Tensor) -> bool:
        t = item_ids(i)
        return len(t) == len(row) and bool(torch.equal(t, row))

    try:
        loader = trainer.train_dataloader
        sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
        order = list(iter(sampler)) if sampler is not None else list(range(len(items)))
        bs = getattr(loader, "batch_size", None) or len(rows)
        seen = getattr(loader, "_seen", None)
        ks = [k for k in dict.fromkeys([batch_idx, (seen or 0) - 1, (seen or 0) - 2]) if k is not None and k >= 0]
        for k in ks:  # the likely positions first
            idx = order[k * bs:(k + 1) * bs]
            if len(idx) == len(rows) and all(same(i, r) for i, r in zip(idx, rows)):
                return [items[i] for i in idx]
        if len(order) <= 1_000_000:  # full scan for the first row, then verify the rest
            for p, i in enumerate(order):
                if same(i, rows[0]):
                    idx = order[p:p + len(rows)]
                    if len(idx) == len(rows) and all(same(a, r) for a, r in zip(idx, rows)):
                        return [items[a] for a in idx]
    except Exception as e:  # noqa: BLE001 - diagnosis must never mask the real error
        log.debug("batch items not identified: %s", e)
    return None


def describe_batch(trainer: "pl.Trainer", batch: Any, batch_idx: int | None) -> str:
    """'batch 3 of epoch 1, items from source zh (lang zh) x5, en (lang en) x3' or why that is unknown."""
    where = f"batch {batch_idx} of epoch {trainer.current_epoch}"
    found = batch_items(trainer, batch, batch_idx)
    if not found:
        return f"{where} (its source could not be identified: batches carry no source field)"
    specs = getattr(getattr(trainer, "datamodule", None), "specs", {}) or {}
    counts = Counter(name for name, _ in found)
    parts = [f"{n} (lang {getattr(specs.get(n), 'lang', '?')}) x{c}" for n, c in counts.most_common()]
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
        bad = _any_rank(trainer, not bool(torch.isfinite(value).all()))
        if not bad:
            return
        step = trainer.global_step
        kind = "nan" if bool(torch.isnan(value).any()) else ("inf" if not bool(torch.isfinite(value).all())
                                                             else "non-finite on another rank")
        where = describe_batch(trainer, self._batch, self._batch_idx)
        from lightning.pytorch.strategies import DeepSpeedStrategy

        can_skip = self.mode == "skip" and not isinstance(trainer.strategy, DeepSpeedStrategy)
        if can_skip and len(self.skipped) < self.max_skips:
            self.skipped.append(step)
            self._drop_update = True
            _warn(f"train loss is {kind} at global step {step}, {where}: update skipped "
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


# ================================================================ preemption
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
        import threading

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
        print(f"[clika] preemption checkpoint at step {step}: {path}", file=sys.stderr, flush=True)
        return str(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not _any_rank(trainer, self.received is not None):
            return
        if self._saved_step != trainer.global_step:
            self.save(trainer)
        trainer.should_stop = True
        if self.exit:
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException(128 + int(self.received or signal.SIGTERM))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

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
                print(f"[clika] preemption checkpoint failed: {e}", file=sys.stderr, flush=True)


# ================================================================ checkpoints: validation, fallback, atomic IO
REQUIRED_KEYS = ("state_dict", "global_step", "loops", "pytorch-lightning_version")


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it loads and has Lightning's keys)."""
    path = Path(path)
    if os.path.islink(path) and not path.exists():
        return f"dangling link to '{os.readlink(path)}'"
    if not path.exists():
        return "missing"
    if path.is_dir():  # DeepSpeed: <dir>/latest names the tag dir holding *model_states.pt
        tag = path / "latest"
        tag_dir = path / tag.read_text().strip() if tag.exists() else path
        if not tag_dir.is_dir() or not list(tag_dir.glob("*model_states.pt")):
            return "a ZeRO checkpoint dir without model states (interrupted save?)"
        return None
    if path.stat().st_size == 0:
        return "empty file"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, ...
        first = (str(e).splitlines() or [""])[0].split(". ")[0][:160]
        return f"unreadable ({type(e).__name__}: {first})"
    if not isinstance(ckpt, dict):
        return f"not a Lightning checkpoint (a {type(ckpt).__name__})"
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    return f"lacks {missing}" if missing else None


def _candidates(ckdir: Path, first: Path | None) -> list[Path]:
    files = [p for p in ckdir.iterdir() if not p.name.startswith(".") and
             (p.suffix == ".ckpt" or (p.is_dir() and (p / "latest").exists()))] if ckdir.is_dir() else []
    files.sort(key=lambda p: (p.lstat().st_mtime_ns, p.name), reverse=True)
    out, seen = [], set()
    for p in ([first] if first is not None else []) + [p for p in files if p.name == "last.ckpt"] + files:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def find_resumable_checkpoint(run_dir_or_ckpt: str | Path, fallback: bool = True) -> str | None:
    """The checkpoint to resume from: `last.ckpt` of a run dir (or the given file) when it is intact, else the
    newest intact one beside it (with a warning). None when there is none (fresh start); ClikaError when
    checkpoints exist but none loads (or `fallback=False` and the given one is broken)."""
    p = Path(run_dir_or_ckpt)
    if not p.exists() and not os.path.islink(p):
        return None  # a run dir not created yet (first start of a requeued job) or a path validate() rejects
    if p.is_dir() and (p / "checkpoints").is_dir():
        ckdir, first = p / "checkpoints", p / "checkpoints" / "last.ckpt"
    elif p.is_dir() and not (p / "latest").exists():
        ckdir, first = p, p / "last.ckpt"
    else:
        ckdir, first = p.parent, p
    if not (first.exists() or os.path.islink(first)):
        first = None
    problems: list[str] = []
    for cand in _candidates(ckdir, first):
        problem = checkpoint_problem(cand)
        if problem is None:
            if problems:
                _warn(f"checkpoint {problems[0]}; resuming from the previous good checkpoint {cand}")
            return str(cand.resolve())
        link = f" (-> {os.readlink(cand)})" if os.path.islink(cand) else ""
        problems.append(f"'{cand}'{link} is {problem}")
        if not fallback:
            break
    if problems:
        raise ClikaError(f"no loadable checkpoint: {'; '.join(problems[:3])}",
                         fix="pass resume=<a good .ckpt>, or move the checkpoints/ folder away to start over")
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that never leaves a half-written checkpoint: temp file beside the target, fsync,
    os.replace (atomic on POSIX), fsync of the folder. Remote (fsspec URL) paths use the parent class."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg"
                            f" is not supported for `{self.__class__.__name__}`.")
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


class AtomicCheckpoints(pl.Callback):
    """Installs AtomicCheckpointIO on the strategy (for configs that can only add callbacks). DeepSpeed
    writes its own sharded checkpoints and is left as it is."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        strategy = trainer.strategy
        if type(getattr(strategy, "checkpoint_io", None)) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()


# ================================================================ W&B: online without a server -> offline
try:
    from lightning.pytorch.loggers import WandbLogger as _WandbLogger
except ImportError:  # pragma: no cover
    _WandbLogger = object  # type: ignore[misc,assignment]


class ResilientWandbLogger(_WandbLogger):
    """WandbLogger whose first `wandb.init` is bounded by `init_timeout` seconds; on any failure (no server,
    bad key, timeout) it warns and continues offline in the same dir with the same run id (sync later with
    `wandb sync <run_dir>/wandb/offline-run-*`)."""

    def __init__(self, *args, init_timeout: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.init_timeout = float(init_timeout)
        self.fell_back_offline = False

    @property
    def experiment(self):  # noqa: D401 - same contract as WandbLogger.experiment
        if self._experiment is not None:
            return self._experiment
        import wandb

        mode = self._wandb_init.get("mode") or os.environ.get("WANDB_MODE", "online")
        if mode in ("offline", "dryrun", "disabled") or getattr(self, "_offline", False):
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
            _warn(f"W&B online failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                  f"continuing offline (upload later: wandb sync {self._save_dir or '.'}/wandb/offline-run-*)")
            try:
                wandb.teardown()  # the failed online run holds its id in the service process
            except Exception:  # noqa: BLE001
                pass
            self._experiment = None
            self._wandb_init["mode"] = "offline"
            self._wandb_init.pop("settings", None)
            os.environ["WANDB_MODE"] = "offline"
            self.fell_back_offline = True
            return super().experiment

    def log_metrics(self, metrics, step=None):  # a W&B service killed by SLURM's SIGTERM must not crash the job
        from train.wandb_lifecycle import guarded

        return guarded(self, super().log_metrics, metrics, step)


# ================================================================ input checks
def check_lora_targets(model, target_modules: Any, key: str = "method.target_modules") -> None:
    """Every LoRA target must name modules of the model (peft's rule: the full name or its last parts)."""
    if target_modules in (None, "auto", "all-linear"):
        return
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    names = [n for n, _ in model.named_modules() if n]
    absent = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if absent:
        import torch.nn as nn

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ClikaError(f"{key}: {absent} not found in model '{getattr(model.config, 'model_type', '?')}'",
                         fix=f"use module names of this model, e.g. {linear[:8]}, or {key}=auto / all-linear")


_PRECISION_DS = {"16-mixed": "fp16", "16": "fp16", "16-true": "fp16", "bf16-mixed": "bf16", "bf16": "bf16",
                 "bf16-true": "bf16"}


def check_deepspeed_trainer(strategy: Mapping[str, Any], trainer: Mapping[str, Any], batch_size: int) -> None:
    """DeepSpeed settings that contradict the Trainer / data config (Lightning derives them, or rejects them
    later with a traceback): clipping by value, a `config` dict disagreeing on micro batch, accumulation,
    clipping, precision or ZeRO stage."""
    name = str(strategy.get("name", "auto"))
    if not name.startswith("deepspeed"):
        return
    if str(trainer.get("gradient_clip_algorithm") or "norm") == "value":
        raise ClikaError("trainer.gradient_clip_algorithm: DeepSpeed clips by norm only, got 'value'",
                         fix="set trainer.gradient_clip_algorithm=norm (or use strategy=ddp)")
    config = dict((strategy.get("kwargs") or {}).get("config") or {})
    if not config:
        return
    k = "strategy.kwargs.config"
    if "gradient_accumulation_steps" in config and int(config["gradient_accumulation_steps"]) != int(
            trainer.get("accumulate_grad_batches", 1) or 1):
        raise ClikaError(f"{k}.gradient_accumulation_steps={config['gradient_accumulation_steps']} contradicts "
                         f"trainer.accumulate_grad_batches={trainer.get('accumulate_grad_batches', 1)}",
                         fix=f"remove {k}.gradient_accumulation_steps; set trainer.accumulate_grad_batches")
    mb = config.get("train_micro_batch_size_per_gpu")
    if mb is not None and mb != "auto" and int(mb) != int(batch_size):
        raise ClikaError(f"{k}.train_micro_batch_size_per_gpu={mb} contradicts data.batch_size={batch_size}",
                         fix=f"remove {k}.train_micro_batch_size_per_gpu; set data.batch_size")
    clip = config.get("gradient_clipping")
    tclip = trainer.get("gradient_clip_val")
    if clip is not None and clip != "auto" and tclip is not None and float(clip) != float(tclip):
        raise ClikaError(f"{k}.gradient_clipping={clip} contradicts trainer.gradient_clip_val={tclip}",
                         fix=f"remove {k}.gradient_clipping; set trainer.gradient_clip_val")
    want = _PRECISION_DS.get(str(trainer.get("precision", "32-true")))
    for kind in ("fp16", "bf16"):
        enabled = (config.get(kind) or {}).get("enabled")
        if enabled is True and want != kind:
            raise ClikaError(f"{k}.{kind}.enabled=true contradicts trainer.precision={trainer.get('precision')}",
                             fix=f"remove {k}.{kind}; set trainer.precision="
                                 f"{'16-mixed' if kind == 'fp16' else 'bf16-mixed'}")
    stage = (config.get("zero_optimization") or {}).get("stage")
    if stage is not None and strategy.get("stage") is not None and int(stage) != int(strategy["stage"]):
        raise ClikaError(f"{k}.zero_optimization.stage={stage} contradicts strategy={name} (stage "
                         f"{strategy['stage']})", fix=f"pick the preset with stage {stage} (strategy=deepspeed_zero"
                                                      f"{stage}) and drop zero_optimization from {k}")


def check_output_dir(path: str | Path, key: str = "paths.output_dir") -> Path:
    """Create the output dir and prove it is writable (a temp file written and removed)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".clika-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ClikaError(f"{key}: cannot write to '{path}' ({e.strerror or type(e).__name__})",
                         fix="point hydra.run.dir (or paths.log_dir) at a writable folder") from None
    return path


def run_checks(cfg) -> None:
    """The config-only checks of this module for a composed train config (`train.run.validate` can call it)."""
    from omegaconf import OmegaConf

    def node(key, default=None):
        val = OmegaConf.select(cfg, key, default=default, throw_on_resolution_failure=False)
        return OmegaConf.to_container(val, resolve=True) if OmegaConf.is_config(val) else val

    strategy = node("strategy", {}) or {}
    trainer = node("trainer", {}) or {}
    check_deepspeed_trainer(strategy, trainer, int(node("data.batch_size", 1) or 1))


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class InputChecks(_HydraCallback):
    """Hydra callback: one-line errors (exit 2) for a read-only run dir and contradicting DeepSpeed settings,
    before Hydra creates the run dir. Add as `hydra.callbacks.input_checks._target_=train.reliability.InputChecks`."""

    def _check(self, config, run_dir_key: str) -> None:
        from omegaconf import OmegaConf

        try:
            run_dir = OmegaConf.select(config, run_dir_key, throw_on_resolution_failure=False)
            if run_dir:
                check_output_dir(str(run_dir), key=run_dir_key)
            if "trainer" in config and "strategy" in config:
                run_checks(config)
        except ClikaError as e:
            if os.environ.get("CLIKA_DEBUG", "0") not in ("", "0", "false") or config.get("traceback"):
                raise
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_start(self, config, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")


# ---------------------------------------------------------------- CSV metrics written atomically
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from lightning.pytorch.loggers.csv_logs import ExperimentWriter  # noqa: E402


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
        import csv
        import io

        from clika.jsonl import atomic_write_text

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
