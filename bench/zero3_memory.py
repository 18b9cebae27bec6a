"""Per-rank memory of ZeRO-3 (the model built partitioned in configure_model) against DDP, 2 CPU ranks, on a
~300M-parameter Llama built from a config (the tiny preset's builder at 24 layers x hidden 1024), and the memory plan
(`task=plan`, clika/train/plan.py) for the same runs beside the measured peaks.

Each run is `python train.py` with 2 gloo ranks, batch 1 x block 64, 2 AdamW steps, no checkpoint, export or CLiKA
callback. A callback (MemProbe, below) records per rank its resident set at Lightning's `setup` (imports, data, and
under ZeRO-3 no model yet) and its peak (ru_maxrss) at the end. Model-state memory per rank = peak - the ZeRO-3 run's
setup RSS of that rank (the same process without a model; under DDP the model already exists at setup). A watchdog
ends a run's process tree past --limit-gb (all ranks together) or when the machine has under 1 GiB available, and
reports it. Writes JSON to stdout and, with --write, a section at the end of bench/results.md.

    python bench/zero3_memory.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import lightning.pytorch as pl
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTION = "## ZeRO-3 memory per rank vs DDP (bench/zero3_memory.py)"
MODEL = ["model.tiny.hidden_size=1024", "model.tiny.intermediate_size=2816", "model.tiny.num_hidden_layers=24",
         "model.tiny.num_attention_heads=16", "model.tiny.num_key_value_heads=16"]
RUN = ["trainer.accelerator=cpu", "trainer.devices=2", "threads=1", "data.batch_size=1", "data.block_size=64",
       "trainer.max_steps=2", "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "logger=none",
       "callbacks.clika=null", "callbacks.model_checkpoint=null", "callbacks.lr_monitor=null",
       "+trainer.enable_checkpointing=false", "export.enabled=false", "print_config=false"]
# zero3: DeepSpeed's (and Lightning's) buffer defaults; zero3_auto: the preset's default, strategy.zero3_buffers=auto
# (clika/train/zero3_buffers.py: every limit min(default, 10 x hidden^2) = 1.0e7 here)
STRATEGIES = {"ddp": ["strategy=ddp"], "zero3": ["strategy=deepspeed_zero3", "strategy.zero3_buffers=deepspeed"],
              "zero3_scaled": ["strategy=deepspeed_zero3"]}
# glibc keeps freed heap chunks in the process (its mmap threshold grows up to 32 MB as tensors are freed), so RSS
# counted tensors long gone (ZeRO-3's per-parameter partitions, freed once flattened: +1.4 GB at fit start); a fixed
# 1 MB threshold gives every tensor of 1 MB or more its own mapping, returned on free, in every run alike.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 20)}
MiB = 1024 ** 2


class MemProbe(pl.Callback):
    """Per rank: RSS at setup (before configure_model) and the process's peak RSS at the end -> <out>/rank<N>.json."""

    def __init__(self, out: str):
        self.out, self.setup_rss = Path(out), 0

    def setup(self, trainer, pl_module, stage) -> None:
        self.setup_rss = psutil.Process().memory_info().rss

    def on_train_end(self, trainer, pl_module) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps({"setup_rss": self.setup_rss,
                                                                              "peak_rss": peak}))


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(args: list[str], limit: float, timeout: float) -> dict:
    """train.py under a memory watchdog: {"rc", "seconds", "tree_peak", "killed"}."""
    env = {**os.environ, **MALLOC, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    state = {"tree_peak": 0, "killed": None}

    def watch() -> None:
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            rss = _tree_rss(proc)
            state["tree_peak"] = max(state["tree_peak"], rss)
            why = (f"tree RSS {rss / 2**30:.1f} GiB > {limit / 2**30:.0f} GiB" if rss > limit else
                   "machine under 1 GiB available" if psutil.virtual_memory().available < 2**30 else None)
            if why or time.perf_counter() - t0 > timeout:
                state["killed"] = why or f"over {timeout:.0f}s"
                os.killpg(child.pid, signal.SIGKILL)
                return
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = child.communicate()
    watcher.join()
    return {"rc": child.returncode, "seconds": time.perf_counter() - t0, "tree_peak": state["tree_peak"],
            "killed": state["killed"], "tail": out[-1500:] if child.returncode else ""}


def plans(work: Path) -> dict:
    """The memory plan (clika.train.run.memory_plan) of each run's composed config."""
    from hydra import compose, initialize_config_dir

    from clika.app.launch import register_config
    from clika.train.run import memory_plan, model_spec

    register_config()
    out = {}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name, strategy in STRATEGIES.items():
            cfg = compose("train", overrides=[*MODEL, *RUN, *strategy,
                                              f"paths.output_dir={work / 'plan'}"])
            p = memory_plan(cfg, model_spec(cfg))
            out[name] = {"params": p.shape.params, "states": sum(p.device[k] for k in ("weights", "gradients",
                                                                                       "optimizer")),
                         "peak": p.peak, "device": p.device}
    return out


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-gb", type=float, default=19.0, help="watchdog: all ranks of a run together")
    ap.add_argument("--timeout", type=float, default=480.0, help="seconds per run")
    ap.add_argument("--write", action="store_true", help="write the section into bench/results.md")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clika-zero3-mem-"))
    res: dict = {"date": time.strftime("%Y-%m-%d"), "load_avg_1min": os.getloadavg()[0], "runs": {}}
    # the model's HF folder (built once from its config by clika.models.tiny) before any measured rank
    res["build"] = run([*MODEL, "task=prepare", f"hydra.run.dir={work / 'build'}"], a.limit_gb * 2**30, a.timeout)
    for name, strategy in STRATEGIES.items():
        probe = work / name / "probe"
        r = run([*MODEL, *RUN, *strategy, "+callbacks.mem._target_=zero3_memory.MemProbe",
                 f"+callbacks.mem.out={probe}", f"hydra.run.dir={work / name}"], a.limit_gb * 2**30, a.timeout)
        r["ranks"] = [json.loads((probe / f"rank{k}.json").read_text()) for k in (0, 1)
                      if (probe / f"rank{k}.json").exists()]
        res["runs"][name] = r
    res["plan"] = plans(work)
    z, d = res["runs"]["zero3"], res["runs"]["ddp"]
    if len(z["ranks"]) == 2 and len(d["ranks"]) == 2:
        base = [z["ranks"][k]["setup_rss"] for k in (0, 1)]
        for name in ("ddp", "zero3"):
            res["runs"][name]["states"] = [res["runs"][name]["ranks"][k]["peak_rss"] - base[k] for k in (0, 1)]
        res["ratio"] = max(z["states"]) / max(d["states"])
        s = res["runs"]["zero3_scaled"]
        if len(s["ranks"]) == 2:
            s["states"] = [s["ranks"][k]["peak_rss"] - base[k] for k in (0, 1)]
            res["ratio_scaled"] = max(s["states"]) / max(d["states"])
    print(json.dumps(res, indent=2))
    if a.write:
        write(res)
    return res


def section(r: dict) -> str:
    z, d, plan = r["runs"]["zero3"], r["runs"]["ddp"], r["plan"]
    lines = [SECTION, "",
             f"{plan['zero3']['params'] / 1e6:.0f}M-parameter Llama (24 layers, hidden 1024, fp32) built from its config, "
             f"2 CPU ranks (gloo, one thread each), batch 1 x block 64, 2 AdamW steps; measured in one run "
             f"({r['date']}; load average {r['load_avg_1min']:.1f} on {os.cpu_count()} cores). Model-state memory "
             "per rank = peak RSS - the rank's RSS at Lightning's setup in the ZeRO-3 run (imports and data, no model "
             "yet); the plan column is `task=plan`'s per-device peak (model states + the largest of activations and "
             "the optimizer step's temporaries) for the same config. Every run under `MALLOC_MMAP_THRESHOLD_=1048576` "
             "(glibc otherwise keeps freed tensors' heap chunks: RSS would count memory no tensor holds).", "",
             "| run | rank | peak RSS (MiB) | measured model states + activations (MiB) | task=plan (MiB) | plan / measured |",
             "|---|---|---:|---:|---:|---:|"]
    for name, label in (("ddp", "DDP"), ("zero3", "ZeRO-3, `strategy.zero3_buffers=deepspeed` (DeepSpeed's defaults)"),
                        ("zero3_scaled", "ZeRO-3, `strategy.zero3_buffers=auto` (the preset's default: every "
                                         "limit 10 x hidden^2 = 1.0e7)")):
        run_ = r["runs"][name]
        for k, rank in enumerate(run_.get("ranks", [])):
            m = run_["states"][k] if "states" in run_ else float("nan")
            lines.append(f"| {label} | {k} | {rank['peak_rss'] / MiB:,.0f} | {m / MiB:,.0f} | "
                         f"{plan[name]['peak'] / MiB:,.0f} | {plan[name]['peak'] / m:.2f} |")
        if run_.get("killed") or run_["rc"]:
            lines.append(f"| {label} | - | stopped: {run_.get('killed') or 'rc ' + str(run_['rc'])} | | | |")
    if "ratio" in r:
        scaled = r.get("ratio_scaled", float("nan"))
        lines += ["", f"ZeRO-3 / DDP model-state memory per rank (the larger rank of each; target <= 0.6x): DeepSpeed's "
                      f"defaults **{r['ratio']:.2f}x** {'✔' if r['ratio'] <= 0.6 else '✘'}, `zero3_buffers=auto` "
                      f"(the preset's default) **{scaled:.2f}x** {'✔' if scaled <= 0.6 else '✘'}. Wall: DDP {d['seconds']:.0f} s, "
                      f"ZeRO-3 {z['seconds']:.0f} s; the largest process tree "
                      f"{max(x['tree_peak'] for x in r['runs'].values()) / 2**30:.1f} GiB (watchdog at 19 GiB)."]
    return "\n".join(lines) + "\n"


def write(r: dict, path: Path = ROOT / "bench" / "results.md") -> None:
    from clika.util.atomic import atomic_write_text

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION in text:  # replace this script's earlier section, keep everything else
        head, _, tail = text.partition(SECTION)
        nxt = tail.find("\n## ")
        text = head.rstrip("\n") + "\n\n" + section(r) + ("\n" + tail[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section(r)
    atomic_write_text(path, text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
