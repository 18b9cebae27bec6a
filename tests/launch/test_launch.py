"""Scale-out (CPU): launcher profiles render, launch scripts render, launch checks fire, rank-safe run dirs,
a submitit_local multirun and a torchrun 2-process launch on localhost."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clika.util.errors import ClikaError
from clika.app import launch as launch_env
from clika.app.checks import run_train_checks
from clika.train.sweep import optimized_value
from conftest import MULTIPROCESS, check_config_error, cli

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = ["debug=fast", "logger=csv", "threads=1", "trainer.accelerator=cpu", "trainer.max_steps=2",
        "trainer.limit_val_batches=1", "trainer.val_check_interval=2", "export.enabled=false",
        "data.block_size=32", "callbacks.model_checkpoint.every_n_train_steps=2"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC", "CLIKA_RUN_DIR"))}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _train_py(*args: str, timeout: int = 120, **env) -> subprocess.CompletedProcess:
    return cli("train.py", *args, env={**{k: None for k in os.environ if k not in _env()}, **_env(**env)},
               timeout=timeout)


# ---------------------------------------------------------------- launcher profiles
def test_slurm_launcher_config_renders_one_task_per_device():
    r = _train_py("hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2",
                  "hydra.launcher.partition=gpu", "hydra.launcher.account=proj", "hydra.launcher.mem_gb=200",
                  "--cfg", "all")
    assert r.returncode == 0, r.stderr[-2000:]
    launch_env.register_config()  # gpus_per_node: ${clika_gpus_per_node:...} (none for CPU runs)
    cfg = OmegaConf.create(r.stdout)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    # interpolated (so SLURM always agrees with Lightning), and resolved to the requested values
    assert OmegaConf.to_container(launcher)["tasks_per_node"] == "${oc.select:trainer.devices,1}"  # eval.py: 1
    assert launcher.tasks_per_node == 4 and launcher.nodes == 2 and launcher.gpus_per_node == 4
    assert launcher.partition == "gpu" and launcher.account == "proj" and launcher.mem_gb == 200
    assert launcher.timeout_min > 0 and launcher.cpus_per_task >= 1
    assert launcher.max_num_timeout > 0  # auto-requeue
    assert cfg.hydra.callbacks.checks._target_ == "clika.app.checks.ConfigChecks"

    # the `--cfg hydra` view carries the same launcher node
    h = _train_py("hydra/launcher=slurm", "trainer.devices=4", "--cfg", "hydra")
    assert h.returncode == 0 and "tasks_per_node: ${oc.select:trainer.devices,1}" in h.stdout


def test_local_launcher_profiles_render():
    for name, target in [("local", "BasicLauncher"), ("submitit_local", "submitit_launcher.LocalLauncher")]:
        r = _train_py(f"hydra/launcher={name}", "--cfg", "hydra")
        assert r.returncode == 0, r.stderr[-2000:]
        assert OmegaConf.create(r.stdout).hydra.launcher._target_.endswith(target)


def test_launch_checks_stop_a_slurm_sweep_before_submission(tmp_path):
    stderr = check_config_error("train.py", ["-m", "hydra/launcher=slurm", "trainer.devices=2", "seed=1,2",
                                             f"hydra.sweep.dir={tmp_path}/s"],
                                env={k: None for k in os.environ if k not in _env()})
    assert "resume:" in stderr and "resume=auto" in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not (tmp_path / "s" / ".submitit").exists()  # nothing was submitted


# ---------------------------------------------------------------- launch scripts
@pytest.mark.parametrize("script", ["sbatch_train.sh", "torchrun_multinode.sh", "wandb_sync.sh", "sbatch_eval.sh",
                                    "torchrun_eval.sh"])
def test_launch_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(ROOT / "launch" / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_sbatch_template_renders_srun_line(tmp_path):
    text = (ROOT / "launch" / "sbatch_train.sh").read_text()
    for opt in ("--nodes=", "--ntasks-per-node=", "--gpus-per-node=", "--cpus-per-task=", "--time=", "--requeue"):
        assert f"#SBATCH {opt}" in text
    env = _env(SLURM_JOB_ID="4242", SLURM_JOB_NAME="clika", SLURM_NTASKS_PER_NODE="8(x2)",
               SLURM_JOB_NUM_NODES="2", CLIKA_DRY_RUN="1", CLIKA_ROOT=str(ROOT))
    r = subprocess.run(["bash", str(ROOT / "launch" / "sbatch_train.sh"), "experiment=lr_sweep", "method.lr=1e-3"],
                       env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout.strip())
    assert argv[:2] == ["srun", "--kill-on-bad-exit=1"] and argv[3] == "train.py"
    assert argv[4:] == ["trainer.devices=8", "trainer.num_nodes=2",
                        f"hydra.run.dir={ROOT}/outputs/sbatch/clika-4242", "resume=auto",
                        "experiment=lr_sweep", "method.lr=1e-3"]


def test_eval_launch_scripts_render_their_command(tmp_path):
    env = _env(SLURM_JOB_ID="77", SLURM_JOB_NAME="clika-eval", CLIKA_DRY_RUN="1", CLIKA_ROOT=str(ROOT))
    r = subprocess.run(["bash", str(ROOT / "launch" / "sbatch_eval.sh"), "model=llama2_7b"], env=env,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout.strip())
    assert argv[:2] == ["srun", "--kill-on-bad-exit=1"] and argv[3:] == [
        "eval.py", f"output_dir={ROOT}/outputs/sbatch/clika-eval-77", "resume=auto", "model=llama2_7b"]
    text = (ROOT / "launch" / "sbatch_eval.sh").read_text()
    for opt in ("--signal=SIGUSR1@120", "--requeue", "--open-mode=append"):  # a preempted evaluation resumes
        assert f"#SBATCH {opt}" in text
    r = subprocess.run(["bash", str(ROOT / "launch" / "torchrun_eval.sh"), "clika.limit=5"],
                       env=_env(CLIKA_DRY_RUN="1", NPROC_PER_NODE="2", OUT="/o"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout.strip())
    assert argv[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "eval.py",
                        "output_dir=/o", "clika.limit=5"]


def test_torchrun_script_renders_rendezvous():
    env = _env(NNODES="2", NPROC_PER_NODE="8", MASTER_ADDR="node001", MASTER_PORT="29600", RDZV_ID="exp7",
               CLIKA_DRY_RUN="1")
    r = subprocess.run(["bash", str(ROOT / "launch" / "torchrun_multinode.sh"), "strategy=deepspeed_zero2"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout.strip())
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    for a in ("--nnodes=2", "--nproc-per-node=8", "--rdzv-endpoint=node001:29600", "--rdzv-id=exp7",
              "trainer.devices=8", "trainer.num_nodes=2", "strategy=deepspeed_zero2",
              f"hydra.run.dir={ROOT}/outputs/torchrun/exp7"):
        assert a in argv


def test_wandb_sync_runs_each_offline_run_with_a_timeout(tmp_path):
    for name in ("a/wandb/offline-run-1", "b/wandb/offline-run-2"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    fake = tmp_path / "wandb"
    fake.write_text('#!/bin/bash\necho "$@" >> "$LOG"\n[[ "$2" == *run-2 ]] && sleep 5\nexit 0\n')
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(ROOT / "launch" / "wandb_sync.sh"), str(tmp_path / "runs"), "1"],
                       env=_env(WANDB=str(fake), LOG=str(tmp_path / "log")), capture_output=True, text=True,
                       timeout=60)
    calls = (tmp_path / "log").read_text().split("\n")
    assert [c.split("/")[-1] for c in calls if c] == ["offline-run-1", "offline-run-2"]
    assert calls[0].startswith("sync ")
    assert r.returncode == 1 and "timed out" in r.stderr and "offline-run-2" in r.stderr


# ---------------------------------------------------------------- launch checks
SLURM_8 = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "8", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "clika",
           "SLURM_JOB_ID": "1", "SLURM_PROCID": "0"}


@pytest.mark.parametrize("overrides,env,key", [
    (["trainer.devices=4"], SLURM_8, "trainer.devices"),
    (["trainer.devices=8", "trainer.num_nodes=2"], SLURM_8, "trainer.num_nodes"),
    (["trainer.devices=8"], {**SLURM_8, "SLURM_NTASKS_PER_NODE": None}, "trainer.devices"),
    (["trainer.devices=2"], {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"},
     "trainer.devices"),
    (["trainer.num_nodes=2"], {}, "trainer.num_nodes"),
    (["strategy=deepspeed_zero3", "method=lora", "+strategy.kwargs.load_full_weights=true"], {},
     "strategy.kwargs.load_full_weights"),
    (["strategy=deepspeed_zero2", "method=lora", "+strategy.kwargs.exclude_frozen_parameters=false"], {},
     "strategy.kwargs.exclude_frozen_parameters"),
    (["data/mix=wiki_mixed_zh", "data.mix.sources.zh.limit=null", "trainer.max_steps=-1", "trainer.max_epochs=1"],
     {}, "trainer.max_steps"),
    (["logger=wandb"], {"WANDB_MODE": "online"}, "logger.wandb"),
    (["optimized_metric=[1]"], {}, "optimized_metric"),
])
def test_launch_checks_name_the_key(train_cfg, tmp_path, overrides, env, key):
    env = {k: v for k, v in {"HOME": str(tmp_path), **env}.items() if v is not None}
    cfg = train_cfg(*overrides)
    with pytest.raises(ClikaError) as e:
        run_train_checks(cfg, env=env)
    assert str(e.value).startswith(f"{key}:") and "fix:" in str(e.value)


def test_launch_checks_pass_matching_configs(train_cfg, tmp_path):
    ok = [(["trainer.devices=8"], SLURM_8),
          (["trainer.devices=2"], {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}),
          (["trainer.num_nodes=2", "trainer.devices=8"], {**SLURM_8, "SLURM_NNODES": "2", "SLURM_NTASKS": "16"}),
          (["strategy=deepspeed_zero3", "method=lora"], {}),
          (["data/mix=wiki_mixed_zh", "data.mix.sources.zh.limit=null", "trainer.max_steps=10"], {}),
          (["logger=wandb"], {"WANDB_MODE": "online", "WANDB_API_KEY": "k"}),
          (["logger=wandb"], {})]  # offline by default
    for overrides, env in ok:
        run_train_checks(train_cfg(*overrides), env={"HOME": str(tmp_path), **env})
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    run_train_checks(train_cfg("logger=wandb"), env={"HOME": str(tmp_path), "WANDB_MODE": "online"})


def test_launcher_checks_against_the_hydra_launcher(train_cfg, tmp_path):
    def hydra(target, mode="MULTIRUN", **launcher):
        return OmegaConf.create({"mode": mode, "launcher": {"_target_": target, **launcher}})

    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    env = {"HOME": str(tmp_path)}
    cases = [("trainer.devices", ["trainer.devices=-1"], hydra(slurm, tasks_per_node=1, nodes=1)),
             ("hydra.launcher.tasks_per_node", ["trainer.devices=4", "resume=auto"], hydra(slurm, tasks_per_node=2, nodes=1)),
             ("hydra.launcher.nodes", ["trainer.devices=4", "resume=auto"], hydra(slurm, tasks_per_node=4, nodes=2)),
             ("resume", ["trainer.devices=4"], hydra(slurm, tasks_per_node=4, nodes=1, max_num_timeout=2)),
             ("trainer.devices", ["trainer.devices=2"], hydra(local, tasks_per_node=2, nodes=1)),
             ("trainer.devices", ["trainer.devices=2"], hydra(basic))]
    for key, overrides, h in cases:
        with pytest.raises(ClikaError, match=f"^{key}:"):
            run_train_checks(train_cfg(*overrides), hydra_cfg=h, env=env)
    # the same launchers with matching settings pass; num_nodes=2 is fine when SLURM will provide the nodes
    run_train_checks(train_cfg("trainer.devices=4", "trainer.num_nodes=2", "resume=auto"),
                       hydra_cfg=hydra(slurm, tasks_per_node=4, nodes=2, max_num_timeout=2), env=env)
    run_train_checks(train_cfg("trainer.devices=2"), hydra_cfg=hydra(basic, mode="RUN"), env=env)


def test_zero3_resume_with_another_world_size_is_refused(train_cfg, tmp_path):
    ckpt = tmp_path / "last.ckpt" / "checkpoint"
    ckpt.mkdir(parents=True)
    (tmp_path / "last.ckpt" / "latest").write_text("checkpoint")
    for r in range(4):
        (ckpt / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt").touch()
    resume = f"resume={tmp_path / 'last.ckpt'}"
    with pytest.raises(ClikaError, match="^resume:.*4 ranks"):
        run_train_checks(train_cfg("strategy=deepspeed_zero3", "trainer.devices=2", resume), env={})
    run_train_checks(train_cfg("strategy=deepspeed_zero3", "trainer.devices=4", resume), env={})


# ---------------------------------------------------------------- rank-safe run dirs
def test_shared_run_dir_depends_only_on_what_ranks_share():
    base, stamp = "/o/train/runs", "2025-01-01_00-00-00"
    assert launch_env.shared_run_dir(base, stamp, env={}) == f"{base}/{stamp}"
    assert launch_env.shared_run_dir(base, stamp, env={"CLIKA_RUN_DIR": "/x"}) == "/x"
    te = {"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2"}
    dirs = {launch_env.shared_run_dir(base, s, env={**te, "RANK": r}) for r, s in [("0", stamp), ("1", "2025-01-01_00-00-01")]}
    assert dirs == {f"{base}/torchrun-abc"}
    srun = {"SLURM_NTASKS": "16", "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "clika"}
    assert launch_env.shared_run_dir(base, stamp, env=srun) == f"{base}/slurm-77"
    # an interactive allocation or a single task is a lone process: the time stamp stays
    assert launch_env.shared_run_dir(base, stamp, env={**srun, "SLURM_JOB_NAME": "bash"}) == f"{base}/{stamp}"
    assert launch_env.shared_run_dir(base, stamp, env={**srun, "SLURM_NTASKS": "1"}) == f"{base}/{stamp}"


def test_global_rank_before_the_process_group():
    assert launch_env.global_rank({}) == 0
    assert launch_env.global_rank({"RANK": "3", "LOCAL_RANK": "1"}) == 3
    assert launch_env.global_rank({"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_JOB_NAME": "x"}) == 9
    assert launch_env.global_rank({"LOCAL_RANK": "0", "NODE_RANK": "1"}) != 0  # rank 0 of node 1 is not global zero
    assert launch_env.rank_zero_only(".hydra", {"RANK": "1"}) is None and launch_env.rank_zero_only(".hydra", {}) == ".hydra"


def test_resolver_gives_one_run_dir(monkeypatch):
    launch_env.register_config()
    node = OmegaConf.create({"d": "${clika_run_dir:/o/runs,stamp}"})
    monkeypatch.setenv("CLIKA_RUN_DIR", "/shared")
    assert node.d == "/shared"


def test_optimized_value_reads_the_metric(train_cfg):
    cfg = train_cfg("optimized_metric=val/loss_zh")
    assert optimized_value(cfg, {"metrics": {"val/loss_zh": 2.5}}) == 2.5
    with pytest.raises(ClikaError, match="^optimized_metric:"):
        optimized_value(cfg, {"metrics": {"train/loss": 1.0}})
    assert optimized_value(train_cfg(), {"metrics": {}}) is None
    gated = train_cfg("optimized_metric=clika/fictional/xrr")  # evaluated, gate missed: no number, no failure
    assert optimized_value(gated, {"metrics": {"clika/fictional/gate_passed": 0.0}}) is None
    assert optimized_value(gated, {"metrics": {"clika/fictional/xrr": 0.8}}) == 0.8


def test_sweep_presets_compose(train_cfg):
    cfg = train_cfg("experiment=lr_sweep")
    assert cfg.optimized_metric == "val/loss_zh" and cfg.resume == "auto"
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        h = compose("train", overrides=["experiment=lr_sweep"], return_hydra_config=True)
    assert len(str(h.hydra.sweeper.params["method.lr"]).split(",")) == 4
    if not (ROOT / "conf" / "experiment" / "fictional_conductivity.yaml").exists():
        pytest.skip("conf/experiment/fictional_conductivity.yaml not there yet (the sweep builds on it)")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        f = compose("train", overrides=["experiment=fictional_conductivity_sweep"], return_hydra_config=True)
    assert str(f.hydra.sweeper.params.lang).split(",") == ["zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he"]
    assert f.optimized_metric == "clika/fictional/xrr" and "lang" in f


# ---------------------------------------------------------------- real launches (CPU)
@pytest.mark.slow
@MULTIPROCESS
def test_submitit_local_multirun_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    r = _train_py("-m", "hydra/launcher=submitit_local", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}",
                  timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    for job, seed in zip(jobs, (1, 2)):
        assert OmegaConf.load(job / "config.yaml").seed == seed
        assert (job / "checkpoints" / "last.ckpt").exists()
    assert len(list((sweep / ".submitit").iterdir())) >= 1  # submitit's pickles / logs


@pytest.mark.slow
@MULTIPROCESS
def test_torchrun_two_processes_one_run_dir(tmp_path):
    torchrun = Path(PY).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "train.py", "strategy=ddp",
                        "trainer.devices=2", *TINY, f"paths.log_dir={tmp_path}"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    runs = list((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    assert (runs[0] / "checkpoints" / "last.ckpt").exists() and (runs[0] / "config.yaml").exists()
    assert r.stdout.count("training summary") == 1  # rank 0 only
