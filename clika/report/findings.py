"""The paper's findings, measured on published outputs, with paired-bootstrap intervals and a position-bias audit.

Pure functions (no Hydra); `eval.py task=findings` (clika.eval.commands) is the glue.

- Systems: every `<model>/<dataset>/<lang>.jsonl` (or official-layout) file of one or more results dirs, found and
  scored by clika.report.rescore (`find_outputs`, `correctness`: the release's first-character rule).
- Comparisons (clika/report/findings.yaml, this project's reading of the abstract): per dataset and language the
  acc, RA and en-CO of base and treated and their delta; a paired bootstrap over the items of a dataset (both
  systems and all ten languages resampled together, `clika.metrics.alignment.bootstrap_weights`) gives the 95%
  interval of every delta, of the target languages' mean delta, of the others' and of the all-dataset means.
- Letter-only baseline of an en-CO cell: two content-blind guessers, English answering letter j with English's
  observed share q_en(j) and language l with q_l(j), independently per item; over the items with their gold
  letters g_en(i), g_l(i): E|∩| = Σ_i q_en(g_en(i)) q_l(g_l(i)), E|∪| = Σ_i q_en(g_en(i)) + q_l(g_l(i)) - (that
  product); baseline = E|∩| / E|∪| (the share of a letter is over all items; an item answered with no option
  letter counts in no letter's share). `en_co_excess` = en-CO - baseline, `en_co_letter_adj` = (en-CO - baseline)
  / (1 - baseline). A cell is position-dominated when en-CO < baseline + `dominated_margin`.
- Position bias of every file: clika.metrics.bias.position_bias (top letter and share, normalised entropy, RStd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import yaml

from clika.metrics.alignment import bootstrap_weights, percentile_interval, relative_accuracy
from clika.metrics.bias import position_bias
from clika.report import rescore
from clika.scoring.judges import first_char, first_char_correct
from clika.util.errors import ClikaError
from clika.util.jsonl import read_jsonl
from clika.util.languages import LANGS

DEFAULT_YAML = Path(__file__).with_name("findings.yaml")
KINDS = ("continued", "mixed", "instruction")
METRICS = ("acc", "ra", "en_co", "en_co_excess")
LETTERS = "ABCDE"


@dataclass(frozen=True)
class Output:
    """One published file: per item its uuid, verdict, chosen option (-1: no option letter) and gold option."""
    path: Path
    uuids: tuple
    correct: np.ndarray
    choice: np.ndarray
    gold: np.ndarray


def read_output(path: Path, n_options: int) -> Output:
    letters = LETTERS[:n_options]
    rows = read_jsonl(path)
    for i, row in enumerate(rows, start=1):
        if "res" not in row or "label" not in row:
            raise ClikaError(f"{path}:{i}: missing 'res' or 'label'", fix="records must be {uuid, res, label}")
    # the release's first-character rule, the judge task=rescore scores with (read once here for the letters too)
    correct = np.asarray([first_char_correct(r["res"], r["label"]) for r in rows], dtype=bool)
    choice = np.asarray([first_char(r["res"], letters) for r in rows], dtype=np.int64)
    gold = np.asarray([letters.index(r["label"]) if r["label"] in letters else -1 for r in rows], dtype=np.int64)
    # uuids compared as text: the release writes 501, a protocol=paper run of this project "501"
    return Output(path, tuple(str(r.get("uuid")) for r in rows), correct, choice, gold)


def load_systems(results_dirs: str | Path | Sequence[str | Path]) -> dict[str, dict[str, dict[str, Output]]]:
    """{system: {dataset: {lang: Output}}} over one or more results dirs (a system name may occur in one only)."""
    dirs = [results_dirs] if isinstance(results_dirs, (str, Path)) else list(results_dirs)
    systems: dict = {}
    for d in dirs:
        for model, datasets in rescore.find_outputs(d).items():
            if model in systems:
                raise ClikaError(f"system '{model}' is in more than one results dir ({d})",
                                 fix="rename one of the model folders, or pass one of the dirs")
            systems[model] = {ds: {lang: read_output(p, rescore.N_OPTIONS[ds]) for lang, p in files.items()}
                              for ds, files in datasets.items()}
    return systems


def load_comparisons(path: str | Path | None = None) -> dict:
    """The comparisons YAML: {claims, shallow_max, dominated_margin, comparisons: [...]}, checked."""
    path = Path(path) if path else DEFAULT_YAML
    if not path.is_file():
        raise ClikaError(f"comparisons file '{path}' does not exist", fix=f"pass comparisons=FILE like {DEFAULT_YAML}")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    comps = doc.get("comparisons") or []
    if not comps:
        raise ClikaError(f"{path}: no comparisons", fix="list comparisons: [{name, base, treated, kind, targets}]")
    for i, c in enumerate(comps):
        missing = [k for k in ("base", "treated", "kind", "targets") if k not in c]
        if missing or c["kind"] not in KINDS or not all(t in LANGS for t in c["targets"]):
            raise ClikaError(f"{path}: comparisons[{i}] ({c.get('name', '?')}): "
                             + (f"missing {', '.join(missing)}" if missing else "bad kind or target language"),
                             fix=f"kind: one of {', '.join(KINDS)}; targets: languages of {', '.join(LANGS)}")
        c.setdefault("name", f"{c['base']} -> {c['treated']}")
    return {"claims": doc.get("claims", {}), "shallow_max": float(doc.get("shallow_max", 0.05)),
            "dominated_margin": float(doc.get("dominated_margin", 0.05)), "comparisons": comps, "path": str(path)}


# ------------------------------------------------------------------------------------------- per-system statistics

def system_stats(weights: np.ndarray, outs: Mapping[str, Output], n_options: int, ref: float) -> dict[str, dict]:
    """{lang: {acc, ra[, en_co, baseline, en_co_excess, en_co_letter_adj]}} of one system on one dataset, each an
    array over the rows of `weights` (r, k): how often each item is drawn (a row of ones: the point estimate).
    Every statistic is a function of weighted item counts, so all rows and languages come out of one matrix
    product. en-CO and the letter-only baseline need English; the baseline's gold-letter pairs (a in English, b in
    the language) are counted for the pairs that occur only."""
    en, L = outs.get("en"), n_options
    cols: list[np.ndarray] = []
    at: dict = {}

    def add(key, arrays):
        at[key] = slice(len(cols), len(cols) + len(arrays))
        cols.extend(arrays)

    for lang, o in outs.items():
        add((lang, "correct"), [o.correct])
        add((lang, "choice"), [o.choice == j for j in range(L)])
        if en is not None and lang != "en":
            if en.uuids != o.uuids:
                raise ClikaError(f"{o.path}: items differ from {en.path} (uuid order)", fix="English and each "
                                 "language must answer the same items in the same order, as the release's files do")
            pair = en.gold * L + o.gold
            codes = np.unique(pair[(en.gold >= 0) & (o.gold >= 0)])
            add((lang, "co"), [en.correct & o.correct, en.correct | o.correct])
            add((lang, "pairs"), [pair == c for c in codes])
            at[(lang, "codes")] = codes
    s = weights @ np.column_stack(cols).astype(float)
    k = weights.sum(axis=1)
    chance = 1.0 / n_options
    out: dict[str, dict] = {}
    for lang in outs:
        acc = s[:, at[(lang, "correct")]][:, 0] / k
        st = out[lang] = {"acc": acc, "ra": np.maximum(0.0, (acc - chance) / (ref - chance))}
        if (lang, "co") not in at:
            continue
        both, either = s[:, at[(lang, "co")]].T
        en_co = np.divide(both, either, out=np.zeros_like(k), where=either > 0)
        q_en = s[:, at[("en", "choice")]] / k[:, None]  # letter shares over all items of the resample
        q_l = s[:, at[(lang, "choice")]] / k[:, None]
        codes, counts = at[(lang, "codes")], s[:, at[(lang, "pairs")]]  # weighted items per gold-letter pair
        p_en, p_l = q_en[:, codes // L], q_l[:, codes % L]  # each guesser's chance to be right on such an item
        inter = (counts * p_en * p_l).sum(axis=1)
        union = (counts * (p_en + p_l - p_en * p_l)).sum(axis=1)
        base = np.divide(inter, union, out=np.zeros_like(k), where=union > 0)
        st.update(en_co=en_co, baseline=base, en_co_excess=en_co - base,
                  en_co_letter_adj=np.divide(en_co - base, 1 - base, out=np.zeros_like(k), where=base < 1))
    return out


def letter_baseline(en_choice: Sequence[int], en_gold: Sequence[int], choice: Sequence[int], gold: Sequence[int],
                    n_options: int) -> float:
    """The letter-only baseline of one en-CO cell (point estimate); choices / golds index the option letters."""
    mk = lambda c, g: Output(Path("-"), tuple(range(len(c))), np.zeros(len(c), bool),  # noqa: E731
                             np.asarray(c, dtype=np.int64), np.asarray(g, dtype=np.int64))
    outs = {"en": mk(en_choice, en_gold), "xx": mk(choice, gold)}
    return float(system_stats(np.ones((1, len(choice))), outs, n_options, 1.0)["xx"]["baseline"][0])


# ---------------------------------------------------------------------------------------------------- comparisons

def _interval(point: float, stats: np.ndarray, level: float) -> dict:
    lo, hi = percentile_interval(stats, level) if np.isfinite(stats).all() else (math.nan, math.nan)
    return {"delta": float(point), "lo": lo, "hi": hi}


def _group_mean(per_lang: Mapping[str, np.ndarray], langs: Iterable[str]) -> np.ndarray | None:
    vals = [per_lang[l] for l in langs if l in per_lang]
    return np.mean(vals, axis=0) if vals else None


def compare(systems: Mapping, comp: Mapping, ref: Mapping[str, float], n: int = 1000, seed: int = 0,
            level: float = 0.95, cache: dict | None = None) -> dict:
    """Per dataset × language: base / treated values and paired-bootstrap deltas of METRICS; per dataset and
    over all datasets the targets' / others' / all languages' mean delta (en-CO metrics: non-English only).
    Dataset number i of rescore.DATASETS is resampled with seed + i, the same draw for every system and
    comparison; `cache` (a dict) keeps the weights and each system's statistics between comparisons."""
    cache = {} if cache is None else cache
    for role in ("base", "treated"):
        if comp[role] not in systems:
            raise ClikaError(f"comparison '{comp['name']}': no system '{comp[role]}' in the results dirs",
                             fix=f"one of {', '.join(sorted(systems))}")
    b_sys, t_sys = systems[comp["base"]], systems[comp["treated"]]
    targets = list(comp["targets"])
    datasets = [d for d in rescore.DATASETS if d in b_sys and d in t_sys and "en" in b_sys[d] and "en" in t_sys[d]]
    per_ds, groups_draws = {}, {}
    for ds in datasets:
        langs = [l for l in LANGS if l in b_sys[ds] and l in t_sys[ds]]
        k = len(b_sys[ds]["en"].correct)
        if len(t_sys[ds]["en"].correct) != k or b_sys[ds]["en"].uuids != t_sys[ds]["en"].uuids:
            raise ClikaError(f"comparison '{comp['name']}': {ds} items differ between {comp['base']} and "
                             f"{comp['treated']}", fix="a paired comparison needs the same items in the same order")
        if ("weights", ds, k) not in cache:  # row 0: the point estimate
            cache[("weights", ds, k)] = np.vstack([np.ones((1, k)),
                                                   bootstrap_weights(k, n, seed + rescore.DATASETS.index(ds))])
        w = cache[("weights", ds, k)]
        stats = {}
        for role in ("base", "treated"):
            key = ("stats", comp[role], ds, k)
            if key not in cache:
                cache[key] = system_stats(w, systems[comp[role]][ds], rescore.N_OPTIONS[ds], ref[ds])
            stats[role] = cache[key]
        rows = {}
        for l in langs:
            row = {"target": l in targets}
            for m in (*METRICS, "baseline"):
                if l == "en" and m != "acc" and m != "ra":
                    continue
                bv, tv = stats["base"][l][m], stats["treated"][l][m]
                row[m] = {"base": float(bv[0]), "treated": float(tv[0]), **_interval(tv[0] - bv[0], (tv - bv)[1:], level)}
            rows[l] = row
        groups = {}
        for m in METRICS:
            delta = {l: stats["treated"][l][m] - stats["base"][l][m] for l in langs if m in ("acc", "ra") or l != "en"}
            g = {"targets": _group_mean(delta, targets), "others": _group_mean(delta, [l for l in delta if l not in targets]),
                 "all": _group_mean(delta, list(delta))}
            if g["targets"] is not None and g["others"] is not None:
                g["gap"] = g["targets"] - g["others"]
            groups[m] = {name: _interval(v[0], v[1:], level) for name, v in g.items() if v is not None}
            for name, v in g.items():
                if v is not None:
                    groups_draws.setdefault(m, {}).setdefault(name, []).append(v)
        per_ds[ds] = {"langs": rows, "groups": groups, "n_items": k}
    overall = {m: {name: _interval(np.mean(vs, axis=0)[0], np.mean(vs, axis=0)[1:], level)
                   for name, vs in gs.items() if len(vs) == len(datasets)}
               for m, gs in groups_draws.items()}
    return {**{k: comp[k] for k in ("name", "base", "treated", "kind")}, "targets": targets, "datasets": per_ds,
            "overall": overall, "n_resamples": n, "seed": seed, "level": level}


