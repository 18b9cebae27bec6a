"""PriDe debiasing of multiple-choice answers (Zheng et al., "Large Language Models Are Not Robust Multiple
Choice Selectors", ICLR 2024): this project's optional extra in circular runs (clika.circular=true).

PriDe writes the observed option distribution of a prompt as a position prior times a content term,
P_obs(d_j | x) ∝ P_prior(d_j) · P_debiased(o_j | x). Over the k cyclic rotations of an item every option
content visits every position once, so averaging log P_obs(d_j) over the rotations cancels the content term:

    log P̃_prior(d_j | item) = mean over rotations r of log P_obs(d_j | x^r)   (then softmax over j)

and the prior of a dataset × language is the mean of the items' P̃_prior. The debiased choice of a prompt is
argmax_j [log P_obs(d_j | x) − log P_prior(d_j)].

Where this differs from the paper (this project's choice): the paper estimates the prior on a small sample
(a share α of the test items) to save the cost of permuting the rest; a circular run has scored every
rotation of every item already, so the prior is estimated from all of them. The estimate uses no gold labels.
The debiased numbers are reported on rotation 0 (the published order), beside the plain ones:
`acc_pride`, `ra_pride`, `en_co_pride` (the paper's en-CO over the sets of items correct after debiasing),
and the estimated prior per letter (`pride_prior`). P_obs is the softmax over the presented options of the
scorer's per-option scores (letter: log-probs of the option letters; cloze: its normalised option scores).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from clika.metrics.alignment import accuracy, co, relative_accuracy


def log_softmax(scores: Sequence[float]) -> list[float]:
    m = max(scores)
    z = m + math.log(sum(math.exp(s - m) for s in scores))
    return [s - z for s in scores]


def item_prior(rotation_scores: Sequence[Sequence[float]]) -> list[float]:
    """P̃_prior over positions from one item's per-rotation option scores (rotation r's scores by position)."""
    k = len(rotation_scores[0])
    logs = [log_softmax(s) for s in rotation_scores]
    mean = [sum(lp[j] for lp in logs) / len(logs) for j in range(k)]
    return [math.exp(v) for v in log_softmax(mean)]


def estimate_prior(groups: Sequence[Sequence[Sequence[float]]]) -> list[float]:
    """The prior of a dataset × language: the mean over items of their P̃_prior (groups[i][r] = scores)."""
    priors = [item_prior(g) for g in groups]
    k = len(priors[0])
    return [sum(p[j] for p in priors) / len(priors) for j in range(k)]


def debiased_choice(scores: Sequence[float], prior: Sequence[float]) -> int:
    """argmax_j log P_obs(d_j) − log P_prior(d_j)."""
    adjusted = [lp - math.log(max(p, 1e-300)) for lp, p in zip(log_softmax(scores), prior)]
    return max(range(len(adjusted)), key=adjusted.__getitem__)


def pride_metrics(groups_by_lang: Mapping[str, Sequence[Sequence]], letters: str, n_options: int,
                  ref: float) -> dict[str, dict]:
    """{lang: {acc_pride, ra_pride, en_co_pride, pride_prior}} from circular Results grouped per item
    (clika.circular.group); {} when a result carries no per-option scores (nothing to debias)."""
    if any(len(r.scores) != len(g) for groups in groups_by_lang.values() for g in groups for r in g):
        return {}
    correct, out = {}, {}
    for lang, groups in groups_by_lang.items():
        if not groups:
            continue
        prior = estimate_prior([[r.scores for r in g] for g in groups])
        correct[lang] = [debiased_choice(g[0].scores, prior) == g[0].label for g in groups]
        acc = accuracy(correct[lang])
        out[lang] = {"acc_pride": acc, "ra_pride": relative_accuracy(acc, n_options, ref),
                     "pride_prior": {letters[j]: p for j, p in enumerate(prior)}}
    if "en" in correct:
        for lang in out:
            out[lang]["en_co_pride"] = co(correct["en"], correct[lang])
    return out
