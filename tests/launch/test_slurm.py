"""A real SLURM (launch/local_slurm.sh: slurmctld + 2 slurmd nodes on this machine, Debian's slurm-wlm): sbatch
DDP over 2 nodes, the README's Hydra SLURM sweep, preemption by `scontrol requeue` and by the time-limit
signal (one requeue each, resume, same final weights), requeue ownership, stalled attempts, scancel, a lost
rank, and one live run per SLURM job's run dir (the lock without a cluster: tests/train/test_run_lock.py).
`.ci/run` installs (`make slurm`) and starts the cluster; without one the `slurm` tests skip with one line.
Every wait is bounded."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import MULTIPROCESS, SMALL_JOB, wait_file

pytestmark = MULTIPROCESS  # one xdist worker: the cluster's two 1-CPU nodes serve one test at a time
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
LOCAL_SLURM = ROOT / "launch" / "local_slurm.sh"
# long enough that the time-limit signal (up to ~30 s late: slurmctld checks limits every 30 s) lands mid-run
STEPS, EVERY = 240, 40
LONG = [f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={EVERY}",
        f"callbacks.model_checkpoint.every_n_train_steps={EVERY}",
        "data.batch_size=8", "data.block_size=128"]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def _cluster_env() -> dict | None:
    if sys.platform != "linux" or not LOCAL_SLURM.exists():
        return None
    try:
        r = subprocess.run(["bash", str(LOCAL_SLURM), "status"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"export SLURM_CONF=(\S+)", r.stdout)
    return {"SLURM_CONF": m.group(1)} if r.returncode == 0 and m else None


@pytest.fixture(scope="module")
def slurm():
    env = _cluster_env()
    if env is None:
        pytest.skip("no local SLURM cluster up: `make slurm && launch/local_slurm.sh start` (.ci/run does it)")
    return env


_SHARED_JOBS: set[str] = set()  # jobs of module fixtures (the reference run), which outlive one test


@pytest.fixture(autouse=True)
def _own_jobs_cancelled(request):
    """A test leaves no job behind: whatever it submitted (sbatch, a submitit sweep) and is still queued or
    running when it ends is cancelled, so that a failed test does not hold the cluster's two nodes while the
    next test's bounded waits run out (the local cluster is the suite's own)."""
    yield
    if "slurm" not in request.fixturenames:
        return
    try:
        env = request.getfixturevalue("slurm")  # the module's cluster env (no second `local_slurm.sh status`)
    except pytest.skip.Exception:  # no cluster: the test was skipped, nothing was submitted
        return
    r = subprocess.run(["squeue", "-h", "-o", "%i"], env=_env(env), capture_output=True, text=True, timeout=30)
    left = [j for j in r.stdout.split() if j.split("_")[0] not in _SHARED_JOBS]
    if left:
        subprocess.run(["scancel", *left], env=_env(env), capture_output=True, timeout=30)


def _env(slurm: dict, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "TORCHELASTIC",
                                                                     "CLIKA_RUN_DIR", "SUBMITIT_"))}
    env.update(slurm, WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHON=PY,
               CLIKA_ROOT=str(ROOT), **extra)
    return env


def sbatch(slurm, out_dir: Path, run_dir: Path, *overrides: str, opts=(), name="clika-test") -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["sbatch", "--parsable", f"--job-name={name}", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=0",
           "--cpus-per-task=1", "--time=10", f"--output={out_dir}/%x-%j.out", *opts,
           str(ROOT / "launch" / "sbatch_train.sh"), *SMALL_JOB, *overrides]
    r = subprocess.run(cmd, env=_env(slurm, CLIKA_RUN_DIR=str(run_dir)), capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def job(slurm, jid: str) -> dict:
    r = subprocess.run(["scontrol", "show", "job", "-o", jid], env=_env(slurm), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)


def wait(slurm, jid: str, timeout: float, until=lambda j: j["JobState"] in TERMINAL) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        j = job(slurm, jid)
        if until(j):
            return j
        time.sleep(0.5)
    subprocess.run(["scancel", jid], env=_env(slurm), timeout=30)
    raise AssertionError(f"job {jid} still {j['JobState']} (restarts {j.get('Restarts')}) after {timeout}s")


def log_of(out_dir: Path, jid: str, run_dir: Path | None = None) -> str:
    """The job's sbatch output, then (with `run_dir`) the run's own log file: after scancel or a requeue srun
    stops relaying output, so the preemption lines are only certain to be in `<run dir>/train.log`."""
    files = [*out_dir.glob(f"*-{jid}.out"), *([run_dir / "train.log"] if run_dir else [])]
    return "\n".join(p.read_text(errors="replace") for p in files if p.exists())


def has_step_ckpt(run_dir: Path):
    return lambda p: any((run_dir / "checkpoints").glob("step*.ckpt"))


def alignment(run_dir: Path) -> list[dict]:
    with open(run_dir / "alignment.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_each_evaluation_once(run_dir: Path) -> list[int]:
    rows = alignment(run_dir)
    counts = Counter((r["step"], r["dataset"], r["lang"]) for r in rows)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    return sorted({int(r["step"]) for r in rows})


def final_weights(run_dir: Path, step: int) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / f"step{step:06d}.ckpt", map_location="cpu",
                      weights_only=False)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7, msg=k)


def wandb_ids(run_dir: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}


@pytest.fixture(scope="module")
def reference(slurm, tmp_path_factory):
    """An uninterrupted 1-process run of the LONG config (submitted now, waited for by whoever needs it)."""
    base = tmp_path_factory.mktemp("ref")
    jid = sbatch(slurm, base / "out", base / "run", *LONG, name="clika-reference")
    _SHARED_JOBS.add(jid)
    state = {}

    def get():
        if not state:
            j = wait(slurm, jid, 240)
            assert j["JobState"] == "COMPLETED", log_of(base / "out", jid)[-3000:]
            state["run"] = base / "run"
        return state["run"]

    return get


# ---------------------------------------------------------------- preemption (c, d)
@pytest.mark.extended
@pytest.mark.slurm
def test_preemption_by_requeue_and_by_time_limit_resumes_once_each(slurm, reference, tmp_path):
    out = tmp_path / "out"
    req_run, tl_run = tmp_path / "requeued", tmp_path / "time_limit"
    req = sbatch(slurm, out, req_run, *LONG, name="clika-requeue")
    # time limit 3 min, SIGUSR1 110 s before it. sbatch(1): "the signal may be sent up to 60 seconds earlier than
    # specified" (slurmctld checks limits every 30 s), so it lands 10-70 s in: after the job step has started
    # (with --time=1 and USR1@50 a check in the job's first second signalled a step not yet started and the
    # signal was lost) and well before the run's end.
    tl = sbatch(slurm, out, tl_run, *LONG, opts=["--time=3", "--signal=USR1@110"], name="clika-timelimit")

    wait_file(req_run, 120, has_step_ckpt(req_run))
    subprocess.run(["scontrol", "requeue", req], env=_env(slurm), check=True, timeout=30)
    # the time-limit job: once requeued, give its next attempt room to finish (else it is signalled again)
    wait(slurm, tl, 120, until=lambda j: int(j["Restarts"]) >= 1 or j["JobState"] in TERMINAL)
    subprocess.run(["scontrol", "update", f"JobId={tl}", "TimeLimit=10"], env=_env(slurm), check=True, timeout=30)

    ref = reference()
    ref_w = final_weights(ref, STEPS)
    for jid, run in ((req, req_run), (tl, tl_run)):
        j = wait(slurm, jid, 240)
        log = log_of(out, jid, run)
        assert j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0", log[-3000:]
        assert int(j["Restarts"]) == 1, log[-3000:]  # exactly one requeue per preemption
        assert "Traceback" not in log and "Error executing job" not in log, log[-4000:]
        assert log.count("== attempt ") == 2 and "preemption checkpoint at step" in log
        summary = json.loads((run / "train_summary.json").read_text())
        assert summary["global_step"] == STEPS and summary["resumed_from"], summary
        assert_same_weights(final_weights(run, STEPS), ref_w)
        steps = assert_each_evaluation_once(run)
        assert set(range(0, STEPS + 1, EVERY)) <= set(steps)
        assert len(wandb_ids(run)) == 1 and len(list((run / "wandb").glob("offline-run-*"))) == 2
        assert not (run / ".run.lock").exists()
    assert "(after SIGUSR1)" in log_of(out, tl, tl_run) and f"requeued job {tl} after SIGUSR1" in log_of(out, tl)
    assert "(after SIGTERM)" in log_of(out, req, req_run) and "requeued job" not in log_of(out, req)  # SLURM did


# ---------------------------------------------------------------- stalled attempts (e), lock vs a live job (3)
@pytest.mark.extended
@pytest.mark.slurm
def test_stalled_attempts_stop_requeueing_and_a_second_job_in_the_dir_is_refused(slurm, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    # a long step-0 evaluation (before the first step) keeps each attempt in its start-up when the signal lands
    slow_start = [*LONG, "callbacks.clika.limit=60", "fictional.limit=null"]
    jid = sbatch(slurm, out, run, *slow_start, name="clika-stall")
    lock = run / ".run.lock"
    for restart in (0, 1):  # each attempt is signalled during its start-up, before its first step
        wait_file(lock, 120, lambda p: p.exists() and json.loads(p.read_text() or "{}").get("restart") == restart)
        if restart == 0:  # meanwhile a resubmission into the same dir is refused (the job still runs)
            other = sbatch(slurm, out, run, *slow_start, name="clika-second")
        subprocess.run(["scancel", "--signal=USR1", jid], env=_env(slurm), check=True, timeout=30)
    j = wait(slurm, jid, 180)
    log = log_of(out, jid)
    assert int(j["Restarts"]) == 1 and j["JobState"] == "FAILED", log[-3000:]
    line = [ln for ln in log.splitlines() if "not requeueing job" in ln]
    assert len(line) == 1 and "start-up takes longer than the signal lead" in line[0] and "--signal=USR1@" in line[0]
    assert "Traceback" not in log
    state = json.loads((run / "slurm_requeue.json").read_text())
    assert [a["progress"] for a in state["attempts"]] == [False, False] and state["stalled"] == 2

    o = wait(slurm, other, 120)
    olog = log_of(out, other)
    assert o["JobState"] == "FAILED" and "Traceback" not in olog, olog[-2000:]
    refusal = [ln for ln in olog.splitlines() if ln.startswith("error: hydra.run.dir:")]
    assert len(refusal) == 1 and f"SLURM job {jid}" in refusal[0] and "fix:" in refusal[0]


# ---------------------------------------------------------------- scancel (f)
@pytest.mark.slurm
def test_scancel_writes_a_checkpoint_and_exits_cleanly(slurm, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    jid = sbatch(slurm, out, run, *LONG, name="clika-scancel")
    wait_file(run, 120, has_step_ckpt(run))
    subprocess.run(["scancel", jid], env=_env(slurm), check=True, timeout=30)
    j = wait(slurm, jid, 90)
    # the job reads CANCELLED at once; its processes still write their checkpoint (within KillWait): wait for them
    wait_file(run, 60, lambda p: not _pids_of(jid))
    log = log_of(out, jid, run)
    assert j["JobState"] == "CANCELLED" and int(j["Restarts"]) == 0
    m = re.search(r"preemption checkpoint at step (\d+) \(after SIGTERM\)", log)
    assert m and int(m.group(1)) >= EVERY, log[-3000:]
    assert (run / "checkpoints" / "last.ckpt").exists() and "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------- sbatch DDP over 2 nodes (a)
@pytest.mark.extended
@pytest.mark.slurm
def test_sbatch_ddp_on_two_nodes(slurm, reference, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    jid = sbatch(slurm, out, run, "strategy=ddp", "trainer.max_steps=6", "trainer.val_check_interval=3",
                 "callbacks.model_checkpoint.every_n_train_steps=3", "data.batch_size=8", "data.block_size=128",
                 opts=["--nodes=2"], name="clika-ddp2")
    j = wait(slurm, jid, 180)
    log = log_of(out, jid)
    assert j["JobState"] == "COMPLETED" and j["NodeList"] == "clika-n[1-2]", log[-3000:]
    assert "MEMBER: 2/2" in (run / "train.log").read_text() and log.count("== training summary ==") == 1
    assert sorted(p.name for p in run.parent.iterdir()) == ["out", "run"]  # one run dir
    assert assert_each_evaluation_once(run) == [0, 3, 6]
    ref = {(r["dataset"], r["lang"]): r for r in alignment(reference()) if r["step"] == "0"}
    mine = {(r["dataset"], r["lang"]): r for r in alignment(run) if r["step"] == "0"}
    assert mine.keys() == ref.keys()
    for k, r in mine.items():
        for col in ("acc", "ra", "en_co", "xrr"):
            if r[col] or ref[k][col]:
                assert float(r[col]) == pytest.approx(float(ref[k][col]), abs=1e-9), (k, col)


# ---------------------------------------------------------------- a lost rank (g)
def _pids_of(jid: str, procid: str | None = None) -> list[int]:
    """The train.py processes of a job (of one rank when `procid` is given), found through /proc."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (p / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in kv)
            cmd = (p / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if env.get("SLURM_JOB_ID") == jid and procid in (None, env.get("SLURM_PROCID")) and "train.py" in cmd \
                and "sbatch_train" not in cmd:
            pids.append(int(p.name))
    return pids


@pytest.mark.extended
@pytest.mark.slurm
def test_a_killed_rank_ends_the_job_and_a_resubmission_resumes(slurm, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    args = ["strategy=ddp", "trainer.max_steps=40", "trainer.val_check_interval=10",
            "callbacks.model_checkpoint.every_n_train_steps=10", "data.batch_size=8", "data.block_size=128"]
    jid = sbatch(slurm, out, run, *args, opts=["--nodes=2"], name="clika-lostrank")
    wait_file(run, 150, has_step_ckpt(run))
    pids = _pids_of(jid, "1")
    assert pids, "rank 1 not found"
    killed_at = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    j = wait(slurm, jid, 90)
    assert time.time() - killed_at < 90
    log = log_of(out, jid)
    assert j["JobState"] in ("FAILED", "CANCELLED") and re.search(r"task 1: Killed", log), log[-3000:]
    again = sbatch(slurm, out, run, *args, opts=["--nodes=2"], name="clika-lostrank")
    j2 = wait(slurm, again, 180)
    assert j2["JobState"] == "COMPLETED", log_of(out, again)[-3000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["global_step"] == 40 and summary["resumed_from"]
    assert_each_evaluation_once(run)


# ---------------------------------------------------------------- the README's Hydra SLURM sweep (b, d)
def _results(sweep_root: Path) -> list:
    out = []
    for p in sorted(sweep_root.glob("**/.submitit/*/*_0_result.pkl")):  # task 0 of each job
        with open(p, "rb") as f:
            status, value = pickle.load(f)
        assert status == "success", value
        out.append(value)
    return out


@pytest.mark.extended
@pytest.mark.slurm
def test_hydra_slurm_sweep_one_and_two_node_jobs(slurm, tmp_path):
    """(b) The README's sweep: two 1-node jobs, then two 2-node jobs. (d) under the submitit launcher: one 1-node
    job gets submitit's preemption signal (USR2) mid-run, which is CLiKA's to handle as under sbatch:
    checkpoint, exactly one `scontrol requeue`, the same job dir resumed, the sweep returns both results."""
    common = ["-m", "hydra/launcher=slurm", "resume=auto", "seed=1,2", *SMALL_JOB, "optimized_metric=train/loss",
              "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
    short = ["trainer.max_steps=4", "trainer.val_check_interval=2", "callbacks.model_checkpoint.every_n_train_steps=2"]
    env = _env(slurm)
    # the launch checks still run first: no resume=auto with requeue -> one line, nothing submitted
    bad = subprocess.run([PY, "train.py", *[a for a in common if a != "resume=auto"], *short,
                          f"paths.log_dir={tmp_path}/bad"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: resume:"), bad.stderr[-2000:]
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").glob("**/.submitit"))

    preempted = ["trainer.max_steps=60", "trainer.val_check_interval=20",
                 "callbacks.model_checkpoint.every_n_train_steps=20", "data.batch_size=8", "data.block_size=128"]
    for nodes, extra in ((1, preempted), (2, [*short, "strategy=ddp", "trainer.num_nodes=2"])):
        log_dir = tmp_path / f"n{nodes}"
        sweep = subprocess.Popen([PY, "train.py", *common, *extra, f"paths.log_dir={log_dir}"], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            if nodes == 1:  # submitit's signal to job 0 once it has a step checkpoint (as its time limit would)
                wait_file(log_dir, 150, lambda p: any(p.glob("train/multiruns/*/0/checkpoints/step*.ckpt")))
                task0 = next(log_dir.glob("train/multiruns/*/.submitit/[0-9]*_0"))  # <array job id>_<task>
                subprocess.run(["scancel", "--signal=USR2", task0.name], env=env, check=True, timeout=30)
            out, _ = sweep.communicate(timeout=300)
        finally:
            if sweep.poll() is None:
                sweep.kill()
        assert sweep.returncode == 0, out[-3000:]
        sweeps = list(log_dir.glob("train/multiruns/*"))  # the default sweep dir (no hydra.sweep.dir)
        assert len(sweeps) == 1
        jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
        assert jobs == ["0", "1"]
        for d in jobs:
            assert (sweeps[0] / d / "train_summary.json").exists()
        values = [res.return_value for res in _results(sweeps[0])]
        assert len(values) == 2 and all(isinstance(v, float) for v in values), values
        if nodes == 2:
            assert all("MEMBER: 2/2" in (sweeps[0] / d / "train.log").read_text() for d in jobs)
            continue
        for task in sorted(sweeps[0].glob(".submitit/[0-9]*_[0-9]*")):
            jid, log = task.name, "\n".join(p.read_text(errors="replace") for p in task.glob("*_0_log.*"))
            j = wait(slurm, jid, 60)  # the result is written a moment before the job ends
            requeues = 1 if jid == task0.name else 0  # exactly one requeue per preemption
            assert j["JobState"] == "COMPLETED" and int(j["Restarts"]) == requeues, log[-3000:]
            assert log.count("== attempt ") == 1 + requeues and "Traceback" not in log, log[-4000:]
        run = sweeps[0] / "0"
        log = "\n".join(p.read_text(errors="replace") for p in task0.glob("*_0_log.*"))
        assert "preemption checkpoint at step" in log and f"requeued job {task0.name} after SIGUSR2" in log, log[-3000:]
        summary = json.loads((run / "train_summary.json").read_text())
        assert summary["global_step"] == 60 and summary["resumed_from"], summary
        assert set(range(0, 61, 20)) <= set(assert_each_evaluation_once(run)) and len(wandb_ids(run)) == 1
