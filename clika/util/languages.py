"""The ten CLiKA languages and the per-dataset folder names of the official release."""

from clika.util.errors import ClikaError

LANGS = ("en", "zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he")
NON_EN = LANGS[1:]

# Folder / file stem per language as the official repository spells it (quirks included).
DIRS = {
    "x_copa": {"en": "en", "zh": "zh", "de": "DE", "fr": "FR", "it": "it", "ja": "JA", "pl": "PL",
               "ru": "RU", "ar": "ar", "he": "he"},
    "x_csqa": {"en": "en", **{l: f"{l.upper() if l in ('zh', 'de', 'fr', 'it', 'ja', 'pl', 'ru') else l}_trans"
                              for l in LANGS[1:]}},
    "x_geo": {l: l for l in LANGS},
    "x_name": {l: l for l in LANGS},
    "fictional": {l: l.upper() for l in LANGS},
}


def lang_from_dir(name: str) -> str | None:
    """Map any official folder/file stem ('ZH_trans', 'DE', 'en') back to a language code."""
    code = name.lower().removesuffix("_trans")
    return code if code in LANGS else None


def check_lang(lang: str, *, allow_en: bool = True) -> str:
    """A language code (or official folder stem) as its code; a ClikaError naming the choices otherwise."""
    code = lang_from_dir(lang) if isinstance(lang, str) else None
    if code is None or (code == "en" and not allow_en):
        allowed = LANGS if allow_en else NON_EN
        raise ClikaError(f"unknown language {lang!r}", fix=f"use one of {', '.join(allowed)}")
    return code
