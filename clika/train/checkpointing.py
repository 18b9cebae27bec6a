"""Checkpoints: which one to resume from, and writing them so a kill never leaves a half-written one.

- `resolve_resume` / `find_resumable_checkpoint`: a truncated / corrupt last checkpoint is detected and the
  newest good one is used instead, with a warning.
- `AtomicCheckpointIO` (Trainer plugin) / `AtomicCheckpoints` (callback installing it): checkpoints are
  written to a temp file in the same folder, fsynced, then renamed over the target.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from clika.util.atomic import atomic_file
from clika.util.errors import ClikaError
from clika.train.cluster.recovery import warn_recovered


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
                warn_recovered(f"checkpoint {problems[0]}; resuming from the previous good checkpoint {cand}")
            return str(cand.resolve())
        link = f" (-> {os.readlink(cand)})" if os.path.islink(cand) else ""
        problems.append(f"'{cand}'{link} is {problem}")
        if not fallback:
            break
    if problems:
        raise ClikaError(f"no loadable checkpoint: {'; '.join(problems[:3])}",
                         fix="pass resume=<a good .ckpt>, or move the checkpoints/ folder away to start over")
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that never leaves a half-written checkpoint: temp file beside the target, fsync,
    os.replace (atomic on POSIX), fsync of the folder. Remote (fsspec URL) paths use the parent class."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg"
                            f" is not supported for `{self.__class__.__name__}`.")
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_file(path, "wb", fsync=True) as f:
            torch.save(checkpoint, f)


class AtomicCheckpoints(pl.Callback):
    """Installs AtomicCheckpointIO on the strategy (for configs that can only add callbacks). DeepSpeed
    writes its own sharded checkpoints and is left as it is."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        strategy = trainer.strategy
        if type(getattr(strategy, "checkpoint_io", None)) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    """`auto` -> run_dir/checkpoints/last.ckpt when present; a run dir -> its last.ckpt; a path as is."""
    if resume is None:
        return None
    path = run_dir if resume == "auto" else Path(str(resume))
    if resume == "auto" or (path.is_dir() and (path / "checkpoints").is_dir()):
        return find_resumable_checkpoint(path)  # None = fresh start; warns when falling back past a corrupt one
    return find_resumable_checkpoint(path, fallback=False) if path.exists() else str(path)


def last_checkpoint(trainer: pl.Trainer) -> str | None:
    """The checkpoint a finished fit leaves: checkpoints/last.ckpt, else the best / latest one saved."""
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    last = Path(cb.dirpath or "") / "last.ckpt"
    path = last if last.exists() else Path(cb.best_model_path or cb.last_model_path or "")
    return str(path.resolve()) if str(path) and path.exists() else None
