"""Data sources as config: local JSONL / text / parquet files, HF dataset ids, or the embedded corpora.

Every source yields records in one canonical schema so the processing step never looks at column names:
pt  -> {"text": str}
sft -> {"instruction": str, "input": str, "output": str}  or  {"messages": [{"role", "content"}, ...]}
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow
import pyarrow.parquet as pq

from clika.util.errors import ClikaError
from clika.fictional.generated import corpus_file, world_key
from clika.util.jsonl import parse_jsonl_line

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
CHUNK_BYTES = 16 << 20  # a prepare's unit of work and of resume: this much of a line file, or one parquet row group


@dataclass(frozen=True)
class Chunk:
    """A part of a source that one worker reads alone: bytes [start, end) of a line file (cut after a newline),
    parquet row group `start`, or `rows` already read upstream (HF datasets, sources with `limit`)."""

    file: str | None = None
    start: int = 0
    end: int = 0
    size: int = 0  # the file's size and mtime when planned: a file that changes under a prepare is refused
    mtime_ns: int = 0
    first_record: int = 0  # parquet: records of the file before this row group
    rows: tuple[dict[str, Any], ...] = ()

    def plan_id(self) -> list:
        return [self.file, self.start, self.end, self.size, self.mtime_ns]


def resolved(spec: SourceSpec, cache_dir: str | Path) -> SourceSpec:
    """An embedded source as the JSONL file it is generated into (written once); others unchanged."""
    if spec.format != "embedded":
        return spec
    return SourceSpec(**{**asdict(spec), "format": "jsonl",
                         "path": str(corpus_file(spec.path, spec.lang, spec.world, cache_dir))})


def _unreadable_parquet(spec: SourceSpec, path: str, e: Exception) -> ClikaError:
    first = (str(e).splitlines() or [type(e).__name__])[0][:200]
    return ClikaError(f"data.mix.sources.{spec.name}: {path}: not a readable parquet file ({first})",
                      fix="re-write it (e.g. pandas.DataFrame.to_parquet) or remove it from the path / glob")


def _changed(spec: SourceSpec, path: str, what: str) -> ClikaError:
    return ClikaError(f"data.mix.sources.{spec.name}: {path} {what} while the source was being prepared",
                      fix="let whatever writes it finish (or restore it), then run again: the finished shards of "
                          "an unchanged file are reused")


def plan_chunks(spec: SourceSpec, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """The chunks of a local source (format jsonl / text / parquet), in record order."""
    out: list[Chunk] = []
    for f in spec.files():
        st = Path(f).stat()
        if spec.format == "jsonl" and st.st_size == 0:
            raise ClikaError(f"{f}: file is empty", fix="regenerate it or remove it from the run")
        if spec.format == "parquet":
            try:
                meta = pq.ParquetFile(f).metadata
            except (pyarrow.ArrowException, OSError) as e:
                raise _unreadable_parquet(spec, f, e) from None
            first = 0
            for g in range(meta.num_row_groups):
                out.append(Chunk(f, g, g + 1, st.st_size, st.st_mtime_ns, first))
                first += meta.row_group(g).num_rows
            continue
        with open(f, "rb") as fh:
            start = 0
            while True:
                fh.seek(start + chunk_bytes)
                fh.readline()  # to the end of the line the cut falls in
                end = min(fh.tell(), st.st_size)
                out.append(Chunk(f, start, end, st.st_size, st.st_mtime_ns))
                if end >= st.st_size:
                    break
                start = end
    return out


def _check_unchanged(spec: SourceSpec, chunk: Chunk, st) -> None:
    if (st.st_size, st.st_mtime_ns) != (chunk.size, chunk.mtime_ns):
        what = "was truncated" if st.st_size < chunk.size else "changed"
        raise _changed(spec, chunk.file, f"{what} ({chunk.size} -> {st.st_size} bytes)")


def check_unchanged(spec: SourceSpec, chunks: list[Chunk]) -> None:
    """Every planned file still has the size and mtime it had when it was planned."""
    for c in {c.file: c for c in chunks if c.file}.values():
        try:
            st = Path(c.file).stat()
        except FileNotFoundError:
            raise _changed(spec, c.file, "vanished") from None
        _check_unchanged(spec, c, st)


def _lines_before(path: str, start: int) -> int:
    """Lines (as str.splitlines counts them) before byte `start`, which follows a newline."""
    with open(path, "rb") as fh:
        return len(fh.read(start).decode("utf-8", errors="replace").splitlines())


def _line_records(spec: SourceSpec, c: Chunk) -> Iterator[dict[str, Any]]:
    try:
        with open(c.file, "rb") as fh:
            _check_unchanged(spec, c, os.fstat(fh.fileno()))
            fh.seek(c.start)
            data = fh.read(c.end - c.start)
    except FileNotFoundError:
        raise _changed(spec, c.file, "vanished") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        with open(c.file, "rb") as fh:
            line = fh.read(c.start).count(b"\n") + data[: e.start].count(b"\n") + 1
        where = f"data.mix.sources.{spec.name}: {c.file}" if spec.format == "text" else c.file
        raise ClikaError(f"{where}:{line}: invalid UTF-8 (byte {c.start + e.start})",
                         fix="re-save the file as UTF-8") from None

    def record(i: int, line: str) -> dict[str, Any]:
        row = (parse_jsonl_line(c.file, i, line) if spec.format == "jsonl" else {spec.columns["text"]: line})
        return _canonical(row, spec, f"{c.file}:{i}")

    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield record(i, line)
            except ClikaError:  # name the line of the file, not of the chunk (counted only now)
                record(_lines_before(c.file, c.start) + i, line)
                raise


def _parquet_records(spec: SourceSpec, c: Chunk) -> Iterator[dict[str, Any]]:
    try:
        with open(c.file, "rb") as fh:
            _check_unchanged(spec, c, os.fstat(fh.fileno()))
            table = pq.ParquetFile(fh).read_row_group(c.start)
    except FileNotFoundError:
        raise _changed(spec, c.file, "vanished") from None
    except (pyarrow.ArrowException, OSError) as e:
        raise _unreadable_parquet(spec, c.file, e) from None
    for k, row in enumerate(table.to_pylist(), start=c.first_record + 1):
        yield _canonical(row, spec, f"{c.file} record {k}")


def chunk_records(spec: SourceSpec, chunk: Chunk) -> Iterator[dict[str, Any]]:
    """The records of one chunk in the canonical schema (a resolved spec: no `embedded`)."""
    if chunk.file is None:
        return iter(chunk.rows)
    return _parquet_records(spec, chunk) if spec.format == "parquet" else _line_records(spec, chunk)


def _hf_records(spec: SourceSpec) -> Iterator[dict[str, Any]]:
    import datasets  # deferred: 0.9 s of `python -X importtime` (after torch), only for format: hf sources

    try:
        ds = datasets.load_dataset(spec.path, spec.hf_config, split=spec.split, streaming=spec.streaming)
    except Exception as e:  # network, missing config, ...
        raise ClikaError(f"data.mix.sources.{spec.name}: cannot load HF dataset '{spec.path}' ({e})",
                         fix="check path/hf_config/split; offline machines need a local copy (format: jsonl)")
    for k, row in enumerate(ds, start=1):
        yield _canonical(row, spec, f"HF dataset '{spec.path}' record {k}")


def iter_records(spec: SourceSpec, cache_dir: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[dict[str, Any]]:
    """Every record of a source in the canonical schema, read as a stream (HF streaming stops after `limit`)."""
    spec = resolved(spec, cache_dir)
    if spec.format == "hf":
        rows: Iterable[dict[str, Any]] = _hf_records(spec)
    else:
        rows = (r for c in plan_chunks(spec, chunk_bytes) for r in chunk_records(spec, c))
    return islice(rows, spec.limit) if spec.limit is not None else iter(rows)


def no_records(spec: SourceSpec) -> ClikaError:
    return ClikaError(f"data.mix.sources.{spec.name}: no records", fix="check the path and the columns map")


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
    """All records of a source in the canonical schema, in one list (small sources and tests)."""
    out = list(iter_records(spec, cache_dir))
    if not out:
        raise no_records(spec)
    return out
