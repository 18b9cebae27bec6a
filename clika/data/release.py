"""The official CLiKA data release, fetched at a pinned commit and verified: `python eval.py task=get_data`.

The release (RiverGao/CLiKA on GitHub) carries no licence file, so this project does not ship its data: it
downloads the benchmark files the Basic, Factual and Fictional streams read (each dataset's files in
clika.data.registry; not the published model outputs) from the pinned commit into
`<cache>/clika-data/<commit>`, checks each against the SHA-256, byte and line counts recorded in
`clika/assets/release_manifest.json`, and only then renames the folder into place. `default_data_root()` (the
`${clika_data:}` resolver of conf/paths) returns `CLIKA_DATA` when set, else that folder when complete.

The reference for the manifest is the copy of the release the team works from (/work/shared/clika-data, the
same files as the repository at the pinned commit); `python -m clika.data.release MANIFEST_FROM_DIR` rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clika.data.registry import release_globs
from clika.util.atomic import atomic_dir
from clika.util.cache import cache_root
from clika.util.errors import ClikaError

REPO = "RiverGao/CLiKA"
COMMIT = "51059fe908ae2508740732056d8db3eba6c0f751"  # the release's data commit (its files = the reference copy)
BASE_URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/"
MANIFEST = "assets/release_manifest.json"
# The release files the streams read (relative to the repository root), as glob patterns: the registry's.
PATTERNS = release_globs()
COMPLETE = ".clika-release.json"  # written last: a folder without it is not a verified release


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    bytes: int
    lines: int


def _digest(data: bytes) -> tuple[str, int, int]:
    return hashlib.sha256(data).hexdigest(), len(data), data.count(b"\n")


def manifest_from_dir(root: str | Path) -> dict:
    """The manifest of a copy of the release: every PATTERNS file with its SHA-256, bytes and lines."""
    root = Path(root)
    files = sorted({p.relative_to(root).as_posix() for pat in PATTERNS for p in root.glob(pat)})
    if not files:
        raise ClikaError(f"{root}: no release files ({', '.join(PATTERNS[:2])}, ...)",
                         fix="point it at a copy of the CLiKA release")
    entries = {}
    for rel in files:
        sha, nbytes, lines = _digest((root / rel).read_bytes())
        entries[rel] = {"sha256": sha, "bytes": nbytes, "lines": lines}
    return {"repo": REPO, "commit": COMMIT, "files": entries}


def load_manifest() -> list[FileEntry]:
    data = json.loads(resources.files("clika").joinpath(MANIFEST).read_text(encoding="utf-8"))
    return [FileEntry(p, **v) for p, v in sorted(data["files"].items())]


def release_dir(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir) if cache_dir is not None else cache_root() / "clika-data" / COMMIT[:12]


def is_complete(root: str | Path) -> bool:
    return (Path(root) / COMPLETE).is_file()


def default_data_root() -> str | None:
    """CLIKA_DATA when set, else the downloaded release when complete, else None (embedded streams only)."""
    env = os.environ.get("CLIKA_DATA")
    if env:
        return env
    root = release_dir()
    return str(root) if is_complete(root) else None


def verify(root: str | Path, entries: list[FileEntry] | None = None) -> list[str]:
    """Problems of a copy against the manifest (empty when every file matches)."""
    root = Path(root)
    problems = []
    for e in entries or load_manifest():
        f = root / e.path
        if not f.is_file():
            problems.append(f"{e.path}: missing")
            continue
        sha, nbytes, lines = _digest(f.read_bytes())
        if sha != e.sha256:
            problems.append(f"{e.path}: checksum {sha[:12]} != recorded {e.sha256[:12]} "
                            f"({nbytes} bytes / {lines} lines, recorded {e.bytes} / {e.lines})")
    return problems


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # http(s) and file:// mirrors alike
        return r.read()


def get_data(base_url: str = BASE_URL, dest: str | Path | None = None, timeout: float = 30.0) -> dict:
    """Download every manifest file from `base_url` (the pinned commit on GitHub, or a mirror such as
    file:///path/to/copy/), verify it, and move the folder into place. Returns {"root", "files", "bytes",
    "lines", "downloaded"}; an already complete folder is verified again, not downloaded."""
    entries = load_manifest()
    out = release_dir(dest)
    summary = {"root": str(out), "files": len(entries), "bytes": sum(e.bytes for e in entries),
               "lines": sum(e.lines for e in entries), "commit": COMMIT}
    if is_complete(out):
        problems = verify(out, entries)
        if problems:
            raise ClikaError(f"{out}: the downloaded release no longer matches its checksums ({problems[0]}; "
                             f"{len(problems)} file(s))", fix=f"delete {out} and run `python eval.py task=get_data` again")
        return {**summary, "downloaded": False}
    base = base_url if base_url.endswith("/") else base_url + "/"
    with atomic_dir(out, replace=True) as tmp:
        for i, e in enumerate(entries):
            url = base + e.path
            try:
                data = _fetch(url, timeout)
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                raise ClikaError(f"cannot download the CLiKA release: {url} ({reason})",
                                 fix="without network, point CLIKA_DATA at a copy of the release "
                                     "(export CLIKA_DATA=/path/to/clika-data) or pass base_url=file:///path/to/copy/")
            sha, nbytes, lines = _digest(data)
            if sha != e.sha256:
                raise ClikaError(f"{url}: checksum {sha[:12]} != recorded {e.sha256[:12]} ({nbytes} bytes / "
                                 f"{lines} lines, recorded {e.bytes} / {e.lines})",
                                 fix=f"the source does not serve the release at commit {COMMIT[:12]}; "
                                     "check base_url, or point CLIKA_DATA at a verified copy")
            target = tmp / e.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if (i + 1) % 20 == 0 or i + 1 == len(entries):
                print(f"  {i + 1}/{len(entries)} files", flush=True)
        (tmp / COMPLETE).write_text(json.dumps({**summary, "source": base}, indent=2) + "\n", encoding="utf-8")
    return {**summary, "downloaded": True}


if __name__ == "__main__":  # python -m clika.data.release /work/shared/clika-data  -> rewrites the manifest
    target = Path(__file__).parents[1] / MANIFEST
    target.write_text(json.dumps(manifest_from_dir(sys.argv[1]), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target}")
