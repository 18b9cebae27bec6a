"""Multiple-choice datasets of the CLiKA release (xCOPA, xCSQA, x_geo, x_name) and users' own JSONL.

Each loader reads the official repository layout as it is (its files and folder-name quirks are the registry's,
clika.data.registry) and returns `Item`s; `load_parallel` checks that languages are parallel (same count, ids
and labels) and the release's datasets that every item has the registry's number of options.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from clika.data.registry import DATASETS, LETTERS, MULTIPLE_CHOICE
from clika.util.errors import ClikaError
from clika.util.jsonl import read_jsonl
from clika.util.languages import LANGS


@dataclass
class Item:
    """One question in one language. `label` indexes `options`; `uid` is shared across languages."""

    uid: str
    dataset: str
    lang: str
    question: str
    options: list[str]
    label: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


def _need(row: dict, key: str, path: Path, line: int):
    if key not in row:
        raise ClikaError(f"{path}:{line}: missing field '{key}'", fix=f"add '{key}' to every record")
    return row[key]


def _label(value: Any, n: int, path: Path, line: int) -> int:
    idx = LETTERS.index(value) if isinstance(value, str) and value in LETTERS[:n] else value
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n:
        raise ClikaError(f"{path}:{line}: label {value!r} out of range for {n} options",
                         fix=f"use 0..{n - 1} or a letter {LETTERS[0]}..{LETTERS[n - 1]}")
    return idx


def _parse_copa(row, path, line, lang):
    question = _need(row, "question", path, line)
    if question not in ("cause", "effect"):
        raise ClikaError(f"{path}:{line}: question must be 'cause' or 'effect', got {question!r}",
                         fix="use the xCOPA field values")
    opts = [_need(row, "choice1", path, line), _need(row, "choice2", path, line)]
    return Item(str(_need(row, "id", path, line)), "x_copa", lang, _need(row, "premise", path, line), opts,
                _label(_need(row, "label", path, line), 2, path, line), {"kind": question})


def _parse_csqa(row, path, line, lang):
    q = _need(row, "question", path, line)
    if not isinstance(q, dict) or "stem" not in q or "choices" not in q:
        raise ClikaError(f"{path}:{line}: 'question' must hold 'stem' and 'choices'", fix="use the xCSQA format")
    labels, texts = q["choices"].get("label"), q["choices"].get("text")
    if not labels or not texts or len(labels) != len(texts):
        raise ClikaError(f"{path}:{line}: choices.label and choices.text must be non-empty and equally long",
                         fix="use the xCSQA format")
    key = _need(row, "answerKey", path, line)
    if key not in labels:
        raise ClikaError(f"{path}:{line}: answerKey {key!r} not among {labels}", fix="fix the label")
    return Item(str(_need(row, "id", path, line)), "x_csqa", lang, q["stem"], list(texts), labels.index(key))


def _parse_options(dataset: str, question_key: str, options_key: str):
    """Records {id, <question_key>, <options_key>: [...], label}: x_geo / x_name ("questions", "answers")
    and users' own data ("question", "options")."""
    def parse(row, path, line, lang):
        options = _need(row, options_key, path, line)
        if not isinstance(options, list) or len(options) < 2:
            raise ClikaError(f"{path}:{line}: '{options_key}' must be a list of >= 2 options", fix="fix the record")
        return Item(str(_need(row, "id", path, line)), dataset, lang, _need(row, question_key, path, line),
                    [str(o) for o in options], _label(_need(row, "label", path, line), len(options), path, line))
    return parse


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: Callable[[Path, str], Path]  # (root, lang) -> file
    parse: Callable
    template: str  # prompt family (clika.data.prompts)
    n_options: int | None = None  # the release's datasets: every item has this many (users' own: any >= 2)


# How each release dataset's records read; its facts (files, folder names, options, template) are the registry's.
PARSERS: dict[str, Callable] = {"x_copa": _parse_copa, "x_csqa": _parse_csqa,
                                "x_geo": _parse_options("x_geo", "questions", "answers"),
                                "x_name": _parse_options("x_name", "questions", "answers")}