def _fmt(g: Mapping | None) -> str:
    return "n/a" if not g else f"{100 * g['delta']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]"


def verdict(result: Mapping, co_metric: str = "en_co", shallow_max: float = 0.05) -> dict:
    """Whether the all-dataset numbers support the claim of the comparison's kind (see findings.yaml):
    {supported: True/False/None (partly), by: {metric: bool|None}, sentence}."""
    ov, kind = result["overall"], result["kind"]
    above = lambda g: g is not None and g["lo"] > 0  # noqa: E731
    below = lambda g: g is not None and g["hi"] < 0  # noqa: E731
    if kind == "instruction":
        acc, co = ov.get("acc", {}).get("all"), ov.get(co_metric, {}).get("all")
        beneficial, shallow = above(acc), co is not None and co["hi"] < shallow_max
        ok = True if beneficial and shallow else (None if beneficial else False)  # no gain: not supported
        sentence = (f"Accuracy over all languages {_fmt(acc)} pts ({'beneficial' if beneficial else 'no significant gain'}); "
                    f"{co_metric} over the non-English languages {_fmt(co)} pts "
                    f"({'shallow: below' if shallow else 'not shallow: upper bound at or above'} {100 * shallow_max:.0f} pts)")
        return {"supported": ok, "by": {"beneficial": beneficial, "shallow": shallow}, "sentence": sentence}
    by, parts = {}, []
    for m in ("acc", co_metric):
        t, o = ov.get(m, {}).get("targets"), ov.get(m, {}).get("others")
        up = above(t)
        cost = below(o) if kind == "continued" else (o is not None and not below(o))
        by[m] = up and cost
        parts.append(f"{m}: targets {_fmt(t)} vs others {_fmt(o)} pts")
    ok = True if all(by.values()) else (None if any(by.values()) else False)
    want = "targets up and others down" if kind == "continued" else "targets up and others not down"
    return {"supported": ok, "by": by, "sentence": "; ".join(parts) + f" (claim needs {want})"}


