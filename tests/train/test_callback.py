"""The CLiKA callback reports what `eval.py` reports on the same weights, whatever the number of ranks."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clika.train.run import train
from conftest import MULTIPROCESS, cli

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["clika.datasets=[x_copa,x_geo]", "callbacks.clika.langs=[en,zh]", "callbacks.clika.limit=6",
         "fictional.limit=4"]
KEYS = ("acc", "ra", "en_co", "acc_type0", "acc_type1", "xrr")


def _rows(run_dir: Path) -> dict[int, dict[tuple[str, str], dict]]:
    """alignment.csv as {step: {(dataset, lang): row}}."""
    out: dict = {}
    with (run_dir / "alignment.csv").open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out.setdefault(int(r["step"]), {})[(r["dataset"], r["lang"])] = r
    return out


def _num(v):
    return None if v in ("", None) else float(v)


def _eval_py(data_root: Path, tmp_path: Path, *args: str) -> None:
    r = cli("eval.py", "print_config=false", "threads=1", "device=cpu", f"paths.log_dir={tmp_path}/logs", *args,
            env={"CLIKA_DATA": data_root}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _assert_eval_py_agrees(rows: dict, export: str, data_root: Path, tmp_path: Path, tag: str) -> None:
    """eval.py (suite and conductivity) on the exported weights gives the callback's last numbers."""
    model = [f"model.name={tag}", f"model.name_or_path={export}"]
    _eval_py(data_root, tmp_path, *model, "clika.datasets=[x_copa,x_geo]", "clika.langs=[en,zh]", "clika.limit=6",
             f"hydra.run.dir={tmp_path}/{tag}-suite")
    _eval_py(data_root, tmp_path, *model, "task=conductivity", "fictional.lang=zh", "fictional.limit=4",
             "fictional.seed=0", "fictional.scorers=[mc]", "fictional.gate=mc", "fictional.form=cloze", "fictional.translate_limit=40",
             "fictional.batch_size=64", f"output_dir={tmp_path}/{tag}-cond",  # as conf/fictional/probe.yaml
             f"hydra.run.dir={tmp_path}/{tag}-cond")
    suite = json.loads((tmp_path / f"{tag}-suite" / "results.json").read_text())["datasets"]
    cond = json.loads((tmp_path / f"{tag}-cond" / "conductivity.json").read_text())["results"]["mc"]["langs"]
    expected = {(ds, lang): v for ds in ("x_copa", "x_geo") for lang, v in suite[ds]["langs"].items()}
    expected |= {("fictional", lang): v for lang, v in cond.items()}
    assert set(expected) == set(rows), (sorted(expected), sorted(rows))
    for key, want in expected.items():
        for k in KEYS:
            got = _num(rows[key][k])
            if want.get(k) is None:
                assert got is None, (key, k)
            else:
                assert got == pytest.approx(want[k], abs=1e-9), (key, k, got, want[k])


def test_callback_numbers_equal_eval_py_on_the_exported_checkpoint(train_cfg, data_root, tmp_path):
    out = train(train_cfg(f"paths.clika_data={data_root}", *SUITE, "trainer.max_steps=6",
                          "trainer.val_check_interval=6", "method.lr=5e-3"))
    rows = _rows(Path(out["run_dir"]))
    assert sorted(rows) == [0, 6]
    assert rows[0] != rows[6]  # the weights moved, so the check below is about the trained model
    record = json.loads((Path(out["export"]["hf"]) / "clika_training.json").read_text())
    assert record == {"data.template": "alpaca"}  # what task=conductivity renders its prompts with
    _assert_eval_py_agrees(rows[6], out["export"]["hf"], data_root, tmp_path, "ft")


