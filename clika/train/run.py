"""`train(cfg) -> dict`: validate, prepare data, build module / datamodule / trainer, fit, export, summarise.

Tasks: `fit` (default), `prepare` (only the cached tokenization), `export` (a checkpoint -> HF folders), `plan`
(the estimated memory per device, clika/train/plan.py; a fit checks it at start-up).
Only rank 0 writes files outside Lightning's own checkpointing; every write is temp + rename.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig
from transformers.utils import logging as hf_logging

from clika.app.checks import friendly_errors, run_train_checks
from clika.app.run_dir import git_sha, save_run_config
from clika.report.curves import read_rows, start_end_table
from clika.app.env import PROJECT_ROOT, setup_env
from clika.util.jsonl import atomic_write_text
from clika.app.defaults import model_preset
from clika.app.launch import global_rank, register_config
from clika.app.quiet import quiet_known_noise
from clika.models.load import ModelSpec, load_tokenizer, resolve_model_dir
from clika.scoring.suite import Suite
from clika.util.errors import ClikaError
from clika.train.base import is_base, resolve_base
from clika.train.checkpointing import last_checkpoint, resolve_resume
from clika.train.callbacks.clika_eval import ClikaEvalCallback
from clika.train.data.datamodule import MixtureDataModule
from clika.train.export import export_checkpoint
from clika.train.loggers import build_loggers, finish_wandb, wandb_mode_note
from clika.train.module import CausalLMModule, check_context, lora_targets
from clika.train.plan import Plan, Setup, config_from_size, estimate, over_budget, render, shape_of
from clika.train.cluster.run_lock import acquire
from clika.train.cluster.slurm_requeue import cluster_plugins
from clika.train.cluster.slurm_signals import install_early_handlers
from clika.train.strategies import build_strategy, deepspeed_optimizer, uses_gpu
from clika.train.zero3_buffers import for_strategy
from clika.train.sweep import optimized_value


# ---------------------------------------------------------------- helpers
def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _training(cfg: DictConfig) -> dict:
    """What an export records of its training (clika.models.load.TRAINING_RECORD): the prompt template."""
    return {"data.template": cfg.data.template}


def model_spec(cfg: DictConfig, init: str | None = None) -> ModelSpec:
    """The `model` group, or `init_from` (a model preset name, hub id, local dir or `tiny`; `init` is
    `init_from` already resolved, e.g. `experiment:<name>` to its cached folder by `clika.train.base`)."""
    model = dict(_container(cfg.model))
    init = init or cfg.get("init_from")
    if init:
        preset = PROJECT_ROOT / "conf" / "model" / f"{init}.yaml"
        if preset.exists():
            model = model_preset(preset)
        else:
            model.update(name=str(init).rstrip("/").split("/")[-1], name_or_path=str(init))
    return ModelSpec(**model)


# ---------------------------------------------------------------- memory plan
log = logging.getLogger(__name__)


def _model_config(spec: ModelSpec):
    """The model's transformers config: its config.json (tiny / GGUF folders in the project cache, a local folder,
    the hub or its cache), else the preset's `size:` block."""
    try:
        path = resolve_model_dir(spec) if spec.name_or_path == "tiny" or spec.gguf_package else spec.name_or_path
        return AutoConfig.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code), path
    except (OSError, ValueError) as e:
        if spec.size:
            return config_from_size(spec.size), f"model.size of conf/model/{spec.name}.yaml"
        raise ClikaError(f"model.size: cannot size model '{spec.name}' (no config.json for '{spec.name_or_path}' on disk "
                         f"or in the hub cache: {str(e).splitlines()[0][:120]})",
                         fix=f"add a size: block (model_type and the transformers config's sizes, as conf/model/"
                             f"llama2_7b.yaml has) to conf/model/{spec.name}.yaml, or download the model once") from e


def _world(trainer: dict) -> int:
    devices = trainer.get("devices", 1)
    if not isinstance(devices, int) or devices < 1:  # -1 / auto: every visible GPU (one process on a CPU)
        devices = max(1, torch.cuda.device_count()) if uses_gpu(trainer) else 1
    return devices * int(trainer.get("num_nodes", 1) or 1)


