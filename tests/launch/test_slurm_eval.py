"""eval.py on the local SLURM (launch/local_slurm.sh; .ci/run starts it): an evaluation preempted by SIGUSR1 is
requeued once and finishes equal to an uninterrupted one without scoring a set twice; `eval.py -m model=...` and a
`task=checkpoints` sweep (one job per checkpoint, one alignment.csv over them) run as SLURM jobs. Tiny model, small
limits; every wait bounded. Without a cluster the `slurm` tests skip with one line."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from clika.eval.checkpoints import select
from clika.scoring.api import RequestSet, Stopped, score_sets
from clika.scoring.journal import Journal
from clika.util.errors import ClikaError
from conftest import MULTIPROCESS, wait_file
from test_slurm import _env, slurm, wait  # noqa: F401 - the cluster fixture and helpers of training's SLURM tests

# one xdist worker (with test_slurm.py): the cluster's two 1-CPU nodes; the module's sweeps are submitted once
pytestmark = MULTIPROCESS
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# 4 datasets x 3 languages = 12 request sets, scored in this order; circular makes each last long enough to signal
# between them
DATASETS, LANGS = ("x_copa", "x_csqa", "x_geo", "x_name"), ("en", "zh", "de")
SUITE = ["print_config=false", "threads=1", "device=cpu", f"clika.datasets=[{','.join(DATASETS)}]",
         f"clika.langs=[{','.join(LANGS)}]", "clika.limit=12", "clika.circular=true"]
SETS = len(DATASETS) * len(LANGS)
SWEEP = ["hydra/launcher=slurm", "resume=auto", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]


def _predictions(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_text() for p in sorted((run / "predictions").rglob("*.jsonl"))}


def _sweep_jobs(sweep: Path) -> list[Path]:
    return sorted(sweep.glob(".submitit/[0-9]*_[0-9]*"))


def _success(task: Path):
    with open(next(task.glob("*_0_result.pkl")), "rb") as f:
        status, value = pickle.load(f)
    assert status == "success", value
    return value


def _popen(slurm, data_root, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "eval.py", "-m", *SWEEP, *args], cwd=ROOT, env=_env(slurm, CLIKA_DATA=str(data_root)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def model_sweep(slurm, data_root, tmp_path_factory):
    """`eval.py -m model=tiny model.tiny.seed=0,1` on SLURM (submitted now, waited for by whoever needs it): two
    models, two jobs. Job 0 (the default tiny model) is also the uninterrupted reference of the preemption test."""
    logs = tmp_path_factory.mktemp("sweep")
    proc = _popen(slurm, data_root, "model=tiny", "model.tiny.seed=0,1", *SUITE, f"paths.log_dir={logs}")
    state = {}

    def get() -> Path:
        if not state:
            _finish(proc, 300)
            (sweep,) = logs.glob("eval/multiruns/*")
            state["sweep"] = sweep
        return state["sweep"]

    return get


@pytest.mark.extended
@pytest.mark.slurm
def test_sigusr1_requeues_once_and_the_resumed_evaluation_equals_an_uninterrupted_one(slurm, data_root, model_sweep,
                                                                                      tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    out.mkdir()
    r = subprocess.run(["sbatch", "--parsable", "--job-name=clika-eval-preempt", "--nodes=1", "--ntasks-per-node=1",
                        "--gpus-per-node=0", "--cpus-per-task=1", "--time=10", f"--output={out}/%x-%j.out",
                        str(ROOT / "launch" / "sbatch_eval.sh"), *SUITE],
                       env=_env(slurm, CLIKA_RUN_DIR=str(run), CLIKA_DATA=str(data_root)), capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip().split(";")[0]
    journal = run / ".journal" / "rank0-of-1.jsonl"
    # the header and one finished set: the signal lands while the second is scored (or between sets)
    wait_file(journal, 240, lambda p: p.exists() and p.read_text().count("\n") >= 2)
    subprocess.run(["scancel", "--signal=USR1", jid], env=_env(slurm), check=True, timeout=30)
    j = wait(slurm, jid, 240)
    log = "\n".join(p.read_text(errors="replace") for p in [*out.glob("*.out"), run / "eval.log"] if p.exists())
    assert j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0", log[-3000:]
    assert int(j["Restarts"]) == 1 and log.count("== attempt ") == 2, log[-3000:]  # one requeue per preemption
    assert f"requeued job {jid} after SIGUSR1" in log and "Traceback" not in log, log[-3000:]

    (attempt,) = json.loads((run / "slurm_requeue.json").read_text())["attempts"]
    assert attempt["requeued"] and attempt["signal"] == "SIGUSR1" and 1 <= attempt["sets_scored"] < SETS
    assert attempt["sets_left"] == SETS - attempt["sets_scored"]
    res = json.loads((run / "results.json").read_text())
    ev = res["evaluated"]["run"]
    prompts = [len((run / "predictions" / ds / f"{lang}.jsonl").read_text().splitlines())
               for ds in DATASETS for lang in LANGS]  # per set, every rotation
    # the first attempt's sets came from the journal; the second scored only the rest: none twice
    assert ev["resumed_items"] == sum(prompts[:attempt["sets_scored"]]) and ev["items"] == sum(prompts)
    assert not (run / ".journal").exists()

    ref = model_sweep() / "0"  # the sweep's default tiny model: the same evaluation, uninterrupted
    assert _predictions(run) == _predictions(ref)  # item for item, score for score
    assert res["datasets"] == json.loads((ref / "results.json").read_text())["datasets"]


@pytest.mark.extended
@pytest.mark.slurm
def test_a_model_sweep_runs_one_slurm_job_per_model(slurm, model_sweep):
    sweep = model_sweep()
    tasks = _sweep_jobs(sweep)
    assert len(tasks) == 2
    for task in tasks:
        _success(task)
        assert wait(slurm, task.name, 60)["JobState"] == "COMPLETED"  # the result is written just before the end
    a, b = (json.loads((sweep / d / "results.json").read_text()) for d in ("0", "1"))
    assert a["evaluated"]["weights_sha256"] != b["evaluated"]["weights_sha256"]  # two models were evaluated
    assert a["datasets"].keys() == b["datasets"].keys() == set(DATASETS)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: (int(r["step"]), r["dataset"], r["lang"]))


@pytest.fixture(scope="module")
def checkpoint_sweep(slurm, data_root, tmp_path_factory):
    """A 2-checkpoint training run (here), then `eval.py -m task=checkpoints checkpoint=2,4 output_dir=OUT` on SLURM
    (submitted now, waited for by whoever needs it)."""
    from clika.train.run import train

    base = tmp_path_factory.mktemp("ckpts")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={ROOT}", f"paths.output_dir={base / 'run'}", "logger=csv",
                                          "threads=1", "trainer.enable_progress_bar=false", "trainer.max_steps=4",
                                          "callbacks.model_checkpoint.every_n_train_steps=2",
                                          "callbacks.model_checkpoint.save_top_k=-1", "~callbacks.clika",
                                          "export.enabled=false", "method.lr=5e-3", "trainer.limit_val_batches=0"])
    run = Path(train(cfg)["run_dir"])
    proc = _popen(slurm, data_root, "task=checkpoints", f"run_dir={run}", "checkpoint=2,4", f"output_dir={base / 'ck'}",
                  "clika.datasets=[x_copa,x_geo]", "clika.langs=[en,zh]", "clika.limit=6", "threads=1",
                  "print_config=false", "device=cpu", f"paths.log_dir={base}/logs")
    state = {}

    def get() -> tuple[Path, Path]:
        if not state:
            _finish(proc, 300)
            (sweep,) = (base / "logs").glob("eval/multiruns/*")
            state["dirs"] = sweep, base / "ck"
        return state["dirs"]

    return get


@pytest.fixture(scope="module", autouse=True)
def _submit_both_sweeps_first(request):
    """Both sweeps go to the queue at once, so their jobs and the preempted one share the two nodes' time."""
    if any(item.get_closest_marker("slurm") for item in request.session.items if item.module is request.module):
        try:
            request.getfixturevalue("model_sweep")
            request.getfixturevalue("checkpoint_sweep")
        except pytest.skip.Exception:  # no cluster (or no data): the slurm tests skip themselves, the rest run
            pass


