"""Config defaults that live in the library's dataclasses, given to Hydra as config nodes: each default is
written once, in the code, and conf/ YAML sets only what a preset changes.

- `model/_spec`: every key of `clika.models.spec.ModelSpec` with its default (conf/model/_hub.yaml and
  conf/model/tiny.yaml start from it: `defaults: [_spec, _self_]`);
- `model/_tiny`: the embedded model's size, `clika.models.spec.TinyConfig` (conf/model/tiny.yaml puts it at
  `model.tiny`), so `model.tiny.hidden_size=64` is a plain override and a resume check shows `128 -> 64`.

The nodes are plain (untyped) dicts: the dataclasses check their own arguments when the run builds them, and
Hydra's struct mode still refuses a key that is not there.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from hydra.core.config_store import ConfigStore

from clika.models.spec import ModelSpec, TinyConfig

# TinyConfig fields the config does not offer: extra tokenizer lines are the library's (bench, tests)
_TINY_LIBRARY_ONLY = ("extra_corpus",)


def model_defaults() -> dict:
    return asdict(ModelSpec())


def tiny_defaults() -> dict:
    return {f.name: getattr(TinyConfig(), f.name) for f in fields(TinyConfig) if f.name not in _TINY_LIBRARY_ONLY}


def register_defaults() -> None:
    """Store the nodes in Hydra's ConfigStore (idempotent; before any compose)."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="_spec", node=model_defaults())
    cs.store(group="model", name="_tiny", node=tiny_defaults())
