"""How an evaluation was made, for results.json (as lm-evaluation-harness records it): package versions, dtype,
device(s), world size, date, wall time and items/s, beside the git SHA."""

from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version

from clika.app.run_dir import git_sha

PACKAGES = ("clika", "torch", "transformers", "peft", "accelerate")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def provenance(*, dtype: str, device: str, world: int, wall_s: float, items: int, started: float,
               resumed_items: int = 0) -> dict:
    """`items`: scored in all; `resumed_items`: of those, taken from an interrupted attempt's journal."""
    return {"versions": versions(), "git": git_sha(), "dtype": dtype, "device": device, "world_size": world,
            "date": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(wall_s, 3), "items": items, "resumed_items": resumed_items,
            "items_per_s": round((items - resumed_items) / wall_s, 3) if wall_s else None}
