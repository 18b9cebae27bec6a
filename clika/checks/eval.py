"""Checks of an evaluation suite config (`clika` in conf/eval.yaml, `callbacks.clika.suite` in training): the
data root, then `Suite.validate` (datasets, references, languages, prompt style, limit)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from clika.datasets import check_root


def check_eval(suite: Any, need_data: bool = False) -> None:
    """`need_data`: the data root must exist (training's callback loads its items at setup)."""
    if suite is None:
        return
    if OmegaConf.is_config(suite):
        suite = OmegaConf.to_container(suite, resolve=True)
    # Deferred: clika.suite imports torch (1.2 s of `python -X importtime`), which a config error found by an
    # earlier check never needs (`python train.py data.block_size=1` ends in 0.5 s; importing it first adds 1.2 s).
    from clika.suite import Suite

    Suite.from_dict(suite)
    if need_data:
        check_root(suite["data_root"])
