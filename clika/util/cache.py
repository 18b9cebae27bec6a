"""Where the project's own artefacts live: `.cache/` under the project root, or $CLIKA_CACHE (the tiny model,
tokenized data, bases, GGUF dequantizations, the fetched release). The user's Hugging Face and W&B homes are
theirs (clika.app.env)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("CLIKA_CACHE", PROJECT_ROOT / ".cache")).resolve()
