"""The ten CLiKA languages (each dataset's folder names per language: clika.data.registry)."""

from clika.util.errors import ClikaError

LANGS = ("en", "zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he")
NON_EN = LANGS[1:]


def lang_from_dir(name: str) -> str | None:
    """Map any official folder/file stem ('ZH_trans', 'DE', 'en') back to a language code (case and the
    `_trans` suffix ignored, so it reads every dataset's spelling and users' own)."""
    code = name.lower().removesuffix("_trans")
    return code if code in LANGS else None


def check_lang(lang: str, *, allow_en: bool = True) -> str:
    """A language code (or official folder stem) as its code; a ClikaError naming the choices otherwise."""
    code = lang_from_dir(lang) if isinstance(lang, str) else None
    if code is None or (code == "en" and not allow_en):
        allowed = LANGS if allow_en else NON_EN
        raise ClikaError(f"unknown language {lang!r}", fix=f"use one of {', '.join(allowed)}")
    return code
