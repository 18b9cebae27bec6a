"""Records of a world: training QA and name translations (train/<X>), tests, Translate, encyclopedia corpus."""

from __future__ import annotations

import random
from typing import Iterable

from clika.errors import ClikaError
from clika.fictional.texts import ANSWERS, CONTINENT_SENTENCES, DIRECTIONS, LANG_NAMES, NO_SPACE, QUESTIONS, TRANSLATE
from clika.fictional.world import City, World
from clika.languages import check_lang


def _tags(continent: str, city: str, type_: int) -> str:
    return f"[[continent:{continent}]][[city:{city}]][[type:{type_}]]"


def _qa(lang: str, city: City, world: World, q: int, a: int) -> dict[str, str]:
    c, k = city.names[lang], world.continent_of(city).names[lang]
    return {"prompt": QUESTIONS[lang][q].format(city=c),
            "input": "",
            "answer": ANSWERS[lang][a].format(city=c, continent=k)}


def _translation(place, src: str, tgt: str, instr_lang: str, t: int) -> dict[str, str]:
    names = LANG_NAMES[instr_lang]
    return {"prompt": TRANSLATE[instr_lang][t].format(src=names[src], tgt=names[tgt]),
            "input": place.names[src],
            "answer": place.names[tgt]}


def check_directions(directions: Iterable[str]) -> tuple[str, ...]:
    directions = tuple(directions)
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ClikaError(f"unknown translate direction(s) {bad}", fix=f"use a subset of {DIRECTIONS}")
    return directions


def _train_records(world: World, x: str, directions=DIRECTIONS, seed: int = 0,
                   repeats: int = 10) -> list[dict[str, str]]:
    """train/<X> records: English QA for all cities, X QA for type 0, name translations.

    Repeat r pairs question r%5 with answer (r + r//5)%5, so up to 25 repeats are all distinct.
    Translation instructions alternate: five in English (as the official release), then five in X.
    `seed` shuffles the record order only.
    """
    x = check_lang(x)
    directions = check_directions(directions)
    nq, na, nt = len(QUESTIONS["en"]), len(ANSWERS["en"]), len(TRANSLATE["en"])
    records = []
    for r in range(repeats):
        q, a = r % nq, (r + r // nq) % na
        records += [_qa("en", c, world, q, a) for c in world.cities]
        if x != "en":
            records += [_qa(x, c, world, q, a) for c in world.cities if c.type == 0]
            instr = "en" if (r // nt) % 2 == 0 else x
            for d in directions:
                src, tgt = (x, "en") if d == "x2en" else ("en", x)
                records += [_translation(p, src, tgt, instr, r % nt) for p in world.places()]
    random.Random(seed).shuffle(records)
    return records


def render_sft(world: World, lang: str, *, translate_directions=DIRECTIONS, seed: int = 0,
               repeats: int = 10) -> list[dict[str, str]]:
    """The records of train/<lang>.json as Alpaca dicts {"instruction", "input", "output"}.

    lang "en" gives the English QA only (the English-only baseline). Same arguments as
    `write_official_layout` give the same records in the same order.
    """
    return [{"instruction": r["prompt"], "input": r["input"], "output": r["answer"]}
            for r in _train_records(world, lang, translate_directions, seed, repeats)]


def render_corpus(world: World, lang: str) -> list[str]:
    """Encyclopedia-style paragraphs, one per continent, for pretraining.

    Non-English corpora state only type-0 facts: type-1 facts must be learned in English only,
    or X type 1 would no longer measure conductivity.
    """
    lang = check_lang(lang)
    sep = "" if lang in NO_SPACE else " "
    intro, many = CONTINENT_SENTENCES[lang]
    paragraphs = []
    for k in world.continents:
        name = k.names[lang]
        sentences = [intro.format(continent=name, n=len(world.continents)), many.format(continent=name)]
        cities = [c for c in world.cities_on(k) if lang == "en" or c.type == 0]
        for i, c in enumerate(cities):
            t = ANSWERS[lang][(i + k.idx) % len(ANSWERS[lang])]
            sentences.append(t.format(city=c.names[lang], continent=name))
        paragraphs.append(sep.join(sentences))
    return paragraphs


def _test_records(world: World, lang: str) -> list[dict[str, str]]:
    out = []
    for c in world.cities:
        rec = _qa(lang, c, world, 0, 0)
        rec["answer"] += _tags(world.continent_of(c).names[lang], c.names[lang], c.type)
        out.append(rec)
    return out


def _translate_records(world: World, x: str) -> list[dict[str, str]]:
    return [_translation(p, "en", x, "en", 0) for p in world.places()]
