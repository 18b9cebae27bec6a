"""Faults on purpose: SIGKILL + resume=auto, SIGTERM / SIGUSR1, corrupt checkpoints, NaN loss, W&B without a server.

The reliability pieces live in clika/train/callbacks/nan_guard.py, clika/train/callbacks/preemption.py, clika/train/checkpointing.py and
clika/train/loggers.py; runs get them through callback / logger overrides
(`+callbacks.<name>._target_=train.<module>.<Class>`), exactly as a config would add them.
"""

import csv
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from clika.util.errors import ClikaError

ROOT = Path(__file__).resolve().parents[2]




def clika_callback(data_root, datasets: str, *extra: str) -> list[str]:
    """Overrides narrowing the CLiKA callback to `datasets` (en, zh; 4 items), without the fictional probe."""
    return [f"paths.clika_data={data_root}", f"clika.datasets={datasets}", "callbacks.clika.limit=4",
            "callbacks.clika.langs=[en,zh]", "callbacks.clika.fictional=null", "clika.bootstrap=10",
            "clika.batch_size=4", *extra]

# Test-only callbacks, importable in-process and by `python train.py` subprocesses (PYTHONPATH).
DRILL = '''
import os, signal, time
import lightning.pytorch as pl


class Slow(pl.Callback):
    """Sleep after each batch so a kill from outside lands mid-run."""
    def __init__(self, seconds=0.2):
        self.seconds = seconds
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


class PoisonLoss(pl.Callback):
    """Make the forward pass return NaN at the given global steps (weights stay clean)."""
    def __init__(self, steps=(3,), value="nan"):
        self.steps, self.value, self.handle = list(steps), float(value), None
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step in self.steps:
            emb = pl_module.model.get_input_embeddings()
            self.handle = emb.register_forward_hook(lambda m, i, o: o * self.value)
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


class SelfSignal(pl.Callback):
    """Send this process a signal at a global step (a scheduler's preemption notice)."""
    def __init__(self, step=3, signum="SIGUSR1"):
        self.step, self.signum, self.sent = step, signum, False
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signum))
'''


@pytest.fixture
def drill(tmp_path):
    d = tmp_path / "drill"
    d.mkdir()
    (d / "clika_drill.py").write_text(DRILL)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))
    sys.modules.pop("clika_drill", None)


CKPT_EVERY_2_KEEP_2 = ["callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.model_checkpoint.save_top_k=2",
                       ]
SMALL = ["data.block_size=32", "export.enabled=false", "trainer.limit_val_batches=0",
         "callbacks.clika=null"]


def _train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "train.py", f"hydra.run.dir={run_dir}", "threads=1", "trainer.enable_progress_bar=false",
            *overrides]


def _env(drill: Path, **extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(drill), str(ROOT)]),
           "WANDB_MODE": "offline"}
    env.pop("CLIKA_DEBUG", None)
    env.update(extra)
    return env


def _metrics(run_dir: Path) -> dict[int, dict[str, list[float]]]:
    """step -> metric -> every value logged for it (over all CSV versions: a resume logs to the next)."""
    out: dict[int, dict[str, list[float]]] = {}
    for f in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        for r in csv.DictReader(f.open()):
            for k, v in r.items():
                if v not in ("", None) and k not in ("step", "epoch") and (k.startswith(("train/loss", "val/"))
                                                                           or k.endswith("/acc")):
                    out.setdefault(int(r["step"]), {}).setdefault(k, []).append(float(v))
    return out


def _final_state(run_dir: Path) -> tuple[int, dict]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["state_dict"]


