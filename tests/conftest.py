"""Offline, single-threaded, project-local caches for every test."""

import atexit
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra._internal.callbacks import Callbacks  # what Hydra's run/multirun call the hydra.callbacks through
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CLIKA_CACHE", str(ROOT / ".cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Never the user's Hugging Face home (hub cache, token): a throwaway one per session, hub-offline (setup_env below).
for _k in ("HF_HUB_CACHE", "HF_XET_CACHE", "HF_TOKEN", "HF_TOKEN_PATH", "CLIKA_HF_HOME"):
    os.environ.pop(_k, None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="clika-tests-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)

from clika.app.checks import check_command_line, friendly_errors  # noqa: E402
from clika.app.compose import CONF, compose  # noqa: E402
from clika.app.env import setup_env  # noqa: E402
from clika.app.launch import register_config  # noqa: E402

setup_env(offline=True)
register_config()  # ${clika_data:} etc., as train.py / eval.py register them


def _data_root() -> Path | None:
    env = os.environ.get("CLIKA_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "clika-data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("CLiKA data not found: set CLIKA_DATA to the official release")
    return root


# ---- two pytest-xdist workers (`make test`: -n 2 --dist loadgroup) ----
# One worker runs every test of this group, one after another: the local SLURM (two 1-CPU nodes: jobs of two
# workers at once would queue past the tests' bounded waits) and the tests that start several ranks themselves
# (torchrun / DDP / DeepSpeed over gloo: two of them at once on 2 cores run each at half speed). As the largest
# group it is scheduled first (xdist >= 3.5 orders work units by size); the other tests share both workers.
MULTIPROCESS = pytest.mark.xdist_group("multiprocess")


def pytest_configure(config):
    dist = config.getoption("dist", "no")  # "no" without xdist (-p no:xdist) and with -n 0
    if dist not in ("no", "loadgroup"):
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            f"--dist {dist} ignores xdist_group: the SLURM and multi-process tests (conftest.MULTIPROCESS) may run "
            "on two workers at once; use -n 2 --dist loadgroup (make test)"), stacklevel=2)


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook (a worker's)
def pytest_collection_modifyitems(config, items):
    """--dist loadgroup: xdist (3.8) tells its scheduler an item's group by renaming the item to `<nodeid>@<group>`
    through `item._nodeid`, which pytest >= 9.2 no longer reads (the id is structured, `item._id`), so the groups
    were silently scheduled on both workers (pytest-dev/pytest-xdist#1386). Rename it where pytest keeps the id
    now, for items xdist's rename missed; a no-op on an xdist that does it."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId

    missed = []
    for item in items:
        groups = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                  for m in item.iter_markers("xdist_group")}
        nodeid = item.nodeid
        if groups and nodeid.rfind("@") <= nodeid.rfind("]") and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{nodeid}@{'_'.join(sorted(groups))}")
        if groups and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):
            missed.append(item.nodeid)
    if missed:  # never silently again: a pytest that keeps the id elsewhere
        warnings.warn(pytest.PytestWarning(f"--dist loadgroup: {len(missed)} grouped tests lost their xdist_group "
                                           f"(e.g. {missed[0]}): they may run on two workers at once"))


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test starts from the session's environment, whichever tests its worker ran before. An in-process
    DeepSpeed run (Lightning's DeepSpeedStrategy) leaves MASTER_ADDR, MASTER_PORT, RANK, LOCAL_RANK and NODE_RANK
    in os.environ, and every fit PL_GLOBAL_SEED: a later test's subprocess would inherit them (with LOCAL_RANK
    Lightning takes a `trainer.devices=2` run as launched externally and starts no second rank; with RANK every
    srun task of a SLURM job is global rank 0; a pinned MASTER_PORT can meet another worker's free port)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """An in-process W&B run starts a service and exports WANDB_SERVICE; every process started later (a SLURM job,
    torchrun) would inherit it and share that service, where a resubmitted run's id is then 'in use'. Each test
    ends with W&B torn down, as a fresh process would find it."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the embedded tiny model, built once per session."""
    from clika.models.load import ModelSpec, load_model

    return load_model(ModelSpec())


# ---- training (train/): compose conf/train.yaml the way `python train.py ...` does ----
TRAIN_TEST_OVERRIDES = ["logger=csv", "threads=1", "trainer.enable_progress_bar=false",
                        "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1"]
# a `python train.py` job as a process (SLURM, run-lock drills): small, CPU, one thread; CLiKA evaluations at
# start, checkpoints and end, on small limits
SMALL_JOB = ["threads=1", "trainer.accelerator=cpu", "export.enabled=false", "print_config=false",
             "trainer.enable_progress_bar=false", "trainer.limit_val_batches=1", "callbacks.clika.limit=4",
             "fictional.limit=4"]


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: train_cfg(*overrides, run_dir=None) -> composed DictConfig with the run dir under tmp_path."""
    from hydra import compose, initialize_config_dir

    def make(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"paths.root_dir={ROOT}", f"paths.output_dir={run_dir}",
                                               *TRAIN_TEST_OVERRIDES, *overrides])

    return make


# ---- the command line: one subprocess runner, one error-line format, and the in-process equivalent ----
def cli(script: str, *args: str, run_dir: Path | None = None, env: dict | None = None, cwd: Path = ROOT,
        timeout: int = 300) -> subprocess.CompletedProcess:
    """`python <script> [hydra.run.dir=<run_dir>] <args>` as a user runs it: offline W&B, one OpenMP thread,
    CLIKA_DEBUG unset (unless `env` sets it); `env` adds to (a value None removes from) the current environment."""
    e = {k: v for k, v in os.environ.items() if k != "CLIKA_DEBUG"}
    e.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    argv = [sys.executable, script, *([f"hydra.run.dir={run_dir}"] if run_dir is not None else []), *args]
    return subprocess.run(argv, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


def wait_file(path: Path, timeout: float, pred=lambda p: p.exists()) -> None:
    """Poll `pred(path)` every 0.3 s for at most `timeout` seconds (the process tests' bounded waits)."""
    end = time.time() + timeout
    while time.time() < end:
        if pred(path):
            return
        time.sleep(0.3)
    raise AssertionError(f"{path} not ready after {timeout}s")


def assert_one_line(stderr: str, *fragments: str) -> str:
    """The one-line error format (clika/app/checks/core.py `report`): exactly one `error: <key>: ... — fix: ...`
    line holding every fragment, and no traceback. Returns the line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert " — fix: " in errors[0], errors[0]
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


@contextmanager
def _as_command_line(script: str, argv: list[str], env: dict | None):
    """sys.argv and the environment as `python <script> <argv>` (with `env`) would have them."""
    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = [script, *argv]
    os.environ.pop("CLIKA_DEBUG", None)
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)


def _hydra_front(script: str, argv: list[str], job: bool) -> None:
    """What `python <script> <argv>` runs before the job (clika/app/<app>.py `main`, then Hydra's `run` /
    `multirun` up to the callbacks' on_run_start / on_multirun_start), and with `job` the job itself on the
    config Hydra passes it (no `hydra` node, HydraConfig set, paths.output_dir = the run dir)."""
    app = Path(script).stem
    friendly_errors(check_command_line)(argv, CONF, partial(compose, app), f"{app}.py")
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = GlobalHydra.instance().hydra.compose_config(app, overrides, run_mode=mode, from_shell=True,
                                                          with_log_configuration=False)
    if cfg.hydra.mode is None:
        cfg.hydra.mode = mode
    callbacks = Callbacks(cfg)
    if multirun:
        callbacks.on_multirun_start(config=cfg, config_name=app)
        return
    callbacks.on_run_start(config=cfg, config_name=app)
    if not job:
        return
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
    task_cfg = cfg.copy()
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    HydraConfig.instance().set_config(cfg)
    try:  # deferred: the jobs import Lightning / transformers
        if app == "train":
            from clika.train.run import main as run_job
        else:
            from clika.eval.run import run

            run_job = friendly_errors(run)  # = clika/app/eval.py run_checked
        run_job(task_cfg)
    finally:
        HydraConfig.instance().cfg = None


def _front(script: str, overrides, env: dict | None, job: bool) -> tuple[int | None, str, str]:
    """`_hydra_front` as `python <script> <overrides>` (with `env`) runs it: (exit code, None if it returned;
    stdout; stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with _as_command_line(script, list(overrides), env), redirect_stdout(out), redirect_stderr(err):
            _hydra_front(script, list(overrides), job)
    except SystemExit as e:
        return e.code, out.getvalue(), err.getvalue()
    return None, out.getvalue(), err.getvalue()


def check_config_error(script: str, overrides: list[str] | tuple[str, ...] = (), *, env: dict | None = None,
                       job: bool = False) -> str:
    """In-process `python <script> <overrides>` that must stop with a user error: runs what the entry point runs
    before the job (the command-line checks in `friendly_errors`, then Hydra's composition and the ConfigChecks
    callback; with `job=True` the job too), expects exit 2, and returns stderr (the one-line error, plus the
    traceback in debug). `env` sets (None: removes) variables for the call, CLIKA_DEBUG unset unless given."""
    code, _, err = _front(script, overrides, env, job)
    if code is None:
        pytest.fail(f"{script} {' '.join(overrides)}: no error{' before the job' if not job else ''}; stderr: "
                    f"{err[-3000:]}")
    assert code == 2, (code, err[-3000:])
    return err


def run_in_process(script: str, overrides: list[str] | tuple[str, ...] = (), *, env: dict | None = None) -> str:
    """In-process `python <script> <overrides>` that must succeed (what the entry point runs, then the job, as in
    `check_config_error(job=True)`); returns stdout. The command-line process itself is smoke-tested once per entry
    point and exit path; the other runs of a command need not re-import torch in a fresh process."""
    code, out, err = _front(script, overrides, env, job=True)
    if code is not None:
        pytest.fail(f"{script} {' '.join(overrides)}: exit {code}; stderr: {err[-3000:]}")
    return out
