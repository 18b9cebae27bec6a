"""A preempted attempt ends its W&B run without a traceback, whichever comes first: the SIGTERM or our finish.

A requeue (ours after a time-limit checkpoint, or the scheduler's) SIGTERMs every process of the job, the
W&B service included. Seen in CI: the run had finished cleanly, the service was then killed, and W&B's atexit
hook printed `ConnectionResetError: Connection lost` into the job log. Here a real offline W&B run gets
the same SIGTERM, sent to each process (the Python process ignores it, as
`SlurmRequeue` makes it do after requeueing).
"""

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, signal, sys, time, types
import psutil
from lightning.pytorch.loggers import WandbLogger
from clika.train.cluster.wandb_lifecycle import end_attempt

def requeue_sigterm():  # SLURM signals every process of the job (its cgroup, not a process group: the W&B
    # service runs in a session of its own); the trainer has set SIGTERM aside
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for p in psutil.Process().children(recursive=True):
        p.send_signal(signal.SIGTERM)
    time.sleep(1)

logger = WandbLogger(offline=True, save_dir=sys.argv[1], project="clika-test")
logger.experiment.log({"loss": 1.0})
end_attempt(types.SimpleNamespace(loggers=[logger]))
requeue_sigterm()
print("attempt ended")
"""


# The CI failure: our requeue's SIGTERM after a clean finish. The scheduler's SIGTERM first is what
# tests/launch/test_slurm.py's `scontrol requeue` drill does on a real SLURM.
def test_preempted_attempt_ends_wandb_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "attempt ended" in r.stdout, out[-3000:]
    assert "Traceback" not in out and "Connection lost" not in out, out[-3000:]
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb")), "the offline run keeps what was logged"
