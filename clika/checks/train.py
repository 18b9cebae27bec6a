"""Checks of a composed train config (conf/train.yaml) that need no model: names, ranges, the mixture, resume,
streamed data, the sweep metric and the alignment callback's suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clika.checks.core import as_int, fail, get, need, plain
from clika.checks.strategy import check_deepspeed_trainer, check_preset, check_strategy
from clika.templates import TEMPLATES

# The names train/ dispatches on (one place: train/run.py and train/data/mixture.py import them).
TASKS = ("fit", "prepare", "export")
METHODS = ("lora", "full")
SAMPLING = ("weights", "temperature")


def check_train_config(cfg: Any) -> None:
    """Fail fast, naming the key and the fix, before anything slow happens."""
    need(cfg.task in TASKS, "task", f"unknown task '{cfg.task}'", f"use one of {TASKS}")
    m = cfg.method
    need(m.name in METHODS, "method", f"unknown method '{m.name}'", "use method=lora or method=full")
    if m.name == "lora":
        need(int(m.r) > 0, "method.r", "LoRA rank must be > 0", "e.g. method.r=8")
        need(0 <= float(m.dropout) < 1, "method.dropout", "must be in [0, 1)", "e.g. method.dropout=0.1")
    need(float(m.lr) > 0, "method.lr", "learning rate must be > 0", "e.g. method.lr=2e-4")
    check_preset(cfg)
    d = cfg.data
    need(int(d.block_size) > 1, "data.block_size", "must be > 1", "e.g. data.block_size=128")
    need(int(d.batch_size) > 0, "data.batch_size", "must be > 0", "e.g. data.batch_size=8")
    need(0 <= float(d.val_fraction) < 1, "data.val_fraction", "must be in [0, 1)", "e.g. data.val_fraction=0.02")
    need(d.template in TEMPLATES, "data.template", f"unknown template '{d.template}'", f"use one of {TEMPLATES}")
    mix = d.mix
    need(bool(mix.get("sources")), "data.mix.sources", "no sources", "pick a mixture: data/mix=<name>")
    need(mix.sampling in SAMPLING, "data.mix.sampling", f"unknown '{mix.sampling}'", f"use one of {SAMPLING}")
    schemas = {s.schema for s in mix.sources.values()}
    need(len(schemas) == 1, "data.mix.sources", f"mixes schemas {sorted(schemas)}",
         "use only pt sources (pretraining) or only sft sources (instruction tuning) in one mixture")
    if mix.sampling == "weights":
        need(set(mix.weights or {}) == set(mix.sources), "data.mix.weights",
             f"keys {sorted(mix.weights or {})} differ from sources {sorted(mix.sources)}", "one weight per source")
    t = cfg.trainer
    need(int(t.get("max_steps", -1)) > 0 or (t.get("max_epochs") or 0) > 0, "trainer.max_steps",
         "neither max_steps nor max_epochs is set", "set trainer.max_steps=N or trainer.max_epochs=N")
    if cfg.resume not in (None, "auto"):
        need(Path(str(cfg.resume)).exists(), "resume", f"'{cfg.resume}' does not exist",
             "use resume=auto (last checkpoint of the run dir), a checkpoint path, or null")
    if cfg.task == "export":
        need(cfg.resume is not None, "resume", "task=export needs a checkpoint", "pass resume=<ckpt or run dir>")


def check_streamed_data(cfg: Any) -> None:
    """Streamed sources have no known length: an epoch-bounded run never ends / cannot be scheduled."""
    max_steps = as_int(get(cfg, "trainer.max_steps", -1))
    for name, src in (get(cfg, "data.mix.sources", {}) or {}).items():
        if get(src, "streaming", False) and get(src, "limit") is None and (max_steps is None or max_steps <= 0):
            fail("trainer.max_steps", f"data.mix.sources.{name} is streamed without a limit (unknown length) "
                 "and trainer.max_steps is not set",
                 f"set trainer.max_steps=N (scheduler and requeue need a fixed length), or "
                 f"data.mix.sources.{name}.limit=N")


def check_sweep(cfg: Any) -> None:
    metric = get(cfg, "optimized_metric")
    if metric is not None and not isinstance(metric, str):
        fail("optimized_metric", f"must be a logged metric name, got {metric!r}",
             "e.g. optimized_metric=clika/fictional/xrr or optimized_metric=val/loss_zh")


def alignment_suite(cfg: Any) -> dict | None:
    """The suite config the CLiKA callback (callbacks.clika) scores with, or None when it scores no suite:
    `suite` with the callback's own `limit` / `langs` / `bootstrap`, when data_root and datasets are set."""
    node = get(cfg, "callbacks.clika")
    if node is None or "_target_" not in node:
        return None
    suite = dict(plain(node, "suite", {}) or {})
    suite.update({k: plain(node, k) for k in ("limit", "langs", "bootstrap") if get(node, k) is not None})
    return suite if suite.get("data_root") and suite.get("datasets") else None


def check_train(cfg: Any) -> None:
    """Every model-free check of a train config except the launch ones (clika.checks.run_train_checks)."""
    check_train_config(cfg)
    check_deepspeed_trainer(plain(cfg, "strategy", {}) or {}, plain(cfg, "trainer", {}) or {},
                            int(get(cfg, "data.batch_size", 1) or 1))
    check_strategy(cfg)
    check_streamed_data(cfg)
    check_sweep(cfg)
