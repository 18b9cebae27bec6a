"""`eval.py task=checkpoints run_dir=RUN`: every saved checkpoint of a training run evaluated after the fact, with
the numbers `eval.py` gives on that checkpoint's export, and the callback's alignment.csv / curves over them."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from clika.eval.checkpoints import checkpoints
from clika.train.run import train
from clika.util.errors import ClikaError

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["clika.datasets=[x_copa,x_geo]", "clika.langs=[en,zh]", "clika.limit=6", "threads=1", "print_config=false"]


def _eval_cfg(out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("eval", overrides=[f"paths.root_dir={ROOT}", f"paths.output_dir={out}", *overrides])


@pytest.mark.extended
def test_every_checkpoint_is_evaluated_as_eval_py_would(train_cfg, data_root, tmp_path):
    out = train(train_cfg("trainer.max_steps=6", "callbacks.model_checkpoint.every_n_train_steps=2",
                          "callbacks.model_checkpoint.save_top_k=-1", "~callbacks.clika",
                          "export.enabled=false", "method.lr=5e-3", "trainer.limit_val_batches=0"))
    run = Path(out["run_dir"])
    got = checkpoints(_eval_cfg(tmp_path / "ck", f"run_dir={run}", f"paths.clika_data={data_root}", *SUITE))
    assert [e["step"] for e in got["evaluated"]] == [2, 4, 6]
    rows = list(csv.DictReader(open(got["csv"])))
    assert sorted({int(r["step"]) for r in rows}) == [2, 4, 6] and len(rows) == 3 * 2 * 2
    assert Path(got["png"]).read_bytes()[:4] == b"\x89PNG"
    accs = {(r["step"], r["dataset"], r["lang"]): float(r["acc"]) for r in rows}

    # eval.py itself on the middle checkpoint's export: the same numbers
    hf = tmp_path / "ck" / "checkpoints" / "step000004" / "export" / "hf"
    proc = subprocess.run([sys.executable, "eval.py", f"model.name_or_path={hf}", f"output_dir={tmp_path / 'ev'}",
                           f"paths.log_dir={tmp_path}/logs", *SUITE], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "CLIKA_DATA": str(data_root), "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    direct = json.loads((tmp_path / "ev" / "results.json").read_text())["datasets"]
    mine = json.loads((tmp_path / "ck" / "checkpoints" / "step000004" / "results.json").read_text())["datasets"]
    assert mine == direct
    for ds in ("x_copa", "x_geo"):
        for lang in ("en", "zh"):
            assert accs[("4", ds, lang)] == pytest.approx(direct[ds]["langs"][lang]["acc"])


def test_a_dir_without_checkpoints_is_refused_in_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ClikaError) as e:
        checkpoints(_eval_cfg(tmp_path / "ck", f"run_dir={tmp_path / 'run'}"))
    assert str(e.value).startswith("run_dir: no checkpoints in") and "\n" not in str(e.value)
