"""Position bias of multiple-choice answers and the answer-identity consistency (this project's additions).

Position-bias report, per dataset × language, over the letters the model chose on the prompts it was shown
(every rotation in a circular run, where each item has its gold once at every position):
- `letter` / `share`: the most-chosen letter and its share of the answers (1/k for a model without a
  favourite position when gold letters are balanced; 1.0 for a model that always picks one position);
- `entropy`: the entropy of the chosen-letter distribution divided by log k (1 = uniform, 0 = one letter);
- `rstd`: the population standard deviation of the per-gold-letter recalls, recall(L) = P(choose L | gold
  is L) over the gold letters present (Zheng et al., "Large Language Models Are Not Robust Multiple Choice
  Selectors", ICLR 2024): robust to label imbalance, 0 for a model whose recall does not depend on position.

Answer-identity CO (needs rotations): the paper's en-CO compares the *sets of items answered correctly*, so
two languages that both always answer "A" get identical sets and CO = 1.0. The answer-identity CO compares
the option *contents* chosen, rotation undone: for an item, p_l(c) is the share of its k rotations under
which language l chose published option c, and

    CO_ans(a, b) = mean over items of  sum_c p_a(c) p_b(c)

— the probability that a and b name the same option when each is asked under an independently drawn
rotation. A model that knows the answer in both languages scores 1; a model whose choice ignores the content
(always one position, or uniform guessing) scores 1/k, its chance value, whatever its accuracy;
`CO_ans_adj = (CO_ans - 1/k) / (1 - 1/k)` puts chance at 0.
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence


def position_bias(preds: Sequence[int], labels: Sequence[int], letters: str) -> dict:
    """Most-chosen letter and its share, normalised entropy, RStd; `preds` / `labels` index `letters`
    (-1 = no answer, left out of the distribution)."""
    k = len(letters)
    answered = [(p, g) for p, g in zip(preds, labels) if 0 <= p < k]
    counts = [0] * k
    for p, _ in answered:
        counts[p] += 1
    n = len(answered)
    top = max(range(k), key=counts.__getitem__)
    entropy = sum(c / n * math.log(n / c) for c in counts if c) / math.log(k) if n and k > 1 else None
    gold = [sum(1 for g in labels if g == j) for j in range(k)]
    hits = [sum(1 for p, g in answered if g == j and p == j) for j in range(k)]
    recall = {letters[j]: hits[j] / gold[j] for j in range(k) if gold[j]}
    return {"letter": letters[top] if n else None, "share": counts[top] / n if n else None,
            "entropy": entropy, "rstd": statistics.pstdev(recall.values()) if recall else None,
            "chosen": {letters[j]: counts[j] for j in range(k)}, "recall": recall, "n": len(preds),
            "no_answer": len(preds) - n}


def _shares(choices: Sequence[int], k: int) -> list[float]:
    return [sum(1 for c in choices if c == j) / len(choices) for j in range(k)] if choices else [0.0] * k


def answer_identity_co(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """CO_ans over parallel items; a[i] = the published-order option chosen under each rotation of item i."""
    if len(a) != len(b):
        raise ValueError(f"answer-identity CO needs parallel items: {len(a)} vs {len(b)}")
    if not a:
        return 0.0
    total = 0.0
    for ca, cb in zip(a, b):
        k = len(ca)
        total += sum(x * y for x, y in zip(_shares(ca, k), _shares(cb, k)))
    return total / len(a)


def answer_identity_chance(a: Sequence[Sequence[int]]) -> float:
    """CO_ans of two models whose choices ignore the content: the mean over items of 1/k."""
    return sum(1 / len(c) for c in a) / len(a) if a else 0.0


def answer_identity_co_adj(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    chance = answer_identity_chance(a)
    return (answer_identity_co(a, b) - chance) / (1 - chance) if chance < 1 else 0.0


def answer_identity_metrics(choices_by_lang: Mapping[str, Sequence[Sequence[int]]]) -> dict:
    """{lang: {en_co_answer, en_co_answer_adj}} against English (nothing without English)."""
    en = choices_by_lang.get("en")
    if en is None:
        return {}
    return {lang: {"en_co_answer": answer_identity_co(en, c), "en_co_answer_adj": answer_identity_co_adj(en, c)}
            for lang, c in choices_by_lang.items()}
