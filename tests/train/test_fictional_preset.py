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
