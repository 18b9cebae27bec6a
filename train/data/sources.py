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

from clika.errors import ClikaError
from clika.fictional.generated import corpus_file, world_key

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

    def __post_init__(self):
        where = f"data.mix.sources.{self.name}"
        if self.format not in FORMATS:
            raise ClikaError(f"{where}.format: unknown format '{self.format}'", fix=f"use one of {FORMATS}")
        if self.schema not in SCHEMAS:
            raise ClikaError(f"{where}.schema: unknown schema '{self.schema}'", fix=f"use one of {SCHEMAS}")
        if not self.path:
            raise ClikaError(f"{where}.path: missing", fix="set a file / glob, an HF dataset id or an embedded kind")
        self.columns = {**DEFAULT_COLUMNS[self.schema], **dict(self.columns or {})}

    def fingerprint(self) -> str:
        """Stable id of what this source yields (local files include size + mtime, so edits re-tokenize)."""
        d = asdict(self)
        d.pop("name")
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


def _raw_rows(spec: SourceSpec, cache_dir: Path) -> Iterator[dict[str, Any]]:
    if spec.format == "embedded":
        spec = SourceSpec(**{**asdict(spec), "format": "jsonl",
                             "path": str(corpus_file(spec.path, spec.lang, spec.world, cache_dir))})
    if spec.format == "jsonl":
        from clika.jsonl import read_jsonl

        for f in spec.files():
            yield from read_jsonl(f)
    elif spec.format == "text":
        col = spec.columns["text"]
        for f in spec.files():
            for line in Path(f).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield {col: line}
    elif spec.format == "parquet":
        import pyarrow.parquet as pq

        for f in spec.files():
            yield from pq.read_table(f).to_pylist()
    else:  # hf
        try:
            import datasets
            ds = datasets.load_dataset(spec.path, spec.hf_config, split=spec.split, streaming=spec.streaming)
        except Exception as e:  # network, missing config, ...
            raise ClikaError(f"data.mix.sources.{spec.name}: cannot load HF dataset '{spec.path}' ({e})",
                             fix="check path/hf_config/split; offline machines need a local copy (format: jsonl)")
        yield from ds


def _canonical(row: dict[str, Any], spec: SourceSpec, i: int) -> dict[str, Any]:
    cols = spec.columns
    if spec.schema == "pt":
        text = row.get(cols["text"])
        if not isinstance(text, str):
            raise ClikaError(f"data.mix.sources.{spec.name}: record {i} has no text column '{cols['text']}'",
                             fix="set columns.text to the column holding the text")
        return {"text": text}
    if isinstance(row.get(cols["messages"]), list):
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in row[cols["messages"]]]}
    if cols["instruction"] not in row or cols["output"] not in row:
        raise ClikaError(f"data.mix.sources.{spec.name}: record {i} has neither '{cols['messages']}' nor "
                         f"'{cols['instruction']}'/'{cols['output']}'",
                         fix="map the columns with columns.instruction / input / output / messages")
    return {"instruction": str(row[cols["instruction"]]), "input": str(row.get(cols["input"]) or ""),
            "output": str(row[cols["output"]])}


def load_records(spec: SourceSpec, cache_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a source in the canonical schema (HF streaming stops after `limit`)."""
    rows: Iterable = _raw_rows(spec, Path(cache_dir))
    if spec.limit is not None:
        rows = islice(rows, spec.limit)
    out = [_canonical(r, spec, i) for i, r in enumerate(rows)]
    if not out:
        raise ClikaError(f"data.mix.sources.{spec.name}: no records", fix="check the path and the columns map")
    return out
