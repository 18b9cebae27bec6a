"""The cached tokenization step: sources -> token shards on disk, keyed by tokenizer + source + processing.

Runs before any process group exists (`python train.py task=prepare` or at the start of `train`), so
distributed jobs only memory-map finished files and never tokenize under a collective timeout.

A source is read as a stream of chunks (`sources.plan_chunks`: ~16 MB of a JSONL / text file, one parquet row
group; HF datasets and `limit`ed sources in record batches); `data.num_proc` worker processes each read,
tokenize and write one chunk as a shard (`NNNNN.ids.npy`, sft also `.labels.npy` / `.lengths.npy`, then
`NNNNN.json`, the shard's completion mark). The shards go into `tokenized/.<name>-<key>.partial/`; a killed
prepare resumes there at the first unfinished shard. When all are done, `meta.json` is written and the folder is
renamed to `tokenized/<name>-<key>/` in one step, so a cache entry is whole or absent. Training memory-maps the
shards (`np.load(mmap_mode="r")`): every rank maps the same files and holds only the pages it reads.

pt: the global token stream is the shards in order; block i is stream[i*B:(i+1)*B] (a block may span two
shards); `pack_remainder=wrap` adds a `tail` shard holding the tokens that complete the last block. Blocks are
token for token those of `processing.pack_pt` on the whole corpus.

Why plain .npy shards and not `datasets` (Dataset.from_generator + .map(num_proc) + Arrow files): not measured
against it (bench/prepare_bench.py measures this path only); chosen because Arrow would write the raw text once
more as a dataset before the parallel map, cutting the global stream into blocks needs a second pass (a batched
map packs per batch, which changes the blocks and so the cache's content), and its rows come back as Python
lists; a flat int32 .npy is the block layout itself, memory-mapped with no conversion, and a shard per chunk is
the unit of resume.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from clika.util.atomic import atomic_file, fsync_dir
from clika.util.errors import ClikaError
from clika.train.data.processing import check_remainder, encode_sft_batch, n_blocks, pt_stream
from clika.train.data import sources
from clika.train.data.sources import (Chunk, SourceSpec, check_unchanged, chunk_records, iter_records,
                                      no_records, plan_chunks, resolved)

try:
    import fcntl
except ImportError:  # not POSIX: concurrent prepares of one source both tokenize (harmless, as before)
    fcntl = None

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK_RECORDS = 20_000  # records per shard of a source read upstream (HF datasets, `limit`)
BATCH_DOCS = 1_000  # documents per tokenizer call (bounds a worker's Python lists)
LAYOUT = 2  # version of the shard layout in meta.json


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a SLURM / cgroup allocation, not the node's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_num_proc(num_proc: int | None) -> int:
    """`data.num_proc`: null -> the CPUs available; above them -> a warning, then the available count."""
    cpus = available_cpus()
    if num_proc is None:
        return cpus
    if int(num_proc) < 1:
        raise ClikaError(f"data.num_proc: must be >= 1 (got {num_proc})",
                         fix=f"e.g. data.num_proc={cpus}, or data.num_proc=null for the CPUs available")
    if int(num_proc) > cpus:
        log.warning("data.num_proc=%d is above the %d CPU(s) this process may use: using %d", int(num_proc), cpus,
                    cpus)
        return cpus
    return int(num_proc)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    desc = backend.to_str() if backend is not None else json.dumps(
        [type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer)])
    desc += json.dumps([tokenizer.bos_token, tokenizer.eos_token, getattr(tokenizer, "chat_template", None)])
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


def cache_key(spec: SourceSpec, tokenizer, processing: dict[str, Any]) -> str:
    relevant = {k: processing.get(k, "wrap") for k in (("block_size", "pack_remainder") if spec.schema == "pt"
                                          else ("template", "max_length", "train_on_prompt"))}
    blob = json.dumps([CACHE_VERSION, tokenizer_fingerprint(tokenizer), spec.fingerprint(), relevant],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ---- reading a finished entry ----

def _load(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


class Tokenized:
    """One prepared source, memory-mapped: items are pt blocks or sft examples (ids + labels).

    Pickles as its folder (a DataLoader worker started by spawn maps the files again instead of copying them).
    """

    def __init__(self, name: str, lang: str, schema: str, path: str | Path):
        self.name, self.lang, self.schema, self.path = name, lang, schema, Path(path)
        meta = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        self.stats: dict[str, Any] = {**meta["stats"], "cache": str(self.path)}
        files = [s["file"] for s in meta["shards"]]
        self._ids = [_load(self.path / f"{f}.ids.npy") for f in files]
        self._labels = ([_load(self.path / f"{f}.labels.npy") for f in files] if schema == "sft" else self._ids)
        self._starts = np.concatenate([[0], np.cumsum([len(a) for a in self._ids])]).astype(np.int64)
        # pt blocks are all block_size tokens: item i is [i * B, (i + 1) * B), no per-item array in memory
        self.block_size: int | None = int(meta["block_size"]) if schema == "pt" else None
        if self.block_size is not None:
            self._offsets, self._items = None, int(meta["items"])
            self._end = self._items * self.block_size
        else:
            self._offsets = _load(self.path / "offsets.npy")
            self._items = len(self._offsets) - 1
            self._end = int(self._offsets[-1]) if self._items > 0 else 0

    def __reduce__(self):
        return Tokenized, (self.name, self.lang, self.schema, self.path)

    def __len__(self) -> int:
        return self._items

    @property
    def offsets(self) -> np.ndarray:
        """Item i's tokens are [offsets[i], offsets[i + 1]) (pt: built on demand, 8 bytes an item)."""
        if self._offsets is None:
            return np.arange(self._items + 1, dtype=np.int64) * self.block_size
        return self._offsets

    def lengths(self) -> np.ndarray:
        """Tokens per item (pt: built on demand; `block_size` says they are all that)."""
        if self._offsets is None:
            return np.full(self._items, self.block_size, np.int64)
        return np.diff(self._offsets)

    def _span(self, shards: list[np.ndarray], a: int, b: int) -> np.ndarray:
        s = int(np.searchsorted(self._starts, a, side="right")) - 1
        if b <= self._starts[s + 1]:  # within one shard: a view of the mapped file
            return shards[s][a - self._starts[s]: b - self._starts[s]]
        parts = []
        while a < b:
            hi = min(b, int(self._starts[s + 1]))
            parts.append(shards[s][a - self._starts[s]: hi - self._starts[s]])
            a, s = hi, s + 1
        return np.concatenate(parts)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._offsets is None:
            i = int(i)
            if not 0 <= i < self._items:
                raise IndexError(f"item {i} out of range for {self._items} blocks")
            a, b = i * self.block_size, (i + 1) * self.block_size
        else:
            a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        ids = self._span(self._ids, a, b)
        return ids, (ids if self.schema == "pt" else self._span(self._labels, a, b))

    @property
    def ids(self) -> np.ndarray:
        """Every item's ids, concatenated (a copy unless there is one shard: for small sources and tests)."""
        return self._span(self._ids, 0, self._end) if len(self) else np.zeros(0, np.int32)

    @property
    def labels(self) -> np.ndarray:
        return self._span(self._labels, 0, self._end) if len(self) else np.zeros(0, np.int32)


