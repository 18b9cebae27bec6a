"""Checks of a composed train config (conf/train.yaml) that need no model: names, ranges, the mixture, resume,
streamed data, the sweep metric and the alignment callback's suite."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from clika.app.checks.core import as_int, fail, get, need, plain
from clika.util.paths import is_local_path
from clika.app.checks.strategy import check_deepspeed_trainer, check_preset, check_strategy
from clika.app.env import PROJECT_ROOT
from clika.util.languages import NON_EN
from clika.data.templates import TEMPLATES
from clika.fictional.generated import world_params

# The names train/ dispatches on (one place: clika/train/run.py and clika/train/data/mixture.py import them).
COMMANDS = ("fit", "prepare", "export", "plan")
METHODS = ("lora", "full")
SAMPLING = ("weights", "temperature")


def check_train_config(cfg: Any) -> None:
    """Fail fast, naming the key and the fix, before anything slow happens."""
    need(cfg.task in COMMANDS, "task", f"unknown task '{cfg.task}'", f"use one of {COMMANDS}")
    m = cfg.method
    need(m.name in METHODS, "method", f"unknown method '{m.name}'", "use method=lora or method=full")
    if m.name == "lora":
        need(int(m.r) > 0, "method.r", "LoRA rank must be > 0", "e.g. method.r=8")
        need(0 <= float(m.dropout) < 1, "method.dropout", "must be in [0, 1)", "e.g. method.dropout=0.1")
    need(float(m.lr) > 0, "method.lr", "learning rate must be > 0", "e.g. method.lr=2e-4")
    check_preset(cfg)
    check_master_weights(cfg)
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
    check_plan_keys(cfg)


def check_plan_keys(cfg: Any) -> None:
    """The memory plan's settings (conf/train.yaml `plan`; the estimate itself: clika.train.plan)."""
    strict = get(cfg, "plan.strict", False)
    need(isinstance(strict, bool), "plan.strict", f"must be true or false, got {strict!r}", "plan.strict=true")
    memory = get(cfg, "plan.device_memory_gb")
    need(memory is None or (isinstance(memory, (int, float)) and memory > 0), "plan.device_memory_gb",
         f"must be a number of GiB > 0 or null, got {memory!r}", "e.g. plan.device_memory_gb=80")
    need((as_int(get(cfg, "plan.eval_tokens", 512)) or 0) > 0, "plan.eval_tokens", "must be > 0",
         "e.g. plan.eval_tokens=512")


def check_master_weights(cfg: Any) -> None:
    """Full fine-tuning of 16-bit weights: AdamW would step on the bf16/fp16 weights themselves (updates below their
    precision are lost). Only DeepSpeed keeps fp32 master weights for them; elsewhere the weights must be fp32
    (trainer.precision=bf16-mixed still computes in bf16)."""
    dtype = str(cfg.model.get("dtype") or "float32")
    deepspeed = str(get(cfg, "strategy.name", "auto")).startswith("deepspeed")
    if cfg.method.name == "full" and dtype in ("bfloat16", "float16", "half") and not deepspeed:
        fail("model.dtype", f"{dtype} weights with method=full and strategy={get(cfg, 'strategy.name', 'auto')} "
             "leave AdamW no fp32 master copy (small updates are lost)",
             "set model.dtype=float32 (with trainer.precision=bf16-mixed to compute in bf16), or "
             "strategy=deepspeed_zero2 / deepspeed_zero3 (fp32 master weights), or method=lora")


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
    `suite` with the callback's own `limit` / `langs` / `bootstrap`, when data_root is set and datasets is not []."""
    node = get(cfg, "callbacks.clika")
    if node is None or "_target_" not in node:
        return None
    suite = dict(plain(node, "suite", {}) or {})
    suite.update({k: plain(node, k) for k in ("limit", "langs", "bootstrap") if get(node, k) is not None})
    return suite if suite.get("data_root") and suite.get("datasets") != [] else None  # null: the default datasets


def origin(cfg: Any, key: str) -> str:
    """The key a value was set under: `callbacks.clika.fictional.lang` -> `fictional.lang` -> `lang` when each
    is a plain `${...}` reference to the next (an error names the key the user actually set)."""
    parts, node = key.split("."), cfg
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return key
        node = node._get_node(part)
        raw = node._value() if node is not None else None
        m = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
        if m:
            return origin(cfg, ".".join([m.group(1), *parts[i + 1:]]))
    return key


def check_missing_values(cfg: Any) -> None:
    """No mandatory value (`???`) left unset, e.g. by a model preset's base."""
    missing: list[str] = []
    for top in (cfg.keys() if isinstance(cfg, DictConfig) else []):
        node = cfg._get_node(top)
        if top == "hydra" or node is None:
            continue
        try:
            if isinstance(node, DictConfig):
                missing += [f"{top}.{k}" for k in sorted(OmegaConf.missing_keys(node))]
            elif node._is_missing():
                missing.append(str(top))
        except Exception:  # noqa: BLE001 - an interpolation that resolves only in the job
            continue
    if missing:
        fail(missing[0], "has no value (???)", f"set {missing[0]}=<value>" + (
            ", or pick a preset: model=<name> (conf/model/)" if missing[0].startswith("model.") else ""))


