"""Conductivity metrics: per-language accuracies, the gate and XRR of one run (pure functions)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

from clika.util.errors import ClikaError
from clika.util.languages import check_lang
from clika.metrics.alignment import co, co_chance_adjusted


@dataclass(frozen=True)
class Pred:
    """One scored prediction: kind is "0"/"1" (test type) or "translate"."""
    lang: str
    kind: str
    correct: bool


GATE_CHECKS = ("translate", "en_type0", "en_type1", "x_type0")


@dataclass(frozen=True)
class FictionalScores:
    """Scores of one run fine-tuned on train/<x>. Ratios are None (see `reasons`) when gated."""
    x: str
    acc: dict[str, dict[str, float]]  # lang -> kind ("0", "1", "translate") -> accuracy
    n: dict[str, dict[str, int]]
    threshold: float
    gate: dict[str, bool]  # GATE_CHECKS -> passed (a missing check fails)
    gated: bool
    chance: float
    xrr: float | None  # acc(X type 1) / acc(EN type 1)
    x_ratio: float | None  # acc(X type 1) / acc(X type 0)
    xrr_corrected: float | None  # max(0, (acc X1 - chance) / (acc EN1 - chance))
    reasons: dict[str, str]  # metric -> why it is None

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(num, den, what):
    if num is None or den is None:
        return None, f"missing accuracy for {what}"
    if den <= 0 or math.isnan(den) or math.isnan(num):
        return None, f"zero denominator in {what}"
    return num / den, None


def _as_pred(p) -> Pred:
    if isinstance(p, Pred):
        return p
    kind = p.get("kind", p.get("type"))
    return Pred(check_lang(p["lang"]), str(kind), bool(p["correct"]))


def fictional_scores(preds: Iterable[Pred | Mapping], x: str | None = None, *,
                     threshold: float = 0.9, n_continents: int = 20) -> FictionalScores:
    """Per-language accuracies, the gate and the conductivity ratios of one run.

    preds: Pred objects or mappings with lang, kind (or type) and correct. x defaults to the one
    non-English language present. The gate needs accuracy above threshold (strictly: the release's README says
    accuracy must exceed 90%) on Translate(X), EN type 0, EN type 1 and X type 0; a gated run reports no ratio,
    only why.
    """
    preds = [_as_pred(p) for p in preds]
    hits: dict[str, Counter] = defaultdict(Counter)
    totals: dict[str, Counter] = defaultdict(Counter)
    for p in preds:
        if p.kind not in ("0", "1", "translate"):
            raise ClikaError(f"prediction kind must be 0, 1 or 'translate', got {p.kind!r}")
        totals[p.lang][p.kind] += 1
        hits[p.lang][p.kind] += p.correct
    if x is None:
        others = sorted(set(totals) - {"en"})
        if len(others) != 1:
            raise ClikaError(f"cannot tell the run's language X from predictions in {others}",
                             fix="pass x=")
        x = others[0]
    x = check_lang(x, allow_en=False)
    acc = {l: {k: hits[l][k] / n for k, n in t.items()} for l, t in totals.items()}
    get = lambda l, k: acc.get(l, {}).get(k)  # noqa: E731
    values = {"translate": get(x, "translate"), "en_type0": get("en", "0"),
              "en_type1": get("en", "1"), "x_type0": get(x, "0")}
    gate = {k: v is not None and v > threshold for k, v in values.items()}  # must exceed, as the release says
    chance = 1.0 / n_continents
    reasons: dict[str, str] = {}
    xrr = x_ratio = corrected = None
    failed = [k for k in GATE_CHECKS if not gate[k]]
    if failed:
        why = "gated: " + ", ".join(
            f"{k} missing" if values[k] is None else f"{k} {values[k]:.3f} <= {threshold}" for k in failed)
        reasons = {"xrr": why, "x_ratio": why, "xrr_corrected": why}
    else:
        x1, en1, x0 = get(x, "1"), values["en_type1"], values["x_type0"]
        xrr, r = _ratio(x1, en1, "acc(X type 1)/acc(EN type 1)")
        if r:
            reasons["xrr"] = r
        x_ratio, r = _ratio(x1, x0, "acc(X type 1)/acc(X type 0)")
        if r:
            reasons["x_ratio"] = r
        c, r = _ratio(None if x1 is None else x1 - chance, en1 - chance,
                      "(acc X1 - chance)/(acc EN1 - chance)")
        corrected = None if c is None else max(0.0, c)
        if r:
            reasons["xrr_corrected"] = r
    return FictionalScores(x, acc, {l: dict(t) for l, t in totals.items()}, threshold, gate,
                           bool(failed), chance, xrr, x_ratio, corrected, reasons)


def preds_of(rows: Iterable[Mapping]) -> list[Pred]:
    return [Pred(r["lang"], r["kind"], bool(r["correct"])) for r in rows]


def scores_by_lang(rows: Sequence[Mapping], trained: Sequence[str], *, threshold: float = 0.9,
                   n_continents: int = 20) -> dict[str, FictionalScores]:
    """`fictional_scores` for each trained language X, on the English and X rows."""
    preds = preds_of(rows)
    out = {}
    for x in trained:
        mine = [p for p in preds if p.lang in ("en", x)]
        out[x] = fictional_scores(mine, x, threshold=threshold, n_continents=n_continents)
    return out


def _type0(rows: Sequence[Mapping]) -> dict:
    """{item index: correct} of the type-0 rows of one language."""
    return {r["idx"]: bool(r["correct"]) for r in rows if r["kind"] == "0"}


def _type0_en_co(en: Mapping | None, mine: Mapping) -> tuple[float | None, float | None]:
    """en-CO and chance-adjusted en-CO of a language over the type-0 items (facts stated in English and in the
    trained languages), paired with English (`en`, None when rows carry no item index) by item index: the
    Consistency level of the fictional stream."""
    if en is None:
        return None, None
    common = sorted(set(en) & set(mine))
    if not common:
        return None, None
    a, b = [en[i] for i in common], [mine[i] for i in common]
    return co(a, b), co_chance_adjusted(a, b)


def lang_table(rows: Sequence[Mapping], scores: Mapping[str, FictionalScores]) -> dict[str, dict]:
    """Per language: acc (types 0 and 1), acc_type0/1, acc_translate, n, en_co / en_co_adj (type-0 items), and
    for trained languages the gate and the (gated) ratios."""
    table: dict[str, dict] = {}
    paired = all("idx" in r for r in rows)  # rows without item indices cannot be paired
    en = _type0([r for r in rows if r["lang"] == "en"]) if paired else None
    for lang in dict.fromkeys(r["lang"] for r in rows):
        mine = [r for r in rows if r["lang"] == lang]
        qa = [r for r in mine if r["kind"] in ("0", "1")]

        def acc(rs):
            return sum(bool(r["correct"]) for r in rs) / len(rs) if rs else None

        entry = {"acc": acc(qa), "acc_type0": acc([r for r in qa if r["kind"] == "0"]),
                 "acc_type1": acc([r for r in qa if r["kind"] == "1"]),
                 "acc_translate": acc([r for r in mine if r["kind"] == "translate"]), "n": len(qa),
                 "xrr": None, "xrr_corrected": None, "x_ratio": None, "gate_passed": None}
        entry["en_co"], entry["en_co_adj"] = _type0_en_co(en, _type0(mine) if paired else {})
        s = scores.get(lang)
        if s is not None:
            entry.update(xrr=s.xrr, xrr_corrected=s.xrr_corrected, x_ratio=s.x_ratio, gate_passed=not s.gated,
                         gate=dict(s.gate), reasons=dict(s.reasons))
        table[lang] = entry
    return table


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def summary(table: Mapping[str, Mapping], trained: Sequence[str], chance: float) -> dict:
    """Flat numbers for stream-level logging: means over the trained languages (ratios over those
    that passed the gate; None when none did), gate_passed (1.0 when every trained language passed)."""
    tr = [table[x] for x in trained if x in table]
    en = table.get("en", {})
    passed = [bool(t.get("gate_passed")) for t in tr]
    return {"xrr": _mean(t["xrr"] for t in tr), "xrr_corrected": _mean(t["xrr_corrected"] for t in tr),
            "x_ratio": _mean(t["x_ratio"] for t in tr),
            "gate_passed": float(bool(passed) and all(passed)),
            "gates_passed": (sum(passed) / len(passed)) if passed else None,
            "chance": chance, "acc_en_type0": en.get("acc_type0"), "acc_en_type1": en.get("acc_type1"),
            "acc_x_type0": _mean(t["acc_type0"] for t in tr), "acc_x_type1": _mean(t["acc_type1"] for t in tr),
            "acc_translate": _mean(t["acc_translate"] for t in tr)}