def memory_plan(cfg: DictConfig, spec: ModelSpec) -> Plan:
    """The run's estimated memory (clika.train.plan) from its model's config and the composed settings."""
    config, source = _model_config(spec)
    method = _container(cfg.method)
    lora = ({"r": method["r"], "targets": lora_targets(config.model_type, method.get("target_modules"))}
            if method["name"] == "lora" else None)
    trainer, strategy = _container(cfg.trainer), _container(cfg.strategy)
    stage = int(strategy.get("stage", 0)) if strategy["name"].startswith("deepspeed") else 0
    shape = shape_of(config, lora, source)
    buffers = for_strategy(strategy, shape.hidden)  # DeepSpeed's buffer sizes, as build_strategy passes them
    clika = cfg.get("callbacks", {}).get("clika")
    eval_batch = 0
    if clika is not None and "_target_" in clika:
        eval_batch = int(cfg.get("clika", {}).get("batch_size") or Suite.__dataclass_fields__["batch_size"].default)
    setup = Setup(world=_world(trainer), batch=int(cfg.data.batch_size), block=int(cfg.data.block_size),
                  accumulate=int(trainer.get("accumulate_grad_batches", 1) or 1), dtype=str(spec.dtype),
                  precision=str(trainer.get("precision", "32-true")),
                  stage=stage,
                  ddp=strategy["name"] == "ddp" or (strategy["name"] == "auto" and _world(trainer) > 1),
                  offload_optimizer=bool(strategy.get("offload_optimizer")),
                  offload_params=bool(strategy.get("offload_parameters")),
                  checkpointing=bool(spec.gradient_checkpointing), eval_batch=eval_batch,
                  eval_tokens=int(cfg.get("plan", {}).get("eval_tokens", 512)),
                  live_params=float(buffers["stage3_max_live_parameters"]),
                  reduce_bucket=float(buffers["reduce_bucket_size"]), sub_group=float(buffers["sub_group_size"]))
    return estimate(shape, setup)


def device_memory(cfg: DictConfig) -> float | None:
    """Bytes per device: plan.device_memory_gb, else the visible GPU's when the trainer uses GPUs, else None."""
    gb = cfg.get("plan", {}).get("device_memory_gb")
    if gb:
        return float(gb) * 1024 ** 3
    if uses_gpu(_container(cfg.trainer)) and torch.cuda.is_available():
        return float(torch.cuda.get_device_properties(0).total_memory)
    return None


def check_memory_plan(cfg: DictConfig, spec: ModelSpec) -> None:
    """At start-up: warn (plan.strict=true: refuse) when the estimate exceeds the device memory; a model the plan
    cannot size is not checked (task=plan names the key)."""
    budget = device_memory(cfg)
    if budget is None:
        return
    try:
        plan = memory_plan(cfg, spec)
    except ClikaError:
        return
    if (why := over_budget(plan, budget)) is None:
        return
    if cfg.get("plan", {}).get("strict"):
        raise ClikaError(f"plan.strict: {why}", fix="enable model.gradient_checkpointing, lower data.batch_size "
                         "(raise trainer.accumulate_grad_batches), use a higher ZeRO stage or offload, or plan.strict=false")
    if global_rank() == 0:
        log.warning("memory plan: %s; plan.strict=true refuses such a run", why)


