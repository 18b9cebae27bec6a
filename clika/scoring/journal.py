"""A journal of scored request sets, so an interrupted evaluation resumes without scoring a finished set again.

Append-only JSON Lines, one file per rank (`<dir>/rank<r>-of-<world>.jsonl`): a header line with the evaluation's
identity (model, protocol, suite: whatever the caller passes), then one line per request set this rank finished,
holding its shard's results. Each record is written with a single `write` and fsync'd, so a kill leaves at most a
torn last line, which reading ignores: records are atomic. A resume with another identity is refused naming the
keys that differ; one with another world size too (the shards would differ).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Hashable, Mapping

from clika.scoring.loglik import Result
from clika.util.errors import ClikaError


def _key(key: Hashable) -> str:
    return json.dumps(list(key) if isinstance(key, tuple) else key, ensure_ascii=False, default=str)


def _flat(tree: Any, path: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        return {k: v for name, sub in tree.items() for k, v in _flat(sub, f"{path}.{name}" if path else str(name)).items()}
    return {path: tree}


def _read(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the torn last record of a killed run: not finished, scored again
            break
    return rows


class Journal:
    """`done(key)`: this rank's results of a finished set, or None; `record(key, results)` appends one."""

    def __init__(self, folder: str | Path, identity: Mapping[str, Any], rank: int = 0, world: int = 1,
                 resume: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / f"rank{rank}-of-{world}.jsonl"
        self.identity = json.loads(json.dumps(identity, default=str))
        self._done: dict[str, list[Result]] = {}
        self.resumed_items = 0
        others = sorted(p for p in self.folder.glob("rank*-of-*.jsonl") if not p.name.endswith(f"-of-{world}.jsonl"))
        if not resume:  # starting over: no other launch's journal may survive to confuse a later resume
            for stale in others:
                stale.unlink(missing_ok=True)
        elif others:
            raise ClikaError(f"resume: {self.folder} holds the journal of an evaluation with another number of "
                             f"processes ({others[0].name})", fix="resume with the same number of processes, or resume=null "
                             "to start over")
        if resume and self.path.exists():
            rows = _read(self.path)
            if rows and rows[0].get("identity") is not None:
                self._check(rows[0]["identity"])
                for row in rows[1:]:
                    self._done[row["key"]] = [Result(**r) for r in row["results"]]
                self.resumed_items = sum(len(v) for v in self._done.values())
        if not resume or not self.path.exists() or not self._done:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._append({"identity": self.identity}, mode="w")

    def _check(self, old: Mapping[str, Any]) -> None:
        a, b = _flat(old), _flat(self.identity)
        # the model and the protocol first: the keys a user most likely changed by mistake
        changed = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)),
                         key=lambda k: (not k.startswith("model."), k != "clika.protocol", k))
        if changed:
            shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:3])
            raise ClikaError(f"resume: {self.folder.parent} is the output of another evaluation ({shown}"
                             f"{f', and {len(changed) - 3} more keys' if len(changed) > 3 else ''})",
                             fix="use a new output_dir for this evaluation, or resume=null to start this one over")

    def _append(self, row: dict, mode: str = "a") -> None:
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        with open(self.path, mode + "b") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def done(self, key: Hashable) -> list[Result] | None:
        return self._done.get(_key(key))

    def record(self, key: Hashable, results: list[Result]) -> None:
        self._append({"key": _key(key), "results": [asdict(r) for r in results]})

    def close(self) -> None:
        """The evaluation finished and its outputs are written: the journal has served."""
        self.path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass
