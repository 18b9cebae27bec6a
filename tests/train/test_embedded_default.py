"""The embedded default (`python train.py` = mixed zh + en pretraining of the tiny model) shows the paper's three
levels moving: Performance and Consistency rise, Conductivity stays near chance. Base checkpoints
(`init_from=experiment:<name>`) are built once and cached."""

import csv
from pathlib import Path

import pytest

import clika.train.base as base
from clika.train.run import train

CHANCE = 1 / 8  # 8 continents


def _rows(run_dir) -> dict[int, dict[str, dict]]:
    out: dict[int, dict[str, dict]] = {}
    for r in csv.DictReader((Path(run_dir) / "alignment.csv").open()):
        if r["dataset"] == "fictional":
            out.setdefault(int(r["step"]), {})[r["lang"]] = r
    return out


@pytest.mark.extended
def test_shortened_default_run_moves_performance_and_consistency(train_cfg, capsys):
    """Half the default's 600 steps, probe at the start and the end only (all 80 cities, cloze form)."""
    out = train(train_cfg("trainer.max_steps=300", "callbacks.model_checkpoint.every_n_train_steps=300",
                          "trainer.val_check_interval=300", "export.enabled=false"))
    rows = _rows(out["run_dir"])
    assert sorted(rows) == [0, 300]
    start, end = rows[0], rows[300]
    for lang in ("en", "zh"):
        assert float(start[lang]["acc_type0"]) < CHANCE + 0.1  # untrained: chance
        assert float(end[lang]["acc_type0"]) >= CHANCE + 0.3  # Performance: facts stated in the language
        assert end[lang]["trained"] == "1" and float(end[lang]["chance"]) == CHANCE
    assert int(end["zh"]["n"]) == 80
    assert float(end["zh"]["en_co"]) >= float(start["zh"]["en_co"]) + 0.3  # Consistency with English
    # Conductivity: zh type-1 facts were stated in English only; English knows them far better than zh
    assert float(end["en"]["acc_type1"]) - float(end["zh"]["acc_type1"]) >= 0.25
    printed = capsys.readouterr().out
    assert "== alignment: step 0 -> step 300" in printed and "Conductivity" in printed
    assert (Path(out["run_dir"]) / "alignment_curves.png").stat().st_size > 10_000


def test_a_base_checkpoint_is_built_once_and_keyed_by_its_settings(train_cfg, tmp_path, monkeypatch):
    """init_from=experiment:pretrain_en trains that experiment once into the cache, then reuses it."""
    monkeypatch.setenv("CLIKA_CACHE", str(tmp_path / "cache"))
    compose = base.base_config
    monkeypatch.setattr(base, "base_config", lambda name, parent, out: _with_steps(compose(name, parent, out), 2))
    built = []
    real_train = __import__("clika.train.run", fromlist=["train"]).train
    monkeypatch.setattr("clika.train.run.train", lambda cfg: built.append(cfg.task_name) or real_train(cfg))
    parent = train_cfg("experiment=continued_pretrain_zh")
    first = base.resolve_base("experiment:pretrain_en", parent)
    assert built == ["pretrain_en"] and Path(first, "config.json").is_file() and Path(first, "tokenizer.json").is_file()
    assert Path(first).parent == tmp_path / "cache" / "models" and not list(Path(first).glob("run"))
    assert base.resolve_base("experiment:pretrain_en", parent) == first and built == ["pretrain_en"]  # cached
    monkeypatch.setattr(base, "base_config", lambda name, parent, out: _with_steps(compose(name, parent, out), 3))
    assert base.resolve_base("experiment:pretrain_en", parent) != first  # other settings, other weights
    out = train(train_cfg("experiment=continued_pretrain_zh", "trainer.max_steps=2", "export.enabled=false",
                          "fictional.limit=4"))
    assert out["global_step"] == 2 and built == ["pretrain_en", "pretrain_en"]  # the run used the cached base


def _with_steps(cfg, n):
    cfg.trainer.max_steps = n
    return cfg


def test_unknown_base_experiment_is_a_clear_error(train_cfg):
    from clika.util.errors import ClikaError

    with pytest.raises(ClikaError, match="init_from: no experiment 'nope'"):
        base.resolve_base("experiment:nope", train_cfg())


@pytest.mark.slow
@pytest.mark.parametrize("x", ["zh", "de"])
def test_mixed_pretrain_default_reaches_the_documented_levels(train_cfg, x):
    """The full default of experiment=mixed_pretrain_<x>: Performance and en-CO >= chance + 0.3 at the end."""
    out = train(train_cfg(f"experiment=mixed_pretrain_{x}", "export.enabled=false"))
    rows = _rows(out["run_dir"])
    assert sorted(rows) == [0, 150, 300, 450, 600]
    end = rows[600]
    assert float(end["en"]["acc_type0"]) >= CHANCE + 0.3 and float(end[x]["acc_type0"]) >= CHANCE + 0.3
    assert float(end[x]["en_co"]) >= CHANCE / (2 - CHANCE) + 0.3
    assert float(end[x]["acc_type1"]) < float(end["en"]["acc_type1"])  # conductivity lags English


@pytest.mark.slow
def test_continued_pretraining_learns_zh_and_costs_english(train_cfg):
    out = train(train_cfg("experiment=continued_pretrain_zh", "export.enabled=false"))
    rows = _rows(out["run_dir"])
    start, end = rows[0], rows[max(rows)]
    assert float(start["en"]["acc_type0"]) >= 0.8  # the English-pretrained base knows the facts in English
    assert float(end["zh"]["acc_type0"]) >= CHANCE + 0.5
    assert float(end["en"]["acc_type0"]) < float(start["en"]["acc_type0"])  # forgetting: English only in the base
