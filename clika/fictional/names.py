"""Invented names for the fictional world, spelled in all ten CLiKA languages.

A name is kept as phonemes (a tuple of syllables) and *spelled* per language by small rules
written here, so every language gets a pronounceable, systematic rendering of the same name:

- en: k is written "c" before a/o/u ("Cavory"), a word-final i is written "y".
- de: c->k, y->i, sh->sch, v->w; the continent ending -ia becomes -ien ("Kawori", "Tamorien").
- fr: k->c/qu, g->gu before e/i, sh->ch, u->ou, e->é, s->ss between vowels, final n->ne,
  final s->sse; -ia becomes -ie.
- it: k->c/ch, g->gh before e/i, sh->sc(i), a final consonant gets an "e" ("Toran" -> "Torane").
- pl: c->k, v->w, sh->sz, y->i.
- ru: Cyrillic letter per phoneme (initial e -> э, -ia -> -ия).
- ar: Arabic letters, vowels as matres lectionis (a->ا, e/i->ي, o/u->و), initial vowel on alif.
- he: Hebrew letters, medial a/e unwritten, i->י, o/u->ו, final a/e->ה, final forms ן/ם.
- ja: katakana loanword spelling ("word" style) or one man'yōgana kanji per syllable ("char").
- zh: one character per syllable from a transliteration table; "word" style draws it from a
  small set of homophones, least used first, "char" style always uses the canonical one.

Spellings can merge distinct names (ar/he drop vowel contrasts, ja merges l and r); the world
generator rejects such names, so this module only has to be deterministic, not injective.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from importlib import resources

Syllable = tuple[str, str, str]  # (onset, vowel, coda); coda only on a word's last syllable
Name = tuple[Syllable, ...]

ONSETS = ("b", "d", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh")
VOWELS = ("a", "e", "i", "o", "u")
CODAS = ("n", "r", "s")
CONTINENT_ONSETS = ("d", "l", "m", "n", "r", "s", "t", "v")  # before the -ia ending
ENDING = "ia"  # continent ending: Tavor-ia, Tavor-ien, Тавор-ия ...

NAME_STYLES = ("word", "char")

# Spelling tables (clika/assets/fictional/spelling.json): zh syllable -> homophone characters (the first is the
# canonical "char" style one; "word" style draws the least used), ja "char" style man'yōgana-like kanji (one per
# syllable, shared across names), ja "word" style katakana rows and special syllables.
_TABLES = json.loads(resources.files("clika").joinpath("assets/fictional/spelling.json").read_text(encoding="utf-8"))
ZH_POOLS: dict[str, str] = _TABLES["zh_pools"]
JA_KANJI: dict[str, str] = _TABLES["ja_kanji"]
_KANA_ROWS: dict[str, str] = _TABLES["kana_rows"]
_KANA_SPECIAL: dict[str, str] = _TABLES["kana_special"]
_KANA_CODA = {"n": "ン", "r": "ー", "s": "ス"}

_RU = {"b": "б", "d": "д", "g": "г", "k": "к", "l": "л", "m": "м", "n": "н", "p": "п", "r": "р",
       "s": "с", "t": "т", "v": "в", "z": "з", "sh": "ш",
       "a": "а", "e": "е", "i": "и", "o": "о", "u": "у", "ia": "ия"}
_AR = {"b": "ب", "d": "د", "g": "غ", "k": "ك", "l": "ل", "m": "م", "n": "ن", "p": "ب", "r": "ر",
       "s": "س", "t": "ت", "v": "ف", "z": "ز", "sh": "ش",
       "a": "ا", "e": "ي", "i": "ي", "o": "و", "u": "و", "ia": "يا"}
_AR_INITIAL = {"a": "أ", "e": "إي", "i": "إي", "o": "أو", "u": "أو"}
_HE = {"b": "ב", "d": "ד", "g": "ג", "k": "ק", "l": "ל", "m": "מ", "n": "נ", "p": "פ", "r": "ר",
       "s": "ס", "t": "ט", "v": "וו", "z": "ז", "sh": "ש"}
_HE_MEDIAL = {"a": "", "e": "", "i": "י", "o": "ו", "u": "ו", "ia": "יה"}
_HE_FINAL_VOWEL = {"a": "ה", "e": "ה", "i": "י", "o": "ו", "u": "ו", "ia": "יה"}
_HE_INITIAL = {"a": "א", "e": "א", "i": "אי", "o": "או", "u": "או"}
_HE_FINAL_FORMS = {"מ": "ם", "נ": "ן", "כ": "ך", "צ": "ץ"}


def normalize(name: str) -> str:
    """NFC + casefold: names are compared (clashes, "the answer contains the name") in this form."""
    return unicodedata.normalize("NFC", name).casefold()


def _is_last(name: Name, i: int) -> bool:
    return i == len(name) - 1


def _latin(name: Name, lang: str) -> str:
    """Spell a name in a Latin-script language (see the module docstring for the rules)."""
    out = []
    for i, (onset, vowel, coda) in enumerate(name):
        last = _is_last(name, i)
        front = vowel in ("e", "i", "ia")
        c = onset
        if onset == "k":
            c = {"en": "k" if front else "c", "de": "k", "pl": "k",
                 "fr": "qu" if front else "c", "it": "ch" if front else "c"}[lang]
        elif onset == "g" and front and lang in ("fr", "it"):
            c = "gu" if lang == "fr" else "gh"
        elif onset == "sh":
            c = {"en": "sh", "de": "sch", "pl": "sz", "fr": "ch",
                 "it": "sc" if front else "sci"}[lang]
        elif onset == "v" and lang in ("de", "pl"):
            c = "w"
        elif onset == "s" and lang == "fr" and i > 0:
            c = "ss"  # French writes a voiceless s between vowels as ss
        v = vowel
        if vowel == "ia":
            v = {"de": "ien", "fr": "ie"}.get(lang, "ia")
        elif vowel == "i" and last and not coda and lang == "en":
            v = "y"
        elif vowel == "u" and lang == "fr":
            v = "ou"
        elif vowel == "e" and lang == "fr":
            v = "é"
        k = coda
        if coda and lang == "fr":
            k = {"n": "ne", "s": "sse", "r": "r"}[coda]
        elif coda and lang == "it":
            k = coda + "e"
        out.append(c + v + k)
    word = "".join(out)
    return word[:1].upper() + word[1:]


def _ru(name: Name) -> str:
    out = []
    for i, (onset, vowel, coda) in enumerate(name):
        v = "э" if (vowel == "e" and not onset and i == 0) else _RU[vowel]
        out.append(_RU.get(onset, "") + v + (_RU[coda] if coda else ""))
    word = "".join(out)
    return word[:1].upper() + word[1:]


def _ar(name: Name) -> str:
    out = []
    for i, (onset, vowel, coda) in enumerate(name):
        if not onset and i == 0 and vowel in _AR_INITIAL:
            v = _AR_INITIAL[vowel]
        else:
            v = _AR[vowel]
        out.append(_AR.get(onset, "") + v + (_AR[coda] if coda else ""))
    return "".join(out)


def _he(name: Name) -> str:
    out = []
    for i, (onset, vowel, coda) in enumerate(name):
        last = _is_last(name, i)
        c = _HE.get(onset, "")
        if not onset and i == 0 and vowel in _HE_INITIAL:
            v = _HE_INITIAL[vowel]
        elif last and not coda:
            v = _HE_FINAL_VOWEL[vowel]
        else:
            v = _HE_MEDIAL[vowel]
        if onset == "v" and vowel in ("o", "u"):
            v = ""  # "וו" already reads vo/vu; a third vav is not written
        out.append(c + v + (_HE[coda] if coda else ""))
    word = "".join(out)
    return word[:-1] + _HE_FINAL_FORMS.get(word[-1], word[-1])


def _kana(onset: str, vowel: str) -> str:
    key = onset + vowel
    if key in _KANA_SPECIAL:
        return _KANA_SPECIAL[key]
    return _KANA_ROWS[onset]["aiueo".index(vowel)]


def _ja_katakana(name: Name) -> str:
    out = []
    for onset, vowel, coda in name:
        if vowel == ENDING:
            out.append(_kana(onset, "i") + "ア")
        else:
            out.append(_kana(onset, vowel))
        if coda:
            out.append(_KANA_CODA[coda])
    return "".join(out)


def _cjk_keys(name: Name) -> list[str]:
    """Table keys of a name, one per written character: 'ka', 'li', '-ia', '-n' ..."""
    keys = []
    for onset, vowel, coda in name:
        if vowel == ENDING:
            keys += [onset + "i", "-ia"]
        else:
            keys.append(onset + vowel)
        if coda:
            keys.append("-" + coda)
    return keys


def spell(name: Name, lang: str) -> str:
    """Stateless spelling of a name in one language (zh/ja in "char" style)."""
    if lang in ("en", "de", "fr", "it", "pl"):
        return _latin(name, lang)
    if lang == "ru":
        return _ru(name)
    if lang == "ar":
        return _ar(name)
    if lang == "he":
        return _he(name)
    if lang == "ja":
        return "".join(JA_KANJI[k] for k in _cjk_keys(name))
    if lang == "zh":
        return "".join(ZH_POOLS[k][0] for k in _cjk_keys(name))
    raise ValueError(f"unknown language {lang!r}")


class NameRenderer:
    """Spells names in all languages; in "word" style it remembers which zh characters are taken.

    Why stateful: "word" style gives each zh name the least used homophone of each syllable, so
    names share as few characters as the tables allow. Call `commit` once a name is accepted.
    """

    def __init__(self, style: str = "word"):
        if style not in NAME_STYLES:
            raise ValueError(f"name_style must be one of {NAME_STYLES}, got {style!r}")
        self.style = style
        self._zh_used: Counter[str] = Counter()

    def _zh_word(self, name: Name) -> str:
        used = Counter(self._zh_used)
        chars = []
        for key in _cjk_keys(name):
            pool = ZH_POOLS[key]
            ch = min(pool, key=lambda c: (used[c], pool.index(c)))
            used[ch] += 1
            chars.append(ch)
        return "".join(chars)

    def render(self, name: Name, langs) -> dict[str, str]:
        out = {}
        for lang in langs:
            if self.style == "word" and lang == "zh":
                out[lang] = self._zh_word(name)
            elif self.style == "word" and lang == "ja":
                out[lang] = _ja_katakana(name)
            else:
                out[lang] = spell(name, lang)
        return out

    def commit(self, rendered: dict[str, str]) -> None:
        if self.style == "word" and "zh" in rendered:
            self._zh_used.update(rendered["zh"])
