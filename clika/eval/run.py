"""Dispatch `eval.py` by `task` after validating the config and saving it in the run dir."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from clika.app.launch import is_rank_zero
from clika.app.run_dir import save_run_config
from clika.util.errors import ClikaError


# The tasks of eval.py, for `--help` without importing them (torch); `run` dispatches on exactly these.
COMMANDS = ("evaluate", "dump_prompts", "rescore", "curves", "get_data", "make_fictional", "conductivity",
            "findings", "checkpoints")


def tasks() -> dict:
    # Deferred: eval.py imports this module for --help and before its config checks; the tasks import torch and
    # transformers (9 s of `python -X importtime` on the 2-core dev machine), which neither needs.
    from clika.eval.evaluate import evaluate
    from clika.eval.checkpoints import checkpoints
    from clika.eval.commands import COMMANDS as SIDE

    table = {"evaluate": evaluate, **SIDE, "checkpoints": checkpoints}
    assert tuple(table) == COMMANDS, f"clika/eval/run.py COMMANDS {COMMANDS} != the tasks {tuple(table)}"
    return table


def run(cfg: DictConfig):
    tasks_ = tasks()
    if cfg.task not in tasks_:
        raise ClikaError(f"unknown task '{cfg.task}'", fix=f"task= one of {sorted(tasks_)}")
    if is_rank_zero():  # under torchrun / srun every rank runs this; one writes the run dir's config
        save_run_config(cfg.paths.output_dir, OmegaConf.to_container(cfg, resolve=True),
                        print_tree=cfg.get("print_config", True))
    return tasks_[cfg.task](cfg)
