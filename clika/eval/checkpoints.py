"""`eval.py task=checkpoints run_dir=RUN`: every checkpoint a training run saved, evaluated after the fact with the
same tasks as `eval.py` (the full suite, or `clika.limit`), one results dir per checkpoint, and `alignment.csv` +
`alignment_curves.png` over them (the rows and the figure the training callback writes).

Each checkpoint is exported to a plain Hugging Face folder first (`clika.train.export`, as `train.py task=export`
does), so what is scored is exactly what `eval.py model.name_or_path=<export>/hf` would score.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from clika.eval.distributed import start
from clika.eval.evaluate import evaluate_model, suite_config, suite_from_cfg
from clika.models.load import ModelSpec
from clika.report.curves import metrics_to_rows, plot_curves, write_rows
from clika.scoring.suite import load_suite_items
from clika.train.export import export_checkpoint
from clika.util.errors import ClikaError

STEP = re.compile(r"step[=_-]?(\d+)")


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's saved checkpoints in step order (`last.ckpt`, a copy of the newest, left out)."""
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    return sorted(found, key=lambda p: (int(m.group(1)) if (m := STEP.search(p.stem)) else -1, p.name))


def training_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config_tree.yaml"
    if not path.exists():
        raise ClikaError(f"run_dir: {run_dir} has no config_tree.yaml (not a train.py run dir)",
                         fix="pass run_dir=<the run dir train.py printed>")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def trained_langs(run_dir: Path) -> list[str]:
    """The languages of the training data, from the run's summary (the callback reads them from its datamodule)."""
    path = run_dir / "train_summary.json"
    shares = (json.loads(path.read_text(encoding="utf-8")).get("data") or {}).get("realised_share", {}) \
        if path.exists() else {}
    return sorted({lang for label in shares for lang in label.split("+")})


def checkpoints(cfg: DictConfig) -> dict:
    if not cfg.get("run_dir"):
        raise ClikaError("run_dir: task=checkpoints needs a training run", fix="pass run_dir=<train.py run dir>")
    run_dir = Path(str(cfg.run_dir)).expanduser()
    ckpts = run_checkpoints(run_dir)
    if not ckpts:
        raise ClikaError(f"run_dir: no checkpoints in {run_dir / 'checkpoints'}",
                         fix="point run_dir at a train.py run dir whose checkpoints were kept (callbacks.checkpoint)")
    train = training_config(run_dir)
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    base = ModelSpec(**{k: v for k, v in train["model"].items() if k in fields})
    suite_cfg = suite_config(cfg)
    items = load_suite_items(suite_from_cfg(cfg))  # data problems surface before any export
    out, world = Path(cfg.paths.output_dir), start(cfg.get("device"), cfg.get("threads"))
    rows, evaluated = [], []
    try:
        for ckpt in ckpts:
            meta = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
            step, tokens, epoch = int(meta.get("global_step", 0)), int(meta.get("tokens_seen", 0)), int(meta.get("epoch", 0))
            del meta
            here = out / "checkpoints" / ckpt.stem
            if world.is_zero:
                export_checkpoint(ckpt, base, train["method"], here / "export", merge=True,
                                  training={"data.template": (train.get("data") or {}).get("template")})
            world.barrier()
            spec = dataclasses.replace(base, name=f"{base.name}@{ckpt.stem}", name_or_path=str(here / "export" / "hf"),
                                       gguf_package=None, gguf_file=None, adapter=None, tiny={})
            res = evaluate_model(spec, suite_cfg, here, world, items)
            rows += metrics_to_rows(res["metrics"], step, tokens, epoch, trained_langs(run_dir))
            evaluated.append({"checkpoint": str(ckpt), "step": step, "results": str(here / "results.json")})
    finally:
        world.close()
    result = {"run_dir": str(run_dir), "evaluated": evaluated}
    if world.is_zero:
        csv = write_rows(out / "alignment.csv", rows)
        result.update(csv=str(csv), png=str(plot_curves([csv], out / "alignment_curves.png")))
        print(f"{len(ckpts)} checkpoints of {run_dir} evaluated\ncurves: {result['png']}\ntable:  {csv}")
    return result