# ---------------------------------------------------------------- two processes (gloo, CPU)
def _two_process_run(strategy: str, devices: int, log_dir: Path, data_root: Path) -> Path:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "CLIKA_DATA": str(data_root),
           "PYTHONPATH": str(ROOT)}
    args = ["train.py", f"strategy={strategy}", "trainer.accelerator=cpu", f"trainer.devices={devices}", "threads=1",
            "logger=csv", "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
            "trainer.enable_progress_bar=false", "method.lr=5e-3", *SUITE, f"paths.log_dir={log_dir}"]
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    runs = [p for p in (log_dir / "train" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # every rank wrote into one run dir
    return runs[0]


@pytest.mark.slow
@MULTIPROCESS
def test_one_and_two_processes_log_the_same_alignment(data_root, tmp_path):
    """Step-0 numbers (same initial weights) are equal for 1 process, DDP x2 and ZeRO-3 x2; each run's final
    numbers equal eval.py on its own export, so sharded + gathered evaluation loses and repeats nothing."""
    runs = {name: _two_process_run(strategy, n, tmp_path / name, data_root)
            for name, strategy, n in [("single", "auto", 1), ("ddp2", "ddp", 2), ("zero3x2", "deepspeed_zero3", 2)]}
    rows = {name: _rows(run) for name, run in runs.items()}
    for name in ("ddp2", "zero3x2"):
        assert sorted(rows[name]) == [0, 4], name  # no duplicate evaluation from the second rank
        for key, want in rows["single"][0].items():
            for k in KEYS:
                assert _num(rows[name][0][key][k]) == pytest.approx(_num(want[k]), abs=1e-9), (name, key, k)
        logged = list(csv.DictReader((runs[name] / "csv" / "version_0" / "metrics.csv").open()))
        zh_acc = [float(r["clika/x_copa/zh/acc"]) for r in logged if r.get("clika/x_copa/zh/acc")]
        assert zh_acc == [float(rows[name][s][("x_copa", "zh")]["acc"]) for s in (0, 4)]  # rank 0 logged once each
        _assert_eval_py_agrees(rows[name][4], str(runs[name] / "export" / "hf"), data_root, tmp_path, name)


def test_same_seed_same_config_gives_identical_curves_and_losses(train_cfg, data_root, tmp_path):
    args = (f"paths.clika_data={data_root}", "clika.datasets=[x_copa]", "callbacks.clika.langs=[en,zh]",
            "callbacks.clika.limit=4", "fictional.limit=4", "trainer.max_steps=3",
            "trainer.val_check_interval=3", "export.enabled=false", "method.lr=5e-3")
    runs = [Path(train(train_cfg(*args, run_dir=tmp_path / name))["run_dir"]) for name in ("a", "b")]
    a, b = ((run / "alignment.csv").read_text() for run in runs)
    assert a == b and len(a.splitlines()) == 1 + 2 * 2 * 2  # header + 2 evaluations x (x_copa, fictional) x 2 langs

    def losses(run):
        return [r["train/loss"] for r in csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open())
                if r.get("train/loss")]
    assert losses(runs[0]) == losses(runs[1]) and len(losses(runs[0])) == 3


def test_circular_callback_logs_circular_metrics_and_the_bias_report(train_cfg, data_root):
    """clika.circular=true reaches the callback: alignment.csv, the logged metrics and the curves carry
    acc_circ / en_co_answer and the position-bias report (clika/<dataset>/<lang>/bias/...)."""
    out = train(train_cfg(f"paths.clika_data={data_root}", "clika.datasets=[x_copa,x_geo]", "clika.circular=true",
                          "callbacks.clika.langs=[en,zh]", "callbacks.clika.limit=3", "callbacks.clika.fictional=null",
                          "trainer.max_steps=2", "trainer.val_check_interval=2", "export.enabled=false"))
    run = Path(out["run_dir"])
    rows = _rows(run)
    assert sorted(rows) == [0, 2] and set(rows[2]) == {(ds, l) for ds in ("x_copa", "x_geo") for l in ("en", "zh")}
    for r in rows[2].values():
        assert float(r["acc_circ"]) <= float(r["acc_rot"]) and r["bias_letter"] in "ABCD"
        assert 0 <= float(r["bias_share"]) <= 1 and r["en_co_answer"] != ""
    logged = out["metrics"]
    for key in ("acc_circ", "en_co_circ", "en_co_answer", "bias/share", "bias/entropy", "bias/rstd"):
        assert f"clika/x_geo/zh/{key}" in logged, key
    assert logged["clika/x_geo/zh/bias/share"] == pytest.approx(float(rows[2][("x_geo", "zh")]["bias_share"]))
    assert "clika/factual/acc_circ" in logged and (run / "alignment_curves.png").exists()


def test_the_curves_are_redrawn_at_most_every_redraw_every_s_and_at_the_end(tmp_path, monkeypatch):
    from clika.train.callbacks.clika_eval import ClikaEvalCallback

    drawn = []
    cb = ClikaEvalCallback(suite=None, output_dir=str(tmp_path), redraw_every_s=3600)
    monkeypatch.setattr(cb, "_plot", lambda: drawn.append(len(drawn)))
    cb._redraw()  # an evaluation's rows, seconds after the start: not drawn yet
    cb._redraw()
    assert drawn == []
    cb.teardown(None, None, "fit")  # the end (or an interrupted run): what is not drawn is drawn, once
    cb.teardown(None, None, "fit")
    assert drawn == [0]
    every = ClikaEvalCallback(suite=None, output_dir=str(tmp_path), redraw_every_s=0)
    monkeypatch.setattr(every, "_plot", lambda: drawn.append(len(drawn)))
    every._redraw()
    every.wait_for_plot()
    every._redraw()
    every.teardown(None, None, "fit")
    assert drawn == [0, 1, 2]
