"""CLiKA: cross-lingual knowledge alignment benchmark library (no Lightning, no Hydra)."""

from clika.util.errors import ClikaError
from clika.util.languages import LANGS

__all__ = ["ClikaError", "LANGS"]