# ---- writing: one worker task per chunk ----

_TOKENIZER = None


def _init_worker(tokenizer) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer


def _save(path: Path, array: np.ndarray) -> None:
    """np.save through Python's file write (np.save's tofile reports a full disk with no errno)."""
    array = np.ascontiguousarray(array)
    with atomic_file(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        f.write(array.data)


def _encode(records: list[dict[str, Any]], tokenizer, schema: str, processing: dict[str, Any]
            ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """A chunk's arrays and its additive stats."""
    batches = [records[k:k + BATCH_DOCS] for k in range(0, len(records), BATCH_DOCS)]
    if schema == "pt":
        ids = np.concatenate([np.zeros(0, np.int32)] + [pt_stream([r["text"] for r in b], tokenizer)
                                                        for b in batches])
        return {"ids": ids}, {"records": len(records), "tokens": len(ids)}
    pairs = [p for b in batches for p in encode_sft_batch(b, tokenizer, processing["template"],
                                                          processing["max_length"], processing["train_on_prompt"])]
    # An example truncated before its response has no loss tokens; a batch of only such examples gives NaN.
    kept = [p for p in pairs if any(t != -100 for t in p[1])]
    lengths = np.fromiter((len(p[0]) for p in kept), dtype=np.int64, count=len(kept))
    ids = np.fromiter((t for p in kept for t in p[0]), dtype=np.int32, count=int(lengths.sum()))
    labels = np.fromiter((t for p in kept for t in p[1]), dtype=np.int32, count=int(lengths.sum()))
    return ({"ids": ids, "labels": labels, "lengths": lengths},
            {"records": len(records), "tokens": int(lengths.sum()), "response_tokens": int((labels != -100).sum()),
             "truncated": int((lengths >= processing["max_length"]).sum()), "dropped_no_response": len(pairs) - len(kept)})


def _write_shard(index: int, chunk: Chunk, spec: SourceSpec, processing: dict[str, Any], work: Path,
                 tokenizer=None) -> dict[str, Any]:
    """Read, tokenize and write one shard; returns its stats, or the error to raise in the main process."""
    t0 = time.perf_counter()
    try:
        records = list(chunk_records(spec, chunk))
        arrays, stats = _encode(records, tokenizer or _TOKENIZER, spec.schema, processing)
        stats["source_bytes"] = _source_bytes(spec, chunk, records)
        for key, a in arrays.items():
            _save(work / f"{index:05d}.{key}.npy", a)
        with atomic_file(work / f"{index:05d}.json", "w") as f:  # the shard's completion mark, written last
            json.dump(stats, f)
        return {"index": index, "stats": stats, "seconds": time.perf_counter() - t0}
    except ClikaError as e:
        return {"index": index, "error": str(e).split(" — fix: ")[0], "fix": e.fix}
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return {"index": index, "disk_full": str(e.filename or work)}
        raise


def _source_bytes(spec: SourceSpec, chunk: Chunk, records: list[dict[str, Any]]) -> int:
    """Bytes of the source a chunk covers (parquet: the row group uncompressed; upstream rows: as JSON)."""
    if chunk.file is None:
        return sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in records)
    if spec.format == "parquet":
        return pq.ParquetFile(chunk.file).metadata.row_group(chunk.start).total_byte_size
    return chunk.end - chunk.start


class _DiskFull(ClikaError):
    """The cache's disk filled up: the finished shards are kept for the next run."""


# ---- the prepare ----

@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One process prepares a source; the others (ranks of one node) wait, then map its files."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except OSError:  # a filesystem without flock: concurrent prepares write identical shards
                pass
        yield


def _pool(num_proc: int, tokenizer) -> ProcessPoolExecutor:
    """Workers from a fork server (no fork of a threaded process), which imports this module and the tokenizer's
    once for all of them."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__, type(tokenizer).__module__])
    return ProcessPoolExecutor(num_proc, mp_context=ctx, initializer=_init_worker, initargs=(tokenizer,))


def _done(work: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for p in work.glob("[0-9][0-9][0-9][0-9][0-9].json"):
        try:
            out[int(p.stem)] = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
    return out


def _disk_full(path: str, cache_dir: Path) -> ClikaError:
    free = shutil.disk_usage(cache_dir).free if cache_dir.exists() else 0
    return _DiskFull(f"data.cache_dir: no space left on device while writing {path} ({free >> 20} MB free)",
                      fix=f"free space on {cache_dir} or set data.cache_dir to a larger disk, then run again "
                          "(the finished shards are kept and reused)")


class _Progress:
    """tqdm over the source's bytes (ETA) with tokens/s; a bar on a terminal, a line every 30 s in a job log."""

    def __init__(self, name: str, total_bytes: int | None, done_bytes: int):
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total_bytes, initial=done_bytes, unit="B", unit_scale=True, desc=f"prepare {name}",
                        mininterval=0.5 if tty else 30, file=sys.stderr, dynamic_ncols=True)
        self.t0, self.tokens = time.perf_counter(), 0

    def update(self, stats: dict[str, Any]) -> None:
        self.tokens += stats["tokens"]
        rate = self.tokens / max(1e-9, time.perf_counter() - self.t0)
        self.bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
        self.bar.update(stats["source_bytes"])

    def close(self) -> None:
        self.bar.close()


