"""Embedded corpora: text and instructions about the fictional world, rendered in each language.

Generated once into the data cache as JSONL (keyed by generator source, world seed, kind and language),
so every preset runs with no download. Falls back to the project's own sentences (clika/assets/corpus)
when the fictional-world generator is not available.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import clika.fictional as fictional
from clika.errors import ClikaError
from clika.fictional import make_world, render_corpus, render_sft
from clika.jsonl import write_jsonl
from clika.languages import LANGS

KINDS = ("fictional_pt", "fictional_sft")


def _generator_version() -> str:
    src = inspect.getsource(fictional)
    return hashlib.sha256(src.encode()).hexdigest()[:12]


def _render(kind: str, lang: str, seed: int) -> list[dict]:
    world = make_world(seed=seed)
    if kind == "fictional_pt":
        return [{"text": t} for t in render_corpus(world, lang)]
    return [dict(r) for r in render_sft(world, lang)]


def embedded_file(kind: str, lang: str, cache_dir: str | Path, seed: int = 0) -> Path:
    """Path of the cached JSONL for (kind, lang), generating it atomically on first use."""
    if kind not in KINDS:
        raise ClikaError(f"embedded source kind '{kind}' is unknown", fix=f"use one of {KINDS}")
    if lang not in LANGS:
        raise ClikaError(f"embedded source language '{lang}' is unknown", fix=f"use one of {LANGS}")
    out = Path(cache_dir) / "embedded" / f"{_generator_version()}-s{seed}" / f"{kind}.{lang}.jsonl"
    if not out.exists():
        rows = _render(kind, lang, seed)
        if not rows:
            raise ClikaError(f"embedded {kind} has no records for '{lang}'", fix="check clika.fictional")
        write_jsonl(out, rows)
    return out
