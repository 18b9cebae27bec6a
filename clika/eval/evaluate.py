"""`evaluate(cfg)`: score a model on the CLiKA suite and write results, predictions, report and plots."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from clika.eval.distributed import start
from clika.eval.provenance import provenance
from clika.models.load import ModelSpec, describe, load_model
from clika.report.results import headline, write_evaluation
from clika.scoring.journal import Journal
from clika.scoring.suite import Suite, load_suite_items, run_suite


def suite_from_cfg(cfg: DictConfig) -> Suite:
    return Suite.from_dict(OmegaConf.to_container(cfg.clika, resolve=True))


def identity(cfg: DictConfig, spec: ModelSpec) -> dict:
    """What makes two evaluations the same one (a resume must match it): the model and the suite."""
    suite = {k: v for k, v in OmegaConf.to_container(cfg.clika, resolve=True).items() if k not in ("bootstrap",)}
    model = {k: getattr(spec, k) for k in ("name_or_path", "gguf_file", "revision", "adapter", "dtype")}
    return {"model": model, "clika": suite}


def evaluate(cfg: DictConfig) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    suite = suite_from_cfg(cfg)
    items = load_suite_items(suite)  # fail on data problems before paying for the model
    spec = ModelSpec(**OmegaConf.to_container(cfg.model, resolve=True))
    if suite.protocol == "paper":  # the release loaded weights in the family's dtype (model.protocol.dtype)
        spec.dtype = suite.spec.dtype
    world = start(cfg.get("device"), cfg.get("threads"))  # one process, or this rank of a torchrun / srun launch
    journal = Journal(Path(cfg.paths.output_dir) / ".journal", identity(cfg, spec), world.rank, world.world,
                      resume=cfg.get("resume") == "auto")  # before the model: a mismatched resume costs nothing
    model, tokenizer = load_model(spec, device=world.device)
    started = time.time()
    metrics, results = run_suite(model, tokenizer, suite, rank=world.rank, world=world.world, gather=world.gather,
                                 items=items, progress=world.is_zero, journal=journal)
    wall = time.time() - started
    out = {"metrics": metrics, "paths": {}, "output_dir": str(Path(cfg.paths.output_dir))}
    if world.is_zero:  # every rank holds the gathered results; one writes them
        model_info = {**describe(spec), "run": provenance(dtype=spec.dtype, device=world.device, world=world.world,
                                                          wall_s=wall, started=started,
                                                          items=sum(len(r) for r in results.values()),
                                                          resumed_items=journal.resumed_items * world.world)}
        paths = write_evaluation(cfg.paths.output_dir, metrics, results, model_info)
        print(headline(metrics, model_info["label"]) + f"\nresults: {paths['results']}\nreport:  {paths['report']}")
        out["paths"] = {k: str(v) for k, v in paths.items()}
    world.barrier()
    journal.close()  # outputs written: a later evaluation into this dir starts afresh
    world.close()
    return out
