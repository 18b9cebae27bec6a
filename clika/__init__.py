"""CLiKA: cross-lingual knowledge alignment benchmark library (no Lightning, no Hydra)."""

from clika.errors import ClikaError
from clika.languages import LANGS

__all__ = ["ClikaError", "LANGS"]
