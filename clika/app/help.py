"""`python train.py --help` / `eval.py --help`: presets per group, commands, the README's examples
(rendered by `${clika_help:}`, hydra.help.template in conf/hydra/default.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from clika.app.checks.overrides import presets
from clika.app.env import PROJECT_ROOT


def _app_groups(conf_dir: Path, app: str) -> list[str]:
    """The config groups an app's defaults list selects (conf/<app>.yaml), with their sub-groups (data/mix)."""
    text = (conf_dir / f"{app}.yaml").read_text(encoding="utf-8")
    groups = []
    for m in re.finditer(r"^\s*-\s*(?:override\s+)?/?([\w/]+)(?:@[\w.]+)?\s*:", text, flags=re.M):
        g = m.group(1)
        if g not in ("hydra", "paths") and (conf_dir / g).is_dir():
            groups.append(g)
            groups += sorted(f"{g}/{d.name}" for d in (conf_dir / g).iterdir() if d.is_dir())
    return groups


def readme_examples(readme: Path, app: str) -> list[str]:
    """The README's `python <app>.py ...` command lines (its fenced bash blocks), comments kept."""
    lines, inside = [], False
    for line in readme.read_text(encoding="utf-8").splitlines() if readme.exists() else []:
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if inside and line.lstrip().startswith(f"python {app}.py"):
            lines.append(line.strip())
    return lines


def help_text(app: str, commands: list[str], root: Path | None = None) -> str:
    """`python <app>.py --help`: presets per group (bases starting with `_` hidden), commands (`task=`), the README's
    examples, and where the rest is. `$` doubled: Hydra passes the template through string.Template."""
    root = root or PROJECT_ROOT
    conf = root / "conf"
    doc = {"train": "train a model (Lightning), with CLiKA alignment curves during training",
           "eval": "evaluate a model on the CLiKA suite (RA, en-CO, XRR) and run the side commands"}.get(app, app)
    out = [f"python {app}.py — {doc}", "",
           f"usage: python {app}.py [group=preset ...] [key=value ...] [-m: a sweep over comma-separated values]",
           "", "presets (group=preset):"]
    for g in _app_groups(conf, app):
        out.append(f"  {g:<12} {', '.join(presets(conf / g, app))}")
    out += ["", "commands: " + " | ".join(f"task={t}" for t in commands), "", "examples (README.md):"]
    out += [f"  {line}" for line in readme_examples(root / "README.md", app)]
    out += ["", f"all keys and values: python {app}.py [overrides] --cfg job      Hydra's flags: --hydra-help",
            f"shell completion (bash): eval \"$(python {app}.py -sc install=bash)\"",
            "errors: one line naming the key and the fix, exit 2; traceback=true (or CLIKA_DEBUG=1) adds the traceback"]
    return "\n".join(out).replace("$", "$$") + "\n"


def register_help(app: str, commands: list[str]) -> None:
    """`${clika_help:}` in conf/hydra/default.yaml renders this app's help."""
    OmegaConf.register_new_resolver("clika_help", lambda: help_text(app, commands), replace=True)
