"""Strategy settings (conf/strategy): the preset names, DeepSpeed keys the presets derive, ZeRO-3 with LoRA,
ZeRO-3 resume across world sizes, and DeepSpeed settings that contradict the Trainer / data config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clika.app.checks.core import as_int, fail, get, need
from clika.train.zero3_buffers import MODES as ZERO3_BUFFER_MODES
from clika.util.errors import ClikaError

# The presets clika/train/strategies.py builds (one place: it imports this).
STRATEGIES = ("auto", "ddp", "deepspeed_zero2", "deepspeed_zero2_offload", "deepspeed_zero3",
              "deepspeed_zero3_offload")
# keys build_strategy derives from trainer / data / method: setting them in strategy.kwargs collides
DERIVED_STRATEGY_KEYS = ("stage", "offload_optimizer", "offload_parameters", "logging_batch_size_per_gpu",
                         "exclude_frozen_parameters")
_PRECISION_DS = {"16-mixed": "fp16", "16": "fp16", "16-true": "fp16", "bf16-mixed": "bf16", "bf16": "bf16",
                 "bf16-true": "bf16"}


def check_preset(cfg: Any) -> None:
    name = get(cfg, "strategy.name")
    need(name in STRATEGIES, "strategy", f"unknown preset '{name}'", f"use one of {STRATEGIES}")


def check_strategy(cfg: Any) -> None:
    """DeepSpeed settings: derived keys, ZeRO-3 + LoRA checkpoints, ZeRO-3 resume across world sizes."""
    s = cfg.strategy
    name = str(get(s, "name", "auto"))
    if not name.startswith("deepspeed"):
        return
    kwargs = dict(get(s, "kwargs", {}) or {})
    lora = str(get(cfg, "method.name", "")) == "lora"
    mode = str(get(s, "zero3_buffers", "auto"))
    need(mode in ZERO3_BUFFER_MODES, "strategy.zero3_buffers", f"unknown value '{mode}'",
         f"use one of {ZERO3_BUFFER_MODES} (auto: ZeRO-3's limits scaled to the model; deepspeed: its defaults)")
    for key in DERIVED_STRATEGY_KEYS:
        if key in kwargs:
            fail(f"strategy.kwargs.{key}", "is derived by the preset (stage/offload from strategy, micro batch "
                 "from data.batch_size, exclude_frozen_parameters from method)",
                 f"remove strategy.kwargs.{key}; pick the preset (strategy=...) or set method= / data.batch_size")
    stage = as_int(get(s, "stage", 0)) or 0
    if stage == 3 and lora:
        if kwargs.get("load_full_weights"):
            fail("strategy.kwargs.load_full_weights", "ZeRO-3 with LoRA: checkpoints hold the adapter only (frozen "
                 "base weights are excluded), so they cannot be loaded as full single-file weights",
                 "remove strategy.kwargs.load_full_weights; resume=auto resumes the sharded ZeRO checkpoint, and "
                 "init_from=<export/hf> starts from merged weights")
        if kwargs.get("save_full_weights") is False:
            fail("strategy.kwargs.save_full_weights", "ZeRO-3 with LoRA needs the consolidated adapter weights "
                 "for export and the CLiKA evaluation", "remove strategy.kwargs.save_full_weights")
    resume = get(cfg, "resume")
    if stage == 3 and resume not in (None, "auto"):
        ckpt = Path(str(resume))
        if ckpt.is_dir() and (ckpt / "checkpoints").is_dir():
            ckpt = ckpt / "checkpoints" / "last.ckpt"
        shards = _zero_shards(ckpt)
        devices = as_int(get(cfg, "trainer.devices", 1))
        world = (devices or 0) * (as_int(get(cfg, "trainer.num_nodes", 1)) or 1)
        if shards and devices and devices > 0 and shards != world:
            fail("resume", f"the ZeRO-3 checkpoint '{resume}' was written by {shards} ranks, this run has {world} "
                 "(ZeRO-3 shards are tied to the world size)",
                 f"resume with trainer.devices x trainer.num_nodes = {shards}, or consolidate it "
                 "(task=export resume=...) and start a new run with init_from=<run dir>/export/hf")


def _zero_shards(ckpt: Path) -> int:
    """Ranks that wrote a ZeRO checkpoint dir (<dir>/<tag>/*_optim_states.pt); 0 when not one."""
    if not ckpt.is_dir():
        return 0
    tag_file = ckpt / "latest"
    tag_dir = ckpt / tag_file.read_text().strip() if tag_file.exists() else ckpt
    return len(list(tag_dir.glob("*optim_states.pt")))


def check_deepspeed_trainer(strategy: Mapping[str, Any], trainer: Mapping[str, Any], batch_size: int) -> None:
    """DeepSpeed settings that contradict the Trainer / data config (Lightning derives them, or rejects them
    later with a traceback): clipping by value, a `config` dict disagreeing on micro batch, accumulation,
    clipping, precision or ZeRO stage."""
    name = str(strategy.get("name", "auto"))
    if not name.startswith("deepspeed"):
        return
    if str(trainer.get("gradient_clip_algorithm") or "norm") == "value":
        fail("trainer.gradient_clip_algorithm", "DeepSpeed clips by norm only, got 'value'",
             "set trainer.gradient_clip_algorithm=norm (or use strategy=ddp)")
    config = dict((strategy.get("kwargs") or {}).get("config") or {})
    if not config:
        return
    k = "strategy.kwargs.config"
    accumulate = trainer.get("accumulate_grad_batches", 1)
    if "gradient_accumulation_steps" in config and int(config["gradient_accumulation_steps"]) != int(accumulate or 1):
        raise ClikaError(f"{k}.gradient_accumulation_steps={config['gradient_accumulation_steps']} contradicts "
                         f"trainer.accumulate_grad_batches={accumulate}",
                         fix=f"remove {k}.gradient_accumulation_steps; set trainer.accumulate_grad_batches")
    mb = config.get("train_micro_batch_size_per_gpu")
    if mb is not None and mb != "auto" and int(mb) != int(batch_size):
        raise ClikaError(f"{k}.train_micro_batch_size_per_gpu={mb} contradicts data.batch_size={batch_size}",
                         fix=f"remove {k}.train_micro_batch_size_per_gpu; set data.batch_size")
    clip, tclip = config.get("gradient_clipping"), trainer.get("gradient_clip_val")
    if clip is not None and clip != "auto" and tclip is not None and float(clip) != float(tclip):
        raise ClikaError(f"{k}.gradient_clipping={clip} contradicts trainer.gradient_clip_val={tclip}",
                         fix=f"remove {k}.gradient_clipping; set trainer.gradient_clip_val")
    want = _PRECISION_DS.get(str(trainer.get("precision", "32-true")))
    for kind in ("fp16", "bf16"):
        if (config.get(kind) or {}).get("enabled") is True and want != kind:
            raise ClikaError(f"{k}.{kind}.enabled=true contradicts trainer.precision={trainer.get('precision')}",
                             fix=f"remove {k}.{kind}; set trainer.precision="
                                 f"{'16-mixed' if kind == 'fp16' else 'bf16-mixed'}")
    stage = (config.get("zero_optimization") or {}).get("stage")
    if stage is not None and strategy.get("stage") is not None and int(stage) != int(strategy["stage"]):
        raise ClikaError(f"{k}.zero_optimization.stage={stage} contradicts strategy={name} (stage "
                         f"{strategy['stage']})", fix=f"pick the preset with stage {stage} (strategy=deepspeed_zero"
                                                      f"{stage}) and drop zero_optimization from {k}")
