"""Judges: turn a generated output string into a verdict. Pure string functions (no torch).

- `first_char`: the release's rule for the Basic and Factual streams (RiverGao/CLiKA `res_statistic.py`,
  `eval_res`): strip the output, take its first character; correct iff it equals the gold letter
  (case-sensitive); an empty output answers nothing ("F" there) and is wrong.
- `contains`: the release's rule for the fictional stream (RiverGao/CLiKA `fictional/README.md`: "the
  continent is used to check for correct results"): the answer contains the gold name. Matching is
  Unicode-NFC and case-folded (this project's reading of "contains"), on the answer part of the output (up to
  the first blank line, '###' or '[INST]': a model running on into an invented next turn is not credited for
  names it lists there; this project's choice).

A scorer's judge (`Judge`) maps (output, option letters, options, gold index) to the answered option's index
or -1: `by_first_char` for the multiple-choice datasets, `by_name` for the fictional stream.
"""

from __future__ import annotations

from typing import Callable

from clika.fictional.names import normalize

Judge = Callable[[str, str, list, int], int]
_STOPS = ("\n\n", "###", "[INST]")


def first_letter(res: str | None) -> str:
    """The first character of the stripped output ("" for an empty or missing output)."""
    text = (res if isinstance(res, str) else "").strip()
    return text[0] if text else ""


def first_char(res: str | None, letters: str) -> int:
    """Index of the answered option letter in `letters`, or -1 (empty output, or a first character that is
    no option letter). Case-sensitive, as `res_statistic.py` compares `res[0] == label`."""
    first = first_letter(res)
    return letters.index(first) if first and first in letters else -1


def first_char_correct(res: str | None, label: str) -> bool:
    """The release's verdict on one {res, label} record (label is the gold letter)."""
    first = first_letter(res)
    return bool(first) and first == label


def contains(answer: str | None, gold: str) -> bool:
    """Correct when the answer contains the gold name (NFC, case-insensitive); an empty gold never matches."""
    return bool(gold) and normalize(gold) in normalize(answer or "")


def answer_part(text: str) -> str:
    """The answer part of a generated text: up to the first blank line, '###' or '[INST]'."""
    cut = min((i for i in (text.find(s) for s in _STOPS) if i >= 0), default=len(text))
    return text[:cut].strip()


def by_first_char(output: str, letters: str, options: list, label: int) -> int:
    return first_char(output, letters)


def by_name(output: str, letters: str, options: list, label: int) -> int:
    """The gold option (its name) contained in the answer part of the output: the gold index, else -1."""
    return label if contains(answer_part(output), options[label].strip()) else -1