REGISTRY: dict[str, DatasetInfo] = {
    name: DatasetInfo(name, DATASETS[name].file, PARSERS[name], DATASETS[name].template, DATASETS[name].n_options)
    for name in MULTIPLE_CHOICE}


def jsonl_dataset(name: str, directory: str | Path) -> DatasetInfo:
    """Users' own data: `<directory>/<lang>.jsonl` with {"id", "question", "options": [...], "label"}."""
    return DatasetInfo(name, lambda r, l, d=Path(directory): d / f"{l}.jsonl",
                       _parse_options(name, "question", "options"), "mcq")


def check_root(root: str | Path | None) -> Path:
    if root is None or str(root) in ("", "None", "null"):
        raise ClikaError("paths.clika_data is not set",
                         fix="python eval.py task=get_data (fetches and verifies the official release into the cache, "
                             "used from then on), or export CLIKA_DATA=/path/to/clika-data (a copy of the release)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ClikaError(f"data root '{path}' does not exist",
                         fix="set CLIKA_DATA / paths.clika_data to the folder holding x_copa/, x_csqa/, ...")
    return path


def load_items(root: str | Path, dataset: str, lang: str, registry: Mapping[str, DatasetInfo] = REGISTRY
               ) -> list[Item]:
    if dataset not in registry:
        raise ClikaError(f"unknown dataset '{dataset}'",
                         fix=f"choose from {sorted(registry)} or register a JSONL dir under clika.custom")
    if lang not in LANGS:
        raise ClikaError(f"unknown language '{lang}'", fix=f"choose from {list(LANGS)}")
    info = registry[dataset]
    path = info.path(check_root(root) if dataset in DATASETS else Path(root or "."), lang)
    if not path.parent.is_dir():
        raise ClikaError(f"{dataset}: language folder '{path.parent}' is missing",
                         fix=f"drop '{lang}' from clika.langs or restore the folder")
    items = [info.parse(row, path, i, lang) for i, row in enumerate(read_jsonl(path), start=1)]
    seen: set[str] = set()
    for i, it in enumerate(items, start=1):
        if it.uid in seen:
            raise ClikaError(f"{path}: duplicate id {it.uid!r} (record {i})", fix="give every item a unique id")
        seen.add(it.uid)
    for i, it in enumerate(items, start=1):
        if info.n_options is not None and len(it.options) != info.n_options:
            raise ClikaError(f"{path}:{i}: {len(it.options)} options, but {dataset} has {info.n_options}",
                             fix=f"restore the release's file (clika.data.registry: {dataset} has {info.n_options} "
                                 "options)")
    return items


def load_parallel(root: str | Path, dataset: str, langs: list[str], registry: Mapping[str, DatasetInfo] = REGISTRY
                  ) -> dict[str, list[Item]]:
    """Load every language and verify they are the same items in the same order with the same labels."""
    by_lang = {lang: load_items(root, dataset, lang, registry) for lang in langs}
    ref_lang = langs[0]
    ref = by_lang[ref_lang]
    for lang, items in by_lang.items():
        where = registry[dataset].path(Path(root or "."), lang)
        if len(items) != len(ref):
            raise ClikaError(f"{where}: {len(items)} items but {ref_lang} has {len(ref)}: languages not parallel",
                             fix="every language file must hold the same items in the same order")
        for i, (a, b) in enumerate(zip(ref, items), start=1):
            if a.uid != b.uid or a.label != b.label or len(a.options) != len(b.options):
                raise ClikaError(f"{where}: record {i} (id {b.uid!r}, label {b.label}) differs from {ref_lang} "
                                 f"(id {a.uid!r}, label {a.label}): languages not parallel",
                                 fix="align line i of every language to the same item and label")
    return by_lang


def subset_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """A seeded fixed subset (sorted), identical for every language, so runs stay comparable."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))
