"""The official file layout of the fictional stream: writing a world into it and reading it back.

train/<X>.json (JSON Lines), test/target/test<L>.jsonl (answers end with [[continent:..]][[city:..]][[type:0|1]]
tags), test/Translate/translate<X>.jsonl. Every read problem names the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from clika.util.atomic import atomic_file
from clika.util.errors import ClikaError
from clika.fictional.records import _test_records, _train_records, _translate_records, check_directions
from clika.fictional.texts import DIRECTIONS
from clika.fictional.world import World
from clika.util.jsonl import read_jsonl_numbered
from clika.util.languages import NON_EN, check_lang


def _write_jsonl(path: Path, records: Iterable[Mapping[str, str]]) -> Path:
    """The official files use json.dumps defaults except ensure_ascii=False, "\n" line ends."""
    with atomic_file(path, "w", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _stem(lang: str) -> str:
    return lang.upper()


def write_official_layout(world: World, out_dir, langs=NON_EN, translate_directions=DIRECTIONS,
                          seed: int = 0, *, repeats: int = 10) -> list[Path]:
    """Write the world in exactly the official layout and field names; returns the written paths.

    train/<X>.json (JSON Lines), test/target/test<L>.jsonl for EN and langs (tags name the
    continent and city in L, as the official files do), test/Translate/translate<X>.jsonl
    (English -> X). Both translation directions are trained by default, fixing the release's
    X->EN-only defect; pass ("x2en",) to reproduce it.
    """
    out = Path(out_dir)
    langs = [check_lang(l, allow_en=False) for l in langs]
    directions = check_directions(translate_directions)
    written = []
    for x in langs:
        written.append(_write_jsonl(out / "train" / f"{_stem(x)}.json",
                                    _train_records(world, x, directions, seed, repeats)))
    for lang in ["en", *langs]:
        written.append(_write_jsonl(out / "test" / "target" / f"test{_stem(lang)}.jsonl",
                                    _test_records(world, lang)))
    for x in langs:
        written.append(_write_jsonl(out / "test" / "Translate" / f"translate{_stem(x)}.jsonl",
                                    _translate_records(world, x)))
    return written


@dataclass(frozen=True)
class FictionalItem:
    """One test question; `answer` is the reference text with the tags removed."""
    idx: int
    lang: str
    city: str
    continent: str
    type: int
    question: str
    answer: str


@dataclass(frozen=True)
class Record:
    """One train or Translate record, fields as in the files."""
    idx: int
    lang: str
    prompt: str
    input: str
    answer: str

    @property
    def source(self) -> str:
        return self.input

    @property
    def target(self) -> str:
        return self.answer


_FIELDS = ("prompt", "input", "answer")
_TAGS = re.compile(r"\[\[continent:(.*?)\]\]\[\[city:(.*?)\]\]\[\[type:(\d+)\]\]\s*$")


def fictional_root(root) -> Path:
    """Accept the fictional folder itself or a data root that contains `fictional/`."""
    root = Path(root)
    if not (root / "test").is_dir() and (root / "fictional" / "test").is_dir():
        return root / "fictional"
    return root


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs; every problem names the file and line."""
    if not path.is_file():
        raise ClikaError(f"missing file {path}",
                         fix="point the path at the official 'fictional' folder (with train/ and test/)"
                             " or write one with write_official_layout")
    rows = []
    for lineno, rec in read_jsonl_numbered(path, allow_empty=True):
        missing = [k for k in _FIELDS if not isinstance(rec.get(k), str)]
        if missing:
            raise ClikaError(f"{path}:{lineno}: missing or non-string field(s) {missing}",
                             fix=f"records need string fields {list(_FIELDS)}")
        rows.append((lineno, rec))
    return rows


def load_fictional(root, lang: str) -> list[FictionalItem]:
    """Test items of test/target/test<L>.jsonl (official or generated), in file order."""
    lang = check_lang(lang)
    path = fictional_root(root) / "test" / "target" / f"test{_stem(lang)}.jsonl"
    items = []
    for idx, (lineno, rec) in enumerate(_read_jsonl(path)):
        m = _TAGS.search(rec["answer"])
        if not m or m.group(3) not in ("0", "1"):
            raise ClikaError(f"{path}:{lineno}: answer lacks the tags "
                             "[[continent:NAME]][[city:NAME]][[type:0|1]] at its end",
                             fix="test answers must end with the three tags")
        items.append(FictionalItem(idx, lang, m.group(2), m.group(1), int(m.group(3)),
                                   rec["prompt"], rec["answer"][:m.start()]))
    return items


def _load_records(path: Path, lang: str) -> list[Record]:
    return [Record(i, lang, r["prompt"], r["input"], r["answer"])
            for i, (_, r) in enumerate(_read_jsonl(path))]


def load_fictional_train(root, x: str) -> list[Record]:
    """Records of train/<X>.json (JSON Lines despite the name)."""
    x = check_lang(x, allow_en=False)
    return _load_records(fictional_root(root) / "train" / f"{_stem(x)}.json", x)


def load_translate(root, x: str) -> list[Record]:
    """English -> X name translations of test/Translate/translate<X>.jsonl."""
    x = check_lang(x, allow_en=False)
    return _load_records(fictional_root(root) / "test" / "Translate" / f"translate{_stem(x)}.jsonl", x)