# ------------------------------------------------------------------------------------------------------ the audit

def audit(systems: Mapping, margin: float = 0.05) -> dict:
    """Per file the position-bias report, per en-CO cell the letter-only baseline and the adjusted en-CO."""
    files, cells = [], []
    for model, datasets in sorted(systems.items()):
        for ds, outs in datasets.items():
            L = rescore.N_OPTIONS[ds]
            k = len(outs["en"].correct) if "en" in outs else 0
            point = system_stats(np.ones((1, k)), outs, L, 1.0) if "en" in outs else {}
            for lang in (l for l in LANGS if l in outs):
                o = outs[lang]
                pb = position_bias(o.choice.tolist(), o.gold.tolist(), LETTERS[:L])
                files.append({"model": model, "dataset": ds, "lang": lang, "acc": float(o.correct.mean()),
                              **{k: pb[k] for k in ("letter", "share", "entropy", "rstd", "n", "no_answer")}})
                if lang != "en" and "en" in outs and outs["en"].uuids == o.uuids:
                    s = point[lang]
                    c = {k: float(s[k][0]) for k in ("en_co", "baseline", "en_co_excess", "en_co_letter_adj")}
                    cells.append({"model": model, "dataset": ds, "lang": lang, **c,
                                  "dominated": c["en_co"] < c["baseline"] + margin})
    summary = {"cells": len(cells), "dominated": sum(c["dominated"] for c in cells),
               "below_baseline": sum(c["en_co"] < c["baseline"] for c in cells), "margin": margin, "datasets": {}}
    for ds in rescore.DATASETS:
        cs, fs = [c for c in cells if c["dataset"] == ds], [f for f in files if f["dataset"] == ds]
        if cs:
            summary["datasets"][ds] = {
                "cells": len(cs), "dominated": sum(c["dominated"] for c in cs),
                "median_baseline": float(np.median([c["baseline"] for c in cs])),
                "median_en_co": float(np.median([c["en_co"] for c in cs])),
                "files": len(fs), "files_share_ge_80": sum((f["share"] or 0) >= 0.8 for f in fs),
                "files_share_ge_95": sum((f["share"] or 0) >= 0.95 for f in fs)}
    return {"files": files, "cells": cells, "summary": summary}


