"""Strategy presets (auto, ddp, deepspeed_zero2[_offload], deepspeed_zero3[_offload]).

The DeepSpeed config is never written by hand: Lightning derives precision, micro batch size, gradient
accumulation and clipping from the Trainer, and the preset only adds the ZeRO stage and offload flags.
Lightning refuses DeepSpeed without CUDA; `CPUDeepSpeedStrategy` lifts that check and uses gloo, so the
real DeepSpeed engine runs (and is tested) on CPU.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, Strategy

from clika.app.checks.strategy import STRATEGIES as PRESETS
from clika.train.zero3_buffers import for_strategy, scaled
from clika.util.errors import ClikaError


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeed on CPU over gloo: used only when no GPU is present (tests, laptops)."""

    strategy_name = "deepspeed_cpu"

    def __init__(self, **kwargs):
        kwargs.setdefault("process_group_backend", "gloo")
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)  # skips DeepSpeedStrategy's CUDA-only check

    def setup_distributed(self) -> None:
        # as DeepSpeedStrategy, minus the CUDA device-index check (CPU devices have no index)
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        # as DeepSpeedStrategy, but DeepSpeed needs an integer device rank (a CPU device has no index)
        import deepspeed  # deferred like Lightning's DeepSpeedStrategy: 0.4 s of importtime, DeepSpeed runs only

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank), config=self.config, model=model,
            model_parameters=filter(lambda p: p.requires_grad, model.parameters()), optimizer=optimizer,
            lr_scheduler=lr_scheduler, dist_init_required=False)
        return engine, ds_optimizer


def uses_gpu(trainer_cfg: dict[str, Any]) -> bool:
    acc = str(trainer_cfg.get("accelerator", "auto"))
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def build_strategy(strategy: dict[str, Any], trainer_cfg: dict[str, Any], batch_size: int,
                   lora: bool, hidden: int | None = None) -> Strategy | str:
    """A Lightning strategy (or name) for the preset in `strategy` (conf/strategy/*.yaml); ZeRO-3's buffers scaled
    to the model's `hidden` size under `strategy.zero3_buffers: auto` (clika.train.zero3_buffers)."""
    name = strategy["name"]
    if name not in PRESETS:
        raise ClikaError(f"strategy.name: unknown preset '{name}'", fix=f"use one of {PRESETS}")
    if name == "auto":
        return "auto"
    if name == "ddp":
        return DDPStrategy(find_unused_parameters=bool(strategy.get("find_unused_parameters", False)),
                           process_group_backend=strategy.get("process_group_backend"))
    kwargs = dict(
        stage=int(strategy["stage"]),
        offload_optimizer=bool(strategy.get("offload_optimizer", False)),
        offload_parameters=bool(strategy.get("offload_parameters", False)),
        logging_batch_size_per_gpu=batch_size,  # DeepSpeed's train_micro_batch_size_per_gpu
        exclude_frozen_parameters=lora,  # LoRA: the checkpoint holds the adapter only
        **dict(strategy.get("kwargs") or {}),
    )
    built = DeepSpeedStrategy(**kwargs) if uses_gpu(trainer_cfg) else CPUDeepSpeedStrategy(**kwargs)
    if hidden and scaled(strategy):
        # Lightning built its config from the kwargs (or took strategy.kwargs.config): explicit keys still win
        built.config.setdefault("zero_optimization", {}).update(for_strategy(strategy, hidden))
    return built


def deepspeed_optimizer(strategy: dict[str, Any]) -> type | None:
    """ZeRO-Offload steps the optimizer on the CPU with DeepSpeed's fused CPU Adam (a C++ op, built once)."""
    if strategy["name"].startswith("deepspeed") and strategy.get("offload_optimizer"):
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # deferred: DeepSpeed runs only (0.4 s of importtime)

        return DeepSpeedCPUAdam
    return None
