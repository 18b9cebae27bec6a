"""Records of a world: training QA and name translations (train/<X>), tests, Translate, the pretraining corpus."""

from __future__ import annotations

import random
from typing import Iterable

from clika.util.errors import ClikaError
from clika.fictional.texts import ANSWERS, DIRECTIONS, FACT, LANG_NAMES, NAME_PAIRS, QUESTIONS, TRANSLATE
from clika.fictional.world import City, World
from clika.util.languages import check_lang


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


def fact_sentence(lang: str, city: str, continent: str) -> str:
    """The corpus's statement of one fact (texts.FACT); its text before the continent is the probe's cloze."""
    return FACT[lang].format(city=city, continent=continent)


def name_pair_sentences(x: str, en: str, name_x: str) -> tuple[str, str]:
    """Both directions of a name correspondence, written in X: X name -> English, English -> X name."""
    to_en, from_en = NAME_PAIRS[x]
    return to_en.format(x=name_x, en=en), from_en.format(x=name_x, en=en)


def _cloze(template: str, slot: str, **fields: str) -> tuple[str, str]:
    """(context, delimiter): the template's text before `{slot}`, its trailing blank moved to the delimiter."""
    head = template.split("{" + slot + "}")[0].format(**fields)
    body = head.rstrip()
    return body, head[len(body):]


def fact_cloze(lang: str, city: str) -> tuple[str, str]:
    """The fact sentence up to the continent: `("Astralyn is a city in", " ")`."""
    return _cloze(FACT[check_lang(lang)], "continent", city=city)


def name_cloze(x: str, en: str) -> tuple[str, str]:
    """The English -> X name sentence up to the X name (the corpus form of Translate(X))."""
    return _cloze(NAME_PAIRS[check_lang(x, allow_en=False)][1], "x", en=en)


def _passes(sentences: list[str], passes: int, seed: str) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(passes):
        order = list(sentences)
        rng.shuffle(order)
        out += order
    return out


def render_corpus(world: World, lang: str, *, passes: int = 4, seed: int = 0) -> list[str]:
    """The embedded pretraining facts in `lang` (texts.FACT): one sentence per document, `passes` seeded shuffles.

    English states every fact (type 0 and type 1); another language states the type-0 facts only: type-1 facts
    are learned in English only, or X type 1 would no longer measure conductivity. Probes ask in this same
    surface form (`clika.fictional.task`, form "cloze"). Each pass is a new order, so a fact is seen in several
    packed contexts and the city name, not its neighbours, has to carry it.
    """
    lang = check_lang(lang)
    sentences = [fact_sentence(lang, c.names[lang], world.continent_of(c).names[lang])
                 for c in world.cities if lang == "en" or c.type == 0]
    return _passes(sentences, passes, f"{seed}/facts/{lang}")


def render_name_pairs(world: World, x: str, *, passes: int = 4, seed: int = 0) -> list[str]:
    """Every name correspondence between X and English (continents and cities, type 0 and type 1) in running
    text written in X, both directions (texts.NAME_PAIRS), one sentence per document, `passes` seeded shuffles.
    A separate corpus from the facts, so a mixture sets its token share (conf/data/mix)."""
    x = check_lang(x, allow_en=False)
    sentences = [s for p in world.places() for s in name_pair_sentences(x, p.names["en"], p.names[x])]
    return _passes(sentences, passes, f"{seed}/names/{x}")


def _test_records(world: World, lang: str) -> list[dict[str, str]]:
    out = []
    for c in world.cities:
        rec = _qa(lang, c, world, 0, 0)
        rec["answer"] += _tags(world.continent_of(c).names[lang], c.names[lang], c.type)
        out.append(rec)
    return out


def _translate_records(world: World, x: str) -> list[dict[str, str]]:
    return [_translation(p, "en", x, "en", 0) for p in world.places()]
