"""Config defaults that live in the library's dataclasses, given to Hydra as config nodes: each default is
written once, in the code, and conf/ YAML sets only what a preset changes.

- `model/_spec`: every key of `clika.models.spec.ModelSpec` with its default (conf/model/_hub.yaml and
  conf/model/tiny.yaml start from it: `defaults: [_spec, _self_]`);
- `model/_tiny`: the embedded model's size, `clika.models.spec.TinyConfig` (conf/model/tiny.yaml puts it at
  `model.tiny`), so `model.tiny.hidden_size=64` is a plain override and a resume check shows `128 -> 64`.

The nodes are plain (untyped) dicts: the dataclasses check their own arguments when the run builds them, and
Hydra's struct mode still refuses a key that is not there. `model_preset` composes one conf/model preset the
same way without Hydra (a running `train(cfg)` resolving `init_from=<preset>` cannot compose again).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from clika.models.spec import ModelSpec, TinyConfig

# TinyConfig fields the config does not offer: extra tokenizer lines are the library's (bench, tests)
_TINY_LIBRARY_ONLY = ("extra_corpus",)


def model_defaults() -> dict:
    return asdict(ModelSpec())


def tiny_defaults() -> dict:
    return {f.name: getattr(TinyConfig(), f.name) for f in fields(TinyConfig) if f.name not in _TINY_LIBRARY_ONLY}


NODES = {"_spec": model_defaults, "_tiny": tiny_defaults}  # the conf/model group's nodes built from the code


def register_defaults() -> None:
    """Store the nodes in Hydra's ConfigStore (idempotent; before any compose)."""
    # deferred: Hydra's ConfigStore costs ~0.2 s of import, which clika.train / clika.eval (importing
    # clika.app.launch, Hydra-free otherwise) would pay for nothing
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, make in NODES.items():
        cs.store(group="model", name=name, node=make())


def model_preset(path: Path) -> dict[str, Any]:
    """conf/model/<name>.yaml over its defaults list (other presets of the group, the nodes above, `@package`
    for a sub-key; `_self_` where listed, else last), as Hydra composes `model=<name>`; resolved."""
    node = OmegaConf.load(path)
    entries = [str(e) for e in node.pop("defaults", [])]
    if "_self_" not in entries:
        entries.append("_self_")
    parts = []
    for entry in entries:
        name, _, package = entry.partition("@")
        if name == "_self_":
            part: Any = node
        else:
            part = NODES[name]() if name in NODES else model_preset(path.parent / f"{name}.yaml")
        parts.append({package: part} if package else part)
    return OmegaConf.to_container(OmegaConf.merge(*parts), resolve=True)
