"""Alignment curves: `alignment.csv` (one row per evaluation × dataset × language) and their plot.

Rows are rewritten atomically; `truncate_after(step)` drops rows of evaluations after a checkpoint
so a resumed run recomputes them once — no duplicates, none missing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable, Sequence

from clika.util.jsonl import atomic_write_text
from clika.util.languages import LANGS
from clika.metrics.alignment import co_expected
from clika.metrics.names import CIRCULAR_COLUMNS, PLAIN

COLUMNS = ["step", "tokens_seen", "epoch", "dataset", "lang", *PLAIN,  # the suite's metrics (clika.metrics.names)
           "acc_type0", "acc_type1", "xrr", "n", "scorer", "chance", "trained",  # acc_type*/xrr: fictional stream
           *CIRCULAR_COLUMNS,  # circular runs
           "bias_letter", "bias_share", "bias_entropy", "bias_rstd"]  # position-bias report (clika.metrics.bias)
TEXT = ("dataset", "lang", "scorer", "bias_letter")  # every other column is a number


@dataclass(frozen=True)
class Series:
    """One line per language in a panel: the first of `columns` that has data for the dataset."""
    label: str
    columns: tuple[str, ...]
    chance: str | None = None  # "acc": the row's chance accuracy; "co": en-CO of two guessers at chance; "zero"
    exclude: tuple[str, ...] = ()  # languages not drawn (English's en-CO with itself is always 1)


@dataclass(frozen=True)
class Level:
    """One column of the figure (and one block of the start -> end table)."""
    title: str
    series: tuple[Series, ...]


# The figure's columns, left to right (a column without data in any run is left out). Circular runs add
# acc_circ and the answer-identity en-CO; every suite evaluation has the position-bias report.
LEVELS: tuple[Level, ...] = (
    Level("Performance", (Series("acc", ("acc_type0", "acc"), "acc"), Series("RA", ("ra",)),
                          Series("acc circular", ("acc_circ",), "zero"))),
    Level("Consistency", (Series("en-CO", ("en_co",), "co", ("en",)),
                          Series("en-CO adj.", ("en_co_adj",), "zero", ("en",)),
                          Series("answer-identity en-CO", ("en_co_answer",), None, ("en",)))),
    Level("Conductivity", (Series("type-1 acc", ("acc_type1",), "acc"), Series("XRR", ("xrr",)))),
    Level("Position bias", (Series("most-chosen-letter share", ("bias_share",)),
                            Series("RStd of recalls", ("bias_rstd",), "zero"))),
)
# Fictional stream: Performance is accuracy on type-0 facts (stated in English and in the trained languages),
# en-CO is over those same items, Conductivity is type-1 accuracy (facts stated in English only) and XRR.


def metrics_to_rows(metrics: dict, step: int, tokens_seen: int, epoch: int,
                    trained: Sequence[str] = ()) -> list[dict]:
    """Flatten a `clika.scoring.suite` metrics object into CSV rows; `trained` marks the languages of the training data."""
    rows = []
    for ds, m in metrics.get("datasets", {}).items():
        chance = m.get("chance") or (1.0 / m["n_options"] if m.get("n_options") else None)
        for lang in [l for l in LANGS if l in m["langs"]]:
            v = m["langs"][lang]
            rows.append({"step": step, "tokens_seen": tokens_seen, "epoch": epoch, "dataset": ds, "lang": lang,
                         **{k: v.get(k) for k in PLAIN}, "acc_type0": v.get("acc_type0"),
                         "acc_type1": v.get("acc_type1"), "xrr": v.get("xrr"), "n": v.get("n"),
                         "scorer": m.get("scorer") or metrics.get("protocol"),  # what scored these rows
                         "chance": chance, "trained": int(lang in trained),
                         **{k: v.get(k) for k in CIRCULAR_COLUMNS},
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


def _series_column(rows: Sequence[dict], series: Series) -> str | None:
    """The first column of `series` with a value in `rows` (one dataset's rows)."""
    return next((c for c in series.columns if any(_num(r.get(c)) is not None for r in rows)), None)


def _chance_value(kind: str | None, chance: float | None) -> float | None:
    if kind == "zero":
        return 0.0
    if chance is None or kind is None:
        return None
    return chance if kind == "acc" else co_expected(chance, chance)


def _trained(rows: Sequence[dict]) -> list[str]:
    return [l for l in LANGS if any(r["lang"] == l and _num(r.get("trained")) == 1 for r in rows)]


def plot_curves(csv_paths: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None,
                x: str = "step", levels: Sequence[Level] = LEVELS) -> Path:
    """Draw `curves_figure` of the runs' alignment.csv files into `out` (PNG)."""
    from clika.report.results import save_figure

    return save_figure(curves_figure(csv_paths, labels, x, levels), Path(out))


def curves_figure(csv_paths: Sequence[str | Path], labels: Sequence[str] | None = None, x: str = "step",
                  levels: Sequence[Level] = LEVELS):
    """One row per dataset, one column per level (`LEVELS`): a line per language and series (line style), chance
    levels dotted grey, the other x axis (tokens or steps) on top, trained languages thick and marked in the
    legend. Several runs overlay with markers.

    Uses matplotlib's object API (no pyplot state), so the training callback can draw on a worker thread.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    runs = [read_rows(p) for p in csv_paths]
    every = [r for rows in runs for r in rows]
    levels = [lv for lv in levels if any(_series_column(every, s) for s in lv.series)] or list(levels[:1])
    labels = list(labels or [Path(p).parent.name for p in csv_paths])
    datasets = sorted({r["dataset"] for rows in runs for r in rows}, key=lambda d: (d == "fictional", d))
    other = "tokens_seen" if x == "step" else "step"
    nrows, ncols = max(1, len(datasets)), len(levels)
    fig = Figure(figsize=(4.4 * ncols, 2.9 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "x"]
    colors = {l: colormaps["tab10"](i) for i, l in enumerate(LANGS)}
    seen_langs: dict[str, None] = {}
    trained = {l for rows in runs for l in _trained(rows)}
    for i, ds in enumerate(datasets):
        for j, level in enumerate(levels):
            ax = axes[i][j]
            drawn, names, low = False, [], 0.0
            for k, rows in enumerate(runs):
                mine = [r for r in rows if r["dataset"] == ds]
                for s_idx, series in enumerate(level.series):
                    col = _series_column(mine, series)
                    if col is None:
                        continue
                    chance = _chance_value(series.chance, next((_num(r.get("chance")) for r in mine
                                                                if _num(r.get("chance")) is not None), None))
                    if chance is not None and k == 0:
                        ax.axhline(chance, color="grey", ls=":", lw=1)
                    for lang in [l for l in LANGS if l not in series.exclude]:
                        pts = sorted((_num(r[x]), _num(r[col])) for r in mine
                                     if r["lang"] == lang and _num(r.get(col)) is not None and _num(r.get(x)) is not None)
                        if pts:
                            ax.plot(*zip(*pts), styles[s_idx % 4], color=colors[lang], marker=markers[k % 4],
                                    ms=3, lw=2.2 if lang in trained else 1.1)
                            seen_langs[lang] = None
                            drawn = True
                            low = min(low, *(y for _, y in pts))
                            if series.label not in names:
                                names.append(series.label)
                if k == 0 and drawn:
                    _token_axis(ax, mine, x, other)
            ax.set_title(f"{level.title} — {ds}\n{' / '.join(names) or '–'}", fontsize=8.5)
            ax.set_ylim(min(-0.05, low - 0.05), 1.05)  # chance-adjusted CO can be negative
            ax.tick_params(labelsize=7)
            if i == nrows - 1:
                ax.set_xlabel(f"{x.replace('_', ' ')}  (top axis: {other.replace('_', ' ')})", fontsize=8)
            if not drawn:
                ax.text(0.5, 0.5, "not measured on this dataset", ha="center", va="center", fontsize=8,
                        color="grey", transform=ax.transAxes)
    handles = [Line2D([], [], color=colors[l], lw=2.2 if l in trained else 1.1,
                      label=f"{l} (trained)" if l in trained else l) for l in seen_langs]
    depth = max(len(level.series) for level in levels)
    handles += [Line2D([], [], color="black", ls=styles[n % 4],
                       label=", ".join(lv.series[n].label for lv in levels if n < len(lv.series)))
                for n in range(depth)]
    handles.append(Line2D([], [], color="grey", ls=":", label="chance"))
    handles += [Line2D([], [], color="black", marker=markers[k % 4], ls="", label=lab)
                for k, lab in enumerate(labels)] if len(runs) > 1 else []
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7.5, frameon=False)
    # fixed margins: tight_layout cost more than all the drawing (1.7 s of 4.5 s for 12 panels)
    fig.subplots_adjust(left=0.5 / fig.get_figwidth(), right=1 - 0.15 / fig.get_figwidth(),
                        bottom=0.95 / fig.get_figheight(), top=1 - 0.75 / fig.get_figheight(), hspace=0.75,
                        wspace=0.18)
    return fig


def _token_axis(ax, rows: Sequence[dict], x: str, other: str) -> None:
    """The other x quantity (tokens seen or steps) on a top axis, interpolated from the evaluation points."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    pairs = sorted({(_num(r.get(x)), _num(r.get(other))) for r in rows
                    if _num(r.get(x)) is not None and _num(r.get(other)) is not None})
    if len(pairs) < 2 or any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(pairs, pairs[1:])):
        return
    (x0, o0), (x1, o1) = pairs[0], pairs[-1]
    if o1 <= o0:
        return
    rate = (o1 - o0) / (x1 - x0)  # a straight line through the first and the last evaluation (invertible, no clamping)
    top = ax.secondary_xaxis("top", functions=(lambda v: o0 + (np.asarray(v) - x0) * rate,
                                               lambda v: x0 + (np.asarray(v) - o0) / rate))
    top.tick_params(labelsize=6)
    top.xaxis.set_major_locator(MaxNLocator(4))
    if other == "tokens_seen":
        top.xaxis.set_major_formatter(lambda v, _: f"{v / 1e3:.0f}k" if v < 1e6 else f"{v / 1e6:.1f}M")