# ---------------------------------------------------------------------------------------------------------- report

def findings(results_dirs, comparisons: str | Path | None = None, ref: Mapping[str, float] | None = None,
             n: int = 1000, seed: int = 0, level: float = 0.95, systems: Mapping | None = None) -> dict:
    """The whole report: every comparison of the YAML with its verdicts (on en-CO and on its excess over the
    letter-only baseline) and the audit of every file. `systems`: already loaded (load_systems), else read."""
    spec = load_comparisons(comparisons)
    ref = {**rescore.PAPER_REF, **(ref or {})}
    systems = load_systems(results_dirs) if systems is None else systems
    results, cache = [], {}
    for comp in spec["comparisons"]:
        r = compare(systems, comp, ref, n, seed, level, cache)
        r["verdict"] = verdict(r, "en_co", spec["shallow_max"])
        r["verdict_excess"] = verdict(r, "en_co_excess", spec["shallow_max"])
        r["survives_audit"] = r["verdict"]["supported"] == r["verdict_excess"]["supported"]
        r["claim"] = spec["claims"].get(r["kind"], r["kind"])
        results.append(r)
    return {"comparisons": results, "audit": audit(systems, spec["dominated_margin"]), "systems": sorted(systems),
            "spec": {k: spec[k] for k in ("path", "claims", "shallow_max", "dominated_margin")}}


