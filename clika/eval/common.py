"""What every eval.py command reads from its config the same way: where it writes, and which model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from clika.models.load import ModelSpec


def out_dir(cfg: DictConfig) -> Path:
    """`output_dir` when given (side commands), else the run dir."""
    return Path(cfg.get("output_dir") or cfg.paths.output_dir)


def model_spec(cfg: DictConfig) -> ModelSpec:
    return ModelSpec(**OmegaConf.to_container(cfg.model, resolve=True))
