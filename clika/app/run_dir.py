"""The run dir's record of how it was made: the resolved config tree and the git SHA (config_tree.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Mapping

import yaml
from rich.console import Console
from rich.tree import Tree

from clika.util.jsonl import atomic_write_text


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
    text = f"# git: {git_sha()}\n" + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    path = atomic_write_text(Path(run_dir) / "config_tree.yaml", text)
    if print_tree:
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
