"""Each default is written once, in the library's code: conf/model starts from ModelSpec's and TinyConfig's
defaults (clika.app.defaults), conf/fictional/default.yaml writes null for FictionalTask's, and no preset
repeats a value it inherits."""

import inspect
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from clika.app.compose import CONF, compose
from clika.app.defaults import model_preset
from clika.fictional.task import FictionalTask
from clika.models.spec import ModelSpec, TinyConfig

# keys a preset may state although they equal what it inherits: the release's model class (protocol.family) and
# "no revision pinned" are facts about that model, stated with their reasons in the preset's comments
STATED = {"protocol", "revision"}


def test_the_default_model_is_the_dataclasses_defaults():
    model = OmegaConf.to_container(compose("train", []).model, resolve=True)
    tiny = model.pop("tiny")
    spec = asdict(ModelSpec())
    spec.pop("tiny")
    assert {k: v for k, v in model.items() if k != "protocol"} == {k: v for k, v in spec.items() if k != "protocol"}
    assert tiny == {f.name: getattr(TinyConfig(), f.name) for f in fields(TinyConfig) if f.name != "extra_corpus"}
    built = compose("train", ["model.tiny.hidden_size=64"]).model.tiny
    assert TinyConfig(**built) == TinyConfig(hidden_size=64)


def test_no_model_preset_repeats_a_value_it_inherits():
    hub = yaml.safe_load((CONF / "model" / "_hub.yaml").read_text())
    base = asdict(ModelSpec())
    assert not [k for k, v in hub.items() if k in base and base[k] == v], "conf/model/_hub.yaml repeats ModelSpec"
    inherited = {**base, **{k: v for k, v in hub.items() if k != "defaults"}}
    repeats = {}
    for p in sorted((CONF / "model").glob("*.yaml")):
        if p.stem.startswith("_"):
            continue
        doc = yaml.safe_load(p.read_text()) or {}
        parent = base if "_hub" not in str(doc.get("defaults")) else inherited
        same = [k for k, v in doc.items() if k not in ("defaults", *STATED) and k in parent and parent[k] == v]
        if same:
            repeats[p.name] = same
    assert repeats == {}


def test_fictional_yaml_leaves_the_task_defaults_to_the_task():
    params = inspect.signature(FictionalTask.__init__).parameters
    doc = yaml.safe_load((CONF / "fictional" / "default.yaml").read_text())
    assert set(doc) == set(params) - {"self", "cache_dir"}  # every key of the schema listed, none extra
    repeated = [k for k, v in doc.items() if v is not None and v == params[k].default]
    assert repeated == []
    task = FictionalTask.from_config({**doc, "limit": 2})
    assert (task.scorers, task.gate, task.threshold, task.seed, task.form) == \
        (list(params["scorers"].default), "generate", params["threshold"].default, params["seed"].default, "qa")


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_")))
def test_a_preset_composed_without_hydra_is_what_hydra_composes(name):
    """`init_from=<preset>` inside a running train(cfg) composes the preset without Hydra (clika.app.defaults)."""
    assert model_preset(CONF / "model" / f"{name}.yaml") == \
        OmegaConf.to_container(compose("eval", [f"model={name}"]).model, resolve=True)