@pytest.mark.extended
def test_sigkill_at_random_step_then_resume_auto_matches_uninterrupted_run(drill, tmp_path, data_root):
    """kill -9 the whole job once a checkpoint exists (random delay), restart with resume=auto: same final
    weights, same per-step metrics, alignment.csv without duplicate or missing rows, one W&B run id."""
    steps = 10
    common = [f"trainer.max_steps={steps}", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
              "data.block_size=32", "export.enabled=false", "logger=default", "++logger.csv.flush_logs_every_n_steps=1",
              *CKPT_EVERY_2_KEEP_2,
                            "++callbacks.slow._target_=clika_drill.Slow", "++callbacks.slow.seconds=0.2",
*clika_callback(data_root, "[x_geo]", "++callbacks.clika.every_n_steps=3")]
    env = _env(drill)
    ref, run = tmp_path / "ref", tmp_path / "run"
    # the uninterrupted reference and the run to kill, side by side (one thread each)
    ref_proc = subprocess.Popen(_train_cmd(ref, *common), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_train_cmd(run, *common), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    seed = int(os.environ.get("CLIKA_KILL_SEED", random.randrange(10**6)))
    delay = random.Random(seed).uniform(0.0, 1.2)
    deadline = time.time() + 240
    while not list((run / "checkpoints").glob("step*.ckpt")) and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    assert victim.poll() is None, f"run ended before the kill (seed {seed}); raise Slow.seconds"
    os.killpg(victim.pid, signal.SIGKILL)  # the whole job, as a node failure or scancel -s KILL would
    victim.wait()
    killed_at = max(int(p.stem.removeprefix("step")) for p in (run / "checkpoints").glob("step*.ckpt"))
    assert killed_at < steps, f"seed {seed}"
    assert not list(run.rglob("*.ckpt.*.tmp")) or True  # a kill mid-write may leave a temp file, never a bad .ckpt
    run_id = (run / "wandb_run_id").read_text().strip()

    resumed = subprocess.run(_train_cmd(run, *common, "resume=auto"), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ref_proc.wait(timeout=300) == 0, ref_proc.stderr.read()[-3000:]

    # same final weights
    (ga, sa), (gb, sb) = _final_state(ref), _final_state(run)
    assert ga == gb == steps
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6, msg=f"{k} (seed {seed})")
    # same logged metrics: every step logged, every value (killed run + resumed run) equal to the reference
    ma, mb = _metrics(ref), _metrics(run)
    assert sorted(ma) == sorted(mb), f"seed {seed}"
    for step, vals in ma.items():
        for key, (v,) in ((k, vs[-1:]) for k, vs in vals.items()):
            assert key in mb[step], (step, key)
            for w in mb[step][key]:
                assert w == pytest.approx(v, rel=1e-4, abs=1e-5), (step, key, seed)
    # alignment.csv: the reference's rows, once each
    def rows(d):
        return [(r["step"], r["dataset"], r["lang"], r["acc"]) for r in csv.DictReader((d / "alignment.csv").open())]
    ra, rb = rows(ref), rows(run)
    assert len(rb) == len(set(rb)) and len({r[:3] for r in rb}) == len(rb), "duplicate alignment rows"
    assert sorted(ra) == sorted(rb), f"seed {seed}"
    # one W&B run: the id file survived, every offline run dir is that run
    assert (run / "wandb_run_id").read_text().strip() == run_id
    wandb_dirs = list((run / "wandb").glob("offline-run-*"))
    assert wandb_dirs and {p.name.rsplit("-", 1)[-1] for p in wandb_dirs} == {run_id}


@pytest.mark.extended
def test_sigterm_saves_a_checkpoint_before_exit_and_resume_continues(drill, tmp_path):
    run = tmp_path / "run"
    common = ["trainer.max_steps=40", "logger=csv", "++logger.csv.flush_logs_every_n_steps=1", *SMALL, "callbacks.model_checkpoint.every_n_train_steps=1000",
                            "++callbacks.slow._target_=clika_drill.Slow", "++callbacks.slow.seconds=0.2"]
    proc = subprocess.Popen(_train_cmd(run, *common), cwd=ROOT, env=_env(drill), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    metrics = run / "csv" / "version_0" / "metrics.csv"
    while time.time() < deadline and proc.poll() is None and not metrics.exists():
        time.sleep(0.1)
    time.sleep(1.0)  # training under way (a few steps logged): preempt
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "preemption checkpoint at step" in out
    last = run / "checkpoints" / "last.ckpt"
    assert last.exists()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert 0 < ckpt["global_step"] < 40
    from clika.train.checkpointing import find_resumable_checkpoint

    assert find_resumable_checkpoint(run) == str(last.resolve())
    again = subprocess.run(_train_cmd(run, "trainer.max_steps=" + str(ckpt["global_step"] + 2), "logger=csv", *SMALL,
                                      "resume=auto"), cwd=ROOT, env=_env(drill), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == ckpt["global_step"] + 2


def test_sigusr1_in_process_checkpoints_and_exits(train_cfg, drill, tmp_path):
    from clika.train.run import train

    cfg = train_cfg(*SMALL, "trainer.max_steps=8", "callbacks.model_checkpoint.every_n_train_steps=1000",
                                        "++callbacks.sig._target_=clika_drill.SelfSignal", "++callbacks.sig.step=3")
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(SystemExit) as err:
        train(cfg)
    assert err.value.code == 128 + signal.SIGUSR1
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4  # the signal came during step 3's batch: saved at its end
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers restored


def test_truncated_last_checkpoint_falls_back_to_previous_with_warning(train_cfg, tmp_path):
    from clika.train.checkpointing import find_resumable_checkpoint
    from clika.train.cluster.recovery import ReliabilityWarning
    from clika.train.run import train

    common = [*SMALL, *CKPT_EVERY_2_KEEP_2]
    out = train(train_cfg(*common, "trainer.max_steps=6"))
    run = Path(out["run_dir"])
    ck = run / "checkpoints"
    assert os.path.realpath(ck / "last.ckpt") == str((ck / "step000006.ckpt").resolve())
    assert find_resumable_checkpoint(run) == str((ck / "step000006.ckpt").resolve())
    data = (ck / "step000006.ckpt").read_bytes()
    (ck / "step000006.ckpt").write_bytes(data[: len(data) // 2])  # killed mid-write, no atomic IO
    with pytest.warns(ReliabilityWarning, match=r"step000006.ckpt.*unreadable.*previous good checkpoint .*step000004"):
        good = find_resumable_checkpoint(run)
    assert good == str((ck / "step000004.ckpt").resolve())
    with pytest.raises(ClikaError, match="step000006.ckpt"):
        find_resumable_checkpoint(ck / "last.ckpt", fallback=False)  # an explicitly named file: no guessing
    resumed = train(train_cfg(*common, "trainer.max_steps=8", f"resume={good}"))
    assert resumed["global_step"] == 8 and resumed["resumed_from"] == good
    # every candidate broken -> a one-line error naming them; no checkpoints -> fresh start
    for p in ck.glob("*.ckpt"):
        if not p.is_symlink():
            p.write_bytes(b"")
    with pytest.raises(ClikaError, match="no loadable checkpoint.*empty file"):
        find_resumable_checkpoint(run)
    assert find_resumable_checkpoint(tmp_path / "empty_run") is None


def test_checkpoint_missing_keys_is_rejected(tmp_path):
    from clika.train.checkpointing import checkpoint_problem

    torch.save({"state_dict": {}}, tmp_path / "a.ckpt")
    assert "lacks" in checkpoint_problem(tmp_path / "a.ckpt")
    os.symlink("gone.ckpt", tmp_path / "last.ckpt")
    assert "dangling" in checkpoint_problem(tmp_path / "last.ckpt")


def test_atomic_checkpoint_io_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    from clika.train.checkpointing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)
    good = target.read_bytes()
    real_save = torch.save

    def dies_mid_write(obj, f, *a, **k):
        f.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError):
        io.save_checkpoint({"global_step": 2}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert target.read_bytes() == good and list(tmp_path.iterdir()) == [target]
    # a link (save_last=link) is replaced, never written through into the checkpoint it points at
    (tmp_path / "step1.ckpt").write_bytes(good)
    target.unlink()
    os.symlink("step1.ckpt", target)
    io.save_checkpoint({"global_step": 3}, target)
    assert not target.is_symlink() and (tmp_path / "step1.ckpt").read_bytes() == good


def test_atomic_checkpoints_callback_is_used_by_the_trainer(train_cfg, monkeypatch):
    from clika.train import checkpointing
    from clika.train.run import train

    calls = []
    orig = checkpointing.AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(checkpointing.AtomicCheckpointIO, "save_checkpoint",
                        lambda self, c, p, storage_options=None: (calls.append(str(p)), orig(self, c, p, storage_options))[1])
    out = train(train_cfg(*SMALL, "trainer.max_steps=2"))
    assert any(p.endswith("step000002.ckpt") for p in calls) and Path(out["checkpoint"]).exists()
    assert not list(Path(out["run_dir"]).rglob("*.tmp"))


def test_nan_loss_stops_with_step_and_source_named(train_cfg, drill, capsys):
    from clika.train.run import main

    cfg = train_cfg(*SMALL, "trainer.max_steps=6", "++callbacks.nan_guard._target_=clika.train.callbacks.nan_guard.NanGuard",
                    "++callbacks.poison._target_=clika_drill.PoisonLoss", "++callbacks.poison.steps=[3]")
    with pytest.raises(SystemExit) as err:
        main(cfg)
    assert err.value.code == 2
    err_lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
    assert len(err_lines) == 1
    msg = err_lines[0]
    assert msg.startswith("error: train loss is nan at global step 3")
    assert "items from source" in msg and "(lang zh)" in msg and "fix:" in msg
    # nothing written for a step that never happened
    assert not (Path(cfg.paths.output_dir) / "checkpoints" / "step000004.ckpt").exists()


def test_nan_loss_skip_mode_drops_the_update_then_stops_when_over_budget(train_cfg, drill, tmp_path):
    from clika.train.run import train

    common = [*SMALL, "trainer.max_steps=6", "++callbacks.nan_guard._target_=clika.train.callbacks.nan_guard.NanGuard",
              "++callbacks.nan_guard.mode=skip", "++callbacks.nan_guard.max_skips=1",
              "++callbacks.poison._target_=clika_drill.PoisonLoss"]
    with pytest.warns(Warning, match="global step 3.*update skipped"):
        out = train(train_cfg(*common, "++callbacks.poison.steps=[3]", run_dir=tmp_path / "a"))
    assert out["global_step"] == 6
    sd = torch.load(out["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in sd.values())
    with pytest.raises(ClikaError, match=r"global step 4.*after 1 skipped update"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(train_cfg(*common, "++callbacks.poison.steps=[3,4]", run_dir=tmp_path / "b"))


def test_nan_guard_rejects_unknown_mode():
    from clika.train.callbacks.nan_guard import NanGuard

    with pytest.raises(ClikaError, match="nan_guard.mode"):
        NanGuard(mode="ignore")


@pytest.mark.extended
def test_wandb_online_without_a_server_continues_offline_in_bounded_time(drill, tmp_path):
    run = tmp_path / "run"
    env = _env(drill, WANDB_MODE="online", WANDB_BASE_URL="http://127.0.0.1:9",
               WANDB_API_KEY="fake" + "0" * 36, WANDB_SILENT="true")
    start = time.time()
    proc = subprocess.run(_train_cmd(run, "trainer.max_steps=2", *SMALL, "logger=wandb",
                                     "logger.wandb._target_=clika.train.loggers.ResilientWandbLogger",
                                     "++logger.wandb.init_timeout=5"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    wall = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing offline" in proc.stderr
    assert wall < 60, wall
    run_id = (run / "wandb_run_id").read_text().strip()
    assert [p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")] == [run_id]
    assert "steps        2" in proc.stdout


def test_csv_logger_header_rewrite_is_atomic(tmp_path, monkeypatch):
    """A new metric name makes Lightning rewrite metrics.csv; a failure during the rewrite keeps the old file."""
    import csv as csv_mod

    from clika.train.loggers import AtomicCSVLogger

    logger = AtomicCSVLogger(save_dir=str(tmp_path), name="csv")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    path = Path(logger.experiment.metrics_file_path)
    before = path.read_text()
    logger.log_metrics({"train/loss": 0.9, "clika/x_copa/zh/acc": 0.5}, step=1)  # new key: header rewrite

    def boom(self, rows):
        raise OSError("disk full")
    monkeypatch.setattr(csv_mod.DictWriter, "writerows", boom)
    with pytest.raises(OSError):
        logger.save()
    assert path.read_text() == before and not list(path.parent.glob(".*.tmp"))
    monkeypatch.undo()
    logger.log_metrics({"train/loss": 0.8, "clika/x_copa/zh/acc": 0.6}, step=2)
    logger.save()
    rows = list(csv_mod.DictReader(path.open()))
    assert [r["step"] for r in rows] == ["0", "1", "2"]  # the row of the failed save is kept, none lost
    assert [r["clika/x_copa/zh/acc"] for r in rows] == ["", "0.5", "0.6"]
