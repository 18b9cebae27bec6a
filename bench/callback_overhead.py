"""Share of wall time spent in CLiKA evaluation (clika/train/callbacks/clika_eval.py) in the default presets.

Two measurements, both with the callback exactly as conf/callbacks/default.yaml configures it:

1. Real runs. Each preset (`python train.py`, and `experiment=fictional_conductivity lang=de`) is trained
   twice in this process, with the callback and with `callbacks.clika=null`; reported: the seconds the
   callback itself counted (`clika/eval_seconds`: every evaluation, sharding and writing), the run's wall
   time, their ratio (the share), and the extra wall time of the run with the callback. Wall clock here
   (the callback counts wall time): run it on an otherwise idle machine.
2. Scaling: one evaluation of the configured callback on a live module per subset size
   (`callbacks.clika.limit` items per dataset x language), fitted as a + b x items.

    python bench/callback_overhead.py --presets default --limits 5,10,20
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

try:
    from bench import common
except ImportError:
    import common  # type: ignore[no-redef]

PRESETS = {"default": [], "fictional_conductivity": ["experiment=fictional_conductivity", "lang=de"]}


def compose(overrides: list[str], run_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(common.ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=[
            f"paths.root_dir={common.ROOT}", f"paths.output_dir={run_dir}", f"paths.clika_data={common.data_root()}",
            "logger=csv", f"threads={common.torch_threads()}", "trainer.enable_progress_bar=false",
            "export.enabled=false", *overrides])


def _eval_seconds(run_dir: Path) -> float:
    vals = [float(r["clika/eval_seconds"]) for f in sorted(run_dir.glob("csv/version_*/metrics.csv"))
            for r in csv.DictReader(f.open()) if r.get("clika/eval_seconds")]
    return max(vals, default=0.0)


def measure_preset(name: str, tmp: Path, log=print) -> dict:
    """Wall of one training run with the callback and one without; the callback's own seconds."""
    from clika.train.run import train

    walls, out = {}, {}
    for mode, extra in (("off", ["callbacks.clika=null"]), ("on", [])):
        run_dir = tmp / f"{name}-{mode}"
        cfg = compose([*PRESETS[name], *extra], run_dir)
        t0 = time.perf_counter()  # wall, like the callback's own clika/eval_seconds
        out[mode] = train(cfg)
        walls[mode] = time.perf_counter() - t0
        log(f"[callback] {name} callback {mode}: {walls[mode]:.1f}s")
    run_dir = tmp / f"{name}-on"
    rows = list(csv.DictReader((run_dir / "alignment.csv").open()))
    evals = sorted({int(r["step"]) for r in rows})
    eval_s = _eval_seconds(run_dir)
    row = {"preset": name, "steps": out["on"]["global_step"], "evaluation_steps": evals,
           "items_per_eval": sum(int(r["n"] or 0) for r in rows if int(r["step"]) == evals[0]),
           "eval_seconds": eval_s, "wall_on": walls["on"], "wall_off": walls["off"],
           "share": eval_s / walls["on"], "extra_wall": (walls["on"] - walls["off"]) / walls["off"]}
    log(f"[callback] {name}: {len(evals)} evaluations, {eval_s:.1f}s of {walls['on']:.1f}s = {row['share']:.1%}; "
        f"run with vs without the callback {row['extra_wall']:+.1%}")
    return row


def bench_callback(steps: int = 40, warmup: int = 5, limits=(5, 10, 20), presets=("default",), log=print) -> dict:
    import lightning.pytorch as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from bench.train_bench import METHODS, _optimizer, datamodule, model_spec
    from clika.train.module import CausalLMModule

    tmp = Path(tempfile.mkdtemp(prefix="clika-bench-cb-"))
    runs = [measure_preset(p, tmp, log) for p in presets]

    # scaling with the subset size: the configured callback, one evaluation per limit on a live module
    torch.manual_seed(42)
    module = CausalLMModule(model_spec("tiny"), dict(METHODS["full"]), _optimizer(METHODS["full"]["lr"]))
    dm = datamodule(module.tokenizer, 128, 8)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=warmup, max_epochs=-1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
                         default_root_dir=str(tmp))
    trainer.fit(module, datamodule=dm)
    node = compose([], tmp / "scaling").callbacks.clika
    rows = []
    for limit in limits:
        cb = instantiate(OmegaConf.merge(node, {"limit": limit, "output_dir": str(tmp / f"limit{limit}")}))
        cb.setup(trainer, module, "fit")
        t0 = common.clock()
        cb.evaluate(trainer, module)
        cb.wait_for_plot()
        t_eval = common.clock() - t0
        items = sum(len(v) for by_lang in (cb._items or {}).values() for v in by_lang.values())
        rows.append({"limit": limit, "suite_items": items, "seconds_per_eval": t_eval})
        log(f"[callback] limit {limit}: {items} suite items + fictional probe, {t_eval:.2f}s per evaluation")
    xs, ys = [r["suite_items"] for r in rows], [r["seconds_per_eval"] for r in rows]
    if len(rows) >= 2 and len(set(xs)) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        a = my - b * mx
    else:
        a, b = ys[0], 0.0
    scaling = (f"Per evaluation ≈ {a:.2f} s + {b * 1000:.2f} ms × suite items (fit over limits {list(limits)}; the "
               f"fixed part is the fictional probe, the CSV and the W&B/logger calls; the curves PNG is drawn on a "
               f"worker thread). One evaluation of the whole suite ({FULL_SUITE_ITEMS:,} items, `eval.py`'s default) "
               f"would take ≈ {a + b * FULL_SUITE_ITEMS:,.0f} s here: curves use a fixed seeded subset.")
    log(f"[callback] {scaling}")
    return {"clock": common.clock_name(), "runs": runs, "rows": rows, "fit": {"a_seconds": a, "b_seconds_per_item": b},
            "scaling": scaling,
            "targets": {f"share <= 10% in {r['preset']}": r["share"] <= 0.10 for r in runs}}


FULL_SUITE_ITEMS = 10 * (500 + 1000 + 200 + 180)  # all four datasets, ten languages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="default", help=f"comma list of {sorted(PRESETS)}")
    ap.add_argument("--limits", default="5,10,20", help="callbacks.clika.limit values (items per file)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    common.set_threads(a.threads)
    res = bench_callback(limits=[int(x) for x in a.limits.split(",")], presets=a.presets.split(","))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


if __name__ == "__main__":
    main()
