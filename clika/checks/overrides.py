"""Checks of the command line itself, before Hydra composes anything (so they cost no import of the project)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from clika.errors import ClikaError


# Config keys that were renamed: the old key gets a one-line error naming the new one.
RENAMED = {"clika.scorer": "clika.protocol=letter|cloze|paper (`generate` became `paper`, the release's protocol)",
           "callbacks.clika.suite.scorer": "callbacks.clika.suite.protocol"}


def check_group_choices(overrides: Iterable[str], conf_dir: str | Path) -> None:
    """`group=name` command-line choices must name a file conf/<group>/<name>.yaml, and renamed keys are
    refused (before Hydra composes, so the error is one line naming the key and the fix)."""
    conf_dir = Path(conf_dir)
    for arg in overrides:
        if "=" not in arg or arg.startswith(("~", "hydra.", "+hydra.", "++hydra.")):
            continue
        key, value = arg.split("=", 1)
        if key.lstrip("+") in RENAMED:
            raise ClikaError(f"{key.lstrip('+')} was renamed", fix=f"set {RENAMED[key.lstrip('+')]}")
        group = key.lstrip("+").split("@", 1)[0]
        gdir = conf_dir / group
        if not group or "." in group or not gdir.is_dir() or value in ("null", ""):
            continue
        choices = sorted(p.stem for p in gdir.glob("*.yaml"))
        for v in value.strip("[]").split(","):
            v = v.strip()
            if v and not (gdir / f"{v}.yaml").exists():
                raise ClikaError(f"{group}: unknown preset '{v}'", fix=f"use one of {choices} ({gdir}/)")
