"""One live run per run dir (clika/train/cluster/run_lock.py): a second run in a live run's dir is refused with
one line naming the first's pid; stale locks (a dead pid, a previous attempt of the same requeued job) are taken
over. No cluster needed (the SLURM side: tests/launch/test_slurm.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_JOB, wait_file

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.mark.extended
def test_a_second_run_in_a_live_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    # The first run is long (it would train for hours) and is stopped by SIGTERM once the second has been
    # refused: with a short first run, a slow start of the second (CI under load) found the lock released.
    args = [PY, "train.py", "resume=auto", f"hydra.run.dir={run}", *SMALL_JOB, "logger=csv", "trainer.max_steps=100000",
            "trainer.val_check_interval=100000", "callbacks.model_checkpoint.every_n_train_steps=100000",
            "++logger.csv.flush_logs_every_n_steps=1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CLIKA_RUN_DIR"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), WANDB_MODE="offline")
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_file(run / ".run.lock", 120)
        second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode == 2, second.stderr[-2000:]
        lines = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "fix:" in lines[0], second.stderr[-2000:]
        wait_file(run / "csv" / "version_0" / "metrics.csv", 120)  # training under way: its handlers are installed
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=180) == 128 + signal.SIGTERM, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert not (run / ".run.lock").exists() and len(list((run / "csv").iterdir())) == 1


def test_stale_locks_are_taken_over(tmp_path, caplog):
    from clika.train.cluster import run_lock

    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    me = run_lock._me()
    lock = tmp_path / run_lock.LOCK_NAME
    lock.write_text(json.dumps({"host": me["host"], "pid": dead.pid, "job": None, "restart": 0, "started": "x"}))
    held = run_lock.acquire(tmp_path)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "has ended" in caplog.text
    held.release()
    assert not lock.exists()
    # a previous attempt of the same requeued job, and a job SLURM no longer runs
    assert "previous attempt" in run_lock.stale_reason({"host": "n9", "pid": 1, "job": "7", "restart": 0},
                                                        {"host": "n1", "pid": 2, "job": "7", "restart": 1})
    assert run_lock.stale_reason({"host": me["host"], "pid": os.getppid(), "job": None}, {**me, "pid": -5}) is None