def _word(ok) -> str:
    return {True: "supported", False: "not supported", None: "partly supported"}[ok]


def markdown(rep: Mapping) -> str:
    spec, au = rep["spec"], rep["audit"]["summary"]
    out = ["# Findings of the paper, measured on the published outputs", "",
           f"Comparisons: `{spec['path']}`, this project's reading of the paper's abstract (editable). "
           f"{len(rep['systems'])} systems. Deltas are treated - base in percentage points with paired-bootstrap 95% "
           "intervals (same items, both systems and all languages resampled together); the all-dataset figures "
           "average the four datasets' means. en-CO excess = en-CO - its letter-only baseline (see the audit).", "",
           "## Headlines", "",
           "| comparison | kind | acc: targets | acc: others | en-CO: targets | en-CO: others | verdict | with en-CO excess |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rep["comparisons"]:
        ov = r["overall"]
        out.append(f"| {r['name']} | {r['kind']} | {_fmt(ov['acc'].get('targets'))} | {_fmt(ov['acc'].get('others'))} | "
                   f"{_fmt(ov['en_co'].get('targets'))} | {_fmt(ov['en_co'].get('others'))} | "
                   f"{_word(r['verdict']['supported'])} | {_word(r['verdict_excess']['supported'])}"
                   f"{'' if r['survives_audit'] else ' (changes)'} |")
    out += ["", "## Position-bias audit", "",
            f"A cell (system × dataset × non-English language) is **position-dominated** when its en-CO is less than "
            f"{spec['dominated_margin']:.2f} above the en-CO of two content-blind guessers drawing letters from the two "
            f"languages' observed letter shares (letter-only baseline). **{au['dominated']} of {au['cells']} cells are "
            f"position-dominated** ({au['below_baseline']} below the baseline).", "",
            "| dataset | cells | dominated | median baseline | median en-CO | files | top letter ≥ 80% | ≥ 95% |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ds, s in au["datasets"].items():
        out.append(f"| {ds} | {s['cells']} | {s['dominated']} | {s['median_baseline']:.3f} | {s['median_en_co']:.3f} | "
                   f"{s['files']} | {s['files_share_ge_80']} | {s['files_share_ge_95']} |")
    survive = [r["name"] for r in rep["comparisons"] if r["survives_audit"]]
    changed = [r["name"] for r in rep["comparisons"] if not r["survives_audit"]]
    out += ["", f"Findings whose verdict is unchanged when en-CO is replaced by its excess over the baseline: "
            f"{len(survive)} of {len(rep['comparisons'])}" + (f"; changed: {', '.join(changed)}." if changed else "."),
            "", "Per-file position bias (top letter, share, entropy, RStd) and every cell's baseline: `findings.json`; "
            "top-letter shares: `position_bias.png`.", ""]
    for r in rep["comparisons"]:
        out += [f"## {r['name']} ({r['kind']}; targets {', '.join(r['targets'])})", "",
                f"Claim: {r['claim']}. **{_word(r['verdict']['supported'])}**: {r['verdict']['sentence']}. "
                f"With en-CO replaced by its excess over the letter-only baseline: "
                f"**{_word(r['verdict_excess']['supported'])}** ({r['verdict_excess']['sentence']}). "
                f"Figure: `{figure_name(r)}`.", "",
                "| dataset | lang | acc base | acc treated | Δacc | RA base | RA treated | en-CO base | en-CO treated | "
                "Δen-CO | Δen-CO excess |", "|---|---|---:|---:|---|---:|---:|---:|---:|---|---|"]
        for ds, d in r["datasets"].items():
            for l, row in d["langs"].items():
                co_b = f"{100 * row['en_co']['base']:.1f}" if "en_co" in row else "–"
                co_t = f"{100 * row['en_co']['treated']:.1f}" if "en_co" in row else "–"
                out.append(f"| {ds} | {l}{' *' if row['target'] else ''} | {100 * row['acc']['base']:.1f} | "
                           f"{100 * row['acc']['treated']:.1f} | {_fmt(row['acc'])} | {100 * row['ra']['base']:.1f} | "
                           f"{100 * row['ra']['treated']:.1f} | {co_b} | {co_t} | {_fmt(row.get('en_co'))} | "
                           f"{_fmt(row.get('en_co_excess'))} |")
            g = d["groups"]
            out.append(f"| {ds} | targets − others | | | {_fmt(g['acc'].get('gap'))} | | | | | "
                       f"{_fmt(g['en_co'].get('gap'))} | {_fmt(g['en_co_excess'].get('gap'))} |")
        out.append("")
    return "\n".join(out)


def figure_name(r: Mapping) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in f"{r['base']}__{r['treated']}")
    return f"findings_{safe}.png"


def plot_comparison(r: Mapping, path: Path) -> Path:
    import matplotlib  # deferred, as clika.report.results

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = list(r["datasets"])
    fig, axes = plt.subplots(2, max(1, len(dss)), figsize=(3.2 * max(1, len(dss)), 5.2), squeeze=False, sharey="row")
    for j, ds in enumerate(dss):
        rows = r["datasets"][ds]["langs"]
        for i, m in enumerate(("acc", "en_co")):
            ax, langs = axes[i][j], [l for l in rows if m in rows[l]]
            d = np.array([100 * rows[l][m]["delta"] for l in langs])
            err = np.array([[100 * (rows[l][m]["delta"] - rows[l][m]["lo"]) for l in langs],
                            [100 * (rows[l][m]["hi"] - rows[l][m]["delta"]) for l in langs]])
            colors = ["tab:red" if rows[l]["target"] else "tab:blue" for l in langs]
            ax.bar(range(len(langs)), d, color=colors, alpha=0.75)
            ax.errorbar(range(len(langs)), d, yerr=err, fmt="none", ecolor="k", capsize=2, lw=0.8)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xticks(range(len(langs)), [f"{l}*" if rows[l]["target"] else l for l in langs], fontsize=7)
            ax.set_title(f"{ds}: Δ{'acc' if m == 'acc' else 'en-CO'}", fontsize=8)
            if j == 0:
                ax.set_ylabel("treated − base (pts)", fontsize=8)
    fig.suptitle(f"{r['name']} ({r['kind']}); red *: targets; bars: 95% paired bootstrap", fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.88, bottom=0.07, wspace=0.12, hspace=0.32)  # tight_layout: 2x
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_bias_heatmap(au: Mapping, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = [d for d in rescore.DATASETS if any(f["dataset"] == d for f in au["files"])]
    models = sorted({f["model"] for f in au["files"]})
    fig, axes = plt.subplots(1, len(dss), figsize=(3.3 * len(dss), 0.2 * len(models) + 1.6), squeeze=False)
    for j, ds in enumerate(dss):
        grid = np.full((len(models), len(LANGS)), np.nan)
        for f in au["files"]:
            if f["dataset"] == ds and f["share"] is not None:
                grid[models.index(f["model"]), LANGS.index(f["lang"])] = f["share"]
        ax = axes[0][j]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(LANGS)), LANGS, fontsize=6)
        ax.set_yticks(range(len(models)), models if j == 0 else [""] * len(models), fontsize=5)
        ax.set_title(f"{ds} (chance 1/{rescore.N_OPTIONS[ds]})", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.6, label="share of the most-chosen letter")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
