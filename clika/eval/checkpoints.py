"""`eval.py task=checkpoints run_dir=RUN`: every checkpoint a training run saved, evaluated after the fact with the
same tasks as `eval.py` (the full suite, or `clika.limit`), one results dir per checkpoint, and `alignment.csv` +
`alignment_curves.png` over them (the rows and the figure the training callback writes).

Each checkpoint is exported to a plain Hugging Face folder first (`clika.train.export`, as `train.py task=export`
does), so what is scored is exactly what `eval.py model.name_or_path=<export>/hf` would score.

One job per checkpoint (on SLURM): `checkpoint=<step>` evaluates that checkpoint alone, into
`<output_dir>/checkpoints/<stem>/`, and adds its rows to `<output_dir>/alignment.csv` (replacing that step's, under a
file lock) before redrawing the curves, so a sweep whose jobs share one `output_dir` ends with the table and the
figure over all of them, whichever job finishes last:

    python eval.py -m task=checkpoints run_dir=RUN checkpoint=2,4,6 output_dir=OUT resume=auto \
        hydra/launcher=slurm hydra.launcher.cpus_per_task=1 device=cpu

(in a multirun each job's own dir is its sweep subdir; `output_dir` is the dir they share). `checkpoint=null` (the
default) evaluates them all in this job and writes the table afresh. With resume=auto a checkpoint this output dir
already finished with the same model and suite (`identity.json`) is read back, not scored again, and the one in
flight continues from its journal: a preempted, requeued job (clika.eval.preemption) picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from filelock import FileLock
from omegaconf import DictConfig

from clika.eval.distributed import start
from clika.eval.evaluate import evaluate_model, identity, suite_config, suite_from_cfg
from clika.eval.preemption import Preemption
from clika.models.load import ModelSpec
from clika.report.curves import append_rows, metrics_to_rows, plot_curves, write_rows
from clika.scoring.suite import load_suite_items
from clika.train.export import export_checkpoint
from clika.util.errors import ClikaError
from clika.util.jsonl import write_json

STEP = re.compile(r"step[=_-]?(\d+)")
IDENTITY = "identity.json"  # beside a checkpoint's results.json: what it was evaluated with (a resume reuses it)


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


def select(ckpts: list[Path], choice: Any, run_dir: Path) -> list[Path]:
    """`checkpoint=null`: every checkpoint; a step (`4`) or a file name / stem (`step000004`): that one."""
    if choice is None:
        return ckpts
    want = str(choice)
    for p in ckpts:
        m = STEP.search(p.stem)
        if want in (p.name, p.stem) or (want.isdigit() and m is not None and int(m.group(1)) == int(want)):
            return [p]
    steps = [m.group(1).lstrip("0") or "0" for p in ckpts if (m := STEP.search(p.stem))]
    raise ClikaError(f"checkpoint: {run_dir / 'checkpoints'} has no checkpoint {want!r} (it has "
                     f"{', '.join(p.name for p in ckpts)})",
                     fix=f"checkpoint=<a step of them>, swept with -m for one job each: -m checkpoint={','.join(steps)}; "
                         "or checkpoint=null for all of them in this job")


def _finished(here: Path, ident: dict) -> dict | None:
    """The metrics of a checkpoint this output dir already evaluated with the same identity (model + suite)."""
    try:
        if json.loads((here / IDENTITY).read_text(encoding="utf-8")) == json.loads(json.dumps(ident, default=str)):
            return json.loads((here / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return None


def checkpoints(cfg: DictConfig) -> dict:
    preemption = Preemption().install()  # a SLURM job's preemption signals, from now on
    if not cfg.get("run_dir"):
        raise ClikaError("run_dir: task=checkpoints needs a training run", fix="pass run_dir=<train.py run dir>")
    run_dir = Path(str(cfg.run_dir)).expanduser()
    ckpts = run_checkpoints(run_dir)
    if not ckpts:
        raise ClikaError(f"run_dir: no checkpoints in {run_dir / 'checkpoints'}",
                         fix="point run_dir at a train.py run dir whose checkpoints were kept (callbacks.checkpoint)")
    chosen = select(ckpts, cfg.get("checkpoint"), run_dir)
    train = training_config(run_dir)
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    base = ModelSpec(**{k: v for k, v in train["model"].items() if k in fields})
    suite_cfg = suite_config(cfg)
    items = load_suite_items(suite_from_cfg(cfg))  # data problems surface before any export
    resume = cfg.get("resume") == "auto"
    # output_dir (when given) is shared by every job of a `-m checkpoint=...` sweep; else this run's dir
    out, world = Path(str(cfg.get("output_dir") or cfg.paths.output_dir)), start(cfg.get("device"), cfg.get("threads"))
    rows, evaluated = [], []
    try:
        for ckpt in chosen:
            meta = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
            step, tokens, epoch = int(meta.get("global_step", 0)), int(meta.get("tokens_seen", 0)), int(meta.get("epoch", 0))
            del meta
            here = out / "checkpoints" / ckpt.stem
            spec = dataclasses.replace(base, name=f"{base.name}@{ckpt.stem}", name_or_path=str(here / "export" / "hf"),
                                       gguf_package=None, gguf_file=None, adapter=None, tiny={})
            ident = identity(suite_cfg, spec)
            metrics = _finished(here, ident) if resume else None  # a requeued attempt: finished ones are kept
            if metrics is None:
                if world.is_zero:
                    export_checkpoint(ckpt, base, train["method"], here / "export", merge=True,
                                      training={"data.template": (train.get("data") or {}).get("template")})
                world.barrier()
                metrics = evaluate_model(spec, suite_cfg, here, world, items, resume=resume,
                                         preemption=preemption)["metrics"]
                if world.is_zero:
                    write_json(here / IDENTITY, ident)
            rows += metrics_to_rows(metrics, step, tokens, epoch, trained_langs(run_dir))
            evaluated.append({"checkpoint": str(ckpt), "step": step, "results": str(here / "results.json")})
    finally:
        world.close()
    result = {"run_dir": str(run_dir), "evaluated": evaluated}
    if world.is_zero:
        table = out / "alignment.csv"
        with FileLock(str(out / ".alignment.lock")):  # the jobs of a checkpoint sweep add their rows one at a time
            csv = write_rows(table, rows) if len(chosen) == len(ckpts) else append_rows(table, rows)
            result.update(csv=str(csv), png=str(plot_curves([csv], out / "alignment_curves.png")))
        print(f"{len(chosen)} of {len(ckpts)} checkpoints of {run_dir} evaluated\ncurves: {result['png']}\n"
              f"table:  {csv}")
    return result
