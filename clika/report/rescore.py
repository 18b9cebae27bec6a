"""Rescore published model outputs with the paper's first-character rule.

Accepts both layouts: `<results>/<model>/<dataset>/<dir>.jsonl` (this release, clika.data.registry.RESULTS_FILE)
and the official repository's `<results>/<dataset>/<dir>/<model>_res*.jsonl`.
"""

from __future__ import annotations

from pathlib import Path

from clika.data import registry
from clika.util.errors import ClikaError
from clika.util.jsonl import read_jsonl
from clika.util.languages import LANGS, lang_from_dir
from clika.metrics.alignment import co, relative_accuracy
from clika.scoring.judges import first_char_correct

# The datasets with published outputs, their option counts and the paper's RA references: the registry's.
DATASETS = registry.MULTIPLE_CHOICE
N_OPTIONS = {ds: registry.get(ds).n_options for ds in DATASETS}
PAPER_REF = registry.references(DATASETS)


# The file of a model that the release's res_statistic.py reads, in its order: chatgpt_res.jsonl for ChatGPT,
# <model>_res_bf16_add_simple_example.jsonl for the others. Other `_res*` files (ChatGPT's _visual, which is not
# JSON Lines, _without_uuid, _fixed_en_prompt) are variants it does not score.
OFFICIAL_SUFFIXES = ("_res.jsonl", "_res_bf16_add_simple_example.jsonl")


def official_files(lang_dir: Path) -> tuple[dict[str, Path], list[Path]]:
    """({model: the file res_statistic.py reads}, [variant files skipped]) of one official-layout language dir."""
    chosen: dict[str, Path] = {}
    files = sorted(lang_dir.glob("*_res*.jsonl"))
    for suffix in reversed(OFFICIAL_SUFFIXES):  # the first suffix wins
        for f in files:
            if f.name.endswith(suffix):
                chosen[f.name[: -len(suffix)]] = f
    return chosen, [f for f in files if f not in chosen.values()]


def skipped_variants(results_dir: str | Path) -> list[Path]:
    """The official-layout `_res*` files find_outputs leaves out (not the file res_statistic.py reads)."""
    root = Path(results_dir)
    return [f for ds in DATASETS if (root / ds).is_dir() for d in sorted((root / ds).glob("*"))
            if lang_from_dir(d.name) for f in official_files(d)[1]]


def find_outputs(results_dir: str | Path) -> dict[str, dict[str, dict[str, Path]]]:
    """{model: {dataset: {lang: file}}} for either layout (official layout: `official_files`)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ClikaError(f"results_dir '{root}' does not exist", fix="point results_dir at the published outputs")
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for ds in DATASETS:  # official repo layout: <dataset>/<dir>/<model>_res*.jsonl
        for lang_dir in sorted((root / ds).glob("*")) if (root / ds).is_dir() else []:
            lang = lang_from_dir(lang_dir.name)
            for model, f in sorted(official_files(lang_dir)[0].items()) if lang else []:
                found.setdefault(model, {}).setdefault(ds, {})[lang] = f
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in DATASETS):
        for ds in DATASETS:
            for f in sorted((model_dir / ds).glob("*.jsonl")) if (model_dir / ds).is_dir() else []:
                lang = lang_from_dir(f.stem)
                if lang:
                    found.setdefault(model_dir.name, {}).setdefault(ds, {})[lang] = f
    if not found:
        raise ClikaError(f"no published outputs under '{root}'",
                         fix="expected <model>/<dataset>/<lang>.jsonl or <dataset>/<lang>/<model>_res.jsonl")
    return found


def correctness(path: Path) -> list[bool]:
    rows = read_jsonl(path)
    out = []
    for i, row in enumerate(rows, start=1):
        if "res" not in row or "label" not in row:
            raise ClikaError(f"{path}:{i}: missing 'res' or 'label'", fix="records must be {uuid, res, label}")
        out.append(first_char_correct(row["res"], row["label"]))
    return out


def rescore(results_dir: str | Path, ref: dict[str, float] | None = None) -> dict:
    """{model: {dataset: {lang: {acc, ra, en_co, n}}}}, acc and ra as fractions."""
    ref = {**PAPER_REF, **(ref or {})}
    report: dict = {}
    for model, datasets in sorted(find_outputs(results_dir).items()):
        for ds, files in datasets.items():
            correct = {lang: correctness(files[lang]) for lang in LANGS if lang in files}
            en = correct.get("en")
            for lang, c in correct.items():
                acc = sum(c) / len(c) if c else 0.0
                entry = {"acc": acc, "ra": relative_accuracy(acc, N_OPTIONS[ds], ref[ds]), "n": len(c)}
                entry["en_co"] = co(en, c) if en is not None and len(en) == len(c) else None
                report.setdefault(model, {}).setdefault(ds, {})[lang] = entry
    return report


def markdown(report: dict) -> str:
    """One table per dataset: model × language accuracy (%), then mean en-CO of the 9 languages."""
    lines = []
    for ds in DATASETS:
        lines += [f"## {ds}", "", "| model | " + " | ".join(LANGS) + " | mean en-CO |",
                  "|---|" + "---:|" * (len(LANGS) + 1)]
        for model, per in report.items():
            if ds not in per:
                continue
            row = per[ds]
            accs = [f"{100 * row[l]['acc']:.1f}" if l in row else "–" for l in LANGS]
            cos = [row[l]["en_co"] for l in LANGS[1:] if l in row and row[l]["en_co"] is not None]
            mean = f"{100 * sum(cos) / len(cos):.1f}" if cos else "–"
            lines.append(f"| {model} | " + " | ".join(accs) + f" | {mean} |")
        lines.append("")
    return "\n".join(lines)
