"""Config keys that were renamed, one table: an old key fails with one line naming the new one, on the command
line (`check_group_choices`, before Hydra composes) and in a composed config (an experiment file, the compose
API: `check_renamed`)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from clika.util.errors import ClikaError

# old key -> (new key, its values as the fix shows them)
RENAMES: dict[str, tuple[str, str]] = {
    "clika.scorer": ("clika.protocol", "letter|cloze|paper (`generate` became `paper`, the release's protocol)"),
}
# The training callback scores the `clika` node itself (conf/callbacks/default.yaml: `suite: ${clika}`), so a
# key renamed under `clika.` is renamed under `callbacks.clika.suite.` too.
ALSO_UNDER = {"clika.": "callbacks.clika.suite."}


def _expanded() -> dict[str, tuple[str, str]]:
    out = dict(RENAMES)
    for old, (new, values) in RENAMES.items():
        for prefix, alias in ALSO_UNDER.items():
            if old.startswith(prefix) and new.startswith(prefix):
                out[alias + old[len(prefix):]] = (alias + new[len(prefix):], values)
    return out


RENAMED = _expanded()


def renamed_error(key: str) -> ClikaError | None:
    """The error for an old key (None when `key` was not renamed)."""
    if key not in RENAMED:
        return None
    new, values = RENAMED[key]
    return ClikaError(f"{key} was renamed {new}", fix=f"set {new}={values}" if values else f"set {new}")


def check_renamed(cfg: Any) -> None:
    """A composed config that still sets a renamed key (in any config file) fails naming the new key."""
    for old in RENAMED:
        parent, _, leaf = old.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
        if (OmegaConf.is_dict(node) or isinstance(node, dict)) and leaf in node:
            raise renamed_error(old)
