"""A training rank's private memory vs the number of pt blocks (#21 item 1): does a rank stay flat as the corpus grows?

    .venv/bin/python bench/rank_memory.py [--blocks 1026878 4121621] [--batches 300] [--interval-ms 2]

Per size, a child process fabricates a prepared pt source of N blocks of 128 tokens without tokenizing: meta.json
and one `00000.ids.npy` shard laid out the way clika/train/data/prepare.py writes them, the shard made with
np.lib.format.open_memmap so the file is sparse (nothing is written; its tokens read as 0). The child builds a
MixtureDataModule with that source injected (`dm.sources`, so prepare() does nothing) as rank 0 of world 2, runs
setup("fit") and reads --batches batches of 8. Reported from /proc (MB):
  - base: VmRSS and RssAnon right after the imports and the tokenizer;
  - setup_HWM: VmHWM at the end of setup (no shard page touched yet: the peak of setup's temporaries);
  - anon_peak: the largest RssAnon seen — sampled by the parent from /proc/<pid>/status every --interval-ms, and
    read by the child at the end of setup and at the end (setup_HWM - RssFile there bounds setup's short peaks);
  - VmHWM / RssAnon / RssFile at the end (RssFile: the page cache of the mapped shard, shared, reclaimable).
The default sizes are the two corpora of bench/prepare_bench.py (0.25 GB and 1 GB of JSONL at block 128).
Prints a JSON summary and a markdown table for bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLOCK = 128
DATA = {"block_size": BLOCK, "batch_size": 8, "num_workers": 0, "val_fraction": 0.02, "template": "alpaca",
        "max_length": 256, "train_on_prompt": False, "pack_remainder": "wrap"}
KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def _status(pid: str = "self") -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in KEYS:
            out[k] = int(v.split()[0]) / 1024  # MB
    return out


# ---- child ----

def fabricate(folder: Path, blocks: int) -> Path:
    """A prepared pt entry of `blocks` blocks: meta.json + one sparse shard (prepare._finish's layout)."""
    import numpy as np

    from clika.train.data.prepare import LAYOUT

    folder.mkdir(parents=True, exist_ok=True)
    tokens = blocks * BLOCK
    ids = np.lib.format.open_memmap(folder / "00000.ids.npy", mode="w+", dtype=np.int32, shape=(tokens,))
    del ids  # never written: a sparse file of zeros
    meta = {"layout": LAYOUT, "schema": "pt", "shards": [{"file": "00000", "tokens": tokens, "records": blocks}],
            "block_size": BLOCK, "items": blocks,
            "stats": {"records": blocks, "tokens": tokens, "kept_tokens": tokens, "repeated_tokens": 0,
                      "packing_efficiency": 1.0, "padding_tokens": 0, "shards": 1, "source_bytes": 0,
                      "bytes": (folder / "00000.ids.npy").stat().st_size}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


def child(blocks: int, batches: int) -> dict:
    import bench.common  # noqa: F401  (setup_env: offline, TOKENIZERS_PARALLELISM=false)
    from types import SimpleNamespace

    from clika.models.load import ModelSpec, load_tokenizer
    from clika.train.data.datamodule import MixtureDataModule
    from clika.train.data.prepare import Tokenized

    tok = load_tokenizer(ModelSpec())
    base = _status()
    with tempfile.TemporaryDirectory(prefix="clika-rank-memory-") as tmp:
        path = fabricate(Path(tmp) / "c", blocks)
        mix = {"sources": {"c": {"lang": "en", "format": "embedded", "path": "fictional_pt"}},
               "sampling": "weights", "weights": {"c": 1.0}}
        dm = MixtureDataModule({**DATA, "mix": mix, "cache_dir": str(Path(tmp) / "cache")}, tok)
        dm.sources = {"c": Tokenized("c", "en", "pt", path)}
        dm.trainer = SimpleNamespace(global_rank=0, world_size=2)
        t0 = time.perf_counter()
        dm.setup("fit")
        setup_s = time.perf_counter() - t0
        setup = _status()
        n = 0
        for _ in dm.train_dataloader():
            n += 1
            if n == batches:
                break
        end = _status()
    return {"blocks": blocks, "items": len(dm.train_items), "batches": n, "setup_s": round(setup_s, 2),
            "base_VmRSS": base["VmRSS"], "base_RssAnon": base["RssAnon"], "setup_HWM": setup["VmHWM"],
            "setup_RssAnon": setup["RssAnon"], "setup_HWM_minus_file": setup["VmHWM"] - setup["RssFile"], **end}


# ---- parent ----

def measure(blocks: int, batches: int, interval: float) -> dict:
    p = subprocess.Popen([sys.executable, __file__, "--child", str(blocks), str(batches)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    sampled = 0.0

    def watch():
        nonlocal sampled
        while p.poll() is None:
            try:
                sampled = max(sampled, _status(str(p.pid)).get("RssAnon", 0.0))
            except (OSError, ValueError):
                break
            time.sleep(interval)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = p.communicate()
    th.join()
    if p.returncode:
        raise SystemExit(f"child {blocks}: exit {p.returncode}: {err.strip()[-2000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    r["sampled_RssAnon"] = sampled
    r["anon_peak"] = max(sampled, r["setup_RssAnon"], r["RssAnon"])
    return r


def markdown(rs: list[dict], label: str = "") -> str:
    q, f = rs[0], rs[-1]
    rows = ["| code | blocks | base RSS | setup VmHWM | anon peak | end VmHWM (file) | end RssAnon |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rs:
        rows.append(f"| {label} | {r['blocks']:,} | {r['base_VmRSS']:.0f} | {r['setup_HWM']:.0f} | "
                    f"{r['anon_peak']:.0f} | {r['VmHWM']:.0f} ({r['RssFile']:.0f}) | {r['RssAnon']:.0f} |")
    d = f["blocks"] - q["blocks"]
    rows.append(f"| {label} | full / quarter | | {f['setup_HWM'] / q['setup_HWM'] - 1:+.0%} | "
                f"{f['anon_peak'] / q['anon_peak'] - 1:+.0%} "
                f"({(f['anon_peak'] - q['anon_peak']) * 2**20 / d:.1f} B/block) "
                f"| {f['VmHWM'] / q['VmHWM'] - 1:+.0%} | {f['RssAnon'] / q['RssAnon'] - 1:+.0%} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, nargs="+", default=[1_026_878, 4_121_621])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--child", type=int, nargs=2, default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    t0 = time.perf_counter()
    rs = []
    for n in a.blocks:
        rs.append(measure(n, a.batches, a.interval_ms / 1000))
        print(f"{n:,} blocks: {rs[-1]}", file=sys.stderr)
    print(json.dumps({"runs": rs, "seconds": round(time.perf_counter() - t0, 1), "load_avg": os.getloadavg()},
                     indent=1))
    print(markdown(rs, a.label))


if __name__ == "__main__":
    main()
