"""Entry-point glue: one-line errors for bad input, the run's config tree and git SHA in its run dir."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from clika.errors import ClikaError
from clika.jsonl import atomic_write_text


def is_debug() -> bool:
    return os.environ.get("CLIKA_DEBUG", "0") not in ("", "0", "false") or "traceback=true" in sys.argv


def friendly_errors(fn: Callable) -> Callable:
    """Print a ClikaError on one line and exit 2; a traceback only with traceback=true / CLIKA_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ClikaError as e:
            if is_debug():
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def git_sha(root: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root or Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty and sha != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_run_config(run_dir: str | Path, config: Mapping[str, Any], print_tree: bool = True) -> Path:
    """Write config_tree.yaml (resolved config + git SHA) into the run dir and print it as a tree."""
    import yaml

    text = f"# git: {git_sha()}\n" + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    path = atomic_write_text(Path(run_dir) / "config_tree.yaml", text)
    if print_tree:
        from rich.console import Console
        from rich.tree import Tree

        tree = Tree(f"config  [dim](git {git_sha()[:12]}, saved to {path})")

        def add(node, value):
            for k, v in value.items():
                if isinstance(v, Mapping):
                    add(node.add(f"[bold]{k}"), v)
                else:
                    node.add(f"{k}: {v!r}")

        add(tree, config)
        Console(stderr=True).print(tree)
    return path


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
