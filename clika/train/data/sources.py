"""Data sources as config: local JSONL / text / parquet files, HF dataset ids, or the embedded corpora.

Every source yields records in one canonical schema so the processing step never looks at column names:
pt  -> {"text": str}
sft -> {"instruction": str, "input": str, "output": str}  or  {"messages": [{"role", "content"}, ...]}
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow
import pyarrow.parquet as pq

from clika.util.errors import ClikaError
from clika.fictional.generated import corpus_file, world_key
from clika.util.jsonl import read_jsonl_numbered

FORMATS = ("jsonl", "text", "parquet", "hf", "embedded")
SCHEMAS = ("pt", "sft")
# canonical field -> default column name
DEFAULT_COLUMNS = {"pt": {"text": "text"},
                   "sft": {"instruction": "instruction", "input": "input", "output": "output",
                           "messages": "messages"}}


@dataclass
class SourceSpec:
    """One corpus. `path` is a file / glob for local formats, a dataset id for `hf`, a kind for `embedded`."""

    name: str
    lang: str
    schema: str = "pt"
    format: str = "jsonl"
    path: str | None = None
    hf_config: str | None = None  # HF dataset config name (e.g. 20231101.zh)
    split: str = "train"
    streaming: bool = False  # HF only: iterate without downloading the whole dataset (use with `limit`)
    columns: dict[str, str] = field(default_factory=dict)  # canonical field -> column in the data
    limit: int | None = None  # keep the first N records
    world: dict[str, Any] = field(default_factory=dict)  # embedded only: fictional world (clika.fictional.generated)
    # The languages the records are written in, when more than `lang` (the conductivity set: English QA, X QA
    # and X<->English name pairs in one file). Token shares, validation losses and the curves' trained marks
    # then name the source `en+zh`: its tokens are not split by language.
    written_in: list[str] | None = None

    def __post_init__(self):
        where = f"data.mix.sources.{self.name}"
        if self.format not in FORMATS:
            raise ClikaError(f"{where}.format: unknown format '{self.format}'", fix=f"use one of {FORMATS}")
        if self.schema not in SCHEMAS:
            raise ClikaError(f"{where}.schema: unknown schema '{self.schema}'", fix=f"use one of {SCHEMAS}")
        if not self.path:
            raise ClikaError(f"{where}.path: missing", fix="set a file / glob, an HF dataset id or an embedded kind")
        self.columns = {**DEFAULT_COLUMNS[self.schema], **dict(self.columns or {})}
        if self.written_in is not None:
            self.written_in = [str(l) for l in self.written_in]
            if self.lang not in self.written_in:
                raise ClikaError(f"{where}.written_in: {self.written_in} does not include the source's lang "
                                 f"'{self.lang}'", fix=f"add {self.lang} to it, or drop written_in")

    @property
    def share_label(self) -> str:
        """The language label of this source's tokens: `lang`, or `en+zh` for a source written in several."""
        return "+".join(dict.fromkeys(self.written_in)) if self.written_in else self.lang

    def fingerprint(self) -> str:
        """Stable id of what this source yields (local files include size + mtime, so edits re-tokenize)."""
        d = asdict(self)
        d.pop("name")
        d.pop("written_in")  # a label for the reports: the records are the same
        if self.format == "embedded":  # the generator's version and the world's parameters
            d["world"] = world_key(self.world)
        if self.format in ("jsonl", "text", "parquet"):
            d["files"] = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in self.files()]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def files(self) -> list[str]:
        files = sorted(glob.glob(str(Path(self.path).expanduser())))
        if not files:
            raise ClikaError(f"data.mix.sources.{self.name}.path: no file matches '{self.path}'",
                             fix="point it at existing files (globs allowed) or run the generation step")
        return files


Row = tuple[str, dict[str, Any]]  # (where: "file:line", "file record N" or "HF dataset 'id' record N", record)


def _text_lines(spec: SourceSpec, path: str) -> Iterator[Row]:
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ClikaError(f"data.mix.sources.{spec.name}: {path}:{line}: invalid UTF-8 (byte {e.start})",
                         fix="re-save the file as UTF-8") from None
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"{path}:{i}", {spec.columns["text"]: line}


def _parquet_rows(spec: SourceSpec, path: str) -> Iterator[Row]:
    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ClikaError(f"data.mix.sources.{spec.name}: {path}: not a readable parquet file ({first})",
                         fix="re-write it (e.g. pandas.DataFrame.to_parquet) or remove it from the path / glob") from None
    for k, row in enumerate(table.to_pylist(), start=1):
        yield f"{path} record {k}", row


def _hf_rows(spec: SourceSpec) -> Iterator[Row]:
    import datasets  # deferred: 0.9 s of `python -X importtime` (after torch), only for format: hf sources

    try:
        ds = datasets.load_dataset(spec.path, spec.hf_config, split=spec.split, streaming=spec.streaming)
    except Exception as e:  # network, missing config, ...
        raise ClikaError(f"data.mix.sources.{spec.name}: cannot load HF dataset '{spec.path}' ({e})",
                         fix="check path/hf_config/split; offline machines need a local copy (format: jsonl)")
    for k, row in enumerate(ds, start=1):
        yield f"HF dataset '{spec.path}' record {k}", row


def _raw_rows(spec: SourceSpec, cache_dir: Path) -> Iterator[Row]:
    """Every record of the source with where it comes from (file and 1-based line or record)."""
    if spec.format == "embedded":
        spec = SourceSpec(**{**asdict(spec), "format": "jsonl",
                             "path": str(corpus_file(spec.path, spec.lang, spec.world, cache_dir))})
    if spec.format == "hf":
        yield from _hf_rows(spec)
        return
    for f in spec.files():
        if spec.format == "jsonl":
            yield from ((f"{f}:{i}", row) for i, row in read_jsonl_numbered(f, allow_empty=False))
        elif spec.format == "text":
            yield from _text_lines(spec, f)
        else:
            yield from _parquet_rows(spec, f)


def _canonical(row: dict[str, Any], spec: SourceSpec, where: str) -> dict[str, Any]:
    cols, key = spec.columns, f"data.mix.sources.{spec.name}: {where}"
    if spec.schema == "pt":
        text = row.get(cols["text"])
        if not isinstance(text, str):
            got = "" if text is None else f" (it holds {type(text).__name__}, not text)"
            raise ClikaError(f"{key}: no text column '{cols['text']}'{got}",
                             fix="set columns.text to the column holding the text")
        return {"text": text}
    messages = row.get(cols["messages"])
    if isinstance(messages, list):
        if not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise ClikaError(f"{key}: '{cols['messages']}' must be a list of {{role, content}} objects",
                             fix="repair that record or map another column with columns.messages")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if cols["instruction"] not in row or cols["output"] not in row:
        raise ClikaError(f"{key}: neither '{cols['messages']}' nor '{cols['instruction']}'/'{cols['output']}'",
                         fix="map the columns with columns.instruction / input / output / messages")
    return {"instruction": str(row[cols["instruction"]]), "input": str(row.get(cols["input"]) or ""),
            "output": str(row[cols["output"]])}


def load_records(spec: SourceSpec, cache_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a source in the canonical schema (HF streaming stops after `limit`)."""
    rows: Iterable[Row] = _raw_rows(spec, Path(cache_dir))
    if spec.limit is not None:
        rows = islice(rows, spec.limit)
    out = [_canonical(row, spec, where) for where, row in rows]
    if not out:
        raise ClikaError(f"data.mix.sources.{spec.name}: no records", fix="check the path and the columns map")
    return out