# ---------------------------------------------------------------- validation
def _hydra_cfg() -> DictConfig | None:
    """The running job's Hydra config (launcher, mode), or None under the compose API."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def validate(cfg: DictConfig) -> None:
    """Every check that needs no model (clika/checks), as the Hydra callback runs them before the run dir:
    again here, for ranks started by srun / torchrun and for the compose API."""
    run_train_checks(cfg, hydra_cfg=_hydra_cfg())


# ---------------------------------------------------------------- builders
def build_callbacks(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.callbacks or {}).values()
            if node is not None and "_target_" in node]


def _optimizer_fns(cfg: DictConfig):
    optimizer = instantiate(cfg.optimizer, lr=float(cfg.method.lr))
    if (ds_opt := deepspeed_optimizer(_container(cfg.strategy))) is not None:
        optimizer = partial(ds_opt, *optimizer.args, **optimizer.keywords)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return optimizer, scheduler


def _thread_discipline(cfg: DictConfig) -> None:
    """Several CPU processes on one machine: split the cores instead of oversubscribing them."""
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
    save_run_config(run_dir, OmegaConf.to_container(cfg, resolve=True), print_tree=bool(cfg.get("print_config", True)))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    meta = {"git_sha": git_sha(), "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------- entry
def _one_line_per_log_record() -> None:
    """Lightning, when imported before Hydra configured logging, gave its loggers a bare console handler; under
    Hydra the root handlers (console + the run's .log file) also print every record, so each INFO line came
    out twice. Drop Lightning's own handler when the root logger has handlers and let records propagate."""
    if not logging.getLogger().hasHandlers():
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
            lg.removeHandler(h)
        lg.propagate = True


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training task described by the composed config (conf/train.yaml); returns a summary dict."""
    install_early_handlers()  # (again: submitit jobs do not run train.py's top) a requeue signal is recorded
    register_config()  # a submitit job unpickles its config without train.py's registration
    quiet_known_noise()  # (again: a submitit job does not run train.py's top)
    setup_env()
    validate(cfg)
    if cfg.task == "fit" and global_rank() == 0:
        acquire(Path(cfg.paths.output_dir).resolve())  # one live run per run dir
    hf_logging.disable_progress_bar()  # weight-loading bars on every (re)load are noise in job logs
    _one_line_per_log_record()
    _thread_discipline(cfg)
    init = None
    # before seeding: building the base must not shift this run's RNG (a plan sizes the `model` group, which the
    # base experiment trains, instead of building the base)
    if is_base(cfg.get("init_from")) and cfg.task != "plan":
        init = resolve_base(cfg.init_from, cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir).resolve()
    spec = model_spec(cfg, init)
    method = _container(cfg.method)

    if cfg.task == "plan":
        plan = memory_plan(cfg, spec)
        if global_rank() == 0:
            print(render(plan, device_memory(cfg)), flush=True)
        return {"task": "plan", "device": plan.device, "host": plan.host, "activations": plan.activations,
                "peak": plan.peak, "deepspeed_estimate": plan.deepspeed_estimate,
                "tokens_per_step": plan.tokens_per_step, "params": plan.shape.params}
    if cfg.task == "fit":
        check_memory_plan(cfg, spec)

    if cfg.task == "export":
        ckpt = resolve_resume(cfg.resume, run_dir)
        out = export_checkpoint(ckpt, spec, method, Path(ckpt).parent.parent / "export", cfg.export.merge,
                                training=_training(cfg))
        return {"task": "export", "checkpoint": ckpt, "export": out}

    tokenizer = load_tokenizer(spec)
    data = _container(cfg.data)
    dm = MixtureDataModule(data, tokenizer, seed=int(cfg.seed))
    t0 = time.perf_counter()
    sources = dm.prepare()  # cached tokenization, before any process group exists
    if cfg.task == "prepare":
        out = {"task": "prepare", "seconds": time.perf_counter() - t0,
               "sources": {n: {"lang": t.lang, "items": len(t), **t.stats} for n, t in sources.items()}}
        if global_rank() == 0:
            print(json.dumps(out, indent=2, ensure_ascii=False))
        return out
    dm.setup("fit")
    return _fit(cfg, spec, method, dm, run_dir)


def _fit(cfg: DictConfig, spec: ModelSpec, method: dict, dm, run_dir: Path) -> dict[str, Any]:
    optimizer, scheduler = _optimizer_fns(cfg)
    zero3 = str(cfg.strategy.name).startswith("deepspeed") and int(cfg.strategy.get("stage", 0)) == 3
    module = CausalLMModule(spec, method, optimizer, scheduler, val_langs=dm.val_langs, sharded_build=zero3)
    check_context(module.model_config, int(cfg.data.block_size))
    ckpt_path = resolve_resume(cfg.resume, run_dir)
    if global_rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    trainer_kwargs = _container(cfg.trainer)
    strategy = build_strategy(_container(cfg.strategy), trainer_kwargs, int(cfg.data.batch_size),
                              lora=method["name"] == "lora",
                              hidden=int(module.model_config.get_text_config().hidden_size))
    trainer = pl.Trainer(**trainer_kwargs, strategy=strategy, default_root_dir=str(run_dir), plugins=cluster_plugins(),
                         logger=build_loggers(cfg, run_dir, ckpt_path) or False,
                         callbacks=build_callbacks(cfg), use_distributed_sampler=False)
    if trainer.is_global_zero and global_rank() == 0:
        _write_run_files(cfg, run_dir)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    wall = time.perf_counter() - start

    ckpt = last_checkpoint(trainer)
    result: dict[str, Any] = {
        "task": "fit", "run_dir": str(run_dir), "checkpoint": ckpt, "global_step": trainer.global_step,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1},
        "data": dm.summary, "fit_seconds": wall, "tokens_per_s": module.throughput(),
        "resumed_from": ckpt_path, "export": {}, "wandb": None,
        "log_files": [str(Path(lg.log_dir) / "metrics.csv") for lg in trainer.loggers
                      if isinstance(lg, CSVLogger) and (Path(lg.log_dir) / "metrics.csv").exists()],
    }
    for cb in trainer.callbacks:  # CLiKA metrics go to the loggers directly, not to callback_metrics
        if isinstance(cb, ClikaEvalCallback):
            result["metrics"].update(cb.last_logged)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        if cfg.export.enabled and ckpt:
            result["export"] = export_checkpoint(ckpt, spec, method, run_dir / "export", cfg.export.merge,
                                                 training=_training(cfg))
        result["wandb"], result["wandb_mode"] = finish_wandb(trainer), wandb_mode_note(trainer)
        atomic_write_text(run_dir / "train_summary.json", json.dumps(result, indent=2, default=str) + "\n")
        print_summary(result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    run_dir = Path(result["run_dir"])
    lines = [f"run dir      {run_dir}",
             f"steps        {result['global_step']}  ({result['fit_seconds']:.1f}s, "
             f"{result['tokens_per_s'] or 0:.0f} tokens/s)",
             f"checkpoint   {result['checkpoint']}"]
    lines += [f"export/{k:<6} {v}" for k, v in result["export"].items()]
    shares = ", ".join(f"{l} {v:.1%}" for l, v in result["data"]["realised_share"].items())
    mixed = [l for l in result["data"]["realised_share"] if "+" in l]
    note = f"; {', '.join(mixed)}: one source written in these languages, not split" if mixed else ""
    lines.append(f"data shares  {shares}  (token share per language{note})")
    packing = [f"{n} {s['packing_efficiency']:.1%}" for n, s in result["data"]["sources"].items()
               if "packing_efficiency" in s]
    if packing:
        lines.append(f"packing      {', '.join(packing)} of tokens kept, no padding")
    files = [*sorted(run_dir.glob("alignment.csv")), *sorted(run_dir.glob("*.png")), *result.get("log_files", [])]
    lines += [f"{'file':<12} {p}" for p in files]  # this run's own files (no earlier W&B media or CSV versions)
    if result["wandb"]:  # one line: where, which mode and why (clika.train.loggers.wandb_mode_note)
        upload = f"; upload: wandb sync {result['wandb']}" if "offline-run-" in result["wandb"] else ""
        lines.append(f"wandb        {result['wandb']}  ({result.get('wandb_mode')}{upload})")
    table = start_end_table(read_rows(run_dir / "alignment.csv"))
    print("\n== training summary ==\n" + "\n".join(lines) + ("\n\n" + table if table else ""), flush=True)


@friendly_errors
def main(cfg: DictConfig) -> Any:
    """Hydra entry: ClikaError prints one line and exits 2 (traceback=true or CLIKA_DEBUG=1 add the traceback).

    Returns the `optimized_metric` value for sweeper plugins when one is configured.
    """
    result = train(cfg)
    if cfg.get("optimized_metric") and result.get("task") == "fit":
        return optimized_value(cfg, result)
    return result
