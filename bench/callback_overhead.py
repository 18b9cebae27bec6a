"""Share of wall time spent in CLiKA evaluation (train/clika_callback.py) in the default preset.

Default preset (`python train.py`): tiny model, full fine-tuning, pt mix mixed_zh, batch 8 x block 128,
trainer.max_steps steps, checkpoint every model_checkpoint.every_n_train_steps (both read from conf/). The
callback's default cadence evaluates at step 0 (on_start), at every checkpoint (on_checkpoint) and at the
end (on_end, skipped when the final checkpoint already evaluated); a `clika` entry in
conf/callbacks/default.yaml, once there, overrides these flags.

Measured in one process on the same live module: the seconds of `steps` training steps of the preset
under the Lightning Trainer (with a no-op callback), and the seconds of one `ClikaEvalCallback.evaluate`
per subset size (clika.limit items per dataset x language, all 4 datasets x 10 languages, metrics,
alignment.csv and the curves PNG included). The share at the preset's cadence is then
E * t_eval / (S * t_step + E * t_eval); the full suite (limit null) is extrapolated linearly in items.

    python bench/callback_overhead.py --limits 5,10,20
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

try:
    from bench import common
except ImportError:
    import common  # type: ignore[no-redef]

FULL_SUITE_ITEMS = 10 * (500 + 1000 + 200 + 180)  # all four datasets, ten languages


def preset_cadence() -> dict:
    """The default preset's steps, checkpoint interval and the callback's cadence flags."""
    from omegaconf import OmegaConf

    conf = common.ROOT / "conf"
    trainer = OmegaConf.load(conf / "trainer" / "default.yaml")
    cbs = OmegaConf.load(conf / "callbacks" / "default.yaml")
    clika = OmegaConf.to_container(cbs.get("clika") or {}) if "clika" in cbs else {}
    every_ckpt = int(cbs.model_checkpoint.every_n_train_steps)
    return {"max_steps": int(trainer.max_steps), "checkpoint_every": every_ckpt,
            "every_n_steps": int(clika.get("every_n_steps", 0) or 0), "on_start": bool(clika.get("on_start", True)),
            "on_checkpoint": bool(clika.get("on_checkpoint", True)), "on_end": bool(clika.get("on_end", True)),
            "limit": clika.get("suite", {}).get("limit") if isinstance(clika.get("suite"), dict) else None,
            "from_conf": bool(clika)}


def evaluation_steps(c: dict) -> list[int]:
    steps = set()
    if c["on_start"]:
        steps.add(0)
    for s in range(1, c["max_steps"] + 1):
        if (c["every_n_steps"] and s % c["every_n_steps"] == 0) or (
                c["on_checkpoint"] and c["checkpoint_every"] and (s % c["checkpoint_every"] == 0 or s == c["max_steps"])):
            steps.add(s)
    if c["on_end"]:
        steps.add(c["max_steps"])
    return sorted(steps)


def suite_dict(limit: int | None) -> dict:
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.load(common.ROOT / "conf" / "clika" / "default.yaml"))
    node["data_root"] = common.data_root()
    node["limit"] = limit
    return node


def bench_callback(steps: int = 40, warmup: int = 5, limits=(5, 10, 20), log=print) -> dict:
    import lightning.pytorch as pl
    import torch

    try:
        from train.clika_callback import ClikaEvalCallback
    except ImportError:
        return {"todo": "train/clika_callback.py (ClikaEvalCallback) is not there yet: rerun "
                        "`python bench/run.py --sections callback` once it lands."}
    from bench.train_bench import METHODS, _optimizer, datamodule, model_spec
    from train.module import CausalLMModule

    cad = preset_cadence()
    eval_steps = evaluation_steps(cad)

    class Clock(pl.Callback):
        ends: list = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.ends.append(common.clock())

    torch.manual_seed(42)
    module = CausalLMModule(model_spec("tiny"), dict(METHODS["full"]), _optimizer(METHODS["full"]["lr"]))
    dm = datamodule(module.tokenizer, 128, 8)
    clock = Clock()
    tmp = Path(tempfile.mkdtemp(prefix="clika-bench-cb-"))
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, max_epochs=-1, gradient_clip_val=1.0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[clock],
                         use_distributed_sampler=False, default_root_dir=str(tmp))
    trainer.fit(module, datamodule=dm)
    t_step = (clock.ends[-1] - clock.ends[warmup - 1]) / steps
    log(f"[callback] preset training step: {t_step * 1000:.1f} ms (mean of {steps} steps)")

    rows = []
    for limit in limits:
        cb = ClikaEvalCallback(suite_dict(limit), output_dir=str(tmp / f"limit{limit}"))
        t0 = common.clock()
        cb.setup(trainer, module, "fit")  # loads the items once per fit (counted: it is paid once per run)
        setup_s = common.clock() - t0
        cb.evaluate(trainer, module)
        t_eval = common.clock() - t0 - setup_s
        items = sum(len(v) for by_lang in cb._items.values() for v in by_lang.values())
        wall = cad["max_steps"] * t_step + len(eval_steps) * t_eval + setup_s
        rows.append({"limit": limit, "items_per_eval": items, "evaluations": len(eval_steps),
                     "eval_seconds": len(eval_steps) * t_eval + setup_s, "seconds_per_eval": t_eval,
                     "setup_seconds": setup_s, "items_per_s": items / t_eval, "wall_seconds": wall,
                     "share": (len(eval_steps) * t_eval + setup_s) / wall})
        log(f"[callback] limit {limit}: {items} items/eval, {t_eval:.1f}s/eval, share {rows[-1]['share']:.1%}")
    # linear fit seconds = a + b * items over the measured limits, extrapolated to the full suite
    xs, ys = [r["items_per_eval"] for r in rows], [r["seconds_per_eval"] for r in rows]
    if len(rows) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-12, sum((x - mx) ** 2 for x in xs))
        a = my - b * mx
    else:
        a, b = 0.0, ys[0] / xs[0]
    t_full = a + b * FULL_SUITE_ITEMS
    wall_full = cad["max_steps"] * t_step + len(eval_steps) * t_full
    rows.append({"limit": None, "items_per_eval": FULL_SUITE_ITEMS, "evaluations": len(eval_steps),
                 "eval_seconds": len(eval_steps) * t_full, "seconds_per_eval": t_full, "wall_seconds": wall_full,
                 "share": len(eval_steps) * t_full / wall_full, "extrapolated": True})
    # largest subset that stays within 10%: E * (a + b n) <= 0.1 / 0.9 * S * t_step
    budget = 0.1 / 0.9 * cad["max_steps"] * t_step / len(eval_steps)
    max_items = max(0.0, (budget - a) / b) if b > 0 else float("inf")
    scaling = (f"Per evaluation ≈ {a:.2f} s + {b * 1000:.2f} ms × items (linear fit over the measured subsets); "
               f"the full suite ({FULL_SUITE_ITEMS:,} items, `clika.limit: null`, the conf default) is extrapolated. "
               f"At this cadence the share stays ≤ 10% up to ≈ {max_items:,.0f} items per evaluation "
               f"(≈ {max_items / 40:,.0f} items per dataset × language file, i.e. clika.limit ≈ {int(max_items // 40)}).")
    setup = (f"Default preset: tiny, full fine-tuning, mixed_zh, batch 8 × block 128, {cad['max_steps']} steps, "
             f"checkpoint every {cad['checkpoint_every']} steps; callback cadence "
             f"{'from conf/callbacks/default.yaml' if cad['from_conf'] else '= ClikaEvalCallback defaults (no `clika` entry in conf/callbacks/default.yaml yet)'}: "
             f"evaluations at steps {eval_steps}. Training step {t_step * 1000:.0f} ms (measured, Lightning, "
             f"{steps} steps); one evaluation per subset measured on the live module; wall = steps × step + evaluations.")
    log(f"[callback] {scaling}")
    return {"clock": common.clock_name(), "cadence": cad, "evaluation_steps": eval_steps, "train_step_seconds": t_step, "rows": rows,
            "fit": {"a_seconds": a, "b_seconds_per_item": b}, "max_items_within_10pct": max_items,
            "setup": setup, "scaling": scaling,
            "targets": {f"share <= 10% at limit {r['limit']}": r["share"] <= 0.10 for r in rows}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="training steps timed (after 5 warm-up steps)")
    ap.add_argument("--limits", default="5,10,20", help="clika.limit values (items per file)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    common.set_threads(a.threads)
    res = bench_callback(a.steps, 5, [int(x) for x in a.limits.split(",")])
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


if __name__ == "__main__":
    main()
