"""Launch checks: what SLURM, torchrun or Hydra's launcher provides against trainer.devices / num_nodes, W&B
credentials for an online run, and auto-requeue without resume=auto. They run where the job is launched
(Hydra callback, before a multirun is submitted) and again in every job (`train(cfg)`), so `hydra_cfg` is
passed in: the composed config's `hydra` node, or the running job's HydraConfig (clika/train/run.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from clika.app.checks.core import as_int, fail, get, leading_int
from clika.app.env import netrc_path, wandb_base_url, wandb_credentials, wandb_mode
from clika.app.launch import cluster_environment


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def launcher_kind(hydra_cfg: Any) -> str | None:
    """'slurm' | 'submitit_local' | 'basic' | other launcher class name | None (no Hydra)."""
    if hydra_cfg is None:
        return None
    target = str(get(hydra_cfg, "launcher._target_", "") or "")
    if target.endswith("SlurmLauncher"):
        return "slurm"
    if target.endswith("submitit_launcher.LocalLauncher"):
        return "submitit_local"
    if target.endswith("BasicLauncher") or not target:
        return "basic"
    return target.rsplit(".", 1)[-1]


def is_multirun(hydra_cfg: Any) -> bool:
    if hydra_cfg is None:
        return False
    mode = get(hydra_cfg, "mode")
    return str(getattr(mode, "name", mode)).upper() == "MULTIRUN"


def check_cluster(cfg: Any, hydra_cfg: Any, env: Mapping[str, str]) -> None:
    """trainer.devices / trainer.num_nodes against what SLURM (or the launcher) provides."""
    t = cfg.trainer
    devices, nodes = get(t, "devices", 1), as_int(get(t, "num_nodes", 1)) or 1
    n_dev = as_int(devices)
    kind = launcher_kind(hydra_cfg)
    ext = cluster_environment(env)

    if ext == "slurm":
        ntasks = int(env.get("SLURM_NTASKS", "1"))
        per_node = leading_int(env.get("SLURM_NTASKS_PER_NODE"))
        if ntasks > 1 and per_node is None:
            fail("trainer.devices", f"SLURM started {ntasks} tasks with --ntasks but without --ntasks-per-node",
                 "use #SBATCH --ntasks-per-node=<GPUs per node> (one task per device) instead of --ntasks")
        if per_node is not None and n_dev != per_node:
            fail("trainer.devices", f"trainer.devices={devices} but SLURM starts --ntasks-per-node={per_node} "
                 "tasks per node (one process per device)",
                 f"set trainer.devices={per_node}, or #SBATCH --ntasks-per-node={devices} / "
                 f"hydra.launcher.tasks_per_node={devices}")
        nnodes = as_int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES"))
        if nnodes is not None and nnodes != nodes:
            fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but the SLURM allocation has {nnodes} nodes",
                 f"set trainer.num_nodes={nnodes} (or #SBATCH --nodes={nodes} / hydra.launcher.nodes={nodes})")
    elif ext == "torchelastic":
        local_world = as_int(env.get("LOCAL_WORLD_SIZE"))
        if local_world is not None and n_dev != local_world:
            fail("trainer.devices", f"trainer.devices={devices} but torchrun started --nproc-per-node={local_world}",
                 f"set trainer.devices={local_world} (or torchrun --nproc-per-node={devices})")
        world = as_int(env.get("WORLD_SIZE"))
        if local_world and world and world // local_world != nodes:
            fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but torchrun's world is {world // local_world} "
                 f"node(s) x {local_world}", f"set trainer.num_nodes={world // local_world}")

    if kind in ("slurm", "submitit_local"):
        launcher = hydra_cfg.launcher
        if n_dev is None or n_dev < 1:
            fail("trainer.devices", f"hydra/launcher={kind} needs an explicit device count, got {devices!r}",
                 "set trainer.devices=<GPUs per node>, e.g. trainer.devices=8")
        tpn, lnodes = as_int(get(launcher, "tasks_per_node")), as_int(get(launcher, "nodes"))
        if tpn is not None and tpn != n_dev:
            fail("hydra.launcher.tasks_per_node", f"{tpn} tasks per node but trainer.devices={n_dev}: SLURM must "
                 "start exactly one process per device",
                 "leave hydra.launcher.tasks_per_node=${trainer.devices} (conf/hydra/launcher/slurm.yaml)")
        if lnodes is not None and lnodes != nodes:
            fail("hydra.launcher.nodes", f"{lnodes} nodes but trainer.num_nodes={nodes}",
                 "leave hydra.launcher.nodes=${trainer.num_nodes}")
        gpn = as_int(get(launcher, "gpus_per_node"))
        accel = str(get(t, "accelerator", "auto"))
        if kind == "slurm" and accel in ("gpu", "cuda") and gpn is not None and gpn < n_dev:
            fail("hydra.launcher.gpus_per_node", f"{gpn} GPUs per node for trainer.devices={n_dev}",
                 f"set hydra.launcher.gpus_per_node={n_dev} (or leave it at ${{trainer.devices}})")
        if kind == "submitit_local" and (n_dev != 1 or nodes != 1):
            fail("trainer.devices", f"hydra/launcher=submitit_local runs one process per job, got "
                 f"trainer.devices={n_dev} trainer.num_nodes={nodes}",
                 "use trainer.devices=1 with submitit_local; several devices: hydra/launcher=slurm, "
                 "launch/torchrun_multinode.sh, or a single run (no -m) with trainer.devices=N")

    if kind == "basic" and is_multirun(hydra_cfg) and ext is None and (n_dev is None or n_dev != 1):
        fail("trainer.devices", f"a multirun (-m) with the basic launcher and trainer.devices={devices}: Lightning "
             "would re-execute the whole sweep in every extra rank",
             "use hydra/launcher=slurm (one SLURM task per device), one device per job (trainer.devices=1), or "
             "launch each run without -m")

    if nodes > 1 and ext is None and kind != "slurm":
        fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but no cluster environment (SLURM srun, torchrun, "
             "MPI, or MASTER_ADDR/MASTER_PORT/NODE_RANK/WORLD_SIZE) started this process",
             "launch with hydra/launcher=slurm, launch/sbatch_train.sh or launch/torchrun_multinode.sh; on one "
             "machine set trainer.num_nodes=1")


def check_wandb(cfg: Any, env: Mapping[str, str]) -> None:
    """W&B online needs credentials: WANDB_API_KEY or a ~/.netrc entry (`wandb login`)."""
    node = get(cfg, "logger.wandb")
    if node is None or "_target_" not in node:
        return
    mode = str(get(node, "mode", "") or "")
    if get(node, "offline", False):
        mode = "offline"
    if not mode:
        mode = wandb_mode(env)[0]
    if mode in ("online", "run") and not wandb_credentials(env):
        fail("logger.wandb", "W&B is online (WANDB_MODE / logger.wandb.mode) but no credentials were found "
             f"(WANDB_API_KEY, {netrc_path(env)} for {wandb_base_url(env)})",
             "export WANDB_API_KEY=... or run `wandb login` on the submit host; or keep WANDB_MODE=offline and "
             "upload later with launch/wandb_sync.sh")


def check_requeue(cfg: Any, hydra_cfg: Any) -> None:
    """Auto-requeue restarts the job in the same dir: without resume=auto it would start from step 0."""
    if launcher_kind(hydra_cfg) != "slurm":
        return
    if (as_int(get(hydra_cfg, "launcher.max_num_timeout", 0)) or 0) > 0 and get(cfg, "resume") != "auto":
        fail("resume", f"hydra/launcher=slurm requeues on timeout (hydra.launcher.max_num_timeout="
             f"{get(hydra_cfg, 'launcher.max_num_timeout')}) but resume={get(cfg, 'resume')}",
             "add resume=auto (a requeued job continues from its last checkpoint), or "
             "hydra.launcher.max_num_timeout=0")


def check_launch(cfg: Any, hydra_cfg: Any = None, env: Mapping[str, str] | None = None) -> None:
    """All launch checks; `hydra_cfg`: the Hydra config (None: no launcher, e.g. the compose API)."""
    e = _environ(env)
    check_cluster(cfg, hydra_cfg, e)
    check_wandb(cfg, e)
    check_requeue(cfg, hydra_cfg)
