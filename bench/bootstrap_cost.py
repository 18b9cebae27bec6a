"""Cost of the bootstrap interval of an accuracy before -> after vectorising (clika.metrics.alignment.bootstrap_ci).

`before` is the pure-Python loop the project used until issue 24 (copied here verbatim: random.Random(seed), one
randrange per draw, the same percentile indices); `after` is the numpy version. Both on the same items, in one
process, one after the other; best of `--repeats`. Also times the paired bootstrap of a delta (two systems, same
items). With --findings, also the whole `eval.py task=findings` report over the release's 46 systems x 4 datasets x
10 languages at --resamples (load, comparisons + audit, figures; wall and CPU seconds). Writes the figures to stdout
as JSON and, with --write, a short section at the end of bench/results.md (below the hand-written-notes line,
replacing an earlier copy of this section).

    python bench/bootstrap_cost.py --items 1000 --resamples 1000 --findings --write
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clika.metrics.alignment import bootstrap_ci, paired_bootstrap_ci  # noqa: E402
from clika.util.jsonl import atomic_write_text  # noqa: E402

SECTION = "## Bootstrap interval cost (bench/bootstrap_cost.py)"


def loop_bootstrap_ci(correct, n=1000, seed=0, level=0.95):
    """The pre-issue-24 implementation (pure Python), kept as the baseline."""
    if not correct or n <= 0:
        return (float("nan"), float("nan"))
    rng, k = random.Random(seed), len(correct)
    vals = [int(bool(c)) for c in correct]
    stats = sorted(sum(vals[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    lo = stats[int(math.floor((1 - level) / 2 * (n - 1)))]
    hi = stats[int(math.ceil((1 + level) / 2 * (n - 1)))]
    return (lo, hi)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(items: int, resamples: int, repeats: int) -> dict:
    rng = random.Random(1)
    a = [rng.random() < 0.7 for _ in range(items)]
    b = [x if rng.random() < 0.8 else not x for x in a]
    before = best(lambda: loop_bootstrap_ci(a, resamples, 0), repeats)
    after = best(lambda: bootstrap_ci(a, resamples, 0), repeats)
    paired = best(lambda: paired_bootstrap_ci(a, b, resamples, 0), repeats)
    return {"items": items, "resamples": resamples, "repeats": repeats, "before_s": before, "after_s": after,
            "paired_s": paired, "speedup": before / after, "ci_before": list(loop_bootstrap_ci(a, resamples, 0)),
            "ci_after": list(bootstrap_ci(a, resamples, 0)), "acc": sum(a) / items,
            "load_avg_1min": os.getloadavg()[0]}


def findings_cost(resamples: int, out: Path) -> dict:
    """Wall / CPU seconds of the findings report's stages (clika.report.findings, as eval.py task=findings runs it)."""
    from clika.report import findings as fnd

    results = Path(os.environ.get("CLIKA_DATA", ROOT.parent / "shared" / "clika-data")) / "results"
    stages, t, c = {}, time.perf_counter(), time.process_time()

    def lap(name):
        nonlocal t, c
        stages[name] = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
        t, c = time.perf_counter(), time.process_time()

    systems = fnd.load_systems(results)
    lap("load")
    rep = fnd.findings(None, n=resamples, systems=systems)
    lap("comparisons_and_audit")
    for r in rep["comparisons"]:
        fnd.plot_comparison(r, out / fnd.figure_name(r))
    fnd.plot_bias_heatmap(rep["audit"], out / "position_bias.png")
    lap("figures")
    total = {k: sum(s[k] for s in stages.values()) for k in ("wall_s", "cpu_s")}
    return {"systems": len(systems), "comparisons": len(rep["comparisons"]), "cells": rep["audit"]["summary"]["cells"],
            "resamples": resamples, "stages": stages, **total}


def section(r: dict) -> str:
    f = r.get("findings")
    extra = [] if not f else [
        f"The whole findings report (`eval.py task=findings`: {f['systems']} systems x 4 datasets x 10 languages, "
        f"{f['comparisons']} comparisons, {f['cells']:,} audited en-CO cells, {f['resamples']:,} resamples per "
        f"interval), same run: **{f['wall_s']:.1f} s wall** ({f['cpu_s']:.1f} s CPU; target < 60 s) = "
        + ", ".join(f"{k.replace('_', ' ')} {v['wall_s']:.1f} s" for k, v in f["stages"].items())
        + " (python start-up and eval.py's imports not included).", ""]
    return "\n".join([
        SECTION, "",
        f"{r['items']:,} items x {r['resamples']:,} resamples, one process, best of {r['repeats']}, measured in one run "
        f"({time.strftime('%Y-%m-%d')}; load average {r['load_avg_1min']:.1f} on {os.cpu_count()} cores):", "",
        "| | seconds per interval |", "|---|---:|",
        f"| before: pure-Python loop (random.Random) | {r['before_s']:.4f} |",
        f"| after: numpy (`bootstrap_ci`) | {r['after_s']:.5f} |",
        f"| after: paired delta of two systems (`paired_bootstrap_ci`) | {r['paired_s']:.5f} |", "",
        f"Speed-up {r['speedup']:.0f}x. Same percentile indices; the resamples now come from "
        f"numpy.random.default_rng(seed), so an interval differs from the loop's by resampling noise only "
        f"(acc {r['acc']:.3f}: loop [{r['ci_before'][0]:.3f}, {r['ci_before'][1]:.3f}], "
        f"numpy [{r['ci_after'][0]:.3f}, {r['ci_after'][1]:.3f}]).", "", *extra])


def write(r: dict, path: Path = ROOT / "bench" / "results.md") -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION in text:  # replace this script's earlier section, keep everything else
        head, _, tail = text.partition(SECTION)
        nxt = tail.find("\n## ")
        text = head.rstrip("\n") + "\n\n" + section(r) + (tail[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section(r)
    atomic_write_text(path, text.rstrip("\n") + "\n")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--findings", action="store_true", help="also time the whole findings report")
    ap.add_argument("--write", action="store_true", help="append/replace the section in bench/results.md")
    args = ap.parse_args(argv)
    r = measure(args.items, args.resamples, args.repeats)
    if args.findings:
        with tempfile.TemporaryDirectory() as tmp:
            r["findings"] = findings_cost(args.resamples, Path(tmp))
    print(json.dumps(r, indent=1))
    if args.write:
        write(r)
    return r


if __name__ == "__main__":
    main()
