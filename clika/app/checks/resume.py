"""Resuming with a changed config: `resume=auto` (or `resume=<run dir | ckpt>`) compares the new config with
the run's saved `<run dir>/config.yaml` before anything loads.

Keys that cannot change across a resume (the model, the method, the ZeRO stage, the tokenizer, the data
layout: `resume_fixed` in conf/hydra/default.yaml) end the run with one line naming them, the old and new values
and the fix; other changed keys (max_steps, callbacks, logging, ...) are listed as a warning.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from clika.app.checks.core import get
from clika.util.errors import ClikaError

_warned: set[str] = set()  # run dirs warned about in this process (the Hydra callback, then the job)


def saved_config_path(resume: Any, run_dir: str | Path | None) -> Path | None:
    """The config.yaml of the run a `resume` value continues (None: nothing to compare with)."""
    if resume is None:
        return None
    if str(resume) == "auto":
        base = Path(run_dir) if run_dir else None
    else:
        p = Path(str(resume))
        # <run>/checkpoints/x.ckpt, <run>/checkpoints/last.ckpt (link), a ZeRO dir <run>/checkpoints/x.ckpt/
        base = p if (p / "config.yaml").exists() else p.parent.parent if p.parent.name == "checkpoints" else p
    return base / "config.yaml" if base is not None and (base / "config.yaml").is_file() else None


_UNKNOWN = object()  # a leaf that does not resolve yet


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf; `_UNKNOWN` for those that do not resolve yet (`${hydra:...}` before the
    job)."""
    out: dict[str, Any] = {}
    if not isinstance(cfg, DictConfig):
        return out
    for k in cfg.keys():
        key = f"{prefix}{k}"
        if not prefix and k == "hydra":
            continue
        node = cfg._get_node(k)
        if isinstance(node, DictConfig):
            out.update(_leaves(node, key + "."))
            continue
        try:
            val = cfg[k]
        except Exception:  # noqa: BLE001 - ??? or an interpolation that resolves only in the job
            out[key] = _UNKNOWN
            continue
        if val is None and node is not None and node._is_interpolation():
            out[key] = _UNKNOWN  # `${paths.output_dir}` before the job sets Hydra's runtime dir
            continue
        if isinstance(val, DictConfig):  # an interpolated node (`${fictional.world}`): compare its leaves
            out.update(_leaves(val, key + "."))
            continue
        out[key] = OmegaConf.to_container(val, resolve=True) if isinstance(val, ListConfig) else val
    return out


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def changed_keys(old: Any, new: Any, ignored: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """{key: (old, new)} of the leaves that differ (absent on one side: None), `ignored` prefixes skipped."""
    a, b = _leaves(old), _leaves(new)
    ignored = list(ignored)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if not _under(k, ignored) and a.get(k) != b.get(k) and _UNKNOWN not in (a.get(k), b.get(k))}


def check_resume(cfg: Any, run_dir: str | Path | None, fixed: Iterable[str], ignored: Iterable[str] = ()) -> None:
    """ClikaError when a key in `fixed` changed since the run was saved; a warning listing the other changes."""
    saved = saved_config_path(get(cfg, "resume"), run_dir)
    if saved is None:
        return
    old = OmegaConf.load(saved)
    diff = changed_keys(old, cfg, ignored)
    fixed = list(fixed)
    bad = {k: v for k, v in diff.items() if _under(k, fixed)}
    if bad:
        shown = "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in list(bad.items())[:6])
        more = f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""
        raise ClikaError(f"resume: {len(bad)} key(s) that cannot change across a resume differ from {saved}: "
                         f"{shown}{more}",
                         fix="resume with the run's own settings (drop those overrides), or start a new run from "
                             f"its weights: init_from={saved.parent}/export/hf (task=export resume={saved.parent} "
                             "writes it) without resume")
    if diff and str(saved) not in _warned:
        _warned.add(str(saved))
        shown = ", ".join(f"{k} {o!r} -> {n!r}" for k, (o, n) in diff.items())
        print(f"warning: resuming {saved.parent} with changed settings: {shown}", file=sys.stderr, flush=True)
