"""Circular evaluation (this project's choice, beyond the paper; the CircularEval of MMBench, Liu et al. 2023):
every item is asked under each cyclic rotation of its options, with the prompt rebuilt in the paper's format.

Rotation r of a k-option item presents original option (j + r) % k at position j, so the gold moves to
position (label - r) % k; rotation 0 is the item as published, which is why a circular run also yields the
plain numbers, identical to a plain run's. Requests are item-major (an item's k rotations in a row) and carry
the rotation in their uid (`<uid>@rot<r>`).

From circular correctness: `acc_circ` (correct under every rotation), `acc_rot` (mean over all rotated
prompts), `ra_circ` (the RA formula, same chance 1/k and reference, on acc_circ) and `en_co_circ` /
`en_co_circ_adj` (the paper's en-CO and its chance-adjusted form over the sets of items correct under every
rotation). The answer-identity CO (clika.metrics.bias) compares the option *contents* chosen, rotation undone.
The names, and which ones the summary, report.md and alignment.csv show: clika.metrics.names.

Only scorers that rank the presented options can be rotated (`letter`, `cloze`); the release's generation
protocol stays as published, so its numbers remain comparable with the paper's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from clika.util.errors import ClikaError
from clika.metrics.alignment import accuracy, co, co_chance_adjusted, co_matrix, relative_accuracy
from clika.scoring.loglik import Result

ROTATABLE = ("letter", "cloze")


def check_rotatable(circular: bool, protocol: str | None, key: str = "clika.protocol") -> None:
    """`clika.circular=true` needs a protocol that ranks the presented options; `key` names the config key that
    chose `protocol`."""
    if circular and protocol not in ROTATABLE:
        raise ClikaError(f"clika.circular=true cannot rotate the options under {key}={protocol} (only "
                         f"{' / '.join(ROTATABLE)} rank the presented options; the release protocol's numbers "
                         f"must stay comparable with the paper's)",
                         fix=f"set {key}=letter (or cloze) for circular evaluation, or clika.circular=false")


def rotation_uid(uid: str, r: int) -> str:
    return f"{uid}@rot{r}"


def rotate(item, r: int):
    """The item with its options rotated by r (original option (j + r) % k at position j)."""
    k = len(item.options)
    return replace(item, uid=rotation_uid(item.uid, r), options=[item.options[(j + r) % k] for j in range(k)],
                   label=(item.label - r) % k, meta={**item.meta, "rotation": r})


def rotations(items: Sequence) -> list:
    """Every rotation of every item, item-major: item 0 rotations 0..k-1, item 1 ..."""
    return [rotate(it, r) for it in items for r in range(len(it.options))]


def original_option(pred: int, r: int, k: int) -> int:
    """Index in the published option order of the option chosen at position `pred` of rotation r (-1 stays)."""
    return -1 if pred < 0 else (pred + r) % k


def group(results: Sequence[Result], items: Sequence) -> list[list[Result]]:
    """Results of `rotations(items)` regrouped per item: [[rotation 0, ..., rotation k-1], ...]."""
    out, i = [], 0
    for it in items:
        k = len(it.options)
        out.append(list(results[i: i + k]))
        i += k
    if i != len(results):
        raise ValueError(f"{len(results)} results for {i} rotated prompts")
    return out


def chosen_options(groups: Sequence[Sequence[Result]]) -> list[list[int]]:
    """Per item, the published-order option chosen under each rotation (rotation undone)."""
    return [[original_option(res.pred, r, len(g)) for r, res in enumerate(g)] for g in groups]


def circular_metrics(groups_by_lang: Mapping[str, Sequence[Sequence[Result]]], n_options: int, ref: float) -> dict:
    """acc_circ, acc_rot, ra_circ, en_co_circ(_adj) per language and the CO matrix of circular correctness."""
    circ = {lang: [all(r.correct for r in g) for g in groups] for lang, groups in groups_by_lang.items()}
    en = circ.get("en")
    langs = {}
    for lang, groups in groups_by_lang.items():
        acc_circ = accuracy(circ[lang])
        v = {"acc_circ": acc_circ, "acc_rot": accuracy([r.correct for g in groups for r in g]),
             "ra_circ": relative_accuracy(acc_circ, n_options, ref)}
        if en is not None:
            v["en_co_circ"] = co(en, circ[lang])
            v["en_co_circ_adj"] = co_chance_adjusted(en, circ[lang])
        langs[lang] = v
    return {"langs": langs, "co_matrix_circ": co_matrix(circ)}
