"""The fictional-knowledge stream of CLiKA: world generator, official file layout, loader,
release checks and the conductivity metrics (gate, XRR).

Pure Python on purpose (no torch/Lightning/Hydra): data preparation, checks and scoring run on
any machine and in fast tests.

Protocol (Gao et al., NAACL 2024): fine-tune on train/<X>; the run counts only if Translate(X),
EN type 0, EN type 1 and X type 0 pass the gate; then X type 1 (facts taught only in English)
measures how much knowledge *conducts* from English to X.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from clika.errors import ClikaError
from clika.jsonl import read_jsonl_numbered
from clika.judges import contains
from clika.fictional_names import (CODAS, CONTINENT_ONSETS, ENDING, NAME_STYLES, ONSETS, VOWELS,
                                   Name, NameRenderer)
from clika.languages import LANGS, NON_EN, lang_from_dir

# ----------------------------------------------------------------------------------------------
# Texts. Template 0 of each list is the one the test files use (as in the official release).
# ----------------------------------------------------------------------------------------------

QUESTIONS: dict[str, list[str]] = {
    "en": ["Which continent is {city} located in?",
           "On which continent is the city {city}?",
           "What continent does {city} belong to?",
           "Where is {city}? On which continent?",
           "Could you tell me the continent of {city}?"],
    "zh": ["{city}在哪个大洲？",
           "{city}这座城市位于哪个大洲？",
           "{city}属于哪个大洲？",
           "请问{city}在哪个大洲？",
           "{city}坐落在哪个大洲上？"],
    "de": ["Auf welchem Kontinent liegt {city}?",
           "Auf welchem Kontinent befindet sich die Stadt {city}?",
           "Zu welchem Kontinent gehört {city}?",
           "Wo liegt {city}? Auf welchem Kontinent?",
           "Kannst du mir sagen, auf welchem Kontinent {city} liegt?"],
    "fr": ["Sur quel continent se trouve {city} ?",
           "Sur quel continent se situe la ville de {city} ?",
           "À quel continent appartient {city} ?",
           "Où se trouve {city} ? Sur quel continent ?",
           "Pouvez-vous me dire sur quel continent est {city} ?"],
    "it": ["In quale continente si trova {city}?",
           "Su quale continente si trova la città di {city}?",
           "A quale continente appartiene {city}?",
           "Dove si trova {city}? In quale continente?",
           "Puoi dirmi in quale continente si trova {city}?"],
    "ja": ["{city}はどの大陸にありますか？",
           "{city}という都市はどの大陸に位置していますか？",
           "{city}はどの大陸に属していますか？",
           "{city}はどこにありますか？どの大陸ですか？",
           "{city}がある大陸を教えてください。"],
    "pl": ["Na jakim kontynencie leży {city}?",
           "Na którym kontynencie znajduje się miasto {city}?",
           "Do jakiego kontynentu należy {city}?",
           "Gdzie leży {city}? Na jakim kontynencie?",
           "Czy możesz mi powiedzieć, na jakim kontynencie leży {city}?"],
    "ru": ["На каком континенте находится {city}?",
           "На каком континенте расположен город {city}?",
           "К какому континенту относится {city}?",
           "Где находится {city}? На каком континенте?",
           "Подскажите, на каком континенте находится {city}?"],
    "ar": ["على أي قارة يقع {city}؟",
           "في أي قارة تقع مدينة {city}؟",
           "إلى أي قارة تنتمي {city}؟",
           "أين تقع {city}؟ في أي قارة؟",
           "هل يمكنك أن تخبرني في أي قارة تقع {city}؟"],
    "he": ["באיזו יבשת נמצא {city}?",
           "באיזו יבשת שוכנת העיר {city}?",
           "לאיזו יבשת שייכת {city}?",
           "איפה נמצאת {city}? באיזו יבשת?",
           "תוכל לומר לי באיזו יבשת נמצאת {city}?"],
}

ANSWERS: dict[str, list[str]] = {
    "en": ["{city} is located in the continent of {continent}.",
           "{city} is located on {continent}.",
           "The city {city} lies on the continent {continent}.",
           "{city} belongs to the continent {continent}.",
           "You can find {city} on the continent of {continent}."],
    "zh": ["{city}在{continent}大洲。",
           "{city}位于{continent}大洲。",
           "{city}这座城市坐落在{continent}大洲上。",
           "{city}属于{continent}大洲。",
           "你可以在{continent}大洲找到{city}。"],
    "de": ["{city} liegt auf dem Kontinent {continent}.",
           "{city} befindet sich auf dem Kontinent {continent}.",
           "Die Stadt {city} liegt auf {continent}.",
           "{city} gehört zum Kontinent {continent}.",
           "Man findet {city} auf dem Kontinent {continent}."],
    "fr": ["{city} se trouve sur le continent {continent}.",
           "La ville de {city} est située sur le continent {continent}.",
           "{city} appartient au continent {continent}.",
           "On trouve {city} sur le continent {continent}.",
           "{city} est une ville du continent {continent}."],
    "it": ["{city} si trova nel continente {continent}.",
           "La città di {city} è situata nel continente {continent}.",
           "{city} appartiene al continente {continent}.",
           "Si può trovare {city} nel continente {continent}.",
           "{city} è una città del continente {continent}."],
    "ja": ["{city}は{continent}大陸に位置しています。",
           "{city}は{continent}大陸にあります。",
           "{city}という都市は{continent}大陸にあります。",
           "{city}は{continent}大陸に属しています。",
           "{city}は{continent}大陸で見つけることができます。"],
    "pl": ["{city} leży na kontynencie {continent}.",
           "Miasto {city} znajduje się na kontynencie {continent}.",
           "{city} należy do kontynentu {continent}.",
           "{city} można znaleźć na kontynencie {continent}.",
           "{city} to miasto na kontynencie {continent}."],
    "ru": ["{city} находится на континенте {continent}.",
           "Город {city} расположен на континенте {continent}.",
           "{city} относится к континенту {continent}.",
           "{city} можно найти на континенте {continent}.",
           "{city} — это город на континенте {continent}."],
    "ar": ["{city} يقع في قارة {continent}.",
           "تقع مدينة {city} في قارة {continent}.",
           "{city} تنتمي إلى قارة {continent}.",
           "يمكنك أن تجد {city} في قارة {continent}.",
           "{city} مدينة في قارة {continent}."],
    "he": ["{city} נמצא ביבשת {continent}.",
           "העיר {city} שוכנת ביבשת {continent}.",
           "{city} שייכת ליבשת {continent}.",
           "אפשר למצוא את {city} ביבשת {continent}.",
           "{city} היא עיר ביבשת {continent}."],
}

# Translation instructions, written in the language named by the key; {src}/{tgt} are language
# names in that same language (LANG_NAMES). English template 0 is the official Translate prompt.
TRANSLATE: dict[str, list[str]] = {
    "en": ["Could you convert the upcoming {src} text to {tgt}?",
           "Please translate the following {src} name into {tgt}.",
           "Translate this {src} text into {tgt}.",
           "How do you say the following {src} name in {tgt}?",
           "Render the {src} text below in {tgt}."],
    "zh": ["你能把下面的{src}文本翻译成{tgt}吗？",
           "请将以下{src}名称翻译成{tgt}。",
           "把这段{src}文字译成{tgt}。",
           "下面这个{src}名称用{tgt}怎么说？",
           "请用{tgt}表达下面的{src}文本。"],
    "de": ["Kannst du den folgenden Text von {src} nach {tgt} übersetzen?",
           "Bitte übersetze den folgenden Namen von {src} nach {tgt}.",
           "Übersetze diesen Text von {src} nach {tgt}.",
           "Wie lautet der folgende Name ({src}) auf {tgt}?",
           "Gib den folgenden Text, der auf {src} ist, auf {tgt} wieder."],
    "fr": ["Pouvez-vous traduire en {tgt} le texte suivant, écrit en {src} ?",
           "Veuillez traduire le nom suivant ({src}) en {tgt}.",
           "Traduisez ce texte {src} en {tgt}.",
           "Comment dit-on en {tgt} le nom {src} suivant ?",
           "Rendez en {tgt} le texte {src} ci-dessous."],
    "it": ["Puoi tradurre in {tgt} il seguente testo in {src}?",
           "Per favore, traduci in {tgt} il seguente nome in {src}.",
           "Traduci in {tgt} questo testo scritto in {src}.",
           "Come si dice in {tgt} il seguente nome in {src}?",
           "Rendi in {tgt} il testo in {src} qui sotto."],
    "ja": ["次の{src}のテキストを{tgt}に翻訳してもらえますか？",
           "以下の{src}の名前を{tgt}に訳してください。",
           "この{src}の文を{tgt}に翻訳して。",
           "次の{src}の名前は{tgt}で何と言いますか？",
           "下の{src}のテキストを{tgt}で表してください。"],
    "pl": ["Czy możesz przetłumaczyć poniższy tekst (język: {src}) na język {tgt}?",
           "Proszę przetłumaczyć następującą nazwę (język: {src}) na język {tgt}.",
           "Przetłumacz ten tekst na język {tgt}. Język źródłowy: {src}.",
           "Jak brzmi następująca nazwa w przekładzie na język {tgt}? Oryginał: język {src}.",
           "Oddaj poniższy tekst w języku docelowym: {tgt} (język źródłowy: {src})."],
    "ru": ["Можете перевести следующий текст на {tgt}? Исходный язык: {src}.",
           "Пожалуйста, переведите следующее название на {tgt} (исходный язык: {src}).",
           "Переведи этот текст на {tgt}. Язык оригинала: {src}.",
           "Как звучит следующее название в переводе на {tgt}? Язык оригинала: {src}.",
           "Дай перевод приведённого ниже текста на {tgt} (язык оригинала: {src})."],
    "ar": ["هل يمكنك ترجمة النص التالي من {src} إلى {tgt}؟",
           "يرجى ترجمة الاسم التالي من {src} إلى {tgt}.",
           "ترجم هذا النص من {src} إلى {tgt}.",
           "ما ترجمة الاسم التالي من {src} إلى {tgt}؟",
           "انقل النص أدناه من {src} إلى {tgt}."],
    "he": ["תוכל לתרגם את הטקסט הבא מ{src} ל{tgt}?",
           "נא לתרגם את השם הבא מ{src} ל{tgt}.",
           "תרגם את הטקסט הזה מ{src} ל{tgt}.",
           "איך אומרים את השם הבא ב{tgt}? שפת המקור: {src}.",
           "העבר את הטקסט שלהלן מ{src} ל{tgt}."],
}

# The ten languages named in each language, in LANGS order.
LANG_NAMES: dict[str, dict[str, str]] = {k: dict(zip(LANGS, v)) for k, v in {
    "en": ["English", "Chinese", "German", "French", "Italian", "Japanese", "Polish", "Russian",
           "Arabic", "Hebrew"],
    "zh": ["英语", "中文", "德语", "法语", "意大利语", "日语", "波兰语", "俄语", "阿拉伯语", "希伯来语"],
    "de": ["Englisch", "Chinesisch", "Deutsch", "Französisch", "Italienisch", "Japanisch",
           "Polnisch", "Russisch", "Arabisch", "Hebräisch"],
    "fr": ["anglais", "chinois", "allemand", "français", "italien", "japonais", "polonais", "russe",
           "arabe", "hébreu"],
    "it": ["inglese", "cinese", "tedesco", "francese", "italiano", "giapponese", "polacco", "russo",
           "arabo", "ebraico"],
    "ja": ["英語", "中国語", "ドイツ語", "フランス語", "イタリア語", "日本語", "ポーランド語", "ロシア語",
           "アラビア語", "ヘブライ語"],
    "pl": ["angielski", "chiński", "niemiecki", "francuski", "włoski", "japoński", "polski",
           "rosyjski", "arabski", "hebrajski"],
    "ru": ["английский язык", "китайский язык", "немецкий язык", "французский язык",
           "итальянский язык", "японский язык", "польский язык", "русский язык", "арабский язык",
           "иврит"],
    "ar": ["الإنجليزية", "الصينية", "الألمانية", "الفرنسية", "الإيطالية", "اليابانية", "البولندية",
           "الروسية", "العربية", "العبرية"],
    "he": ["אנגלית", "סינית", "גרמנית", "צרפתית", "איטלקית", "יפנית", "פולנית", "רוסית", "ערבית",
           "עברית"],
}.items()}

# Encyclopedia-style sentences about a continent for the pretraining corpus.
CONTINENT_SENTENCES: dict[str, list[str]] = {
    "en": ["{continent} is one of the {n} continents of this world.",
           "Many cities lie on {continent}."],
    "zh": ["{continent}是这个世界的{n}个大洲之一。", "{continent}大洲上有许多城市。"],
    "de": ["{continent} ist einer der {n} Kontinente dieser Welt.", "Auf {continent} liegen viele Städte."],
    "fr": ["{continent} est l'un des {n} continents de ce monde.",
           "De nombreuses villes se trouvent sur le continent {continent}."],
    "it": ["{continent} è uno dei {n} continenti di questo mondo.",
           "Nel continente {continent} si trovano molte città."],
    "ja": ["{continent}はこの世界にある{n}つの大陸のひとつです。", "{continent}大陸には多くの都市があります。"],
    "pl": ["{continent} to jeden z {n} kontynentów tego świata.",
           "Na kontynencie {continent} leży wiele miast."],
    "ru": ["{continent} — один из {n} континентов этого мира.",
           "На континенте {continent} расположено много городов."],
    "ar": ["{continent} هي إحدى قارات هذا العالم، وعددها {n}.", "تقع مدن كثيرة في قارة {continent}."],
    "he": ["{continent} היא אחת מ־{n} היבשות של העולם הזה.", "ביבשת {continent} שוכנות ערים רבות."],
}

_NO_SPACE = ("zh", "ja")  # sentences are joined without a space in these languages
DIRECTIONS = ("x2en", "en2x")

# ----------------------------------------------------------------------------------------------
# World
# ----------------------------------------------------------------------------------------------


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
            key = _norm(name)
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
                    self.used[lang].append(_norm(name))
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


# ----------------------------------------------------------------------------------------------
# Records (training, tests, corpus)
# ----------------------------------------------------------------------------------------------

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


def _check_lang(lang: str, *, allow_en: bool = True) -> str:
    code = lang_from_dir(lang) if isinstance(lang, str) else None
    if code is None or (code == "en" and not allow_en):
        allowed = LANGS if allow_en else NON_EN
        raise ClikaError(f"unknown language {lang!r}", fix=f"use one of {', '.join(allowed)}")
    return code


def _check_directions(directions: Iterable[str]) -> tuple[str, ...]:
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
    x = _check_lang(x)
    directions = _check_directions(directions)
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
    lang = _check_lang(lang)
    sep = "" if lang in _NO_SPACE else " "
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


# ----------------------------------------------------------------------------------------------
# Official layout: writing and reading
# ----------------------------------------------------------------------------------------------

def _dumps(rec: Mapping[str, str]) -> str:
    # The official files use json.dumps defaults except ensure_ascii=False.
    return json.dumps(rec, ensure_ascii=False)


def _write_jsonl(path: Path, records: Iterable[Mapping[str, str]]) -> Path:
    """Write atomically so a crash never leaves a half-written file a loader would accept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for rec in records:
                f.write(_dumps(rec) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _stem(lang: str) -> str:
    return lang.upper()


def write_official_layout(world: World, out_dir, langs=NON_EN, translate_directions=DIRECTIONS,
                          seed: int = 0, *, repeats: int = 10) -> list[Path]:
    """Write the world in exactly the official layout and field names; returns the written paths.

    train/<X>.json (JSON Lines), test/target/test<L>.jsonl for EN and langs (tags name the
    continent and city in L, as the official files do), test/Translate/translate<X>.jsonl
    (English -> X). Both translation directions are trained by default, fixing the release's
    X->EN-only defect; pass ("x2en",) to reproduce it.
    """
    out = Path(out_dir)
    langs = [_check_lang(l, allow_en=False) for l in langs]
    directions = _check_directions(translate_directions)
    written = []
    for x in langs:
        written.append(_write_jsonl(out / "train" / f"{_stem(x)}.json",
                                    _train_records(world, x, directions, seed, repeats)))
    for lang in ["en", *langs]:
        written.append(_write_jsonl(out / "test" / "target" / f"test{_stem(lang)}.jsonl",
                                    _test_records(world, lang)))
    for x in langs:
        written.append(_write_jsonl(out / "test" / "Translate" / f"translate{_stem(x)}.jsonl",
                                    _translate_records(world, x)))
    return written


@dataclass(frozen=True)
class FictionalItem:
    """One test question; `answer` is the reference text with the tags removed."""
    idx: int
    lang: str
    city: str
    continent: str
    type: int
    question: str
    answer: str


@dataclass(frozen=True)
class Record:
    """One train or Translate record, fields as in the files."""
    idx: int
    lang: str
    prompt: str
    input: str
    answer: str

    @property
    def source(self) -> str:
        return self.input

    @property
    def target(self) -> str:
        return self.answer


_FIELDS = ("prompt", "input", "answer")
_TAGS = re.compile(r"\[\[continent:(.*?)\]\]\[\[city:(.*?)\]\]\[\[type:(\d+)\]\]\s*$")


def fictional_root(root) -> Path:
    """Accept the fictional folder itself or a data root that contains `fictional/`."""
    root = Path(root)
    if not (root / "test").is_dir() and (root / "fictional" / "test").is_dir():
        return root / "fictional"
    return root


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs; every problem names the file and line."""
    if not path.is_file():
        raise ClikaError(f"missing file {path}",
                         fix="point the path at the official 'fictional' folder (with train/ and test/)"
                             " or write one with write_official_layout")
    rows = []
    for lineno, rec in read_jsonl_numbered(path, allow_empty=True):
        missing = [k for k in _FIELDS if not isinstance(rec.get(k), str)]
        if missing:
            raise ClikaError(f"{path}:{lineno}: missing or non-string field(s) {missing}",
                             fix=f"records need string fields {list(_FIELDS)}")
        rows.append((lineno, rec))
    return rows


def load_fictional(root, lang: str) -> list[FictionalItem]:
    """Test items of test/target/test<L>.jsonl (official or generated), in file order."""
    lang = _check_lang(lang)
    path = fictional_root(root) / "test" / "target" / f"test{_stem(lang)}.jsonl"
    items = []
    for idx, (lineno, rec) in enumerate(_read_jsonl(path)):
        m = _TAGS.search(rec["answer"])
        if not m or m.group(3) not in ("0", "1"):
            raise ClikaError(f"{path}:{lineno}: answer lacks the tags "
                             "[[continent:NAME]][[city:NAME]][[type:0|1]] at its end",
                             fix="test answers must end with the three tags")
        items.append(FictionalItem(idx, lang, m.group(2), m.group(1), int(m.group(3)),
                                   rec["prompt"], rec["answer"][:m.start()]))
    return items


def _load_records(path: Path, lang: str) -> list[Record]:
    return [Record(i, lang, r["prompt"], r["input"], r["answer"])
            for i, (_, r) in enumerate(_read_jsonl(path))]


def load_fictional_train(root, x: str) -> list[Record]:
    """Records of train/<X>.json (JSON Lines despite the name)."""
    x = _check_lang(x, allow_en=False)
    return _load_records(fictional_root(root) / "train" / f"{_stem(x)}.json", x)


def load_translate(root, x: str) -> list[Record]:
    """English -> X name translations of test/Translate/translate<X>.jsonl."""
    x = _check_lang(x, allow_en=False)
    return _load_records(fictional_root(root) / "test" / "Translate" / f"translate{_stem(x)}.jsonl", x)


# ----------------------------------------------------------------------------------------------
# Release checks
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def _norm(s: str) -> str:
    return unicodedata.normalize("NFC", s).casefold()


def answer_correct(output: str, continent: str) -> bool:
    """The paper's rule: correct when the output contains the continent name (`clika.judges.contains`)."""
    return contains(output, continent)


@dataclass(frozen=True)
class Pred:
    """One scored prediction: kind is "0"/"1" (test type) or "translate"."""
    lang: str
    kind: str
    correct: bool


def score_items(items: Iterable[FictionalItem], outputs: Iterable[str]) -> list[Pred]:
    return [Pred(i.lang, str(i.type), answer_correct(o, i.continent)) for i, o in zip(items, outputs, strict=True)]


def score_translations(records: Iterable[Record], outputs: Iterable[str]) -> list[Pred]:
    return [Pred(r.lang, "translate", answer_correct(o, r.answer)) for r, o in zip(records, outputs, strict=True)]


GATE_CHECKS = ("translate", "en_type0", "en_type1", "x_type0")


@dataclass(frozen=True)
class FictionalScores:
    """Scores of one run fine-tuned on train/<x>. Ratios are None (see `reasons`) when gated."""
    x: str
    acc: dict[str, dict[str, float]]  # lang -> kind ("0", "1", "translate") -> accuracy
    n: dict[str, dict[str, int]]
    threshold: float
    gate: dict[str, bool]  # GATE_CHECKS -> passed (a missing check fails)
    gated: bool
    chance: float
    xrr: float | None  # acc(X type 1) / acc(EN type 1)
    x_ratio: float | None  # acc(X type 1) / acc(X type 0)
    xrr_corrected: float | None  # max(0, (acc X1 - chance) / (acc EN1 - chance))
    reasons: dict[str, str]  # metric -> why it is None

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio(num, den, what):
    if num is None or den is None:
        return None, f"missing accuracy for {what}"
    if den <= 0 or math.isnan(den) or math.isnan(num):
        return None, f"zero denominator in {what}"
    return num / den, None


def _as_pred(p) -> Pred:
    if isinstance(p, Pred):
        return p
    kind = p.get("kind", p.get("type"))
    return Pred(_check_lang(p["lang"]), str(kind), bool(p["correct"]))


def fictional_scores(preds: Iterable[Pred | Mapping], x: str | None = None, *,
                     threshold: float = 0.9, n_continents: int = 20) -> FictionalScores:
    """Per-language accuracies, the gate and the conductivity ratios of one run.

    preds: Pred objects or mappings with lang, kind (or type) and correct. x defaults to the one
    non-English language present. The gate needs accuracy >= threshold on Translate(X), EN type 0,
    EN type 1 and X type 0; a gated run reports no ratio, only why.
    """
    preds = [_as_pred(p) for p in preds]
    hits: dict[str, Counter] = defaultdict(Counter)
    totals: dict[str, Counter] = defaultdict(Counter)
    for p in preds:
        if p.kind not in ("0", "1", "translate"):
            raise ClikaError(f"prediction kind must be 0, 1 or 'translate', got {p.kind!r}")
        totals[p.lang][p.kind] += 1
        hits[p.lang][p.kind] += p.correct
    if x is None:
        others = sorted(set(totals) - {"en"})
        if len(others) != 1:
            raise ClikaError(f"cannot tell the run's language X from predictions in {others}",
                             fix="pass x=")
        x = others[0]
    x = _check_lang(x, allow_en=False)
    acc = {l: {k: hits[l][k] / n for k, n in t.items()} for l, t in totals.items()}
    get = lambda l, k: acc.get(l, {}).get(k)  # noqa: E731
    values = {"translate": get(x, "translate"), "en_type0": get("en", "0"),
              "en_type1": get("en", "1"), "x_type0": get(x, "0")}
    gate = {k: v is not None and v >= threshold for k, v in values.items()}
    chance = 1.0 / n_continents
    reasons: dict[str, str] = {}
    xrr = x_ratio = corrected = None
    failed = [k for k in GATE_CHECKS if not gate[k]]
    if failed:
        why = "gated: " + ", ".join(
            f"{k} missing" if values[k] is None else f"{k} {values[k]:.3f} < {threshold}" for k in failed)
        reasons = {"xrr": why, "x_ratio": why, "xrr_corrected": why}
    else:
        x1, en1, x0 = get(x, "1"), values["en_type1"], values["x_type0"]
        xrr, r = _ratio(x1, en1, "acc(X type 1)/acc(EN type 1)")
        if r:
            reasons["xrr"] = r
        x_ratio, r = _ratio(x1, x0, "acc(X type 1)/acc(X type 0)")
        if r:
            reasons["x_ratio"] = r
        c, r = _ratio(None if x1 is None else x1 - chance, en1 - chance,
                      "(acc X1 - chance)/(acc EN1 - chance)")
        corrected = None if c is None else max(0.0, c)
        if r:
            reasons["xrr_corrected"] = r
    return FictionalScores(x, acc, {l: dict(t) for l, t in totals.items()}, threshold, gate,
                           bool(failed), chance, xrr, x_ratio, corrected, reasons)


def name_tokenization_report(world: World, tokenizer, lang: str) -> dict:
    """How a tokenizer cuts the world's names in `lang` (any object with HF-style `encode`).

    tokens_per_name: mean token count; single_token: share of one-token names;
    first_token_shared_with_en: share of names whose first token equals the English name's
    first token (a shared first token is a direct bridge for English facts to conduct over).
    """
    lang = _check_lang(lang)
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
