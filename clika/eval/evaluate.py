"""`evaluate(cfg)`: score a model on the CLiKA suite and write results, predictions, report and plots."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from clika.models.load import ModelSpec, describe, load_model
from clika.report.results import headline, write_evaluation
from clika.scoring.suite import Suite, load_suite_items, run_suite


def suite_from_cfg(cfg: DictConfig) -> Suite:
    return Suite.from_dict(OmegaConf.to_container(cfg.clika, resolve=True))


def evaluate(cfg: DictConfig) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    suite = suite_from_cfg(cfg)
    items = load_suite_items(suite)  # fail on data problems before paying for the model
    spec = ModelSpec(**OmegaConf.to_container(cfg.model, resolve=True))
    if suite.protocol == "paper":  # the release loaded weights in the family's dtype (model.protocol.dtype)
        spec.dtype = suite.spec.dtype
    device = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(spec, device=device)
    metrics, results = run_suite(model, tokenizer, suite, items=items)
    model_info = describe(spec)
    paths = write_evaluation(cfg.paths.output_dir, metrics, results, model_info)
    print(headline(metrics, model_info["label"]) + f"\nresults: {paths['results']}\nreport:  {paths['report']}")
    return {"metrics": metrics, "paths": {k: str(v) for k, v in paths.items()}, "output_dir": str(Path(cfg.paths.output_dir))}
