"""Strict JSON Lines reading (errors name the file and line) and JSON / JSONL writing through `clika.util.atomic`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from clika.util.atomic import atomic_write_text
from clika.util.errors import ClikaError


def read_jsonl(path: str | Path, *, allow_empty: bool = False) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl_numbered(path, allow_empty=allow_empty)]


def read_jsonl_numbered(path: str | Path, *, allow_empty: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs, so later checks can name the line too."""
    path = Path(path)
    if not path.exists():
        raise ClikaError(f"{path}: file not found", fix="check the data root and the dataset folder names")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ClikaError(f"{path}:{line}: invalid UTF-8 (byte {e.start})",
                         fix="re-save the file as UTF-8") from None
    rows = [(i, parse_jsonl_line(path, i, line)) for i, line in enumerate(text.splitlines(), start=1)
            if line.strip()]
    if not rows and not allow_empty:
        raise ClikaError(f"{path}: file is empty", fix="regenerate it or remove it from the run")
    return rows


def parse_jsonl_line(path: str | Path, i: int, line: str) -> dict[str, Any]:
    """One JSON object of line `i` of `path` (the error names the file and line)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ClikaError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})",
                         fix="repair or remove that line (one JSON object per line)") from None
    if not isinstance(row, dict):
        raise ClikaError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}",
                         fix="write one JSON object per line")
    return row


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
