"""One live run per run dir: `<run dir>/.run.lock` names its holder (host, pid, SLURM job id and restart).

Two runs in one dir interleave checkpoints, `alignment.csv` and W&B runs with the same id; on a cluster that
is a resubmission while the old job still runs, or a requeue beside a straggler. Global rank 0 takes the
lock before training; a second run refuses with one line naming the holder and how to proceed. A lock left
by a dead process on this host, by a job SLURM no longer runs, or by an earlier attempt of this same
(requeued) job is taken over with a warning. Released at exit; a killed run's lock is stale by those rules.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from clika.util.errors import ClikaError

LOCK_NAME = ".run.lock"
log = logging.getLogger(__name__)


def _me() -> dict[str, Any]:
    from clika.train.cluster.slurm_signals import restart_count, slurm_job_id

    return {"host": socket.gethostname(), "pid": os.getpid(), "job": slurm_job_id(), "restart": restart_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "nonce": uuid.uuid4().hex}


def describe(h: dict[str, Any]) -> str:
    job = f", SLURM job {h['job']} (restart {h.get('restart', 0)})" if h.get("job") else ""
    return f"pid {h.get('pid')} on {h.get('host')}{job}, since {h.get('started')}"


def slurm_job_active(job: str) -> bool | None:
    """True/False: SLURM (squeue; no accounting needed) does / does not run the job; None: cannot tell."""
    try:
        r = subprocess.run(["squeue", "-h", "-j", str(job), "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return False if "Invalid job id" in r.stderr else None
    states = {s.strip() for s in r.stdout.split()}
    return bool(states & {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING",
                          "STAGE_OUT", "RESIZING"})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Why the holder's lock may be taken over, or None when it is (or may be) a live run."""
    job = holder.get("job")
    if holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
        return "it is an earlier run of this same process"
    if job and job == me.get("job") and int(holder.get("restart", 0)) < int(me.get("restart", 0)):
        return f"it was the previous attempt (restart {holder.get('restart', 0)}) of this requeued job"
    if job and job != me.get("job"):
        active = slurm_job_active(job)
        if active is False:
            return f"SLURM no longer runs job {job}"
        if active:
            return None
    if holder.get("host") == me["host"]:
        return None if _pid_alive(int(holder.get("pid", -1))) else f"process {holder.get('pid')} has ended"
    return None


class RunLock:
    def __init__(self, path: Path, info: dict[str, Any]):
        self.path, self.info = path, info

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("nonce") == self.info["nonce"]:
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _read(path: Path) -> dict[str, Any] | None:
    for _ in range(20):  # a holder may be writing it right now
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            time.sleep(0.05)
    return {}


def acquire(run_dir: str | Path) -> RunLock:
    """Take the run dir's lock (global rank 0 only) or raise ClikaError naming the live holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    me = _me()
    text = json.dumps(me) + "\n"
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is None:
                continue  # released meanwhile
            reason = stale_reason(holder, me) if holder else "its lock file is unreadable"
            if reason is None:
                raise ClikaError(f"hydra.run.dir: {run_dir} is in use by a live run ({describe(holder)})",
                                 fix="wait for it to end or stop it (kill / scancel), or use another dir "
                                     f"(hydra.run.dir=...); if that run is surely gone: rm {path}")
            log.warning("taking over the run dir lock of %s: %s", describe(holder) if holder else path, reason)
            tmp = path.with_name(f"{LOCK_NAME}.{me['nonce']}")
            tmp.write_text(text)
            os.replace(tmp, path)
            time.sleep(0.2)  # two takers: the last rename wins, the other sees a live holder next round
            if (_read(path) or {}).get("nonce") == me["nonce"]:
                break
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        break
    else:
        raise ClikaError(f"hydra.run.dir: could not lock {run_dir} ({path} keeps changing)",
                         fix="make sure only one run uses this dir")
    lock = RunLock(path, me)
    atexit.register(lock.release)
    return lock
