"""CLiKA metrics as pure functions over per-item correctness.

- Performance, RA: max(0, (acc - chance) / (ref - chance)), chance = 1 / #options.
- Consistency, CO(a, b) = |C_a ∩ C_b| / |C_a ∪ C_b| over the sets of correctly answered items;
  en-CO is CO(en, l). Both sets empty → 0.0 (no knowledge shared). The chance-adjusted variant
  compares with two independent guessers of the same accuracies p, q, whose expected CO is
  pq / (p + q - pq):  (CO - E) / (1 - E)  (kappa-style; 0 = chance agreement, 1 = identical sets).
- Intervals: percentile bootstrap over items, vectorised with numpy (`bootstrap_indices` draws every resample
  at once from `numpy.random.default_rng(seed)`); `paired_bootstrap_ci` resamples two systems' answers to the
  same items together, for the interval of a delta.

Circular evaluation (clika.circular) and the answer-identity CO (clika.metrics.bias) reuse these functions on the
correctness under every rotation; `aggregate` also summarises their keys when present.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from clika.metrics.names import CIRCULAR_KEYS, SUMMARY
from clika.util.languages import LANGS


def accuracy(correct: Sequence[bool]) -> float:
    return sum(map(bool, correct)) / len(correct) if correct else 0.0


def bootstrap_indices(k: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """(n, k) item indices of n bootstrap resamples of k items (with replacement); one seed, one draw: resampling
    the same items of several languages or systems with the same (k, n, seed) pairs them."""
    return np.random.default_rng(seed).integers(0, k, size=(n, k), dtype=np.int32 if k < 2**31 else np.int64)


def bootstrap_weights(k: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """(n, k) float counts: how often resample r of `bootstrap_indices(k, n, seed)` holds item i. Any sum over
    resampled items is then one matrix product, `weights @ per_item_values`, for many columns at once."""
    idx = bootstrap_indices(k, n, seed).astype(np.int64) + (np.arange(n, dtype=np.int64) * k)[:, None]
    return np.bincount(idx.ravel(), minlength=n * k).reshape(n, k).astype(float)


def percentile_interval(stats: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap statistics: the sorted values at floor((1-level)/2 (n-1)) and
    ceil((1+level)/2 (n-1)) (no interpolation)."""
    stats = np.sort(np.asarray(stats, dtype=float))
    n = len(stats)
    lo = stats[int(math.floor((1 - level) / 2 * (n - 1)))]
    hi = stats[int(math.ceil((1 + level) / 2 * (n - 1)))]
    return (float(lo), float(hi))


def bootstrap_ci(correct: Sequence[bool], n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy (numpy; reproducible by seed)."""
    if len(correct) == 0 or n <= 0:
        return (float("nan"), float("nan"))
    vals = np.asarray(correct, dtype=bool)
    return percentile_interval(vals[bootstrap_indices(len(vals), n, seed)].mean(axis=1), level)


def paired_bootstrap_ci(base: Sequence[bool], treated: Sequence[bool], n: int = 1000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(delta, lo, hi): accuracy(treated) - accuracy(base) over the same items, with the percentile interval of
    the delta when both systems' answers to an item are resampled together (the paired bootstrap)."""
    a, b = np.asarray(base, dtype=bool), np.asarray(treated, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"a paired bootstrap needs the same items: {len(a)} vs {len(b)}")
    if len(a) == 0 or n <= 0:
        return (float("nan"), float("nan"), float("nan"))
    diff = b.astype(np.int8) - a.astype(np.int8)  # per item: +1 gained, -1 lost, 0 same verdict
    return (float(diff.mean()), *percentile_interval(diff[bootstrap_indices(len(diff), n, seed)].mean(axis=1), level))


def relative_accuracy(acc: float, n_options: int, ref: float) -> float:
    chance = 1.0 / n_options
    if ref <= chance:
        raise ValueError(f"reference accuracy {ref} must exceed chance {chance:.3f}")
    return max(0.0, (acc - chance) / (ref - chance))


def _correct_set(correct: Sequence[bool]) -> set[int]:
    return {i for i, c in enumerate(correct) if c}


def co(a: Sequence[bool], b: Sequence[bool]) -> float:
    if len(a) != len(b):
        raise ValueError(f"CO needs parallel items: {len(a)} vs {len(b)}")
    sa, sb = _correct_set(a), _correct_set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 0.0


def co_expected(p: float, q: float) -> float:
    """E[CO] of two languages answering independently with accuracies p and q: pq / (p + q - pq)."""
    denom = p + q - p * q
    return p * q / denom if denom > 0 else 0.0


def co_chance_adjusted(a: Sequence[bool], b: Sequence[bool]) -> float:
    expected = co_expected(accuracy(a), accuracy(b))
    if expected >= 1.0:
        return 0.0
    return (co(a, b) - expected) / (1.0 - expected)


def co_matrix(correct_by_lang: Mapping[str, Sequence[bool]]) -> dict[str, dict[str, float]]:
    langs = list(correct_by_lang)
    return {a: {b: co(correct_by_lang[a], correct_by_lang[b]) for b in langs} for a in langs}


def dataset_metrics(correct_by_lang: Mapping[str, Sequence[bool]], n_options: int, ref: float,
                    bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per-language acc (with 95% CI), RA, en-CO and chance-adjusted en-CO, plus the CO matrix."""
    langs: dict[str, dict] = {}
    en = correct_by_lang.get("en")
    for lang, correct in correct_by_lang.items():
        acc = accuracy(correct)
        lo, hi = bootstrap_ci(correct, bootstrap, seed)
        langs[lang] = {"acc": acc, "acc_ci": [lo, hi], "ra": relative_accuracy(acc, n_options, ref),
                       "n": len(correct)}
        if en is not None:
            langs[lang]["en_co"] = co(en, correct)
            langs[lang]["en_co_adj"] = co_chance_adjusted(en, correct)
    return {"langs": langs, "co_matrix": co_matrix(correct_by_lang), "n_options": n_options, "ref": ref}


def _mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def aggregate(per_dataset: Mapping[str, dict], streams: Mapping[str, Sequence[str]]) -> dict:
    """Means over the non-English languages per dataset, per stream and overall."""
    def summary(names: Sequence[str]) -> dict:
        out = {}
        for key in (*SUMMARY, *CIRCULAR_KEYS):  # clika.metrics.names
            vals = [per_dataset[d]["langs"][l].get(key) for d in names if d in per_dataset
                    for l in per_dataset[d]["langs"] if l != "en"]
            if key not in CIRCULAR_KEYS or any(v is not None for v in vals):  # circular keys: circular runs only
                out[key] = _mean(vals)
        return out

    out = {"datasets": {d: summary([d]) for d in per_dataset}}
    out["streams"] = {s: {**summary(ds), "datasets": [d for d in ds if d in per_dataset]}  # what each mean averages
                      for s, ds in streams.items() if any(d in per_dataset for d in ds)}
    out["overall"] = summary(list(per_dataset))
    return out


__all__ = ["accuracy", "bootstrap_indices", "bootstrap_weights", "percentile_interval", "bootstrap_ci",
           "paired_bootstrap_ci", "relative_accuracy", "co", "co_chance_adjusted", "co_matrix",
           "dataset_metrics", "aggregate", "LANGS"]
