"""The one source of truth for generated worlds: their parameters, defaults and cache key.

Training corpora (the embedded `fictional_pt` / `fictional_sft` sources) and the probes that test them (the
official layout written into the cache) are both derived from `world_params(...)` and keyed by `world_key`,
which hashes the generator's source (names, sentences, world, records, layout) with the parameters: edit a name
table and every cache built from the old world is rebuilt, on both sides.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from importlib import resources
from pathlib import Path
from typing import Mapping

from clika.util.atomic import atomic_dir
from clika.util.cache import cache_root
from clika.util.errors import ClikaError
from clika.fictional import layout, names, records, texts, world
from clika.fictional.records import render_corpus, render_name_pairs, render_sft
from clika.fictional.texts import DIRECTIONS
from clika.fictional.world import make_world
from clika.util.jsonl import write_json, write_jsonl
from clika.util.languages import LANGS, NON_EN

# The world of the embedded fictional_* data and of the probes (conf/fictional/default.yaml mirrors these).
WORLD_DEFAULTS = {"seed": 0, "continents": 8, "cities_per_continent": 10, "name_style": "word",
                  "translate_directions": list(DIRECTIONS)}
CORPUS_KINDS = ("fictional_pt", "fictional_names", "fictional_sft")


def generator_version() -> str:
    """Hash of every module and table that shapes a generated world and its records."""
    src = "".join(inspect.getsource(m) for m in (names, texts, world, records, layout))
    tables = resources.files("clika").joinpath("assets/fictional/spelling.json").read_text(encoding="utf-8")
    return hashlib.sha256((src + tables).encode()).hexdigest()[:12]


def world_params(params: Mapping | None = None) -> dict:
    """Normalised generator parameters; missing keys take WORLD_DEFAULTS (`cities` is accepted for
    `cities_per_continent`)."""
    w = dict(params or {})
    if "cities" in w and "cities_per_continent" not in w:
        w["cities_per_continent"] = w.pop("cities")
    unknown = sorted(set(w) - set(WORLD_DEFAULTS))
    if unknown:
        raise ClikaError(f"fictional.world: unknown key(s) {unknown}", fix=f"use {list(WORLD_DEFAULTS)}")
    out = {**WORLD_DEFAULTS, **{k: v for k, v in w.items() if v is not None}}
    out["translate_directions"] = list(out["translate_directions"])
    for k in ("seed", "continents", "cities_per_continent"):
        out[k] = int(out[k])
    return out


def world_key(params: Mapping | None = None) -> str:
    return hashlib.sha256(json.dumps([generator_version(), world_params(params)], sort_keys=True).encode()
                          ).hexdigest()[:16]


def build_world(params: Mapping | None = None) -> world.World:
    p = world_params(params)
    return make_world(p["seed"], p["continents"], p["cities_per_continent"], p["name_style"])


def generated_root(params: Mapping | None = None, cache_dir: str | Path | None = None) -> Path:
    """The world's official layout (all languages), written once into `<cache>/fictional/<world_key>`."""
    p = world_params(params)
    out = (Path(cache_dir) if cache_dir is not None else cache_root() / "fictional") / world_key(p)
    if not (out / "test" / "target" / "testEN.jsonl").is_file():
        with atomic_dir(out) as tmp:
            layout.write_official_layout(build_world(p), tmp, NON_EN, p["translate_directions"], p["seed"])
            write_json(tmp / "world.json", p)
    return out


def corpus_file(kind: str, lang: str, params: Mapping | None = None, cache_dir: str | Path | None = None) -> Path:
    """The embedded training corpus `kind` in `lang` as JSONL, written once into `<cache>/embedded/<world_key>/`:
    `fictional_pt`: {"text"} fact sentences (every fact in English, type-0 facts in other languages),
    `fictional_names`: {"text"} name correspondences X <-> English written in X (X != en),
    `fictional_sft`: Alpaca records as in train/<lang>."""
    if kind not in CORPUS_KINDS:
        raise ClikaError(f"embedded source kind '{kind}' is unknown", fix=f"use one of {CORPUS_KINDS}")
    if lang not in LANGS:
        raise ClikaError(f"embedded source language '{lang}' is unknown", fix=f"use one of {LANGS}")
    if kind == "fictional_names" and lang == "en":
        raise ClikaError("embedded source fictional_names: names are paired with English, so lang must not be en",
                         fix="use one of " + " ".join(NON_EN))
    p = world_params(params)
    base = Path(cache_dir) if cache_dir is not None else cache_root()
    out = base / "embedded" / world_key(p) / f"{kind}.{lang}.jsonl"
    if not out.exists():
        w = build_world(p)
        if kind == "fictional_sft":
            rows = render_sft(w, lang, translate_directions=p["translate_directions"], seed=p["seed"])
        else:
            render = render_corpus if kind == "fictional_pt" else render_name_pairs
            rows = [{"text": t} for t in render(w, lang, seed=p["seed"])]
        write_jsonl(out, rows)
    return out
