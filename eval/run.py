"""Dispatch `eval.py` by `task` after validating the config and saving it in the run dir."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from clika.cli import save_run_config
from clika.errors import ClikaError


def run(cfg: DictConfig):
    from eval.evaluate import evaluate
    from eval.tasks import TASKS

    tasks = {"evaluate": evaluate, **TASKS}
    if cfg.task not in tasks:
        raise ClikaError(f"unknown task '{cfg.task}'", fix=f"task= one of {sorted(tasks)}")
    save_run_config(cfg.paths.output_dir, OmegaConf.to_container(cfg, resolve=True), print_tree=cfg.get("print_config", True))
    return tasks[cfg.task](cfg)
