"""The per-language metric names of a suite evaluation, one list, and where each one is shown.

`clika.metrics.alignment.aggregate` averages the `summary` ones, report.md (clika.report.results) has a row for
each, alignment.csv (clika.report.curves) a column for the `curve` ones. The circular ones come from circular
runs only (clika.metrics.circular, the answer-identity CO of clika.metrics.bias, clika.metrics.pride).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    circular: bool  # reported by circular runs only (clika.circular=true)
    summary: bool  # averaged per dataset, stream and overall (and a column of report.md's summary table)
    curve: bool  # a column of alignment.csv (and a W&B curve of the training callback)


METRICS: tuple[Metric, ...] = (
    Metric("acc", False, True, True),
    Metric("ra", False, True, True),
    Metric("en_co", False, True, True),
    Metric("en_co_adj", False, False, True),
    Metric("acc_circ", True, True, True),
    Metric("acc_rot", True, False, True),
    Metric("ra_circ", True, True, True),
    Metric("en_co_circ", True, True, True),
    Metric("en_co_circ_adj", True, False, False),
    Metric("en_co_answer", True, True, True),
    Metric("en_co_answer_adj", True, False, False),
    Metric("acc_pride", True, True, True),
    Metric("ra_pride", True, False, False),
    Metric("en_co_pride", True, True, True),
)

PLAIN = tuple(m.name for m in METRICS if not m.circular)  # report.md rows of every run
CIRCULAR = tuple(m.name for m in METRICS if m.circular)  # report.md rows of circular runs
SUMMARY = tuple(m.name for m in METRICS if m.summary and not m.circular)
CIRCULAR_KEYS = tuple(m.name for m in METRICS if m.summary and m.circular)  # summarised when a run reports them
CIRCULAR_COLUMNS = tuple(m.name for m in METRICS if m.curve and m.circular)