def gpu_count() -> int:
    import torch  # deferred: only a GPU trainer needs it here (1.2 s of `python -X importtime`)

    return torch.cuda.device_count()


def check_accelerator(cfg: Any, hydra_cfg: Any = None, gpus: Callable[[], int] = gpu_count) -> None:
    """A GPU trainer on a machine without a GPU (Lightning's MisconfigurationException otherwise)."""
    accel = str(get(cfg, "trainer.accelerator", "auto"))
    if accel not in ("gpu", "cuda") or get(cfg, "task") == "plan" or gpus() > 0:  # a plan may be made anywhere
        return
    choice = get(hydra_cfg, "runtime.choices.trainer") if hydra_cfg is not None else None
    key = "trainer=gpu" if choice == "gpu" else f"trainer.accelerator={accel}"
    fail(key, "this machine has no GPU", "drop it (trainer=default takes the GPUs when present, else the CPU) "
         "or use trainer=cpu")


def check_init_from(cfg: Any) -> None:
    """`init_from`: a model preset, `tiny`, a hub id, or a local HF folder that exists."""
    init = get(cfg, "init_from")
    if not init or str(init) == "tiny" or (PROJECT_ROOT / "conf" / "model" / f"{init}.yaml").exists():
        return
    if is_local_path(str(init)) and not Path(str(init)).expanduser().exists():
        fail("init_from", f"'{init}' does not exist",
             "point init_from at an HF folder (e.g. <run dir>/export/hf, written by task=export), a preset of "
             "conf/model/ or a hub id")


def check_fictional_probe(cfg: Any) -> None:
    """The Fictional probe's X (the language trained on) is not English (English is always the source)."""
    node = get(cfg, "callbacks.clika.fictional")
    lang = get(node, "lang") if node is not None else None
    if lang is not None and str(lang) not in NON_EN:
        key = origin(cfg, "callbacks.clika.fictional.lang")
        fail(key, f"'{lang}' cannot be the conductivity language X (facts are taught in English and asked in X)",
             f"{key}=<one of {' '.join(NON_EN)}>")


def check_fictional_root(cfg: Any) -> None:
    """A mixture that trains on `<fictional.root>/train/<X>.json` (data/mix=fictional_release) needs that file."""
    root = get(cfg, "fictional.root")
    if not root:
        return
    for name, src in (plain(cfg, "data.mix.sources", {}) or {}).items():
        path = str(src.get("path") or "")
        if path.startswith(str(root)) and not Path(path).is_file():
            have = sorted(p.stem for p in (Path(str(root)) / "train").glob("*.json"))
            fail("fictional.root", f"'{root}' has no training file {Path(path).relative_to(str(root))} for "
                 f"lang={get(cfg, 'lang', src.get('lang'))} (data.mix.sources.{name}.path)",
                 f"point fictional.root at a fictional folder with train/<X>.json (the release's "
                 f"$CLIKA_DATA/fictional, or eval.py task=make_fictional); it has {have or 'none'}")


def check_fictional_world(cfg: Any) -> None:
    """An embedded fictional source must be generated from the world the probe asks about (else the cities trained
    and the cities asked are different ones, and every accuracy sits at chance)."""
    probe = plain(cfg, "callbacks.clika.fictional", None)
    if not probe or probe.get("root"):
        return
    asked = world_params(probe.get("world"))
    for name, src in (plain(cfg, "data.mix.sources", {}) or {}).items():
        if src.get("format") == "embedded" and str(src.get("path", "")).startswith("fictional_"):
            trained = world_params(src.get("world"))
            if trained != asked:
                differ = sorted(k for k in asked if asked[k] != trained[k])
                fail(f"data.mix.sources.{name}.world", f"{ {k: trained[k] for k in differ} } differs from the "
                     f"probe's fictional.world { {k: asked[k] for k in differ} }",
                     f"set data.mix.sources.{name}.world: ${{oc.select:fictional.world,{{}}}} (as conf/data/source/"
                     f"fictional_* do), or the same world in both")


def check_train(cfg: Any) -> None:
    """Every model-free check of a train config except the launch ones (clika.app.checks.run_train_checks)."""
    check_train_config(cfg)
    check_deepspeed_trainer(plain(cfg, "strategy", {}) or {}, plain(cfg, "trainer", {}) or {},
                            int(get(cfg, "data.batch_size", 1) or 1))
    check_strategy(cfg)
    check_streamed_data(cfg)
    check_sweep(cfg)
    check_missing_values(cfg)
    check_init_from(cfg)
    check_fictional_probe(cfg)
    check_fictional_root(cfg)
    check_fictional_world(cfg)
