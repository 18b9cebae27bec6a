"""`eval.py task=make_fictional` and `task=conductivity` (the fictional stream's side tasks)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clika.app.compose import compose
from clika.eval.conductivity import conductivity, make_fictional

ROOT = Path(__file__).resolve().parents[2]


def test_make_fictional_then_conductivity_tasks(tmp_path, capsys):
    root = ROOT
    composed = compose("eval", [])  # the model and fictional nodes `python eval.py` composes
    base = {"model": composed.model, "fictional": composed.fictional, "threads": None, "device": "cpu"}
    cfg = OmegaConf.create({**base, "output_dir": str(tmp_path / "gen"), "seed": 5, "cities": 2, "continents": 3})
    made = make_fictional(cfg)
    assert made["defects"] == [] and made["world"]["continents"] == 3
    assert (tmp_path / "gen" / "train" / "ZH.json").is_file() and (tmp_path / "gen" / "corpus" / "he.txt").is_file()
    # 3 type-0 facts and 9 names x 2 directions, in 4 shuffled passes (clika.fictional.records.render_corpus)
    assert len((tmp_path / "gen" / "corpus" / "de.txt").read_text(encoding="utf-8").splitlines()) == 4 * (3 + 2 * 9)
    assert "release check: clean" in capsys.readouterr().out
    cfg = OmegaConf.create({**base, "output_dir": str(tmp_path / "cond")})
    cfg.fictional.root, cfg.fictional.lang, cfg.fictional.limit, cfg.fictional.scorers = str(tmp_path / "gen"), "ja", 4, ["mc"]
    cfg.fictional.gate = "mc"
    res = conductivity(cfg)
    report = json.loads((tmp_path / "cond" / "conductivity.json").read_text(encoding="utf-8"))
    assert report["x"] == "ja" and report["chance"] == pytest.approx(1 / 3) and report["gate_passed"] is False
    assert set(report["results"]["mc"]["langs"]) == {"en", "ja"} and set(report["tokenization"]) == {"en", "ja"}
    assert "chance 33.3%" in (tmp_path / "cond" / "conductivity.md").read_text(encoding="utf-8")
    rows = (tmp_path / "cond" / "conductivity_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4 + 4 + 4 and res["report"]["xrr"] is None
    cfg.fictional.lang = None
    with pytest.raises(Exception, match="fictional.lang"):
        conductivity(cfg)


def test_conductivity_asks_with_the_template_the_export_was_trained_with(tmp_path):
    """An export records its run's data.template (clika_training.json); task=conductivity renders the prompts with
    it, and a fictional.template that contradicts it is refused with one line."""
    import shutil

    from clika.util.errors import ClikaError
    from clika.models.load import TRAINING_RECORD, ModelSpec, resolve_model_dir
    from clika.eval.conductivity import training_template

    assert training_template(None, {}, "m") == "alpaca" and training_template("llama2", {}, "m") == "llama2"
    assert training_template(None, {"data.template": "plain"}, "m") == "plain"
    with pytest.raises(ClikaError, match="fictional.template=alpaca but m was trained with data.template=plain"):
        training_template("alpaca", {"data.template": "plain"}, "m")

    export = tmp_path / "run" / "export" / "hf"
    shutil.copytree(resolve_model_dir(ModelSpec()), export)
    (export / TRAINING_RECORD).write_text(json.dumps({"data.template": "plain"}), encoding="utf-8")
    composed = compose("eval", [])
    fict, model = composed.fictional, composed.model
    model.name_or_path = str(export)
    cfg = OmegaConf.create({"model": model, "fictional": fict, "threads": None, "device": "cpu",
                            "output_dir": str(tmp_path / "cond")})
    cfg.fictional.lang, cfg.fictional.limit, cfg.fictional.scorers, cfg.fictional.gate = "de", 2, ["mc"], "mc"
    report = conductivity(cfg)["report"]
    assert report["template"] == "plain"
    cfg.fictional.template = "alpaca"
    with pytest.raises(ClikaError, match="trained with data.template=plain"):
        conductivity(cfg)
