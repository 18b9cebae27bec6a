"""Alignment curves: `alignment.csv` (one row per evaluation × dataset × language) and their plot.

Rows are rewritten atomically; `truncate_after(step)` drops rows of evaluations after a checkpoint
so a resumed run recomputes them once — no duplicates, none missing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

from clika.jsonl import atomic_write_text
from clika.languages import LANGS

COLUMNS = ["step", "tokens_seen", "epoch", "dataset", "lang", "acc", "ra", "en_co", "en_co_adj",
           "acc_type0", "acc_type1", "xrr", "n", "scorer",
           "acc_circ", "acc_rot", "ra_circ", "en_co_circ", "en_co_answer",  # clika.circular runs only
           "bias_letter", "bias_share", "bias_entropy", "bias_rstd"]  # position-bias report (clika.bias)
TEXT = ("dataset", "lang", "scorer", "bias_letter")
PANEL_TITLES = {"bias_share": "most-chosen-letter share", "en_co_answer": "answer-identity en-CO"}


def metrics_to_rows(metrics: dict, step: int, tokens_seen: int, epoch: int) -> list[dict]:
    """Flatten a `clika.suite` metrics object into CSV rows."""
    rows = []
    for ds, m in metrics.get("datasets", {}).items():
        for lang in [l for l in LANGS if l in m["langs"]]:
            v = m["langs"][lang]
            rows.append({"step": step, "tokens_seen": tokens_seen, "epoch": epoch, "dataset": ds, "lang": lang,
                         "acc": v.get("acc"), "ra": v.get("ra"), "en_co": v.get("en_co"),
                         "en_co_adj": v.get("en_co_adj"), "acc_type0": v.get("acc_type0"),
                         "acc_type1": v.get("acc_type1"), "xrr": v.get("xrr"), "n": v.get("n"),
                         "scorer": m.get("scorer") or metrics.get("protocol"),  # what scored these rows
                         **{k: v.get(k) for k in ("acc_circ", "acc_rot", "ra_circ", "en_co_circ", "en_co_answer")},
                         **{f"bias_{k}": (v.get("bias") or {}).get(k) for k in ("letter", "share", "entropy", "rstd")}})
    return rows


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def typed(rows: Iterable[dict]) -> list[dict]:
    """CSV rows with numbers as numbers and empty cells as None (as `metrics_to_rows` makes them)."""
    return [{k: v if k in TEXT else (None if v in ("", None) else _num(v)) for k, v in r.items()} for r in rows]


def write_rows(path: str | Path, rows: Iterable[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def append_rows(path: str | Path, new: Sequence[dict]) -> Path:
    """Add one evaluation's rows, replacing any earlier rows of the same step (idempotent on retry)."""
    steps = {str(r["step"]) for r in new}
    return write_rows(path, [r for r in read_rows(path) if r["step"] not in steps] + list(new))


def truncate_after(path: str | Path, step: int) -> int:
    """Drop rows of evaluations after `step` (they belong to a future the resumed run will redo)."""
    rows = read_rows(path)
    keep = [r for r in rows if int(r["step"]) <= step]
    if len(keep) != len(rows):
        write_rows(path, keep)
    return len(rows) - len(keep)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot_curves(csv_paths: Sequence[str | Path], out: str | Path,
                metrics: Sequence[str] = ("acc", "en_co", "acc_circ", "en_co_answer", "bias_share"),
                labels: Sequence[str] | None = None, x: str = "step") -> Path:
    """One panel per dataset × metric with data, one line per language; several runs overlay with line styles.
    Circular and bias panels appear when the rows hold them (acc_circ / en_co_answer: clika.circular runs).

    Uses matplotlib's object API (no pyplot state), so the training callback can draw on a worker thread.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = [read_rows(p) for p in csv_paths]
    labels = list(labels or [Path(p).parent.name for p in csv_paths])
    datasets = sorted({r["dataset"] for rows in runs for r in rows})
    panels = [(ds, m) for ds in datasets for m in (*metrics, "xrr") if
              any(_num(r.get(m)) is not None for rows in runs for r in rows if r["dataset"] == ds)]
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    styles = ["-", "--", ":", "-."]
    colors = {l: colormaps["tab10"](i) for i, l in enumerate(LANGS)}
    handles: dict[str, object] = {}  # one legend entry per language seen in any panel
    for ax, (ds, metric) in zip(axes.flat, panels):
        for k, rows in enumerate(runs):
            for lang in LANGS:
                pts = sorted((_num(r[x]), _num(r[metric])) for r in rows
                             if r["dataset"] == ds and r["lang"] == lang and _num(r.get(metric)) is not None)
                if pts:
                    (line,) = ax.plot(*zip(*pts), styles[k % 4], color=colors[lang], marker=".",
                                      label=lang if k == 0 else None)
                    if k == 0:
                        handles.setdefault(lang, line)
        ax.set_title(f"{ds} {PANEL_TITLES.get(metric, metric)}"
                     + (f"  ({' vs '.join(labels)})" if len(runs) > 1 else ""), fontsize=9)
        ax.set_xlabel(x, fontsize=8), ax.set_ylim(-0.02, 1.02)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels and handles:
        order = [l for l in LANGS if l in handles]
        axes.flat[0].legend([handles[l] for l in order], order, fontsize=7, ncol=2)
    # fixed margins: tight_layout cost more than all the drawing (1.7 s of 4.5 s for 12 panels)
    fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=1 - 0.15 / fig.get_figwidth(),
                        bottom=0.5 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight(), hspace=0.45, wspace=0.22)
    from clika.report import save_figure

    return save_figure(fig, Path(out))