def _streamed_chunks(spec: SourceSpec, cache_dir: Path) -> Iterator[Chunk]:
    records = iter_records(spec, cache_dir)
    while batch := tuple(islice(records, CHUNK_RECORDS)):
        yield Chunk(rows=batch)


def _run(spec: SourceSpec, tokenizer, processing: dict[str, Any], work: Path, chunks: Iterator[Chunk],
         total_bytes: int | None, num_proc: int) -> dict[int, dict[str, Any]]:
    """Write every unfinished shard; returns every shard's stats by index."""
    done = _done(work)
    progress = _Progress(spec.name, total_bytes, sum(s["source_bytes"] for s in done.values()))
    pending = ((i, c) for i, c in enumerate(chunks) if i not in done)
    first_two = list(islice(pending, 2))  # one chunk left: no pool to start
    pending = chain(first_two, pending)

    def finish(r: dict[str, Any]) -> None:
        if "error" in r:
            raise ClikaError(r["error"], fix=r["fix"])
        if "disk_full" in r:
            raise _disk_full(r["disk_full"], work.parent)
        done[r["index"]] = r["stats"]
        progress.update(r["stats"])

    try:
        if num_proc <= 1 or len(first_two) < 2:
            for i, c in pending:
                finish(_write_shard(i, c, spec, processing, work, tokenizer))
            return done
        pool = _pool(num_proc, tokenizer)
        futures: set[Future] = set()
        try:
            for i, c in pending:  # at most 2 chunks per worker in flight: the source is never read ahead
                futures.add(pool.submit(_write_shard, i, c, spec, processing, work))
                while len(futures) >= 2 * num_proc:
                    ready, futures = wait(futures, return_when=FIRST_COMPLETED)
                    for f in ready:
                        finish(f.result())
            for f in futures:
                finish(f.result())
        except BrokenProcessPool:
            raise ClikaError(f"data.mix.sources.{spec.name}: a tokenizer worker died (out of memory?)",
                             fix="lower data.num_proc, or give the job more memory") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return done
    finally:
        progress.close()


