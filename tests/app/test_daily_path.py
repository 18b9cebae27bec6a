"""Issue #17, the researcher's daily path: config mistakes end in one line (exit 2, the key the user set and the
real fix, no run dir), results name what was evaluated and are readable by colleagues, help lists the presets."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clika.app.checks import settings
from clika.app.checks.overrides import check_overrides
from clika.app.checks.resume import check_resume
from clika.app.checks.train import check_accelerator
from clika.util.errors import ClikaError
from conftest import assert_one_line, check_config_error, cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "clika-data"  # CLIKA_DATA when unset, as .ci/run sets it


def _one_line(stderr: str, run_dir: Path, *needles: str) -> str:
    line = assert_one_line(stderr, *needles)
    assert not run_dir.exists()  # no run dir, train.log, csv/ or W&B run
    return line


def _error(script: str, *args: str, run_dir: Path, **env) -> str:
    """stderr of the in-process `python <script> hydra.run.dir=<run_dir> <args>` (exit 2)."""
    return check_config_error(script, [f"hydra.run.dir={run_dir}", *args],
                              env={"CLIKA_DATA": os.environ.get("CLIKA_DATA", str(DATA)), **env})


@pytest.mark.parametrize("script,args,needles", [
    ("train.py", ["clika.languages=[en,zh]"], ["error: clika.languages:", "did you mean clika.langs?",
                                               "fix: clika.langs=[en,zh]"]),
    ("train.py", ["+clika.languages=[en,zh]"], ["error: +clika.languages=[en,zh]:", "did you mean clika.langs?",
                                                "open nodes", "fix: clika.langs=[en,zh]"]),
    ("train.py", ["+data.batch_size=3"], ["already a key", "fix: drop the '+': data.batch_size=3"]),
    ("train.py", ["model=_hub"], ["error: model: '_hub' is the base", "model.name_or_path="]),
    ("train.py", ["init_from=/nonexistent/run/export/hf"], ["error: init_from: '/nonexistent/run/export/hf' does "
                                                            "not exist", "export/hf"]),
    ("train.py", ["experiment=fictional_conductivity", "lang=en"], ["error: lang: 'en' cannot be", "fix: lang=<one of zh"]),
    ("train.py", ["callbacks.clika.langs=[en,xx]"], ["error: callbacks.clika.langs: unknown language 'xx'"]),
    ("eval.py", ["clika.limt=5"], ["error: clika.limt:", "did you mean clika.limit?", "fix: clika.limit=5"]),
    ("eval.py", ["model=_hub"], ["error: model: '_hub' is the base"]),
])
def test_config_mistakes_are_one_line_before_the_run_dir(tmp_path, script, args, needles):
    run_dir = tmp_path / "run"
    _one_line(_error(script, *args, run_dir=run_dir), run_dir, *needles)


def test_an_empty_data_root_blames_the_data_path(tmp_path):
    run_dir, empty = tmp_path / "run", tmp_path / "empty"
    empty.mkdir()
    line = _one_line(_error("train.py", run_dir=run_dir, CLIKA_DATA=str(empty)), run_dir)
    assert line.startswith(f"error: paths.clika_data: '{empty}' holds none of") and "CLIKA_DATA" in line
    assert "drop 'en'" not in line


@pytest.mark.slow
def test_trainer_kwarg_typo_and_gpu_trainer_without_gpu(tmp_path):
    """Both import Lightning / torch to decide (a few seconds each)."""
    run_dir = tmp_path / "run"
    _one_line(_error("train.py", "+trainer.max_step=2", run_dir=run_dir), run_dir,
              "did you mean trainer.max_steps?", "fix: trainer.max_steps=2")
    out = cli("train.py", "+trainer.fast_dev_run=true", "--cfg", "job", run_dir=run_dir)
    assert out.returncode == 0 and "fast_dev_run: true" in out.stdout  # a real Trainer argument stays allowed
    import torch

    if not torch.cuda.is_available():
        _one_line(_error("train.py", "trainer=gpu", run_dir=run_dir), run_dir, "error: trainer=gpu: this machine has "
                  "no GPU", "trainer=cpu")


def test_open_nodes_and_trainer_kwargs():
    base = OmegaConf.create({"clika": {"langs": ["en"], "custom": {}}, "callbacks": {"x": {"_target_": "a.B"}},
                             "trainer": {"max_steps": 1}, "optimizer": {"_target_": "collections.OrderedDict"}})
    s = settings()
    opened, kwargs_of = list(s.open), dict(s.kwargs_of)
    kwargs_of["trainer"] = "shutil.copyfile"  # any importable callable: the check reads its signature
    check_overrides(["+callbacks.mine._target_=pkg.Cb", "+clika.custom.mine=/d", "+trainer.follow_symlinks=false"], base, ROOT / "conf",
                    open_nodes=opened, kwargs_of=kwargs_of)
    with pytest.raises(ClikaError, match=r"\+trainer.follow_symlink=0: .*did you mean trainer.follow_symlinks\?.* — fix: "
                                         r"\+trainer.follow_symlinks=0"):
        check_overrides(["+trainer.follow_symlink=0"], base, ROOT / "conf", open_nodes=opened, kwargs_of=kwargs_of)
    with pytest.raises(ClikaError, match="clika.langz: 'clika' has no key 'langz'"):
        check_overrides(["clika.langz=[en]"], base, ROOT / "conf", open_nodes=opened, kwargs_of=kwargs_of)


def test_gpu_trainer_check_is_a_pure_function():
    cfg = OmegaConf.create({"trainer": {"accelerator": "gpu"}})
    with pytest.raises(ClikaError, match=r"trainer=gpu: this machine has no GPU"):
        check_accelerator(cfg, OmegaConf.create({"runtime": {"choices": {"trainer": "gpu"}}}), gpus=lambda: 0)
    check_accelerator(cfg, None, gpus=lambda: 2)
    check_accelerator(OmegaConf.create({"trainer": {"accelerator": "cpu"}}), None, gpus=lambda: 0)


def test_resume_with_a_changed_config(train_cfg, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    saved = train_cfg(run_dir=run)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(saved, resolve=True))
    s = settings()
    fixed, ignored = list(s.resume_fixed), list(s.resume_ignored)
    check_resume(train_cfg("resume=auto", run_dir=run), run, fixed, ignored)  # same config: silent
    assert capsys.readouterr().err == ""
    for override, key in (("method=lora", "method.name: 'full' -> 'lora'"),
                          ("model.tiny.hidden_size=64", "model.tiny.hidden_size: 128 -> 64")):
        with pytest.raises(ClikaError, match="resume: .* cannot change across a resume") as err:
            check_resume(train_cfg("resume=auto", override, run_dir=run), run, fixed, ignored)
        assert key in str(err.value) and f"init_from={run}/export/hf" in str(err.value)
    check_resume(train_cfg("resume=auto", "trainer.max_steps=400", "callbacks.clika.limit=3", run_dir=run), run,
                 fixed, ignored)
    warning = capsys.readouterr().err
    assert "trainer.max_steps 600 -> 400" in warning and "callbacks.clika.limit 10 -> 3" in warning


def test_help_lists_presets_tasks_and_examples_without_train_groups_in_eval():
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "gemma3_270m" in out.stdout and "_hub" not in out.stdout and "task=export" in out.stdout
    assert "python train.py experiment=fictional_conductivity lang=de" in out.stdout and "-sc install=bash" in out.stdout
    ev = subprocess.run([sys.executable, "eval.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0 and "task=dump_prompts" in ev.stdout and "$CLIKA_DATA/results" in ev.stdout
    for train_only in ("strategy ", "trainer ", "method ", "experiment "):
        assert f"  {train_only}" not in ev.stdout
    # the debug group has presets for both apps: eval.py offers only the one it can take
    assert re.search(r"^  debug +default$", ev.stdout, flags=re.M), ev.stdout
    assert re.search(r"^  debug +default, fast, overfit$", out.stdout, flags=re.M), out.stdout


def test_a_train_only_preset_given_to_eval_is_refused_in_one_line(tmp_path):
    stderr = check_config_error("eval.py", ["debug=fast", f"hydra.run.dir={tmp_path}/run"])
    assert "Traceback" not in stderr, stderr
    assert ("error: debug=fast is a train.py preset: it sets callbacks, trainer, which eval.py does not have — "
            "fix: use one of ['default'] with eval.py, or run train.py debug=fast") in stderr.splitlines(), stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- results readable by colleagues (umask 022)
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _readable(path: Path) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o044 == 0o044, (p, oct(mode))
        if p.is_dir():
            assert mode & 0o011 == 0o011, (p, oct(mode))


def test_every_writer_honours_the_umask(umask_022, tmp_path, tiny):
    import torch

    from clika.report.curves import write_rows
    from clika.report.results import write_evaluation
    from clika.train.checkpointing import AtomicCheckpointIO
    from clika.train.export import _save_atomic

    metrics = _metrics()
    paths = write_evaluation(tmp_path / "eval", metrics, {}, "tiny")
    for key in ("results", "report", "accuracy_png", "co_png"):  # results.json, report.md, the figures
        _readable(paths[key])
    _readable(write_rows(tmp_path / "alignment.csv", [{"step": 0, "dataset": "x_copa", "lang": "en", "acc": 0.5}]))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, ckpt)
    _readable(ckpt)
    model, tokenizer = tiny
    hf = _save_atomic(tmp_path / "export" / "hf", lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    _readable(hf)


# ---------------------------------------------------------------- results name what was evaluated
def _metrics() -> dict:
    from clika.metrics.alignment import aggregate, dataset_metrics

    per = {"x_copa": dataset_metrics({"en": [True, False, True, True], "zh": [True, False, False, True]}, 2, 0.964,
                                     bootstrap=50)}
    return {"datasets": per, "summary": aggregate(per, {"basic": ["x_copa", "x_csqa"]}), "protocol": "letter",
            "letter_form": "Answer:<letter>", "prompt_style": "paper", "limit": None, "seed": 1, "circular": False}


def test_two_checkpoints_reports_differ(tmp_path, tiny):
    import json

    import torch

    from clika.models.load import ModelSpec, describe
    from clika.report.results import write_evaluation

    model, tokenizer = tiny
    dirs = []
    for k, name in enumerate(("step100", "step200")):
        d = tmp_path / name / "export" / "hf"
        state = {n: p.detach().clone() + (0.01 * k) for n, p in model.state_dict().items()}
        model.save_pretrained(d, state_dict=state)
        tokenizer.save_pretrained(d)
        dirs.append(d)
    infos = [describe(ModelSpec(name="tiny", name_or_path=str(d))) for d in dirs]
    assert infos[0]["name_or_path"] == str(dirs[0].resolve()) and infos[0]["weights_sha256"] != infos[1]["weights_sha256"]
    reports = []
    for k, info in enumerate(infos):
        paths = write_evaluation(tmp_path / f"eval{k}", _metrics(), {}, info)
        reports.append(paths["report"].read_text())
        res = json.loads(paths["results"].read_text())
        assert res["model"] == str(dirs[k].resolve()) and res["evaluated"]["weights_sha256"] == info["weights_sha256"]
    assert reports[0].splitlines()[0] != reports[1].splitlines()[0]  # titles name the checkpoints
    assert infos[0]["weights_sha256"][:16] in reports[0] and infos[1]["weights_sha256"][:16] in reports[1]
    # the report shows results.json's confidence intervals and what a stream mean averages
    assert "acc 95% CI (bootstrap)" in reports[0] and "| basic (x_copa) |" in reports[0]
    del torch


def test_bench_rerender_into_a_new_dir_keeps_hand_written_notes(tmp_path):
    import shutil

    out = tmp_path / "new" / "x"
    (tmp_path / "new").mkdir()
    shutil.copy(ROOT / "bench" / "results.json", out.with_suffix(".json"))
    cmd = [sys.executable, "bench/run.py", "--sections", "", "--out", str(out)]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120).returncode == 0
    md = out.with_suffix(".md")
    md.write_text(md.read_text() + "- measured by hand: 3.1x on a quiet machine\n")
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120).returncode == 0
    text = md.read_text()
    assert text.count("- measured by hand: 3.1x on a quiet machine") == 1 and "items, official on" in text
    fresh = tmp_path / "absent" / "y"  # --out into a folder that does not exist yet
    assert subprocess.run([sys.executable, "bench/run.py", "--sections", "", "--out", str(fresh), "--merge",
                           str(ROOT / "bench" / "results.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120).returncode == 0 and fresh.with_suffix(".md").exists()
