"""The one checks module (clika/checks): config errors end before any run dir exists, for train.py and eval.py,
through one Hydra callback and one wrapper; one meaning of the debug flag."""

import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clika.app.checks import ConfigChecks, friendly_errors, is_debug, run_checks
from clika.util.errors import ClikaError
from conftest import assert_one_line, check_config_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script,args,needle", [
    ("train.py", ["data.block_size=1"], "error: data.block_size: must be > 1"),
    ("train.py", ["strategy.name=zero9"], "error: strategy: unknown preset 'zero9'"),
    ("train.py", ["strategy=deepspeed_zero3", "strategy.zero3_buffers=huge"],
     "error: strategy.zero3_buffers: unknown value 'huge'"),
    ("train.py", ["clika.datasets=[xcopa]", "paths.clika_data=" + str(ROOT)], "error: clika.datasets: unknown dataset"),
    ("eval.py", ["clika.datasets=[xcopa]"], "error: clika.datasets: unknown dataset 'xcopa'"),
    ("eval.py", ["clika.limit=0"], "error: clika.limit must be a positive integer"),
])
def test_config_errors_end_before_the_run_dir_exists(tmp_path, script, args, needle):
    run_dir = tmp_path / "run"
    stderr = check_config_error(script, [f"hydra.run.dir={run_dir}", *args])
    assert assert_one_line(stderr).startswith(needle), stderr[-3000:]
    assert "Callback ConfigChecks" not in stderr
    assert not run_dir.exists()  # no run dir, no train.log, no csv/, no W&B run


def test_debug_adds_the_traceback_and_still_exits_2(tmp_path):
    for env in ({"CLIKA_DEBUG": "1"}, {}):
        extra = [] if env else ["traceback=true"]
        stderr = check_config_error("train.py", [f"hydra.run.dir={tmp_path / 'run'}", "data.block_size=1", *extra],
                                    env=env)
        assert "Traceback" in stderr and "ClikaError" in stderr
        assert stderr.rstrip().splitlines()[-1].startswith("error: data.block_size")


@pytest.mark.parametrize("value,debug", [("", False), ("0", False), ("false", False), ("False", False),
                                         ("no", False), ("off", False), ("1", True), ("yes", True), ("true", True)])
def test_one_meaning_of_the_debug_flag(monkeypatch, value, debug):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.setenv("CLIKA_DEBUG", value)
    assert is_debug() is debug
    assert is_debug(OmegaConf.create({"traceback": True})) is True


def test_the_wrapper_and_the_callback_end_alike(monkeypatch, capsys):
    monkeypatch.delenv("CLIKA_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["eval.py"])

    @friendly_errors
    def main(cfg):
        raise ClikaError("some.key: broken", fix="mend it")

    with pytest.raises(SystemExit) as err:
        main(OmegaConf.create({"traceback": False}))
    assert err.value.code == 2 and capsys.readouterr().err == "error: some.key: broken — fix: mend it\n"
    bad = OmegaConf.create({"clika": {"datasets": ["nope"]}, "hydra": {"run": {"dir": None}}})
    with pytest.raises(SystemExit) as err:
        ConfigChecks().on_run_start(bad)
    assert err.value.code == 2 and capsys.readouterr().err.startswith("error: clika.datasets: unknown dataset 'nope'")
    cb = ConfigChecks()  # Hydra calls every hook by name: the ones without checks exist and do nothing
    for hook in ("on_run_end", "on_multirun_end", "on_job_start", "on_job_end"):
        getattr(cb, hook)(bad)


def test_train_checks_cover_the_alignment_callback_suite(train_cfg, tmp_path):
    cfg = train_cfg(f"paths.clika_data={tmp_path / 'absent'}", "clika.datasets=[x_geo]")
    with pytest.raises(ClikaError, match="data root .*absent' does not exist"):
        run_checks(cfg)
    run_checks(train_cfg(f"paths.clika_data={tmp_path / 'absent'}", "callbacks.clika=null"))  # no callback: no check