def _finish(spec: SourceSpec, processing: dict[str, Any], work: Path, done: dict[int, dict[str, Any]]) -> None:
    """Totals, the pt tail / sft offsets and meta.json into `work` (the caller renames it into place)."""
    order = sorted(done)
    if not order:
        raise no_records(spec)
    if order != list(range(len(order))):
        raise ClikaError(f"data.mix.sources.{spec.name}: shards {sorted(set(range(max(order) + 1)) - set(order))} "
                         f"missing in {work}", fix=f"delete {work} and run again")
    total = {k: sum(done[i][k] for i in order) for k in done[order[0]] if isinstance(done[order[0]][k], int)}
    if total["records"] == 0:
        raise no_records(spec)
    shards = [{"file": f"{i:05d}", "tokens": done[i]["tokens"], "records": done[i]["records"]} for i in order]
    meta: dict[str, Any] = {"layout": LAYOUT, "schema": spec.schema, "shards": shards}
    if spec.schema == "pt":
        B, remainder = int(processing["block_size"]), processing.get("pack_remainder", "wrap")
        items, fill = n_blocks(total["tokens"], B, remainder)
        if fill:  # the stream's first tokens, repeated cyclically (np.resize), complete the last block
            first, need = [], fill
            for s in shards:
                if need <= 0:
                    break
                first.append(np.array(np.load(work / f"{s['file']}.ids.npy", mmap_mode="r")[:need]))
                need -= len(first[-1])
            _save(work / "tail.ids.npy", np.resize(np.concatenate(first), fill))
            shards.append({"file": "tail", "tokens": fill, "records": 0})
        kept = items * B - fill
        stats = {"records": total["records"], "tokens": total["tokens"], "kept_tokens": kept,
                 "repeated_tokens": fill, "packing_efficiency": kept / max(1, total["tokens"]), "padding_tokens": 0}
        meta.update(block_size=B, items=items)
    else:
        if total["tokens"] == 0:
            raise ClikaError(f"data source '{spec.name}': every example loses its response at data.max_length="
                             f"{processing['max_length']} tokens (prompt + template are longer)",
                             fix="raise data.max_length (e.g. data.max_length=256) or use a shorter data.template")
        lengths = np.concatenate([np.load(work / f"{s['file']}.lengths.npy") for s in shards])
        _save(work / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        stats = {k: total[k] for k in ("records", "tokens", "response_tokens", "truncated", "dropped_no_response")}
        meta["items"] = len(lengths)
    stats.update(shards=len(order), source_bytes=total["source_bytes"],
                 bytes=sum(p.stat().st_size for p in work.glob("*.npy")))
    meta["stats"] = stats
    with atomic_file(work / "meta.json", "w", fsync=True) as f:
        json.dump(meta, f, indent=1)


def _build(spec: SourceSpec, tokenizer, processing: dict[str, Any], cache_dir: Path, final: Path, num_proc: int,
           chunk_bytes: int) -> None:
    work = final.parent / f".{final.name}.partial"
    src = resolved(spec, cache_dir)
    planned = None if src.format == "hf" or src.limit is not None else plan_chunks(src, chunk_bytes)
    plan = {"layout": LAYOUT, "chunks": [c.plan_id() for c in planned] if planned is not None
            else ["records", CHUNK_RECORDS]}
    plan_file = work / "plan.json"
    if work.exists() and (not plan_file.exists() or json.loads(plan_file.read_text(encoding="utf-8")) != plan):
        shutil.rmtree(work)  # another cut of the source (other chunk size): its shards do not line up
    try:
        if not plan_file.exists():
            with atomic_file(plan_file, "w") as f:
                json.dump(plan, f)
        chunks = iter(planned) if planned is not None else _streamed_chunks(src, cache_dir)
        total_bytes = sum(c.end - c.start for c in planned) if planned and src.format != "parquet" else None
        done = _run(src, tokenizer, processing, work, chunks, total_bytes, num_proc)
        if planned is not None:
            check_unchanged(src, planned)  # a file changed after its chunks were read
        _finish(src, processing, work, done)
    except _DiskFull:
        raise
    except ClikaError:
        shutil.rmtree(work, ignore_errors=True)  # bad or changed data: these shards will never be reused
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(str(e.filename or work), cache_dir) from None
        raise
    try:
        os.replace(work, final)
    except OSError:  # another process (no flock on this filesystem) finished it first
        if not (final / "meta.json").exists():
            raise
        shutil.rmtree(work, ignore_errors=True)
    fsync_dir(final.parent)


def prepare_source(spec: SourceSpec, tokenizer, processing: dict[str, Any], cache_dir: str | Path,
                   num_proc: int | None = None, chunk_bytes: int | None = None) -> Tokenized:
    """Map the cached shards of a source, tokenizing it first (in `num_proc` workers, null: the CPUs available)
    when they are missing."""
    cache_dir, chunk_bytes = Path(cache_dir), chunk_bytes or sources.CHUNK_BYTES
    if spec.schema == "pt":
        check_remainder(processing.get("pack_remainder", "wrap"))
    final = cache_dir / "tokenized" / f"{spec.name}-{cache_key(spec, tokenizer, processing)}"
    if not (final / "meta.json").exists():
        with _exclusive(final.parent / f".{final.name}.lock"):
            if not (final / "meta.json").exists():
                _build(spec, tokenizer, processing, cache_dir, final, resolve_num_proc(num_proc), chunk_bytes)
    return Tokenized(spec.name, spec.lang, spec.schema, final)
