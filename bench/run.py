"""Run the benchmarks and write bench/results.md (tables) and bench/results.json (every figure).

    python bench/run.py                      # default sizes (a few minutes per section on 2 CPU cores)
    python bench/run.py --quick              # CI-like smoke: tiny model, a few items / steps
    python bench/run.py --sections eval --models tiny --items-per-file 0      # all 18,800 tiny items
    python bench/run.py --sections eval --models gemma3_270m --gemma-items-per-file 100

Sections: eval (throughput of 4 evaluation approaches), paper (clika.protocol=paper vs the release's
per-item loop on gemma3_270m, identical outputs), train (Lightning vs plain loop, packing, RSS),
callback (share of wall time in CLiKA evaluation). Ratios are measured within one run of a section;
a run that covers only some sections keeps the other sections of an existing results.json (each
section records its own timestamp) so the table can be rebuilt piecewise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import common  # noqa: E402
from clika.util.atomic import atomic_write_text  # noqa: E402

SECTIONS = ("eval", "paper", "train", "callback")


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def run_eval(a, log) -> dict:
    from bench.eval_throughput import ALL_DATASETS, ALL_LANGS, bench_eval

    out = {}
    for model in a.models:
        if model == "tiny":
            kw = dict(datasets=ALL_DATASETS, langs=ALL_LANGS, items_per_file=a.items_per_file or None,
                      official_items_per_file=a.official_items_per_file or None)
        else:
            kw = dict(datasets=a.gemma_datasets, langs=a.gemma_langs, items_per_file=a.gemma_items_per_file or None,
                      official_items_per_file=a.gemma_official_items_per_file or None)
        out[model] = bench_eval(model, batch_size=a.batch_size, device=a.device, log=log, **kw)
        out[model]["measured_at"] = _stamp()
    return out


def run_paper(a, log) -> dict:
    from bench.paper_protocol import bench_paper

    return {**bench_paper(a.paper_model, a.gemma_datasets, a.gemma_langs, a.paper_items_per_file,
                          a.device, log), "measured_at": _stamp()}


def run_train(a, log) -> dict:
    from bench.train_bench import bench_train

    return {**bench_train(models=a.train_models, steps=a.train_steps, warmup=a.train_warmup,
                          batch_size=a.train_batch_size, block_size=a.block_size, device=a.device, log=log,
                          repeats=a.train_repeats), "measured_at": _stamp()}


def run_callback(a, log) -> dict:
    from bench.callback_overhead import bench_callback

    return {**bench_callback(limits=a.callback_limits, presets=a.callback_presets.split(","), log=log),
            "measured_at": _stamp()}


# ---------------------------------------------------------------- report
def _f(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "**met**" if x else "not met"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def render_md(res: dict) -> str:
    m = res.get("machine", {})
    lines = ["# CLiKA benchmarks", "",
             f"Machine: {m.get('cpu_count')} CPU cores, torch {m.get('torch')} ({m.get('torch_threads')} thread(s) "
             f"per process), transformers {m.get('transformers')}{', GPU ' + m['gpu'] if m.get('gpu') else ''}. "
             "Clock on CPU: each process's own CPU time (`time.process_time`; the machine is shared with other "
             "jobs, so wall time measures their load; with one thread CPU time equals wall time on an idle "
             "machine; `CLIKA_BENCH_CLOCK=wall` switches; wall times are in the JSON too). Ratios compare "
             "approaches timed one after another in the same process. Regenerate with `python bench/run.py` "
             f"(every figure: `bench/results.json`). Command: `{res.get('command', '')}`.", ""]
    ev = res.get("eval") or {}
    if ev:
        lines += ["## Evaluation throughput (items/s, same model, same items)", "",
                  "| model | items | letter form | letter (ours) | official (generate, beams 2) | lm-eval | "
                  "bare forward, full prompts | bare forward, last position only |",
                  "|---|---|---|---|---|---|---|---|"]
        for model, r in ev.items():
            mm = r["methods"]
            ips = lambda k: _f(mm[k]["items_per_s"]) if k in mm else "–"  # noqa: E731
            off = mm.get("official", {})
            off_note = f" ({off['items']} items)" if off and off["items"] != r["items"] else ""
            lines.append(f"| {model} | {r['items']} ({r['files']} files × {r['items_per_file'] or 'all'}) | "
                         f"`{r['letter_form']}` | {ips('letter')} | {ips('official')}{off_note} | {ips('lm_eval')} | "
                         f"{ips('bare_full')} | {ips('bare_last')} |")
        lines += ["", "| model | letter / official (≥ 3×) | letter / lm-eval (≥ 2×) | letter / bare full (≥ 1.5×) | "
                  "letter / bare last | log-probs = lm-eval (1e-4) | acc letter / lm-eval / official |",
                  "|---|---|---|---|---|---|---|"]
        for model, r in ev.items():
            ra, t, c, mm = r["ratios"], r["targets"], r.get("check_letter_vs_lm_eval", {}), r["methods"]

            def cell(k, goal):
                if f"letter/{k}" not in ra:
                    return "–"
                tag = "" if goal is None else (" ✔" if t[f"letter/{k} >= {goal}"] else " ✘")
                return f"{ra[f'letter/{k}']:.2f}×{tag}"
            chk = (f"{'yes' if c.get('logprobs_match_1e-4') else 'NO'} (max diff {c.get('max_abs_logprob_diff', 0):.1e}, "
                   f"acc {'equal' if c.get('acc_equal') else 'DIFFERENT'})") if c else "–"
            accs = " / ".join(_f(mm[k].get("acc"), 3) if k in mm else "–" for k in ("letter", "lm_eval", "official"))
            if "official" in mm and mm["official"].get("answered") is not None:
                accs += f" (official answered a letter on {mm['official']['answered']:.0%})"
            lines.append(f"| {model} | {cell('official', 3.0)} | {cell('lm_eval', 2.0)} | {cell('bare_full', 1.5)} | "
                         f"{cell('bare_last', None)} | {chk} | {accs} |")
        lines += ["", "`official` is timed on the first items of each file when its item count differs. `lm-eval` "
                  "is timed end to end (task build, dataset, requests, model; stderr bootstrap off); its "
                  "time inside `loglikelihood` alone is in the JSON.", ""]
    pp = res.get("paper") or {}
    if pp:
        lines += ["## `clika.protocol=paper` vs the release's per-item loop (items/s, same model and items)", "",
                  "| model | items | release loop (inference.py `Llama_model`) | protocol=paper (prefix KV reused, equal-length prompts together) | "
                  "ratio (≥ 2×) | identical output strings |", "|---|---|---|---|---|---|",
                  f"| {pp['model']} | {pp['items']} ({pp['files']} files × {pp['items_per_file']}) | "
                  f"{_f(pp['release_loop']['items_per_s'])} | {_f(pp['paper']['items_per_s'])} | {pp['ratio']:.2f}× "
                  f"{'✔' if pp['ratio'] >= 2 else '✘'} | {pp['identical_outputs']}/{pp['items']} |", ""]
    tr = res.get("train") or {}
    if tr:
        lines += ["## Training throughput (tokens/s, same model, data, batch, AdamW)", "",
                  f"batch {tr.get('batch_size')} × block {tr.get('block_size')}, {tr.get('steps')} timed steps after "
                  f"{tr.get('warmup')} warm-up steps; each configuration in its own process (peak RSS per process).", "",
                  "| model | params | method | plain loop tok/s | Lightning tok/s | overhead (≤ 5%) | "
                  "peak RSS plain / Lightning (MB) |", "|---|---|---|---|---|---|---|"]
        for row in tr.get("rows", []):
            lines.append(f"| {row['model']} | {row['params'] / 1e6:.2f}M | {row['method']} | {_f(row['plain_tok_s'], 0)} | "
                         f"{_f(row['lightning_tok_s'], 0)} | {row['overhead']:+.1%} {'✔' if row['overhead'] <= 0.05 else '✘'} | "
                         f"{_f(row['plain_peak_rss_mb'], 0)} / {_f(row['lightning_peak_rss_mb'], 0)} |")
        pk = tr.get("packing", {})
        if pk:
            drop = pk.get("drop") or {}
            lines += ["", f"Packing efficiency of the pt pipeline (block {pk.get('block_size')}, tiny tokenizer, "
                      f"`data.pack_remainder={pk.get('remainder', 'drop')}`) on the embedded corpora: "
                      f"**{pk['overall']:.2%}** of corpus tokens trained on, 0 padding tokens "
                      f"(target ≥ 98%: {'met' if pk['overall'] >= 0.98 else 'not met'}); "
                      f"{pk.get('repeated_tokens', 0):,} tokens ({pk.get('repeated_share', 0):.2%} of trained tokens) "
                      "complete each source's last block from its start. "
                      + (f"With `drop` (group_texts: the last partial block is discarded) {drop['overall']:.2%} are kept; "
                         "per language: " + ", ".join(f"{k} {v:.2%}" for k, v in drop["per_source"].items()) + "."
                         if drop else ""), ""]
    cb = res.get("callback") or {}
    if cb:
        lines += ["## CLiKA callback overhead", ""]
        if cb.get("todo"):
            lines += [f"TODO: {cb['todo']}", ""]
        else:
            lines += ["Real runs, callback as configured in conf/callbacks/default.yaml, each preset trained once "
                      "with it and once with `callbacks.clika=null` (same process, one after the other).", "",
                      "| preset | steps | evaluations (at steps) | items per evaluation | callback s | run s | "
                      "share of wall (≤ 10%) | run without callback s | extra wall |", "|---|---|---|---|---|---|---|---|---|"]
            for r in cb.get("runs", []):
                lines.append(f"| {r['preset']} | {r['steps']} | {len(r['evaluation_steps'])} ({', '.join(map(str, r['evaluation_steps']))}) | "
                             f"{r['items_per_eval']} | {r['eval_seconds']:.1f} | {r['wall_on']:.1f} | {r['share']:.1%} "
                             f"{'✔' if r['share'] <= 0.10 else '✘'} | {r['wall_off']:.1f} | {r['extra_wall']:+.1%} |")
            if cb.get("rows"):
                lines += ["", "| callbacks.clika.limit | suite items per evaluation | s per evaluation |", "|---|---|---|"]
                lines += [f"| {r['limit']} | {r['suite_items']} | {r['seconds_per_eval']:.2f} |" for r in cb["rows"]]
            if cb.get("scaling"):
                lines += ["", cb["scaling"]]
            lines.append("")
    if res.get("notes"):
        lines += ["## Targets", ""] + [f"- {t}" for t in res.get("targets_summary", [])] + [""]
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"] + res.get("extra_notes", [])] + [""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="CI-like smoke: tiny only, a few items and steps")
    ap.add_argument("--models", default="tiny,gemma3_270m", help="eval models")
    ap.add_argument("--items-per-file", type=int, default=15, help="tiny: items per dataset x language file (0 = all)")
    ap.add_argument("--official-items-per-file", type=int, default=0, help="tiny: official baseline subset (0 = same)")
    ap.add_argument("--gemma-datasets", default="x_copa,x_geo")
    ap.add_argument("--gemma-langs", default="en,zh")
    # gemma3_270m: 6 / 3 items per file gave 2.79x letter/official, 25 / 10 gave 4.17x (issue #17): ratios from a
    # few dozen items are dominated by per-run noise on a shared CPU, so the defaults are the larger sizes.
    ap.add_argument("--gemma-items-per-file", type=int, default=25)
    ap.add_argument("--gemma-official-items-per-file", type=int, default=10)
    ap.add_argument("--paper-model", default="gemma3_270m", help="paper section: model of protocol=paper vs the release loop")
    ap.add_argument("--paper-items-per-file", type=int, default=25, help="paper section: items per file (gemma datasets x langs)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-models", default="tiny,llama10m")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--train-warmup", type=int, default=5)
    ap.add_argument("--train-repeats", type=int, default=1, help="alternate plain/Lightning runs, keep each best")
    ap.add_argument("--train-batch-size", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--callback-presets", default="default,fictional_conductivity",
                    help="presets trained with and without the callback")
    ap.add_argument("--callback-limits", default="5,10,20", help="clika.limit values (items per file)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="writes <out>.md and <out>.json (default bench/results, "
                    "--quick: bench/results_quick)")
    ap.add_argument("--note", action="append", default=[], help="add a line to the notes of results.md")
    ap.add_argument("--merge", default=None, help="start from this results JSON (e.g. a section run elsewhere)")
    a = ap.parse_args(argv)
    if a.quick:
        a.models, a.items_per_file, a.official_items_per_file = "tiny", 2, 0
        a.train_models, a.train_steps, a.train_warmup = "tiny", 5, 2
        a.callback_presets, a.callback_limits = "default", "2"
        a.paper_model, a.paper_items_per_file = "tiny", 2
    a.models = [m for m in a.models.split(",") if m]
    a.train_models = [m for m in a.train_models.split(",") if m]
    a.gemma_datasets, a.gemma_langs = a.gemma_datasets.split(","), a.gemma_langs.split(",")
    a.callback_limits = [int(x) or None for x in a.callback_limits.split(",")]
    common.set_threads(a.threads)

    a.out = a.out or str(HERE / ("results_quick" if a.quick else "results"))
    out_json, out_md = Path(a.out + ".json"), Path(a.out + ".md")
    out_json.parent.mkdir(parents=True, exist_ok=True)  # --out <new dir>/x
    res = json.loads(out_json.read_text()) if out_json.exists() and not a.quick else {}
    if a.merge:
        extra = json.loads(Path(a.merge).read_text())
        res.update({k: v for k, v in extra.items() if k in SECTIONS and k != "eval"})
        res["eval"] = {**res.get("eval", {}), **extra.get("eval", {})}
        if extra.get("command"):
            res["command"] = extra["command"]
    if any(x for x in a.sections.split(",")) or "machine" not in res:  # a re-render keeps the measuring machine
        res["machine"] = common.machine_info()
    args, skip = [], False
    for x in (argv or sys.argv[1:]):  # the command without its --note texts
        if skip or x == "--note":
            skip = x == "--note"
            continue
        args.append(x)
    if any(x for x in a.sections.split(",")):  # a pure re-render keeps the command that measured
        res["command"] = " ".join(["python", "bench/run.py", *args])
    log = lambda s: print(s, flush=True)  # noqa: E731
    for section in [s for s in a.sections.split(",") if s]:  # --sections "" only re-renders the table
        t0 = time.perf_counter()
        new = {"eval": run_eval, "paper": run_paper, "train": run_train, "callback": run_callback}[section](a, log)
        # eval: per model, so models can be measured in separate runs (each model's ratios stay within one run)
        res[section] = {**res.get("eval", {}), **new} if section == "eval" else new
        log(f"[run] section {section}: {time.perf_counter() - t0:.0f}s")
        out_json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    res["notes"] = notes(res)
    if a.note:
        res["extra_notes"] = list(a.note)
    out_json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = render_md(res)
    atomic_write_text(out_md, with_kept_notes(md, out_md))  # the hand-written notes survive an interrupted write
    print(md)
    return res


KEEP = "<!-- hand-written notes: everything below this line is kept when bench/run.py rewrites this file -->"


def with_kept_notes(text: str, md: Path) -> str:
    """The rendered tables, then the hand-written part of the existing file (below KEEP), unchanged."""
    old = md.read_text(encoding="utf-8") if md.exists() else ""
    kept = old.split(KEEP, 1)[1] if KEEP in old else "\n"
    return text.rstrip("\n") + "\n\n" + KEEP + kept


def notes(res: dict) -> list[str]:
    n = [f"Threads: torch.set_num_threads({res['machine'].get('torch_threads')}) in every benchmark process on this "
         f"{res['machine'].get('cpu_count')}-core machine (shared with other jobs; load average was 3-9 during the "
         "runs), so figures are per core and not distorted by oversubscription."]
    targets = []
    for model, r in (res.get("eval") or {}).items():
        off = (r.get("methods") or {}).get("official") or {}
        counts = f"{r['items']} items" + (f", official on {off['items']}" if off.get("items") not in (None, r["items"])
                                          else "")
        targets += [f"eval {model}: {k} — {'met' if v else 'NOT met'} ({r['ratios'][k.split(' ')[0]]:.2f}×; {counts})"
                    for k, v in r.get("targets", {}).items()]
        c = r.get("check_letter_vs_lm_eval")
        if c:
            targets.append(f"eval {model}: letter log-probs = lm-eval within 1e-4 — "
                           f"{'met' if c['logprobs_match_1e-4'] else 'NOT met'} (max |Δ| {c['max_abs_logprob_diff']:.1e} over "
                           f"{c['items_compared']} items); same accuracy — {'met' if c['acc_equal'] else 'NOT met'}")
    pp = res.get("paper") or {}
    if pp:
        targets.append(f"paper {pp['model']}: protocol=paper ≥ 2× the release loop with identical outputs — "
                       f"{'met' if pp['target_met'] else 'NOT met'} ({pp['ratio']:.2f}×, {pp['identical_outputs']}/"
                       f"{pp['items']} identical)")
    tr = res.get("train") or {}
    for row in tr.get("rows", []):
        targets.append(f"train {row['model']} {row['method']}: Lightning overhead ≤ 5% — "
                       f"{'met' if row['overhead_met'] else 'NOT met'} ({row['overhead']:+.1%} median-step, "
                       f"{row['overhead_mean']:+.1%} mean)")
    if tr.get("packing"):
        pk = tr["packing"]
        targets.append(f"packing ≥ 98% — non-padding share of trained tokens 100% (met); share of corpus tokens trained "
                       f"{pk['overall']:.2%} ({'met' if pk['overall'] >= 0.98 else 'NOT met'}; "
                       f"pack_remainder={pk.get('remainder', 'drop')})")
    cb = res.get("callback") or {}
    for row in cb.get("runs", []):
        targets.append(f"callback share ≤ 10% in {row['preset']} — {'met' if row['share'] <= 0.10 else 'NOT met'} "
                       f"({row['share']:.1%}; run {row['extra_wall']:+.1%} vs without the callback)")
    if cb.get("todo"):
        targets.append(f"callback: TODO — {cb['todo']}")
    res["targets_summary"] = targets
    return n


if __name__ == "__main__":
    main()