@pytest.mark.extended
@pytest.mark.slurm
def test_a_checkpoint_sweep_runs_one_job_per_checkpoint_and_one_table_over_them(slurm, checkpoint_sweep):
    sweep, shared = checkpoint_sweep()
    tasks = _sweep_jobs(sweep)
    evaluated = sorted(e["step"] for t in tasks for e in _success(t).return_value["evaluated"])
    assert len(tasks) == 2 and evaluated == [2, 4]  # one checkpoint per job
    rows = _rows(shared / "alignment.csv")  # every job added its rows: the table is over both
    assert sorted({int(r["step"]) for r in rows}) == [2, 4] and len(rows) == 2 * 2 * 2
    for r in rows:  # the rows are each checkpoint's own results
        res = json.loads((shared / "checkpoints" / f"step{int(r['step']):06d}" / "results.json").read_text())
        assert float(r["acc"]) == pytest.approx(res["datasets"][r["dataset"]]["langs"][r["lang"]]["acc"])
        assert (shared / "checkpoints" / f"step{int(r['step']):06d}" / "identity.json").exists()
    assert (shared / "alignment_curves.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- no cluster needed
def test_checkpoint_selects_one_by_step_or_name_and_refuses_an_unknown_one(tmp_path):
    ckpts = [tmp_path / "checkpoints" / f"step{s:06d}.ckpt" for s in (2, 4, 6)]
    assert select(ckpts, None, tmp_path) == ckpts
    assert select(ckpts, 4, tmp_path) == select(ckpts, "step000004", tmp_path) == [ckpts[1]]
    with pytest.raises(ClikaError) as e:
        select(ckpts, 5, tmp_path)
    msg = str(e.value)
    assert msg.startswith("checkpoint:") and "\n" not in msg and "-m checkpoint=2,4,6" in msg


def test_should_stop_stops_between_sets_with_every_finished_set_journalled(tiny, tmp_path):
    from clika.scoring.loglik import LetterScorer, Request

    model, tok = tiny
    sets = [RequestSet(("t", i), LetterScorer(progress=False),
                       [Request(uid=f"{i}", context=f"Q: {i}+1? A. one B. two\nAnswer:", letters="AB",
                                options=["one", "two"], label=0)])
            for i in range(4)]
    asked = []
    journal = Journal(tmp_path / "j", {"m": 1})
    with pytest.raises(Stopped) as e:
        score_sets(model, tok, sets, journal=journal, should_stop=lambda: asked.append(1) or len(asked) > 2)
    assert (e.value.scored, e.value.remaining, e.value.total) == (2, 2, 4)
    again = Journal(tmp_path / "j", {"m": 1}, resume=True)
    assert again.done(("t", 0)) is not None and again.done(("t", 1)) is not None and again.done(("t", 2)) is None
    full = score_sets(model, tok, sets, journal=again)  # the resumed run scores only the rest
    assert list(full) == [s.key for s in sets] and again.resumed_items == 2
