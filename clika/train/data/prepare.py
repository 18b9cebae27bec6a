"""The cached tokenization step: sources -> token arrays on disk, keyed by tokenizer + source + processing.

Runs before any process group exists (`python train.py task=prepare` or at the start of `train`), so
distributed jobs only memory-map finished files and never tokenize under a collective timeout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clika.util.atomic import atomic_file
from clika.util.errors import ClikaError
from clika.train.data.processing import encode_sft, pack_pt
from clika.train.data.sources import SourceSpec, load_records

CACHE_VERSION = 1


@dataclass
class Tokenized:
    """One source after tokenization: items are pt blocks or sft examples (ids + labels)."""

    name: str
    lang: str
    schema: str
    ids: np.ndarray  # flat int32
    labels: np.ndarray  # flat int32 (pt: same as ids)
    offsets: np.ndarray  # int64 [n_items + 1]
    stats: dict[str, Any]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.labels[a:b]


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


def _tokenize(spec: SourceSpec, tokenizer, processing: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    records = load_records(spec, cache_dir)
    if spec.schema == "pt":
        packed = pack_pt([r["text"] for r in records], tokenizer, processing["block_size"],
                         processing.get("pack_remainder", "wrap"))
        ids = packed.blocks.reshape(-1)
        offsets = np.arange(len(packed.blocks) + 1, dtype=np.int64) * processing["block_size"]
        stats = {"records": len(records), "tokens": int(packed.total_tokens), "kept_tokens": packed.kept_tokens,
                 "repeated_tokens": packed.repeated_tokens, "packing_efficiency": packed.efficiency,
                 "padding_tokens": 0}
        return {"ids": ids, "labels": ids, "offsets": offsets, "stats": stats}
    pairs = [encode_sft(r, tokenizer, processing["template"], processing["max_length"],
                        processing["train_on_prompt"]) for r in records]
    # An example truncated before its response has no loss tokens; a batch of only such examples gives NaN.
    kept = [p for p in pairs if any(t != -100 for t in p[1])]
    if not kept:
        raise ClikaError(f"data source '{spec.name}': every example loses its response at data.max_length="
                         f"{processing['max_length']} tokens (prompt + template are longer)",
                         fix="raise data.max_length (e.g. data.max_length=256) or use a shorter data.template")
    dropped, pairs = len(pairs) - len(kept), kept
    lengths = np.array([len(p[0]) for p in pairs], dtype=np.int64)
    ids = np.fromiter((t for p in pairs for t in p[0]), dtype=np.int32, count=int(lengths.sum()))
    labels = np.fromiter((t for p in pairs for t in p[1]), dtype=np.int32, count=int(lengths.sum()))
    stats = {"records": len(records), "tokens": int(lengths.sum()),
             "response_tokens": int((labels != -100).sum()), "truncated": int((lengths >= processing["max_length"]).sum()),
             "dropped_no_response": dropped}
    return {"ids": ids, "labels": labels, "offsets": np.concatenate([[0], np.cumsum(lengths)]), "stats": stats}


def prepare_source(spec: SourceSpec, tokenizer, processing: dict[str, Any], cache_dir: str | Path) -> Tokenized:
    """Load from the cache, or tokenize and write it atomically (concurrent writers are harmless)."""
    cache_dir = Path(cache_dir)
    path = cache_dir / "tokenized" / f"{spec.name}-{cache_key(spec, tokenizer, processing)}.npz"
    if not path.exists():
        arrays = _tokenize(spec, tokenizer, processing, cache_dir)
        with atomic_file(path, "wb") as f:
            np.savez(f, ids=arrays["ids"], labels=arrays["labels"], offsets=arrays["offsets"],
                     stats=np.array(json.dumps(arrays["stats"])))
    with np.load(path) as z:
        return Tokenized(spec.name, spec.lang, spec.schema, z["ids"], z["labels"], z["offsets"],
                         {**json.loads(str(z["stats"])), "cache": str(path)})
