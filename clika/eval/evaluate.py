"""`evaluate(cfg)`: score a model on the CLiKA suite and write results, predictions, report and plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from clika.eval.common import model_spec
from clika.eval.distributed import EvalWorld, start
from clika.eval.preemption import Preemption
from clika.eval.provenance import provenance
from clika.models.load import ModelSpec, describe, load_model
from clika.report.results import headline, write_evaluation
from clika.scoring.api import Stopped
from clika.scoring.journal import Journal
from clika.scoring.suite import Suite, load_suite_items, run_suite
from clika.util.errors import ClikaError


def suite_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.clika, resolve=True)


def suite_from_cfg(cfg: DictConfig) -> Suite:
    return Suite.from_dict(suite_config(cfg))


def identity(suite_cfg: dict[str, Any], spec: ModelSpec) -> dict:
    """What makes two evaluations the same one (a resume must match it): the model and the suite."""
    suite = {k: v for k, v in suite_cfg.items() if k not in ("bootstrap",)}
    model = {k: getattr(spec, k) for k in ("name_or_path", "gguf_file", "revision", "adapter", "dtype")}
    return {"model": model, "clika": suite}


def evaluate_model(spec: ModelSpec, suite_cfg: dict[str, Any], out_dir: str | Path, world: EvalWorld,
                   items: dict | None = None, resume: bool = False, preemption: Preemption | None = None) -> dict:
    """Score `spec` on the suite on this rank's shard, gather, and (rank 0) write the evaluation into `out_dir`.
    `preemption` (clika.eval.preemption): a SLURM preemption signal stops it after the request set in flight."""
    if spec.device_map is not None and world.world > 1:
        raise ClikaError(f"model.device_map={spec.device_map} spreads one model over this process's devices, but "
                         f"{world.world} processes were launched",
                         fix="launch one process (python eval.py ...) with model.device_map, or drop model.device_map "
                             "for data-parallel torchrun / srun")
    suite = Suite.from_dict(suite_cfg)
    items = items if items is not None else load_suite_items(suite)
    if suite.protocol == "paper":  # the release loaded weights in the family's dtype (model.protocol.dtype)
        spec.dtype = suite.spec.dtype
    out_dir = Path(out_dir)
    journal = Journal(out_dir / ".journal", identity(suite_cfg, spec), world.rank, world.world,
                      resume=resume)  # before the model: a mismatched resume costs nothing
    model, tokenizer = load_model(spec, device=world.device)
    started = time.time()
    try:
        metrics, results = run_suite(model, tokenizer, suite, rank=world.rank, world=world.world, gather=world.gather,
                                     items=items, progress=world.is_zero, journal=journal,
                                     lockstep_ranks=False,  # each rank holds the whole model: no collective in a forward
                                     should_stop=preemption.watch(world) if preemption is not None else None)
    except Stopped as stopped:  # the journal keeps every finished set for the requeued attempt (resume=auto)
        preemption.stop(world, out_dir, stopped)
    wall = time.time() - started
    out = {"metrics": metrics, "paths": {}, "output_dir": str(out_dir)}
    if world.is_zero:  # every rank holds the gathered results; one writes them
        model_info = {**describe(spec), "run": provenance(dtype=spec.dtype, device=world.device, world=world.world,
                                                          wall_s=wall, started=started,
                                                          items=sum(len(r) for r in results.values()),
                                                          resumed_items=journal.resumed_items * world.world)}
        paths = write_evaluation(out_dir, metrics, results, model_info)
        print(headline(metrics, model_info["label"]) + f"\nresults: {paths['results']}\nreport:  {paths['report']}")
        out["paths"] = {k: str(v) for k, v in paths.items()}
    world.barrier()
    journal.close()  # outputs written: a later evaluation into this dir starts afresh
    return out


def evaluate(cfg: DictConfig) -> dict:
    preemption = Preemption().install()  # a SLURM job's preemption signals, from now on
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    suite_cfg = suite_config(cfg)
    items = load_suite_items(suite_from_cfg(cfg))  # fail on data problems before paying for the model
    spec = model_spec(cfg)
    world = start(cfg.get("device"), cfg.get("threads"))  # one process, or this rank of a torchrun / srun launch
    try:
        return evaluate_model(spec, suite_cfg, cfg.paths.output_dir, world, items, resume=cfg.get("resume") == "auto",
                              preemption=preemption)
    finally:
        world.close()
