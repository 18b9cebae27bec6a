"""One list of metric names (clika.metrics.names): the summary, report.md and alignment.csv read it."""

from clika.metrics import alignment, names
from clika.metrics.alignment import aggregate, dataset_metrics
from clika.report import curves, results


def test_every_consumer_reads_the_one_list():
    assert alignment.CIRCULAR_KEYS is names.CIRCULAR_KEYS and curves.CIRCULAR_COLUMNS is names.CIRCULAR_COLUMNS
    assert len({m.name for m in names.METRICS}) == len(names.METRICS)
    cols = curves.COLUMNS
    assert cols[cols.index("acc"):cols.index("acc") + len(names.PLAIN)] == list(names.PLAIN)
    assert [c for c in cols if c in {m.name for m in names.METRICS}] == [m.name for m in names.METRICS if m.curve]


def test_report_and_summary_show_the_listed_metrics():
    per = {"x_copa": dataset_metrics({"en": [True, False, True, True], "zh": [True, False, False, True]}, 2, 0.964, 0)}
    for lang, v in per["x_copa"]["langs"].items():
        v.update({k: 0.5 for k in names.CIRCULAR})
    per["x_copa"]["circular"] = True
    summary = aggregate(per, {"basic": ["x_copa"]})
    assert set(summary["overall"]) == set(names.SUMMARY) | set(names.CIRCULAR_KEYS)
    md = results.markdown_report({"datasets": per, "summary": summary, "protocol": "letter", "letter_form": "Answer:<letter>",
                                  "prompt_style": "paper", "limit": None, "seed": 0, "circular": True})
    rows = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")}
    assert set(names.PLAIN) | set(names.CIRCULAR) <= rows
    rows = curves.metrics_to_rows({"datasets": per, "protocol": "letter"}, 0, 0, 0)
    assert all(r[k] == 0.5 for r in rows for k in names.CIRCULAR_COLUMNS)
