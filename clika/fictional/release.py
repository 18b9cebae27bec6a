"""Defects of a fictional release (official or generated): names, alignment, translation directions."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from clika.util.errors import ClikaError
from clika.fictional.layout import (FictionalItem, Record, _stem, fictional_root, load_fictional,
                                    load_fictional_train, load_translate)
from clika.util.languages import NON_EN


def _release_langs(root: Path) -> list[str]:
    found = []
    for x in NON_EN:
        s = _stem(x)
        if any(p.is_file() for p in (root / "train" / f"{s}.json",
                                     root / "test" / "target" / f"test{s}.jsonl",
                                     root / "test" / "Translate" / f"translate{s}.jsonl")):
            found.append(x)
    return found


def _collisions(lang: str, items: list[FictionalItem], en: list[FictionalItem]) -> list[str]:
    """Distinct places that share one name in `lang` (cities, continents, or a city and a continent)."""
    out = []
    by_city = defaultdict(set)
    for it, e in zip(items, en):
        by_city[it.city].add(e.city)
    shared = {n: sorted(v) for n, v in by_city.items() if len(v) > 1}
    if shared:
        ex = "; ".join(f"{n!r} <- {', '.join(v)}" for n, v in list(shared.items())[:4])
        out.append(f"{lang}: {len(by_city)} distinct city names for {len({e.city for e in en})} cities "
                   f"({len(shared)} name(s) shared by distinct cities, e.g. {ex})")
    by_cont = defaultdict(set)
    for it, e in zip(items, en):
        by_cont[it.continent].add(e.continent)
    shared = {n: sorted(v) for n, v in by_cont.items() if len(v) > 1}
    if shared:
        out.append(f"{lang}: distinct continents share a name: "
                   + "; ".join(f"{n!r} <- {', '.join(v)}" for n, v in shared.items()))
    both = sorted(set(by_city) & set(by_cont))
    if both:
        out.append(f"{lang}: names used for both a city and a continent: {both[:5]}")
    return out


def _direction_counts(records: list[Record], en_names: set[str], x_names: set[str]) -> Counter:
    counts: Counter = Counter()
    for r in records:
        if not r.input or r.input == r.answer:
            continue  # QA record, or a name spelled alike in both languages: direction unknown
        if r.input in en_names and r.answer in x_names:
            counts["en2x"] += 1
        elif r.input in x_names and r.answer in en_names:
            counts["x2en"] += 1
    return counts


def check_release(root) -> list[str]:
    """Human-readable defects of a fictional release (official or generated); [] when clean.

    Detects (a) training answers that do not use the continent names the tests expect,
    (b) distinct places sharing a translated name, (c) translation directions trained that
    differ from the one the Translate tests check, plus missing/misaligned files.
    """
    root = fictional_root(root)
    defects: list[str] = []
    try:
        en = load_fictional(root, "en")
    except ClikaError as e:
        return [str(e)]
    defects += _collisions("EN", en, en)
    en_names = {i.city for i in en} | {i.continent for i in en}
    en_conts = sorted({i.continent for i in en})
    for x in _release_langs(root):
        s = _stem(x)
        try:
            items = load_fictional(root, x)
        except ClikaError as e:
            defects.append(str(e))
            continue
        if len(items) != len(en) or any(a.type != b.type for a, b in zip(items, en)):
            defects.append(f"test/target/test{s}.jsonl is not aligned with testEN.jsonl "
                           f"({len(items)} vs {len(en)} items or differing types)")
            continue
        defects += _collisions(s, items, en)
        x_names = {i.city for i in items} | {i.continent for i in items}
        x_conts = sorted({i.continent for i in items})

        translate = None
        try:
            translate = load_translate(root, x)
        except ClikaError as e:
            defects.append(str(e))
        if translate is not None:
            want = {e.city: i.city for e, i in zip(en, items)}
            wrong = [r for r in translate if r.input in want and r.answer != want[r.input]]
            if wrong:
                defects.append(f"test/Translate/translate{s}.jsonl: {len(wrong)} translations differ "
                               f"from the city names of test{s}.jsonl, e.g. {wrong[0].input!r} -> "
                               f"{wrong[0].answer!r} (tests expect {want[wrong[0].input]!r})")
        try:
            train = load_fictional_train(root, x)
        except ClikaError as e:
            defects.append(str(e))
            continue

        # (a) the continent names of the test tags must be what training answers say
        qa = [r.answer for r in train if not r.input]
        for label, conts, test_file in ((s, x_conts, f"test{s}.jsonl"), ("EN", en_conts, "testEN.jsonl")):
            missing = [k for k in conts if not any(k in a for a in qa)]
            if missing:
                defects.append(f"train/{s}.json: {len(missing)} of {len(conts)} {label} continent names "
                               f"of the test tags ({test_file}) never appear in its QA answers, e.g. "
                               f"{missing[:3]}; a model trained on it cannot answer as the tests expect")
        every = set(x_conts) | set(en_conts)
        named = re.compile("|".join(map(re.escape, sorted(every, key=len, reverse=True))))
        nameless = [a for a in qa if not named.search(a)]
        if nameless:
            defects.append(f"train/{s}.json: {len(nameless)} of {len(qa)} QA answers name no continent "
                           f"of the tests, e.g. {nameless[0]!r}")

        # (c) translation direction trained vs tested
        if translate is not None:
            trained = _direction_counts(train, en_names, x_names)
            tested = _direction_counts(translate, en_names, x_names)
            arrow = {"en2x": f"EN->{s}", "x2en": f"{s}->EN"}
            taught = ", ".join(f"{arrow[k]} ({v} records)" for k, v in sorted(trained.items()))
            for d, n in tested.items():
                if n and not trained[d]:
                    defects.append(f"train/{s}.json teaches name translation {taught or 'in no direction'}"
                                   f" but no {arrow[d]}, while test/Translate/translate{s}.jsonl tests "
                                   f"{arrow[d]} ({len(translate)} items)")
    return defects


def validate_release(root, *, allow_defects: bool = False) -> list[str]:
    """check_release, raising ClikaError on any defect unless allow_defects=True."""
    defects = check_release(root)
    if defects and not allow_defects:
        raise ClikaError(f"fictional release {fictional_root(root)} has {len(defects)} defect(s): "
                         + " | ".join(defects),
                         fix="regenerate with write_official_layout, or pass allow_defects=True to "
                             "run on the release as it is (runs on train/ZH cannot pass the gate)")
    return defects
