"""alignment_curves.png: one column per level, chance drawn, steps and tokens, trained languages marked; the
end-of-run start -> end table."""

from clika.report.curves import LEVELS, curves_figure, metrics_to_rows, start_end_table, write_rows


def _metrics(acc0, acc1, co):
    """A callback metrics object: a suite dataset (4 options) and the fictional stream (8 continents)."""
    return {"scorer": "mc", "datasets": {
        "x_geo": {"n_options": 4, "langs": {"en": {"acc": 0.3, "ra": 0.1, "en_co": 1.0, "en_co_adj": 1.0, "n": 10},
                                            "zh": {"acc": 0.25, "ra": 0.0, "en_co": 0.2, "en_co_adj": 0.0, "n": 10}}},
        "fictional": {"chance": 0.125, "langs": {
            "en": {"acc": (acc0 + acc1) / 2, "acc_type0": acc0, "acc_type1": acc1, "en_co": 1.0, "en_co_adj": 1.0,
                   "n": 80},
            "zh": {"acc": (acc0 + 0.125) / 2, "acc_type0": acc0, "acc_type1": 0.125, "en_co": co, "en_co_adj": 0.1,
                   "xrr": None, "n": 80}}}}}


def _csv(tmp_path):
    rows = []
    for step, (a0, a1, co) in enumerate([(0.125, 0.125, 0.05), (0.6, 0.5, 0.5), (0.975, 0.95, 0.95)]):
        rows += metrics_to_rows(_metrics(a0, a1, co), step * 100, step * 102400, 0, trained=["en", "zh"])
    return write_rows(tmp_path / "alignment.csv", rows), rows


def test_rows_carry_chance_and_the_trained_languages(tmp_path):
    _, rows = _csv(tmp_path)
    fic = [r for r in rows if r["dataset"] == "fictional"]
    assert {r["chance"] for r in fic} == {0.125} and {r["chance"] for r in rows if r["dataset"] == "x_geo"} == {0.25}
    assert all(r["trained"] == 1 for r in rows)


def test_figure_has_one_column_per_level_with_chance_and_a_token_axis(tmp_path):
    path, _ = _csv(tmp_path)
    fig = curves_figure([path])
    axes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title().split("\n")[0] for ax in axes]
    shown = [lv for lv in LEVELS if lv.title != "Position bias"]  # no bias columns in these rows: left out
    assert titles == [f"{lv.title} — {ds}" for ds in ("x_geo", "fictional") for lv in shown]
    perf, cons, cond = axes[3:6]  # the fictional row
    hlines = lambda ax: sorted(round(l.get_ydata()[0], 4) for l in ax.lines if len(set(l.get_ydata())) == 1
                               and l.get_linestyle() == ":")  # noqa: E731
    assert 0.125 in hlines(perf) and 0.125 in hlines(cond)
    assert round(0.125 / (2 - 0.125), 4) in hlines(cons) and 0.0 in hlines(cons)  # en-CO of two guessers; adj. 0
    zh = [l for l in perf.lines if list(l.get_xdata()) == [0, 100, 200]]
    assert [round(y, 3) for y in zh[0].get_ydata()] == [0.125, 0.6, 0.975]  # Performance = type-0 accuracy
    assert any(child.__class__.__name__ == "SecondaryAxis" for child in perf.get_children())  # tokens on top
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "zh (trained)" in labels and "chance" in labels
    # en-CO of English with itself is not drawn; x_geo has no Conductivity measurement
    assert all(max(l.get_ydata()) < 1 for l in cons.lines if len(l.get_xdata()) == 3)
    assert "not measured" in " ".join(t.get_text() for t in axes[2].texts)


def test_start_end_table_per_level(tmp_path):
    _, rows = _csv(tmp_path)
    table = start_end_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("== alignment: step 0 -> step 200")
    assert [l for l in lines if not l.startswith(" ")][1:] == [lv.title for lv in LEVELS if lv.title != "Position bias"]
    perf = next(l for l in lines if l.strip().startswith("fictional") and " acc " in l)
    assert "zh* 0.12 -> 0.97" in perf and "(chance 0.12)" in perf
    cond = next(l for l in lines if "type-1 acc" in l)
    assert "en* 0.12 -> 0.95" in cond and "zh* 0.12 -> 0.12" in cond
    assert start_end_table([]) == ""
    tiny_negative = [{**r, "en_co_adj": -1e-12} if r.get("en_co_adj") not in (None, "") else r for r in rows]
    assert "-0.00" not in start_end_table(tiny_negative)  # rounding never prints a negative zero
