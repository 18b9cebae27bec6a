"""How a tokenizer cuts a world's names: conductivity must be read with it."""

from __future__ import annotations

from typing import Sequence

from clika.fictional.layout import fictional_root, load_fictional
from clika.fictional.world import City, Continent, World
from clika.util.languages import check_lang


def name_tokenization_report(world: World, tokenizer, lang: str) -> dict:
    """How a tokenizer cuts the world's names in `lang` (any object with HF-style `encode`).

    tokens_per_name: mean token count; single_token: share of one-token names;
    first_token_shared_with_en: share of names whose first token equals the English name's
    first token (a shared first token is a direct bridge for English facts to conduct over).
    """
    lang = check_lang(lang)
    places = [*world.continents, *world.cities]
    enc = lambda s: list(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
    toks = [enc(p.names[lang]) for p in places]
    en = [enc(p.names["en"]) for p in places]
    n = len(places)
    return {"lang": lang, "names": n,
            "tokens_per_name": sum(map(len, toks)) / n,
            "single_token": sum(len(t) == 1 for t in toks) / n,
            "first_token_shared_with_en": sum(bool(t) and bool(e) and t[0] == e[0]
                                              for t, e in zip(toks, en)) / n}


def release_world(root, langs: Sequence[str]) -> World:
    """A `World` rebuilt from test files (official or generated), for `name_tokenization_report`."""
    root = fictional_root(root)
    langs = list(dict.fromkeys(["en", *(check_lang(l) for l in langs)]))
    by_lang = {lang: load_fictional(root, lang) for lang in langs}
    en = by_lang["en"]
    order = list(dict.fromkeys(it.continent for it in en))
    conts = []
    for k, name in enumerate(order):
        i = next(j for j, it in enumerate(en) if it.continent == name)
        conts.append(Continent(k, {lang: by_lang[lang][i].continent for lang in langs}))
    cities = tuple(City(i, order.index(e.continent), e.type, {lang: by_lang[lang][i].city for lang in langs})
                   for i, e in enumerate(en))
    return World(-1, "release", tuple(conts), cities)
