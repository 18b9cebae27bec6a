"""conductivity.md: the Markdown report of `eval.py task=conductivity`."""

from __future__ import annotations

from typing import Mapping


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def tokenization_markdown(reports: Mapping[str, Mapping]) -> list[str]:
    lines = ["| lang | names | tokens / name | single-token names | first token shared with EN |",
             "|---|---:|---:|---:|---:|"]
    for lang, r in reports.items():
        lines.append(f"| {lang} | {r['names']} | {r['tokens_per_name']:.2f} | {_pct(r['single_token'])}% | "
                     f"{_pct(r['first_token_shared_with_en'])}% |")
    return lines


def markdown(report: Mapping) -> str:
    """conductivity.md from the conductivity.json object written by `eval.py task=conductivity`."""
    x, gate = report["x"], report["gate_scorer"]
    lines = [f"# Conductivity of `{report.get('model', '?')}` trained on {x.upper()}", "",
             f"data `{report['root']}`: {report['n_continents']} continents (chance {_pct(report['chance'])}%), "
             f"subset {report.get('limit') or 'all'} (seed {report.get('seed')}), template `{report.get('template')}`, "
             f"gate threshold {report['threshold']}, gating scorer `{gate}`. Accuracies in %.", ""]
    if report.get("defects"):
        lines += ["**Release defects** (scored anyway; a run on a defective release may be unable to pass the gate):", ""]
        lines += [f"- {d}" for d in report["defects"]] + [""]
    if report.get("other_defects"):
        lines += [f"({report['other_defects']} more defect(s) of the release concern other languages: see "
                  "`eval.py task=make_fictional` / `clika.fictional.check_release`.)", ""]
    for scorer, res in report["results"].items():
        s = res["scores"][x]
        lines += [f"## Scorer `{scorer}`" + (" (gates)" if scorer == gate else " (reported, does not gate)"), "",
                  "| lang | acc | type 0 | type 1 | translate | n |", "|---|---:|---:|---:|---:|---:|"]
        for lang, v in res["langs"].items():
            lines.append(f"| {lang} | {_pct(v['acc'])} | {_pct(v['acc_type0'])} | {_pct(v['acc_type1'])} | "
                         f"{_pct(v['acc_translate'])} | {v['n']} |")
        checks = ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in s["gate"].items())
        lines += ["", f"Gate (>= {s['threshold']}): **{'FAILED' if s['gated'] else 'passed'}** ({checks}).", ""]
        if s["gated"]:
            lines += [f"XRR not reported: {s['reasons'].get('xrr', 'gated')}.", ""]
        else:
            lines += ["| metric | value | chance |", "|---|---:|---:|",
                      f"| XRR = acc({x} type 1) / acc(en type 1) | {_num(s['xrr'])} | {_num(s['chance'])} |",
                      f"| chance-corrected XRR | {_num(s['xrr_corrected'])} | 0 |",
                      f"| acc({x} type 1) / acc({x} type 0) | {_num(s['x_ratio'])} | |", ""]
            lines += [f"- {k}: {v}" for k, v in s["reasons"].items()]
    if report.get("tokenization"):
        lines += ["## Name tokenization", "",
                  "Conductivity depends on how names tokenize: names split into characters shared by many "
                  "other names conduct near chance, names with tokens of their own conduct well.", ""]
        lines += tokenization_markdown(report["tokenization"]) + [""]
    return "\n".join(lines) + "\n"
