"""`train(cfg) -> dict`: validate, prepare data, build module / datamodule / trainer, fit, export, summarise.

Tasks: `fit` (default), `prepare` (only the cached tokenization), `export` (a checkpoint -> HF folders).
Only rank 0 writes files outside Lightning's own checkpointing; every write is temp + rename.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clika.env import PROJECT_ROOT, setup_env
from clika.cli import friendly_errors
from clika.errors import ClikaError
from clika.models import ModelSpec

TASKS = ("fit", "prepare", "export")
METHODS = ("lora", "full")


# ---------------------------------------------------------------- helpers
def _rank() -> int:
    from train.launch_checks import global_rank

    return global_rank()  # also right for rank 0 of node > 0 under NODE_RANK


def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def model_spec(cfg: DictConfig, init: str | None = None) -> ModelSpec:
    """The `model` group, or `init_from` (a model preset name, hub id, local dir or `tiny`; `init` is
    `init_from` already resolved, e.g. `experiment:<name>` to its cached folder by `train.base`)."""
    model = dict(_container(cfg.model))
    init = init or cfg.get("init_from")
    if init:
        preset = PROJECT_ROOT / "conf" / "model" / f"{init}.yaml"
        if preset.exists():
            node = OmegaConf.load(preset)
            bases = [OmegaConf.load(preset.parent / f"{b}.yaml") for b in node.pop("defaults", [])]
            model = dict(_container(OmegaConf.merge(*bases, node)))
        else:
            model.update(name=str(init).rstrip("/").split("/")[-1], name_or_path=str(init))
    return ModelSpec(**model)


# ---------------------------------------------------------------- validation
def validate(cfg: DictConfig) -> None:
    """Fail fast, naming the key and the fix, before anything slow happens."""
    from train.data.mixture import SAMPLING
    from train.data.processing import TEMPLATES
    from train.strategies import PRESETS

    def need(ok: bool, key: str, msg: str, fix: str):
        if not ok:
            raise ClikaError(f"{key}: {msg}", fix=fix)

    need(cfg.task in TASKS, "task", f"unknown task '{cfg.task}'", f"use one of {TASKS}")
    need(cfg.method.name in METHODS, "method", f"unknown method '{cfg.method.name}'", "use method=lora or method=full")
    if cfg.method.name == "lora":
        need(int(cfg.method.r) > 0, "method.r", "LoRA rank must be > 0", "e.g. method.r=8")
        need(0 <= float(cfg.method.dropout) < 1, "method.dropout", "must be in [0, 1)", "e.g. method.dropout=0.1")
    need(float(cfg.method.lr) > 0, "method.lr", "learning rate must be > 0", "e.g. method.lr=2e-4")
    need(cfg.strategy.name in PRESETS, "strategy", f"unknown preset '{cfg.strategy.name}'", f"use one of {PRESETS}")
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


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    """`auto` -> run_dir/checkpoints/last.ckpt when present; a run dir -> its last.ckpt; a path as is."""
    if resume is None:
        return None
    from train.reliability import find_resumable_checkpoint

    path = run_dir if resume == "auto" else Path(str(resume))
    if resume == "auto" or (path.is_dir() and (path / "checkpoints").is_dir()):
        return find_resumable_checkpoint(path)  # None = fresh start; warns when falling back past a corrupt one
    return find_resumable_checkpoint(path, fallback=False) if path.exists() else str(path)


# ---------------------------------------------------------------- builders
def build_loggers(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> list:
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import WandbLogger

    loggers = []
    for name, node in (cfg.logger or {}).items():
        if node is None or "_target_" not in node:
            continue
        extra: dict[str, Any] = {}
        if "Wandb" in node._target_:
            extra["id"] = _wandb_id(run_dir, ckpt_path)
        logger = instantiate(node, **extra)
        loggers.append(logger)
        if isinstance(logger, WandbLogger) and _rank() == 0:
            logger.log_hyperparams(_container(cfg))
    return loggers


def _wandb_id(run_dir: Path, ckpt_path: str | None) -> str:
    """One W&B run per run dir: the id is kept beside the checkpoints so a resume continues that run."""
    from clika.jsonl import atomic_write_text

    candidates = [run_dir / "wandb_run_id"]
    if ckpt_path:
        candidates.insert(0, Path(ckpt_path).parent.parent / "wandb_run_id")
    for f in candidates:
        if f.exists():
            return f.read_text().strip()
    run_id = os.environ.get("CLIKA_WANDB_ID") or uuid.uuid4().hex[:8]
    os.environ["CLIKA_WANDB_ID"] = run_id  # DDP children launched from this process reuse it
    if _rank() == 0:
        atomic_write_text(run_dir / "wandb_run_id", run_id)
    return run_id


def build_callbacks(cfg: DictConfig) -> list:
    from hydra.utils import instantiate

    return [instantiate(node) for node in (cfg.callbacks or {}).values()
            if node is not None and "_target_" in node]


def _optimizer_fns(cfg: DictConfig):
    from functools import partial

    from hydra.utils import instantiate

    from train.strategies import deepspeed_optimizer

    optimizer = instantiate(cfg.optimizer, lr=float(cfg.method.lr))
    if (ds_opt := deepspeed_optimizer(_container(cfg.strategy))) is not None:
        optimizer = partial(ds_opt, *optimizer.args, **optimizer.keywords)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return optimizer, scheduler


def _thread_discipline(cfg: DictConfig) -> None:
    """Several CPU processes on one machine: split the cores instead of oversubscribing them."""
    import torch

    from train.strategies import uses_gpu

    if uses_gpu(_container(cfg.trainer)):
        return
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    threads = cfg.get("threads", "auto")
    if threads == "auto":
        devices = cfg.trainer.get("devices", 1)
        n = devices if isinstance(devices, int) and devices > 0 else 1
        threads = max(1, (os.cpu_count() or 1) // n)
    torch.set_num_threads(int(threads))


def _write_run_files(cfg: DictConfig, run_dir: Path) -> None:
    from clika.cli import git_sha, save_run_config
    from clika.jsonl import atomic_write_text

    save_run_config(run_dir, OmegaConf.to_container(cfg, resolve=True), print_tree=bool(cfg.get("print_config", True)))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    meta = {"git_sha": git_sha(), "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------- entry
def _one_line_per_log_record() -> None:
    """Lightning, imported before Hydra configured logging, gave its loggers a bare console handler; under
    Hydra the root handlers (console + the run's .log file) also print every record, so each INFO line came
    out twice. Drop Lightning's own handler when the root logger has handlers and let records propagate."""
    import logging

    if not logging.getLogger().hasHandlers():
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(h)
        lg.propagate = True


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training task described by the composed config (conf/train.yaml); returns a summary dict."""
    setup_env()
    validate(cfg)
    from train.launch_checks import validate_launch

    validate_launch(cfg)
    import lightning.pytorch as pl
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars on every (re)load are noise in job logs
    _one_line_per_log_record()

    from clika.models import load_tokenizer
    from train.base import is_base, resolve_base
    from train.data.datamodule import MixtureDataModule

    _thread_discipline(cfg)
    init = None
    if is_base(cfg.get("init_from")):  # before seeding: building the base must not shift this run's RNG
        init = resolve_base(cfg.init_from, cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir).resolve()
    spec = model_spec(cfg, init)
    method = _container(cfg.method)

    if cfg.task == "export":
        from train.export import export_checkpoint

        ckpt = resolve_resume(cfg.resume, run_dir)
        out = export_checkpoint(ckpt, spec, method, Path(ckpt).parent.parent / "export", cfg.export.merge)
        return {"task": "export", "checkpoint": ckpt, "export": out}

    tokenizer = load_tokenizer(spec)
    data = _container(cfg.data)
    dm = MixtureDataModule(data, tokenizer, seed=int(cfg.seed))
    t0 = time.perf_counter()
    sources = dm.prepare()  # cached tokenization, before any process group exists
    if cfg.task == "prepare":
        out = {"task": "prepare", "seconds": time.perf_counter() - t0,
               "sources": {n: {"lang": t.lang, "items": len(t), **t.stats} for n, t in sources.items()}}
        if _rank() == 0:
            print(json.dumps(out, indent=2, ensure_ascii=False))
        return out
    dm.setup("fit")
    return _fit(cfg, spec, method, dm, run_dir)


def _fit(cfg: DictConfig, spec: ModelSpec, method: dict, dm, run_dir: Path) -> dict[str, Any]:
    import lightning.pytorch as pl

    from train.module import CausalLMModule
    from train.strategies import build_strategy

    optimizer, scheduler = _optimizer_fns(cfg)
    module = CausalLMModule(spec, method, optimizer, scheduler, val_langs=dm.val_langs)
    max_pos = getattr(module.model.config, "max_position_embeddings", None)
    if max_pos and cfg.data.block_size > max_pos:
        raise ClikaError(f"data.block_size: {cfg.data.block_size} exceeds the model's context ({max_pos})",
                         fix=f"set data.block_size<={max_pos}")
    ckpt_path = resolve_resume(cfg.resume, run_dir)
    if _rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    trainer_kwargs = _container(cfg.trainer)
    strategy = build_strategy(_container(cfg.strategy), trainer_kwargs, int(cfg.data.batch_size),
                              lora=method["name"] == "lora")
    trainer = pl.Trainer(**trainer_kwargs, strategy=strategy, default_root_dir=str(run_dir),
                         logger=build_loggers(cfg, run_dir, ckpt_path) or False,
                         callbacks=build_callbacks(cfg), use_distributed_sampler=False)
    if trainer.is_global_zero and _rank() == 0:
        _write_run_files(cfg, run_dir)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    wall = time.perf_counter() - start

    ckpt = _last_checkpoint(trainer)
    result: dict[str, Any] = {
        "task": "fit", "run_dir": str(run_dir), "checkpoint": ckpt, "global_step": trainer.global_step,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1},
        "data": dm.summary, "fit_seconds": wall, "tokens_per_s": module.throughput(),
        "resumed_from": ckpt_path, "export": {}, "wandb": None,
    }
    for cb in trainer.callbacks:  # CLiKA metrics go to the loggers directly, not to callback_metrics
        result["metrics"].update(getattr(cb, "last_logged", None) or {})
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        if cfg.export.enabled and ckpt:
            from train.export import export_checkpoint

            result["export"] = export_checkpoint(ckpt, spec, method, run_dir / "export", cfg.export.merge)
        result["wandb"] = _finish_wandb(trainer)
        from clika.jsonl import atomic_write_text

        atomic_write_text(run_dir / "train_summary.json", json.dumps(result, indent=2, default=str) + "\n")
        print_summary(result)
    return result


def _last_checkpoint(trainer) -> str | None:
    cb = trainer.checkpoint_callback
    if cb is None:
        return None
    last = Path(cb.dirpath or "") / "last.ckpt"
    path = last if last.exists() else Path(cb.best_model_path or cb.last_model_path or "")
    return str(path.resolve()) if str(path) and path.exists() else None


def _finish_wandb(trainer) -> str | None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run_dir = str(Path(logger.experiment.dir).parent)
            logger.experiment.finish()
            return run_dir
    return None


def print_summary(result: dict[str, Any]) -> None:
    run_dir = Path(result["run_dir"])
    lines = [f"run dir      {run_dir}",
             f"steps        {result['global_step']}  ({result['fit_seconds']:.1f}s, "
             f"{result['tokens_per_s'] or 0:.0f} tokens/s)",
             f"checkpoint   {result['checkpoint']}"]
    lines += [f"export/{k:<6} {v}" for k, v in result["export"].items()]
    shares = ", ".join(f"{l} {v:.1%}" for l, v in result["data"]["realised_share"].items())
    lines.append(f"data shares  {shares}  (token share per language)")
    packing = [f"{n} {s['packing_efficiency']:.1%}" for n, s in result["data"]["sources"].items()
               if "packing_efficiency" in s]
    if packing:
        lines.append(f"packing      {', '.join(packing)} of tokens kept, no padding")
    for pattern in ("**/alignment.csv", "**/*.png", "csv/**/metrics.csv"):
        lines += [f"{'file':<12} {p}" for p in sorted(run_dir.glob(pattern))[:4]]
    if result["wandb"]:
        lines.append(f"wandb        {result['wandb']}  (upload: wandb sync {result['wandb']})")
    from clika.curves import read_rows, start_end_table

    table = start_end_table(read_rows(run_dir / "alignment.csv"))
    print("\n== training summary ==\n" + "\n".join(lines) + ("\n\n" + table if table else ""), flush=True)


@friendly_errors
def main(cfg: DictConfig) -> Any:
    """Hydra entry: ClikaError prints one line (traceback=true or CLIKA_DEBUG=1 for the traceback), exit 2.

    Returns the `optimized_metric` value for sweeper plugins when one is configured.
    """
    result = train(cfg)
    if cfg.get("optimized_metric") and result.get("task") == "fit":
        from train.launch_checks import optimized_value

        return optimized_value(cfg, result)
    return result
