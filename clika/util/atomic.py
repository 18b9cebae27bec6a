"""Atomic writes: a file or folder appears whole or not at all, never half-written.

Everything goes to a temp name beside the target and is renamed over it (`os.replace`, atomic on POSIX).
`tempfile` creates its files 0600 and folders 0700; the result gets the permissions of an ordinary write
under the process umask instead (0644 / 0755 under umask 022), so colleagues on a shared cluster can read
results, checkpoints and exports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Persist a rename in `path` (best effort: not every filesystem allows opening a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", *, fsync: bool = False, **open_kwargs) -> Iterator[IO]:
    """`with atomic_file(p) as f: f.write(...)` writes `p` whole or not at all. `fsync=True` also flushes
    the data and the rename to disk (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path, "w", newline="") as f:
        f.write(text)
    return Path(path)


def honour_umask(folder: Path) -> None:
    """Give every file and folder under `folder` the permissions of an ordinary write under the umask: writers
    that go through their own temp files (transformers' save_pretrained writes model.safetensors 0600) would
    otherwise leave them unreadable to colleagues."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                execute = os.stat(p).st_mode & 0o100
                os.chmod(p, (0o777 if execute else 0o666) & ~mask)


@contextmanager
def atomic_dir(out: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp:` fill `tmp`; on success it becomes `out`.

    replace=False (content-keyed caches): when another process finished `out` first, its folder is kept
    and ours dropped. replace=True (exports): an existing `out` is replaced.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        honour_umask(tmp)
        if replace and out.exists():
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:  # a non-empty `out` appeared meanwhile: another process finished first
            if replace or not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
