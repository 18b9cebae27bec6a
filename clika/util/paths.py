"""Output folders: the run dir must be writable before anything is written into it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from clika.util.errors import ClikaError


def is_local_path(text: str) -> bool:
    """A model path meant as a local folder rather than a hub id (`org/name`): it starts with . / ~ or has
    more than one path separator."""
    return text.startswith((".", "/", "~")) or os.sep in text.strip("/").split("/", 1)[-1]


def check_output_dir(path: str | Path, key: str = "paths.output_dir") -> Path:
    """Create the output dir and prove it is writable (a temp file written and removed)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".clika-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ClikaError(f"{key}: cannot write to '{path}' ({e.strerror or type(e).__name__})",
                         fix="point hydra.run.dir (or paths.log_dir) at a writable folder") from None
    return path