def start_end_table(rows: Sequence[dict], levels: Sequence[Level] = LEVELS) -> str:
    """A short start -> end table per level: each dataset's series per language at the first and the last
    evaluation (chance in brackets). Trained languages are starred."""
    rows = typed(rows)
    if not rows:
        return ""
    steps = sorted({int(r["step"]) for r in rows})
    first, last = steps[0], steps[-1]
    trained = set(_trained(rows))
    out = [f"== alignment: step {first} -> step {last} (* = trained language) =="]

    def fmt(v):
        return "  –  " if v is None else f"{v:.2f}".replace("-0.00", "0.00")  # no negative zero

    datasets = sorted({r["dataset"] for r in rows}, key=lambda d: (d == "fictional", d))
    for level in levels:
        lines = []
        for ds in datasets:
            mine = [r for r in rows if r["dataset"] == ds]
            for series in level.series:
                col = _series_column(mine, series)
                if col is None:
                    continue
                chance = _chance_value(series.chance, next((r["chance"] for r in mine if r.get("chance") is not None),
                                                           None))
                cells = []
                for lang in [l for l in LANGS if l not in series.exclude and any(r["lang"] == l for r in mine)]:
                    at = {int(r["step"]): r.get(col) for r in mine if r["lang"] == lang}
                    if at.get(first) is None and at.get(last) is None:
                        continue
                    cells.append(f"{lang}{'*' if lang in trained else ''} {fmt(at.get(first))} -> {fmt(at.get(last))}")
                if cells:
                    ref = f"  (chance {chance:.2f})" if chance is not None else ""
                    lines.append(f"  {ds:<10} {series.label:<11} " + "   ".join(cells) + ref)
        if lines:
            out += [level.title] + lines
    return "\n".join(out)
