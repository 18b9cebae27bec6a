"""Cost of circular evaluation (clika.circular) against the plain run, in one process, same items, same scorer.

Each dataset is scored twice through `clika.scoring.api.run_tasks`: plain (n items per language) and circular (every
cyclic rotation: k·n prompts). Target: circular costs at most k × plain — the few-shot prefix's KV cache is
computed once per language in both, so only the item part (the suffix forward) is repeated per rotation.
Reported per dataset: CPU seconds of each, their ratio next to k, and the ratio of suffix tokens forwarded
(the ideal ratio). Checks: rotation 0 of the circular run = the plain run (same predictions, log-probs within
1e-4). The metrics of both runs (plain vs circular accuracy and en-CO, the position-bias report) are kept
in the JSON and tabulated in the markdown: they are the README's measured table.

    python bench/circular_cost.py --model gemma3_270m --datasets x_copa,x_geo --langs en,zh --items-per-file 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: python bench/circular_cost.py
    import common  # type: ignore[no-redef]

OUT = Path(__file__).resolve().parent


def suffix_tokens(tok, requests) -> int:
    """Tokens forwarded after the shared prefix (what the letter scorer runs per prompt)."""
    from clika.scoring.loglik import _common_prefix_len

    enc = [tok(r.context)["input_ids"] for r in requests]
    p = _common_prefix_len(enc)
    return sum(len(e) - p for e in enc)


def bench(model_name: str, datasets: list[str], langs: list[str], items: int, batch_size: int) -> dict:
    from clika.scoring.suite import Suite, load_suite_items, suite_metrics, suite_tasks
    from clika.scoring.api import run_tasks

    common.set_threads(1)
    model, tok = common.load(model_name)
    plain_suite = Suite(data_root=common.data_root(), datasets=datasets, langs=langs, limit=items, bootstrap=0,
                        batch_size=batch_size).validate()
    circ_suite = Suite(**{**plain_suite.__dict__, "circular": True}).validate()
    loaded = load_suite_items(plain_suite)
    out = {"model": model_name, "items_per_file": items, "langs": langs, "batch_size": batch_size,
           "clock": common.clock_name(), "machine": common.machine_info(), "datasets": {}}
    plain_metrics, circ_metrics = {}, {}
    for ds in datasets:
        (plain_task,) = suite_tasks(plain_suite, {ds: loaded[ds]})
        (circ_task,) = suite_tasks(circ_suite, {ds: loaded[ds]})
        with common.Timer() as tp:
            plain = run_tasks(model, tok, [plain_task])[ds]
        with common.Timer() as tc:
            circ = run_tasks(model, tok, [circ_task])[ds]
        k = len(loaded[ds][langs[0]][0].options)
        plain_tokens = sum(suffix_tokens(tok, s.requests) for s in plain_task.request_sets(tok))
        circ_tokens = sum(suffix_tokens(tok, s.requests) for s in circ_task.request_sets(tok))
        max_diff, same_pred = 0.0, True
        for lang in langs:
            for a, b in zip(plain.results[(ds, lang)], circ.results[(ds, lang)][::k]):
                same_pred &= a.pred == b.pred
                max_diff = max(max_diff, max(abs(x - y) for x, y in zip(a.scores, b.scores)))
        out["datasets"][ds] = {
            "k": k, "items": items * len(langs), "prompts_plain": items * len(langs),
            "prompts_circular": items * len(langs) * k, "plain_s": tp.seconds, "circular_s": tc.seconds,
            "plain_wall_s": tp.wall, "circular_wall_s": tc.wall, "ratio": tc.seconds / tp.seconds,
            "suffix_tokens_plain": plain_tokens, "suffix_tokens_circular": circ_tokens,
            "token_ratio": circ_tokens / plain_tokens, "rotation0_equals_plain": same_pred and max_diff <= 1e-4,
            "rotation0_max_abs_diff": max_diff}
        plain_metrics[ds], circ_metrics[ds] = plain.metrics, circ.metrics
        print(json.dumps({ds: out["datasets"][ds]}), flush=True)
    out["plain"] = suite_metrics(plain_suite, plain_metrics)
    out["circular"] = suite_metrics(circ_suite, circ_metrics)
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def markdown(res: dict) -> str:
    lines = [f"# Circular evaluation: cost and measurements ({res['model']})", "",
             f"{res['items_per_file']} items per file ({', '.join(res['langs'])}), letter scorer (paper prompts, "
             f"`Answer:<letter>`), batch {res['batch_size']}, torch {res['machine']['torch']}, "
             f"{res['machine']['torch_threads']} thread; clock: {res['clock']}. "
             "Command: `python bench/circular_cost.py --model {m} --datasets {d} --langs {l} --items-per-file {n}`."
             .format(m=res["model"], d=",".join(res["datasets"]), l=",".join(res["langs"]), n=res["items_per_file"]),
             "", "## Cost (target: circular ≤ k × plain)", "",
             "| dataset | k | items | prompts plain / circular | plain s | circular s | ratio | ≤ k | suffix-token ratio "
             "| rotation 0 = plain (1e-4) |", "|---|---:|---:|---|---:|---:|---:|---|---:|---|"]
    for ds, d in res["datasets"].items():
        lines.append(f"| {ds} | {d['k']} | {d['items']} | {d['prompts_plain']} / {d['prompts_circular']} | "
                     f"{d['plain_s']:.1f} | {d['circular_s']:.1f} | {d['ratio']:.2f}× | "
                     f"{'✔' if d['ratio'] <= d['k'] else '✘'} | {d['token_ratio']:.2f}× | "
                     f"{'yes' if d['rotation0_equals_plain'] else 'NO'} (max {d['rotation0_max_abs_diff']:.1e}) |")
    lines += ["", "## Plain vs circular, position bias (values in %)", "",
              "| dataset | lang | acc | acc_circ | acc_rot | en-CO | en-CO circ | answer-identity en-CO (chance "
              "1/k) | bias plain: letter (share) · entropy · RStd | bias circular: letter (share) · entropy · RStd |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for ds in res["datasets"]:
        for lang in res["langs"]:
            p, c = res["plain"]["datasets"][ds]["langs"][lang], res["circular"]["datasets"][ds]["langs"][lang]

            def b(x):
                x = x["bias"]
                return f"{x['letter']} ({_pct(x['share'])}) · {x['entropy']:.2f} · {_pct(x['rstd'])}"

            lines.append(f"| {ds} | {lang} | {_pct(p['acc'])} | {_pct(c['acc_circ'])} | {_pct(c['acc_rot'])} | "
                         f"{_pct(p.get('en_co'))} | {_pct(c.get('en_co_circ'))} | {_pct(c.get('en_co_answer'))} | "
                         f"{b(p)} | {b(c)} |")
    lines += ["", "## PriDe debiasing (clika/metrics/pride.py; prior estimated from every item's rotations, no labels; "
              "values in %)", "",
              "| dataset | lang | acc plain | acc_pride | en-CO plain | en-CO PriDe | estimated prior per letter |",
              "|---|---|---:|---:|---:|---:|---|"]
    for ds in res["datasets"]:
        for lang in res["langs"]:
            p, c = res["plain"]["datasets"][ds]["langs"][lang], res["circular"]["datasets"][ds]["langs"][lang]
            prior = " ".join(f"{k} {_pct(v)}" for k, v in (c.get("pride_prior") or {}).items())
            lines.append(f"| {ds} | {lang} | {_pct(p['acc'])} | {_pct(c.get('acc_pride'))} | {_pct(p.get('en_co'))} "
                         f"| {_pct(c.get('en_co_pride'))} | {prior} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--datasets", default="x_copa,x_geo")
    ap.add_argument("--langs", default="en,zh")
    ap.add_argument("--items-per-file", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(OUT / "circular_results"), help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    res = bench(args.model, args.datasets.split(","), args.langs.split(","), args.items_per_file, args.batch_size)
    from clika.util.jsonl import atomic_write_text, write_json

    write_json(Path(args.out + ".json"), res)
    atomic_write_text(Path(args.out + ".md"), markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
