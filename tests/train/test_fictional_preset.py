"""`python train.py experiment=fictional_conductivity`: the embedded conductivity experiment, end to end."""

import csv
from pathlib import Path

import pytest

from clika.train.sweep import optimized_value
from clika.train.run import train


@pytest.mark.slow
def test_fictional_conductivity_preset_reaches_the_gate(train_cfg):
    """`python train.py experiment=fictional_conductivity lang=de` on the tiny model: the probe's gate
    (Translate, en type 0/1, de type 0 all >= 0.9) passes, and only then an XRR is reported."""
    out = train(train_cfg("experiment=fictional_conductivity", "lang=de", "trainer.max_steps=750",
                          "export.enabled=false"))
    run = Path(out["run_dir"])
    rows = [r for r in csv.DictReader((run / "alignment.csv").open()) if r["dataset"] == "fictional"]
    assert sorted({int(r["step"]) for r in rows}) == [0, 250, 500, 750]
    first = {r["lang"]: r for r in rows if r["step"] == "0"}
    last = {r["lang"]: r for r in rows if r["step"] == "750"}
    assert first["de"]["xrr"] == ""  # gated at step 0: no conductivity number
    assert float(last["en"]["acc_type0"]) >= 0.9 and float(last["en"]["acc_type1"]) >= 0.9
    assert float(last["de"]["acc_type0"]) >= 0.9
    assert float(last["de"]["xrr"]) > 0.5  # single-language names conduct well above chance (1/8)
    logged = [r for f in run.glob("csv/version_*/metrics.csv") for r in csv.DictReader(f.open())
              if r.get("clika/fictional/gate_passed")]
    assert float(logged[-1]["clika/fictional/gate_passed"]) == 1.0
    assert float(logged[-1]["clika/fictional/xrr"]) == pytest.approx(float(last["de"]["xrr"]))
    # what a sweeper gets from `python train.py -m ...`
    cfg = train_cfg("experiment=fictional_conductivity", "lang=de")
    assert optimized_value(cfg, out) == pytest.approx(float(last["de"]["xrr"]))


# ---- experiment=fictional_conductivity_real / _release: the paper's protocol on pretrained models (issue #25) ----
REAL_SHORT = ["trainer.max_steps=4", "callbacks.clika.every_n_steps=2", "callbacks.model_checkpoint.every_n_train_steps=2",
              "callbacks.clika.limit=2", "fictional.limit=10", "fictional.translate_limit=6", "export.enabled=false"]


def _fictional_rows(run: Path) -> list[dict]:
    return [r for r in csv.DictReader((run / "alignment.csv").open())]


def _logged(run: Path) -> list[dict]:
    return [r for f in run.glob("csv/version_*/metrics.csv") for r in csv.DictReader(f.open())]


def _check_real_run(out: dict, lang: str, suite: bool, chance: float = 0.25) -> None:
    """The callback scored the probe at 0, 2, 4 by generation with mc beside it, the Basic/Factual suite only at
    the first and the last evaluation (suite_at=ends), and logged the gate's four accuracies."""
    run = Path(out["run_dir"])
    rows = _fictional_rows(run)
    fict = [r for r in rows if r["dataset"] == "fictional"]
    assert sorted({int(r["step"]) for r in fict}) == [0, 2, 4]
    assert {r["lang"] for r in fict} == {"en", lang} and {r["scorer"] for r in fict} == {"generate"}
    if suite:
        basic = {int(r["step"]) for r in rows if r["dataset"] in ("x_copa", "x_csqa", "x_geo", "x_name")}
        assert basic == {0, 4}
    last = [r for r in _logged(run) if r.get("clika/fictional/acc_translate")][-1]
    for key in ("acc_translate", "acc_en_type0", "acc_en_type1", "acc_x_type0", "acc_translate_mc", "gate_passed",
                "gate_passed_mc", "chance"):
        assert 0.0 <= float(last[f"clika/fictional/{key}"]) <= 1.0, key
    assert float(last["clika/fictional/chance"]) == pytest.approx(chance)  # 1 / continents


def test_real_preset_runs_on_the_tiny_model(train_cfg):
    """The preset's wiring (LoRA on q_proj,v_proj, the 4 x 6 world, suite at the ends) on the tiny model."""
    cfg = train_cfg("experiment=fictional_conductivity_real", "model=tiny", "lang=de", *REAL_SHORT)
    assert cfg.method.name == "lora" and list(cfg.method.target_modules) == ["q_proj", "v_proj"]
    assert cfg.data.template == "plain" and cfg.callbacks.clika.suite_at == "ends"
    _check_real_run(train(cfg), "de", suite=bool(cfg.clika.data_root))


def test_release_preset_trains_on_the_release_file(train_cfg):
    """experiment=fictional_conductivity_release reads $CLIKA_DATA/fictional/train/DE.json as it is."""
    cfg = train_cfg("experiment=fictional_conductivity_release", "model=tiny", "lang=de", *REAL_SHORT,
                    "callbacks.clika.suite=null")
    if not cfg.clika.data_root:
        pytest.skip("CLIKA_DATA (the release) is not set")
    out = train(cfg)
    assert out["data"]["sources"]["train"]["records"] == 10200  # the release's file, as it is
    assert str(cfg.data.mix.sources.train.path).endswith("fictional/train/DE.json")
    _check_real_run(out, "de", suite=False, chance=1 / 20)  # the release's 20 continents


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gemma3_270m", "smollm2_135m"])
def test_real_preset_on_the_pypi_models(train_cfg, model):
    """A shortened preset end to end on each real model (LoRA on its q_proj,v_proj, the loss at answers only)."""
    cfg = train_cfg("experiment=fictional_conductivity_real", f"model={model}", "lang=zh", *REAL_SHORT)
    out = train(cfg)
    _check_real_run(out, "zh", suite=bool(cfg.clika.data_root))
    assert float(out["metrics"]["train/loss"]) > 0
