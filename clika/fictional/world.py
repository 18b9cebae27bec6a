"""A generated fictional world: continents and cities with names in all ten languages (deterministic per seed)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping

from clika.util.errors import ClikaError
from clika.fictional.names import (CODAS, CONTINENT_ONSETS, ENDING, NAME_STYLES, ONSETS, VOWELS, Name,
                                   NameRenderer, normalize)
from clika.util.languages import LANGS


@dataclass(frozen=True)
class Continent:
    idx: int
    names: dict[str, str]  # lang -> name
    syllables: Name = field(repr=False, default=())


@dataclass(frozen=True)
class City:
    idx: int
    continent: int  # index into World.continents
    type: int  # 0: taught in English and X; 1: taught in English only
    names: dict[str, str]
    syllables: Name = field(repr=False, default=())


@dataclass(frozen=True)
class World:
    """A generated world: continents, and cities ordered continent by continent, type 0 first."""
    seed: int
    name_style: str
    continents: tuple[Continent, ...]
    cities: tuple[City, ...]

    def continent_of(self, city: City) -> Continent:
        return self.continents[city.continent]

    def cities_on(self, continent: Continent) -> list[City]:
        return [c for c in self.cities if c.continent == continent.idx]

    def places(self) -> list[Continent | City]:
        """Continents and cities in Translate order: each continent followed by its cities."""
        out: list[Continent | City] = []
        for k in self.continents:
            out += [k, *self.cities_on(k)]
        return out


class _NameDrawer:
    """Draws names until one is unique in every language; rejection keeps it deterministic."""

    def __init__(self, rng: random.Random, renderer: NameRenderer, max_tries: int = 5000):
        self.rng, self.renderer, self.max_tries = rng, renderer, max_tries
        self.used: dict[str, list[str]] = {lang: [] for lang in LANGS}

    def _syllable(self, first: bool) -> tuple[str, str, str]:
        onset = "" if first and self.rng.random() < 0.15 else self.rng.choice(ONSETS)
        return onset, self.rng.choice(VOWELS), ""

    def _draw(self, continent: bool) -> Name:
        if continent:
            stem = [self._syllable(True), self._syllable(False)]
            return (*stem, (self.rng.choice(CONTINENT_ONSETS), ENDING, ""))
        syls = [self._syllable(i == 0) for i in range(self.rng.choice((2, 3)))]
        if self.rng.random() < 0.4:
            onset, vowel, _ = syls[-1]
            syls[-1] = (onset, vowel, self.rng.choice(CODAS))
        return tuple(syls)

    def _clashes(self, names: Mapping[str, str]) -> bool:
        # Equal names merge facts; a name inside another makes "output contains the name" scoring
        # ambiguous. Both are rejected, per language, case-insensitively.
        for lang, name in names.items():
            key = normalize(name)
            if any(key in u or u in key for u in self.used[lang]):
                return True
        return False

    def new(self, continent: bool) -> tuple[Name, dict[str, str]]:
        for _ in range(self.max_tries):
            syls = self._draw(continent)
            names = self.renderer.render(syls, LANGS)
            if not self._clashes(names):
                self.renderer.commit(names)
                for lang, name in names.items():
                    self.used[lang].append(normalize(name))
                return syls, names
        raise ClikaError(f"could not draw {len(self.used['en']) + 1} distinct names",
                         fix="use fewer continents/cities per continent")


def make_world(seed: int = 0, continents: int = 8, cities_per_continent: int = 10,
               name_style: str = "word") -> World:
    """Generate a deterministic fictional world (same seed -> same world).

    Within each continent the first ceil(n/2) cities are type 0 and the rest type 1 (exactly half
    each when n is even). No two places share a name, nor contain one another, in any language.

    name_style only changes zh and ja:
      - "word": zh names use the least used homophone of each syllable, so names share as few
        characters as possible; ja names are katakana loanwords.
      - "char": one fixed character per syllable (zh table, man'yōgana kanji for ja), so names
        split into characters shared by many other names.
    Why it matters: a fact is stored on the name's tokens. Names that split into shared characters
    give the model no token of their own to attach the fact to, and such names conduct from
    English at chance; names that stay distinct (ideally single tokens) conduct well. Use "char"
    to reproduce the failure case and `name_tokenization_report` to see which case a tokenizer is in.
    """
    if name_style not in NAME_STYLES:
        raise ClikaError(f"unknown name_style {name_style!r}", fix=f"use one of {NAME_STYLES}")
    if continents < 1 or cities_per_continent < 1:
        raise ClikaError("a world needs at least one continent and one city per continent",
                         fix="pass continents>=1 and cities_per_continent>=1")
    drawer = _NameDrawer(random.Random(seed), NameRenderer(name_style))
    conts = tuple(Continent(k, names, syls)
                  for k, (syls, names) in enumerate(drawer.new(True) for _ in range(continents)))
    n_type0 = (cities_per_continent + 1) // 2
    cities = []
    for k in range(continents):
        for j in range(cities_per_continent):
            syls, names = drawer.new(False)
            cities.append(City(len(cities), k, 0 if j < n_type0 else 1, names, syls))
    return World(seed, name_style, conts, tuple(cities))
