"""Corpus preparation at scale (#21 item 1): tokens/s and peak RSS of `task=prepare` and of training ranks.

    .venv/bin/python bench/prepare_bench.py [--gb 1.0] [--slice-mb 48] [--max-rss-gb 4] [--keep DIR]

Writes a JSONL corpus of multilingual sentences of the embedded world (clika.fictional: the fictional_pt and
fictional_names corpora of every language, 8 sentences a document, shuffled) into a temp dir: `--gb` GB and a
quarter of it. Every measurement runs in its own child process, watched by a memory watchdog (the RSS of the
whole process tree, workers included, every 0.2 s; past --max-rss-gb or --max-seconds the tree is killed and
the run reported as such):
  1. tokens/s on the first --slice-mb MB (cut in --slice-chunk-mb MB shards): a plain single-process `tokenizer(batch)` loop over the lines (no
     packing, nothing written), prepare with data.num_proc=1 and with num_proc=2 (ratios from the same run);
  2. peak RSS of prepare (num_proc=2) on the quarter corpus and on the whole one;
  3. peak RSS of two training ranks (world 2, one process each) that map those shards and read 300 batches.
Prints a JSON summary and a markdown section for bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

DATA = {"block_size": 128, "batch_size": 8, "num_workers": 0, "val_fraction": 0.02, "template": "alpaca",
        "max_length": 256, "train_on_prompt": False, "pack_remainder": "wrap"}


# ---- children ----

def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) / 1024  # MB
    return out


def _cfg(corpus: str, cache: str, num_proc: int | None) -> dict:
    mix = {"sources": {"c": {"lang": "en", "format": "jsonl", "path": corpus}}, "sampling": "weights",
           "weights": {"c": 1.0}}
    return {**DATA, "mix": mix, "cache_dir": cache, "num_proc": num_proc}


def child_plain(corpus: str, limit_bytes: int) -> dict:
    from bench.common import model_spec  # noqa: F401  (setup_env: offline, TOKENIZERS_PARALLELISM=false)
    from clika.models.load import ModelSpec, load_tokenizer

    tok = load_tokenizer(ModelSpec())
    t0, tokens, batch, read = time.perf_counter(), 0, [], 0
    with open(corpus, "rb") as f:
        for line in f:
            read += len(line)
            if read > limit_bytes:
                break
            batch.append(json.loads(line)["text"])
            if len(batch) == 1000:
                tokens += sum(map(len, tok(batch, add_special_tokens=False)["input_ids"])) + len(batch)
                batch = []
    if batch:
        tokens += sum(map(len, tok(batch, add_special_tokens=False)["input_ids"])) + len(batch)
    dt = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt, **_status()}


def child_prepare(corpus: str, cache: str, num_proc: int, chunk_mb: int = 0) -> dict:
    import bench.common  # noqa: F401
    from clika.train.data import sources

    if chunk_mb:  # the slice runs: enough chunks for 2 workers to share evenly
        sources.CHUNK_BYTES = chunk_mb << 20
    from clika.models.load import ModelSpec, load_tokenizer
    from clika.train.data.datamodule import MixtureDataModule

    tok = load_tokenizer(ModelSpec())
    t0 = time.perf_counter()
    t = MixtureDataModule(_cfg(corpus, cache, num_proc), tok).prepare()["c"]
    dt = time.perf_counter() - t0
    return {"tokens": t.stats["tokens"], "seconds": dt, "tokens_per_s": t.stats["tokens"] / dt,
            "shards": t.stats["shards"], "bytes": t.stats["bytes"], "source_bytes": t.stats["source_bytes"],
            **_status()}


def child_rank(corpus: str, cache: str, rank: int, batches: int) -> dict:
    import bench.common  # noqa: F401
    from types import SimpleNamespace

    from clika.models.load import ModelSpec, load_tokenizer
    from clika.train.data.datamodule import MixtureDataModule

    tok = load_tokenizer(ModelSpec())
    base = _status()
    dm = MixtureDataModule(_cfg(corpus, cache, 1), tok)
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
    t0 = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    n = 0
    for _ in dm.train_dataloader():
        n += 1
        if n == batches:
            break
    return {"items": len(dm.train_items), "batches": n, "setup_s": setup_s, "base_MB": base["VmRSS"], **_status()}


# ---- parent: watchdog, corpus, runs ----

def watched(args: list[str], max_rss_gb: float, max_seconds: float) -> dict:
    """Run a child (`--child ...`), sampling the RSS of its process tree; kill the tree past the limits."""
    p = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak, killed, t0 = 0.0, None, time.perf_counter()
    proc = psutil.Process(p.pid)

    def tree_rss() -> float:
        total = 0
        for q in [proc, *proc.children(recursive=True)]:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def watch():
        nonlocal peak, killed
        while p.poll() is None:
            try:
                rss = tree_rss()
            except psutil.Error:
                break
            peak = max(peak, rss)
            over = rss > max_rss_gb * 1024 and f"RSS {rss:.0f} MB > {max_rss_gb} GB"
            late = time.perf_counter() - t0 > max_seconds and f"ran past {max_seconds:.0f} s"
            if over or late:
                killed = over or late
                for q in [*proc.children(recursive=True), proc]:
                    try:
                        q.kill()
                    except psutil.Error:
                        pass
                break
            time.sleep(0.2)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = p.communicate()
    th.join()
    if killed or p.returncode:
        return {"failed": killed or f"exit {p.returncode}: {err.strip().splitlines()[-1:] }", "tree_peak_MB": peak}
    return {**json.loads(out.strip().splitlines()[-1]), "tree_peak_MB": peak}


def write_corpus(out: Path, gb: float) -> tuple[Path, Path]:
    """`gb` GB of JSONL documents (8 sentences of the embedded world each) and the first quarter of it."""
    from bench import common  # noqa: F401
    from clika.fictional.generated import corpus_file
    from clika.util.languages import LANGS, NON_EN

    sents = []
    for kind, langs in (("fictional_pt", LANGS), ("fictional_names", NON_EN)):
        for lang in langs:
            sents += [json.loads(l)["text"] for l in corpus_file(kind, lang, None, out / "gen").open(encoding="utf-8")]
    rng = random.Random(0)
    full, quarter = out / "corpus_1.jsonl", out / "corpus_q.jsonl"
    target, written, n = int(gb * 1e9), 0, 0
    with full.open("w", encoding="utf-8") as f, quarter.open("w", encoding="utf-8") as q:
        while written < target:
            lines = []
            for _ in range(10_000):
                n += 1
                lines.append(json.dumps({"text": f"{n}. " + " ".join(rng.choices(sents, k=8))},
                                        ensure_ascii=False) + "\n")
            block = "".join(lines)
            f.write(block)
            if written < target / 4:
                q.write(block)
            written += len(block.encode())
    return quarter, full


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--slice-mb", type=float, default=24)
    ap.add_argument("--slice-chunk-mb", type=int, default=3)
    ap.add_argument("--max-rss-gb", type=float, default=4.0)
    ap.add_argument("--max-seconds", type=float, default=720)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--keep", default=None, help="a folder to write the corpora and caches into (kept)")
    ap.add_argument("--ratios-only", action="store_true", help="only the tokens/s runs (1.), on --keep's slice")
    ap.add_argument("--child", nargs="+", default=None)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        fn = {"plain": child_plain, "prepare": child_prepare, "rank": child_rank}[kind]
        print(json.dumps(fn(*[int(x) if x.isdigit() else x for x in rest])))
        return

    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="clika-prepare-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    slice_file = tmp / "slice.jsonl"
    if a.ratios_only and slice_file.exists():
        quarter, full = tmp / "corpus_q.jsonl", tmp / "corpus_1.jsonl"
    else:
        quarter, full = write_corpus(tmp, a.gb)
        with full.open("rb") as f, slice_file.open("wb") as g:
            g.write(f.read(int(a.slice_mb * 2**20)))
            g.write(f.readline())
    sizes = {"quarter": quarter.stat().st_size, "full": full.stat().st_size}
    print(f"corpus: {sizes} bytes in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    lim = (a.max_rss_gb, a.max_seconds)
    res: dict = {"corpus_bytes": sizes, "slice_bytes": slice_file.stat().st_size, "cpus": len(os.sched_getaffinity(0)),
                 "load_avg_before": os.getloadavg()}
    res["plain"] = watched(["--child", "plain", str(slice_file), str(slice_file.stat().st_size)], *lim)
    for n in (1, 2):
        shutil.rmtree(tmp / f"cache_np{n}", ignore_errors=True)
        res[f"prepare_np{n}"] = watched(["--child", "prepare", str(slice_file), str(tmp / f"cache_np{n}"), str(n),
                                         str(a.slice_chunk_mb)],
                                        *lim)
        print(f"num_proc={n}: {res[f'prepare_np{n}']}", file=sys.stderr)
    if a.ratios_only:
        print(json.dumps(res, indent=1))
        return
    for name, corpus in (("quarter", quarter), ("full", full)):
        cache = tmp / f"cache_{name}"
        res[f"prepare_{name}"] = watched(["--child", "prepare", str(corpus), str(cache), "2"], *lim)
        print(f"prepare {name}: {res[f'prepare_{name}']}", file=sys.stderr)
        out = {}
        threads = [threading.Thread(target=lambda r=r: out.__setitem__(
            r, watched(["--child", "rank", str(corpus), str(cache), str(r), str(a.batches)], *lim))) for r in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        res[f"ranks_{name}"] = [out[0], out[1]]
        print(f"ranks {name}: {out}", file=sys.stderr)
    res["seconds"] = time.perf_counter() - t0
    res["load_avg_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    print(markdown(res))


def markdown(r: dict) -> str:
    def tps(k):
        return r[k].get("tokens_per_s", float("nan"))

    p1, p2, plain = tps("prepare_np1"), tps("prepare_np2"), tps("plain")
    q, f = r["prepare_quarter"], r["prepare_full"]
    rq, rf = r["ranks_quarter"], r["ranks_full"]

    def peak(x, k="tree_peak_MB"):
        return x.get(k, float("nan"))

    rows = [
        "| measure | value | target |", "|---|---|---|",
        f"| tokens/s, plain `tokenizer(batch)` loop, 1 process | {plain:,.0f} | (baseline) |",
        f"| tokens/s, prepare num_proc=1 | {p1:,.0f} ({p1 / plain:.2f}x the plain loop) | |",
        f"| tokens/s, prepare num_proc=2 | {p2:,.0f} ({p2 / p1:.2f}x num_proc=1, {p2 / plain:.2f}x the plain loop) "
        f"| >= 1.7x num_proc=1 |",
        f"| prepare peak RSS (process tree), {r['corpus_bytes']['quarter'] / 1e9:.2f} GB corpus | {peak(q):.0f} MB "
        f"({q.get('tokens', 0) / 1e6:.0f} M tokens, {q.get('shards')} shards, {q.get('seconds', 0):.0f} s) | |",
        f"| prepare peak RSS (process tree), {r['corpus_bytes']['full'] / 1e9:.2f} GB corpus | {peak(f):.0f} MB "
        f"({f.get('tokens', 0) / 1e6:.0f} M tokens, {f.get('shards')} shards, {f.get('seconds', 0):.0f} s; "
        f"{peak(f) / peak(q) - 1:+.0%}) | flat, within +20% |",
    ]
    for name, rr in (("quarter", rq), ("full", rf)):
        rows.append(f"| training rank peak RSS (VmHWM) rank 0 / 1, {name} corpus | "
                    + " / ".join(f"{x.get('VmHWM', float('nan')):.0f} MB (anon {x.get('RssAnon', float('nan')):.0f}, "
                                 f"file {x.get('RssFile', float('nan')):.0f}; {x.get('items', 0):,} items)" for x in rr)
                    + " | |")
    rows.append(f"| training rank peak RSS, full vs quarter | {peak(rf[0], 'VmHWM') / peak(rq[0], 'VmHWM') - 1:+.0%} "
                f"| flat, within +20% |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
