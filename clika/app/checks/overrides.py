"""Checks of the command line itself, before Hydra composes the run (so a typo costs no import of the project
and leaves no run dir behind).

- `check_group_choices`: `group=name` must name a preset file conf/<group>/<name>.yaml; files whose name starts
  with `_` are bases other presets extend (conf/model/_hub.yaml), not choices.
- `check_overrides`: every `key=value` must name a key of the composed config, and `+key=value` may only add a
  key under an *open* node. Both checks compare with the config composed from the command line's group choices
  (the entry point passes it in: clika/ imports no Hydra) and name the closest existing key.

Open nodes (where `+` may add keys) are declared once, beside the callback that runs the checks, in
conf/hydra/default.yaml (`hydra.callbacks.checks.open` / `.kwargs_of`), and are derived from the config:
- a node listed in `open` (a name -> entry mapping a user extends: `+callbacks.<name>._target_=pkg.Class`,
  `+data/source@data.mix.sources.<name>=...`, `strategy.kwargs.*`, `clika.custom.<name>`, ...);
- a node with `_target_` (keyword arguments of the object it builds: `+optimizer.foo=...`), when the target
  accepts that keyword;
- a node listed in `kwargs_of` (node -> the callable its keys are passed to: `trainer` -> Lightning's Trainer),
  when that callable accepts the keyword (`+trainer.fast_dev_run=true` is fine, `+trainer.max_step=2` is not).
  The callable is imported only for such an override, by the name the config gives.
Everything else is closed: `+clika.languages=[en,zh]` is refused instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from clika.app.checks.renames import RENAMED, renamed_error
from clika.util.errors import ClikaError

# Hydra flags that take a value in the next argument (their value is no override)
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
                     "--package", "-p", "--info", "--shell-completion", "-sc", "--experimental-rerun"}


def presets(group_dir: Path, app: str | None = None) -> list[str]:
    """The presets of a config group offered to users (files starting with `_` are bases, not choices); with
    `app` (train | eval), only those that app can take (`foreign_keys`)."""
    names = sorted(p.stem for p in group_dir.glob("*.yaml") if not p.stem.startswith("_"))
    if app is None:
        return names
    return [n for n in names if not foreign_keys(group_dir / f"{n}.yaml", app)]


def _other(app: str) -> str:
    return "train" if app == "eval" else "eval"


@functools.lru_cache(maxsize=None)
def _app_top_keys(conf_dir: Path, app: str) -> frozenset[str]:
    """The top-level keys of conf/<app>.yaml: its own keys and the groups its defaults list selects."""
    doc = yaml.safe_load((conf_dir / f"{app}.yaml").read_text(encoding="utf-8")) or {}
    keys = {k for k in doc if k != "defaults"}
    for entry in doc.get("defaults", []):
        name = next(iter(entry)) if isinstance(entry, dict) else entry
        name = str(name).removeprefix("override ").lstrip("/").split("@", 1)[0].split("/", 1)[0]
        if name != "_self_":
            keys.add(name)
    return frozenset(keys)


def foreign_keys(preset: Path, app: str) -> list[str]:
    """The top-level keys a `# @package _global_` preset sets that belong to the other app's config and not
    to `app`'s (debug=fast sets `trainer`, a train.py key): non-empty means the preset is not for `app`. A key
    neither app has (an experiment's own `lang`) is the preset's business."""
    text = preset.read_text(encoding="utf-8")
    if "@package _global_" not in text:
        return []
    doc = yaml.safe_load(text) or {}
    conf_dir = preset.parent.parent
    own, theirs = _app_top_keys(conf_dir, app), _app_top_keys(conf_dir, _other(app))
    return sorted(k for k in doc if k != "defaults" and k in theirs and k not in own)


def overrides_of(argv: Iterable[str]) -> list[str]:
    """The `key=value` / `~key` arguments of a command line (Hydra's flags and their values dropped)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
            continue
        out.append(arg)
    return out


def _split(arg: str) -> tuple[str, str, str | None]:
    """('+' | '++' | '~' | '', key, value or None)."""
    key, value = (arg.split("=", 1) + [None])[:2] if "=" in arg else (arg, None)
    prefix = "++" if key.startswith("++") else key[:1] if key[:1] in "+~" else ""
    return prefix, key[len(prefix):], value


def _group(key: str, conf_dir: Path) -> str | None:
    """The config group a key selects (`model`, `data/mix`, `data/source@data.mix.sources.x`), or None."""
    group = key.split("@", 1)[0]
    return group if group and "." not in group and (conf_dir / group).is_dir() else None


def check_group_choices(overrides: Iterable[str], conf_dir: str | Path, app: str | None = None) -> None:
    """`group=name` command-line choices must name a file conf/<group>/<name>.yaml (one `app` can take, when
    given), and renamed keys are refused (before Hydra composes, so the error is one line naming the key and
    the fix)."""
    conf_dir = Path(conf_dir)
    for arg in overrides_of(overrides):
        prefix, key, value = _split(arg)
        if value is None or prefix == "~" or key.startswith("hydra."):
            continue
        if key in RENAMED:
            raise renamed_error(key)
        group = _group(key, conf_dir)
        if group is None or value in ("null", ""):
            continue
        gdir, choices = conf_dir / group, presets(conf_dir / group)
        for v in value.strip("[]").split(","):
            v = v.strip()
            if not v:
                continue
            if v.startswith("_") and (gdir / f"{v}.yaml").exists():
                extra = (" or keep the default model and set model.name_or_path=<hub id or HF dir> "
                         "(+ model.name=<label>)" if group == "model" else "")
                raise ClikaError(f"{group}: '{v}' is the base the {group} presets extend, not a preset",
                                 fix=f"use one of {choices}{extra}")
            if not (gdir / f"{v}.yaml").exists():
                raise ClikaError(f"{group}: unknown preset '{v}'", fix=f"use one of {choices} ({gdir}/)")
            foreign = foreign_keys(gdir / f"{v}.yaml", app) if app else []
            if foreign:
                other = f"{_other(app)}.py"
                raise ClikaError(f"{group}={v} is a {other} preset: it sets {', '.join(foreign)}, which {app}.py "
                                 "does not have", fix=f"use one of {presets(gdir, app)} with {app}.py, or run "
                                 f"{other} {group}={v}")


def group_overrides(overrides: Iterable[str], conf_dir: str | Path) -> list[str]:
    """The group choices of a command line (first value of a sweep), to compose the config they select."""
    conf_dir, out = Path(conf_dir), []
    for arg in overrides_of(overrides):
        prefix, key, value = _split(arg)
        if key.startswith("hydra") or _group(key, conf_dir) is None:
            continue
        if value is not None and "," in value and not value.startswith("["):
            value = value.split(",", 1)[0]  # a multirun sweep over presets: its first choice
        out.append(f"{prefix}{key}" + ("" if value is None else f"={value}"))
    return out


# ---------------------------------------------------------------- keys of the composed config
def _keys(node: Any) -> list:
    if isinstance(node, DictConfig):
        return list(node.keys())  # includes keys whose value is ??? (`in` would not)
    if isinstance(node, ListConfig):
        return [str(i) for i in range(len(node))]
    return []


def _child(node: Any, key: str) -> Any:
    return node._get_node(int(key) if isinstance(node, ListConfig) else key)


def _walk(cfg: Any, key: str) -> tuple[str, Any, str | None]:
    """(longest existing prefix of `key`, its node, the first missing part or None when `key` exists)."""
    node, done = cfg, []
    for part in key.split("."):
        if part not in _keys(node):
            return ".".join(done), node, part
        node = _child(node, part)
        done.append(part)
    return key, node, None


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (nodes and leaves), `hydra` excluded."""
    out = []
    for k in _keys(cfg):
        if not prefix and k == "hydra":
            continue
        full = f"{prefix}{k}"
        out.append(full)
        child = _child(cfg, k)
        if isinstance(child, DictConfig):
            out += flat_keys(child, full + ".")
    return out


def closest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `key`: same parent first, then the whole config."""
    candidates = list(dict.fromkeys(candidates))
    parent = key.rpartition(".")[0]
    siblings = [c for c in candidates if c.rpartition(".")[0] == parent]
    for pool in (siblings, candidates):
        match = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
        if match:
            return match[0]
    leaf = key.rpartition(".")[2]  # same leaf name elsewhere (trainer.langs -> callbacks.clika.langs)
    same = [c for c in candidates if c.rpartition(".")[2] == leaf]
    return same[0] if same else None


def _accepted_kwargs(target: str) -> tuple[set[str], bool] | None:
    """(keyword names, takes **kwargs) of the callable a config names; None when it cannot be imported."""
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
        sig = inspect.signature(obj)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    params = sig.parameters.values()
    return ({p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)},
            any(p.kind is p.VAR_KEYWORD for p in params))


def _open(base: Any, existing: str, node: Any, missing: str, open_nodes: Iterable[str],
          kwargs_of: Mapping[str, str]) -> tuple[bool, list[str]]:
    """(may `+` add `missing` under `existing`?, extra candidate keys for a suggestion)."""
    if any(existing == o or existing.startswith(o + ".") for o in open_nodes):
        return True, []
    target = kwargs_of.get(existing) or (str(node.get("_target_")) if isinstance(node, DictConfig)
                                         and "_target_" in _keys(node) else None)
    if target is None:
        return False, []
    accepted = _accepted_kwargs(target)
    if accepted is None:
        return True, []  # cannot tell: let the object's constructor decide
    names, var_kw = accepted
    return missing in names or var_kw, [f"{existing}.{n}" for n in sorted(names) if n != "self"]


def check_overrides(overrides: Iterable[str], base: Any, conf_dir: str | Path, script: str = "train.py",
                    open_nodes: Iterable[str] = (), kwargs_of: Mapping[str, str] | None = None) -> None:
    """Every value override names a key of `base` (the config composed from the group choices alone), and
    every `+key` addition lands under an open node (module docstring). One line naming the key, the closest
    existing key and the corrected override."""
    conf_dir, kwargs_of = Path(conf_dir), dict(kwargs_of or {})
    open_nodes = list(open_nodes)
    keys = None
    for arg in overrides_of(overrides):
        prefix, key, value = _split(arg)
        if key.startswith("hydra.") or key == "hydra" or _group(key, conf_dir) is not None or prefix == "~":
            continue
        existing, node, missing = _walk(base, key)
        shown = f"{prefix}{key}" + ("" if value is None else f"={value}")
        if missing is None:
            if prefix == "+":
                raise ClikaError(f"+{key}: '{key}' is already a key of the config ('+' adds a new key)",
                                 fix=f"drop the '+': {key}={value}")
            continue
        keys = keys if keys is not None else flat_keys(base)
        extra: list[str] = []
        if prefix in ("+", "++"):
            allowed, extra = _open(base, existing, node, missing, open_nodes, kwargs_of)
            if allowed:
                continue
        guess = closest(key, [*keys, *extra])
        did = f" (did you mean {guess}?)" if guess else ""
        if guess:
            fix = (f"{guess}={value}" if guess in keys else f"+{guess}={value}") if value is not None else guess
        else:
            fix = f"list the keys with `python {script} --cfg job`"
        where = f"'{existing}' has no key '{missing}'" if existing else f"the config has no key '{missing}'"
        if prefix in ("+", "++"):
            opened = ", ".join([*open_nodes, *kwargs_of]) or "none"
            raise ClikaError(f"{shown}: {where}{did}; '+' adds keys only under open nodes ({opened}) or to a "
                             "_target_'s keyword arguments", fix=fix)
        raise ClikaError(f"{key}: {where}{did}", fix=fix)


def check_command_line(argv: Iterable[str], conf_dir: str | Path, compose: Callable[[list[str]], Any],
                       script: str) -> None:
    """The command-line checks of an entry point: group choices, then keys (composing only when the command
    line sets values: `compose(group_overrides)` returns the config with its `hydra` node)."""
    argv = list(argv)
    if any(a in ("--help", "-h", "--hydra-help", "--shell-completion", "-sc", "--info") for a in argv):
        return
    check_group_choices(argv, conf_dir, Path(script).stem)
    values = [a for a in overrides_of(argv) if _group(_split(a)[1], Path(conf_dir)) is None
              and not _split(a)[1].startswith("hydra") and _split(a)[0] != "~"]
    if not values:
        return
    try:
        base = compose(group_overrides(argv, conf_dir))
    except Exception:  # noqa: BLE001 - Hydra reports its own composition errors next
        return
    checks = OmegaConf.select(base, "hydra.callbacks.checks", default=None) or {}
    check_overrides(values, base, conf_dir, script, list(checks.get("open") or []),
                    dict(checks.get("kwargs_of") or {}))
