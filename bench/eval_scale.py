"""Evaluation at scale (#22), in one run: items/s against `clika.batch_size` per protocol (tiny, in process), eval.py
with 2 processes vs 1 (gemma3_270m, letter and paper, per-item predictions compared), and the cost of a SIGKILL at
~50% + `resume=auto` against an uninterrupted evaluation (tiny). Writes bench/eval_scale.json and its section of
bench/results.md.

    python bench/eval_scale.py            # ~10 min on 2 CPU cores
    python bench/eval_scale.py --quick    # a smoke run: few items
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.common import ROOT, clock, clock_name, data_root, load, set_threads
except ImportError:  # run as a script: python bench/eval_scale.py (common puts the project on sys.path)
    from common import ROOT, clock, clock_name, data_root, load, set_threads  # type: ignore[no-redef]

from clika.scoring.loglik import make_scorer  # noqa: E402
from clika.scoring.suite import Suite, suite_requests  # noqa: E402

SECTION = "## Evaluation at scale (#22): batch size, 2 processes, resume"
BATCH_SIZES = (1, 4, 16)


# ---------------------------------------------------------------- items/s against clika.batch_size (in process)
def batch_sweep(limit: int) -> dict:
    set_threads(1)
    model, tok = load("tiny")
    suite = Suite(data_root=data_root(), datasets=["x_copa", "x_geo"], langs=["en", "zh"], limit=limit, seed=1234)
    sets = suite_requests(suite)
    n = sum(len(v) for v in sets.values())
    out = {"model": "tiny", "items": n, "files": len(sets), "clock": clock_name()}
    for protocol in ("letter", "cloze", "paper"):
        row, ref = {}, None
        for bs in BATCH_SIZES:
            scorer = make_scorer(protocol, bs)
            scorer.progress = False
            t = clock()
            res = [r for reqs in sets.values() for r in scorer.score(model, tok, reqs)]
            dt = clock() - t
            row[bs] = round(n / dt, 2)
            if ref is None:
                ref = res
            elif protocol == "paper":  # strings identical
                assert [r.output for r in res] == [r.output for r in ref], (protocol, bs)
            else:  # scores to float rounding
                gap = max(abs(x - y) for a, b in zip(ref, res) for x, y in zip(a.scores, b.scores))
                assert gap < 1e-4 and [r.pred for r in res] == [r.pred for r in ref], (protocol, bs, gap)
        out[protocol] = row
        print(f"batch sweep {protocol}: {row}", flush=True)
    return out


# ---------------------------------------------------------------- eval.py runs
def _env() -> dict:
    env = {**os.environ, "CLIKA_DATA": data_root(), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CLIKA_RUN_DIR", None)
    return env


def _cmd(nproc: int, out: Path, args: list[str]) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
              if nproc > 1 else [sys.executable])
    return [*launch, "eval.py", f"output_dir={out}", f"paths.log_dir={out.parent}/logs", "print_config=false",
            "threads=1", *args]


def _eval(nproc: int, out: Path, args: list[str]) -> dict:
    t = time.time()
    p = subprocess.run(_cmd(nproc, out, args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
    wall = time.time() - t
    if p.returncode != 0:
        raise SystemExit(f"eval.py failed ({nproc} proc):\n{p.stderr[-3000:]}")
    run = json.loads((out / "results.json").read_text())["evaluated"]["run"]
    return {"process_wall_s": round(wall, 1), **{k: run[k] for k in ("wall_s", "items", "resumed_items",
                                                                     "items_per_s", "world_size") if k in run}}


def _predictions(run: Path) -> dict:
    return {str(p.relative_to(run)): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted((run / "predictions").rglob("*.jsonl"))}


def _compare(a: dict, b: dict) -> dict:
    """Per item: every field but the scores equal; the scores within 1e-4 (as tests/eval/test_eval_distributed.py)."""
    same = a.keys() == b.keys()
    items = mismatched = 0
    gap = 0.0
    for name in a:
        for ra, rb in zip(a[name], b.get(name, [])):
            items += 1
            if {k: v for k, v in ra.items() if k != "scores"} != {k: v for k, v in rb.items() if k != "scores"}:
                mismatched += 1
            gap = max([gap] + [abs(x - y) for x, y in zip(ra.get("scores") or [], rb.get("scores") or [])])
        same = same and len(a[name]) == len(b.get(name, []))
    return {"items": items, "mismatched": mismatched, "max_score_gap": gap,
            "identical": same and mismatched == 0 and gap < 1e-4}


def two_processes(tmp: Path, limits: dict[str, int]) -> dict:
    out = {}
    for protocol, limit in limits.items():
        args = ["model=gemma3_270m", f"clika.protocol={protocol}", "clika.datasets=[x_copa]", "clika.langs=[en,zh]",
                f"clika.limit={limit}"]
        one = _eval(1, tmp / f"{protocol}-1", args)
        two = _eval(2, tmp / f"{protocol}-2", args)
        cmp = _compare(_predictions(tmp / f"{protocol}-1"), _predictions(tmp / f"{protocol}-2"))
        out[protocol] = {"limit_per_file": limit, "one": one, "two": two, "compare": cmp,
                         "ratio": round(two["items_per_s"] / one["items_per_s"], 2)}
        print(f"2 vs 1 processes {protocol}: {out[protocol]}", flush=True)
    return out


def resume(tmp: Path, limit: int) -> dict:
    args = ["model=tiny", "clika.protocol=letter", f"clika.limit={limit}"]
    whole = _eval(1, tmp / "whole", args)
    n_sets = len(_predictions(tmp / "whole"))
    cut = tmp / "cut"
    journal = cut / ".journal" / "rank0-of-1.jsonl"
    t = time.time()
    proc = subprocess.Popen(_cmd(1, cut, args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = None
    while proc.poll() is None:  # header + one line per finished request set
        if journal.exists() and journal.read_text().count("\n") - 1 >= n_sets // 2:
            proc.send_signal(signal.SIGKILL)
            killed_at = journal.read_text().count("\n") - 1
            break
        time.sleep(0.02)
    proc.wait()
    first_wall = time.time() - t
    if killed_at is None:
        raise SystemExit("resume bench: the evaluation ended before it could be killed")
    again = _eval(1, cut, [*args, "resume=auto"])
    cmp = _compare(_predictions(tmp / "whole"), _predictions(cut))
    startup = whole["process_wall_s"] - whole["wall_s"]
    total = first_wall + again["process_wall_s"]
    return {"model": "tiny", "protocol": "letter", "sets": n_sets, "killed_after_sets": killed_at,
            "uninterrupted": whole, "killed_attempt_wall_s": round(first_wall, 1), "resumed": again,
            "scored_in_resume": again["items"] - again["resumed_items"], "startup_s": round(startup, 1),
            "total_wall_s": round(total, 1), "wall_ratio": round(total / whole["process_wall_s"], 2),
            "target_s": round(1.1 * whole["process_wall_s"] + startup, 1), "compare": cmp}


# ---------------------------------------------------------------- report
def markdown(r: dict) -> str:
    b, two, rs = r["batch"], r["two_processes"], r["resume"]
    lines = [SECTION, "",
             f"Command: `python bench/eval_scale.py` (one run; load average {r['load']:.2f} at the start, other jobs on the "
             "same 2 cores). Items/s against `clika.batch_size` on the tiny model in one process "
             f"({b['items']} items: {b['files']} files, x_copa + x_geo × en, zh; clock: {b['clock']}, 1 thread); "
             "outputs equal across batch sizes (paper strings identical, letter/cloze scores within 1e-4) "
             "— asserted by the script.", "",
             "| protocol | " + " | ".join(f"batch {bs}" for bs in BATCH_SIZES) + " | 16 vs 1 |",
             "|---|" + "---|" * (len(BATCH_SIZES) + 1)]
    for p in ("letter", "cloze", "paper"):
        row = b[p]
        lines.append(f"| {p} | " + " | ".join(f"{row[bs]:.1f}" for bs in BATCH_SIZES)
                     + f" | {row[16] / row[1]:.2f}× |")
    lines += ["", "`eval.py` with 2 processes (`python -m torch.distributed.run --standalone --nproc_per_node 2`, gloo, "
              "`OMP_NUM_THREADS=1 threads=1`) vs 1 (`threads=1`) on gemma3_270m, `clika.datasets=[x_copa] "
              "clika.langs=[en,zh]`; items/s is results.json's `evaluated.run.items_per_s` (scoring wall time); "
              "identity: every per-item field equal, log-probs within 1e-4.", "",
              "| protocol | items | 1 process items/s | 2 processes items/s | ratio (≥ 1.7×) | per-item identical |",
              "|---|---|---|---|---|---|"]
    for p, x in two.items():
        c = x["compare"]
        lines.append(f"| {p} | {x['one']['items']} ({x['limit_per_file']}/file) | {x['one']['items_per_s']:.2f} | "
                     f"{x['two']['items_per_s']:.2f} | {x['ratio']:.2f}× {'✔' if x['ratio'] >= 1.7 else '✘'} | "
                     f"{'yes' if c['identical'] else 'NO'} ({c['items']} items, {c['mismatched']} differ, "
                     f"max Δ score {c['max_score_gap']:.1e}) |")
    u, a = rs["uninterrupted"], rs["resumed"]
    ok_items = a["resumed_items"] + rs["scored_in_resume"] == u["items"]
    lines += ["", f"Resume: tiny, letter, `clika.limit={r['resume_limit']}` over the default datasets and languages "
              f"({u['items']} items, {rs['sets']} request sets), SIGKILL once "
              f"{rs['killed_after_sets']} sets were journalled, then `resume=auto`.", "",
              "| | wall s (process) | scoring s | items scored |", "|---|---|---|---|",
              f"| uninterrupted | {u['process_wall_s']} | {u['wall_s']} | {u['items']} |",
              f"| killed attempt | {rs['killed_attempt_wall_s']} | — | {a['resumed_items']} journalled |",
              f"| resumed attempt | {a['process_wall_s']} | {a['wall_s']} | {rs['scored_in_resume']} "
              f"(+ {a['resumed_items']} resumed) |",
              "",
              f"- No finished item scored twice: {'met' if ok_items else 'NOT met'} (journalled {a['resumed_items']} + "
              f"scored on resume {rs['scored_in_resume']} = {a['resumed_items'] + rs['scored_in_resume']} of "
              f"{u['items']}; only the request set in flight at the kill, started at most 20 ms earlier, is scored "
              "again: the journal's unit is a finished set).",
              f"- Wall: killed + resumed {rs['total_wall_s']} s = {rs['wall_ratio']:.2f}× the uninterrupted "
              f"{u['process_wall_s']} s; target ≤ 1.1× + start-up ({rs['startup_s']} s) = {rs['target_s']} s: "
              f"{'met' if rs['total_wall_s'] <= rs['target_s'] else 'NOT met'}.",
              f"- Results equal the uninterrupted run item for item: {'yes' if rs['compare']['identical'] else 'NO'}."]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = ROOT / "bench" / "results.md"
    md = path.read_text()
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    md = pattern.sub(lambda _: text.rstrip("\n") + "\n", md) if pattern.search(md) else md.rstrip("\n") + "\n\n" + text
    path.write_text(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few items (smoke run; results.md untouched)")
    a = ap.parse_args()
    r = {"load": os.getloadavg()[0]}
    r["batch"] = batch_sweep(8 if a.quick else 50)
    r["resume_limit"] = 5 if a.quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        r["two_processes"] = two_processes(Path(tmp), {"letter": 4, "paper": 4} if a.quick else
                                           {"letter": 100, "paper": 100})
        r["resume"] = resume(Path(tmp), r["resume_limit"])
    print(json.dumps(r, indent=1))
    if not a.quick:
        (ROOT / "bench" / "eval_scale.json").write_text(json.dumps(r, indent=1) + "\n")
        write_section(markdown(r))
    else:
        print(markdown(r))


if __name__ == "__main__":
    main()
