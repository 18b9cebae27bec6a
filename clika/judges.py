"""Judges: turn a generated output into the index of the option it answers (-1: none). Pure functions.

- `first_char`: the release's rule for the multiple-choice datasets — the first character of the stripped
  output is the answer letter (case-sensitive); an empty output answers nothing.
- `contains`: the release's rule for the fictional stream — the answer part of the output (up to the first
  blank line, '###' or '[INST]', so a model running on into an invented next turn is not credited for names it
  lists there) contains the gold name, compared NFC-normalised and case-insensitively.
"""

from __future__ import annotations

from typing import Callable

from clika.fictional.names import normalize

Judge = Callable[[str, str, list[str], int], int]  # (output, letters, options, label) -> option index or -1
_STOPS = ("\n\n", "###", "[INST]")


def first_char_letter(output: str | None) -> str:
    text = (output or "").strip()
    return text[0] if text else ""


def first_char(output: str, letters: str, options: list[str], label: int) -> int:
    first = first_char_letter(output)
    return letters.index(first) if first and first in letters else -1


def answer_part(text: str) -> str:
    """The answer part of a generated text: up to the first blank line, '###' or '[INST]'."""
    cut = min((i for i in (text.find(s) for s in _STOPS) if i >= 0), default=len(text))
    return text[:cut].strip()


def name_in(output: str, name: str) -> bool:
    return bool(name) and normalize(name) in normalize(output or "")


def contains(output: str, letters: str, options: list[str], label: int) -> int:
    return label if name_in(answer_part(output), options[label].strip()) else -1


JUDGES: dict[str, Judge] = {"first_char": first_char, "contains": contains}
