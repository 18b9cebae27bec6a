"""Launch-time checks and rank-safe run dirs for multi-process / multi-node training.

Everything here runs before a job starts: `validate_launch(cfg)` is called by the Hydra callback
`LaunchChecks` (in the launcher process, before a multirun is submitted) and by `train(cfg)` in every job.
Each problem raises `ClikaError` naming the config key and the fix. Cheap imports only (no torch, no
Lightning): the callback runs in the submitting process.

Run dirs: all ranks of one job must share one output dir. Lightning's own DDP launcher passes rank 0's
`hydra.run.dir` to the ranks it starts; ranks started by `srun` or `torchrun` each compose the config
themselves, so a `${now:...}` run dir could differ between them. The `clika_run_dir` resolver gives them a
dir that depends only on what they share: `CLIKA_RUN_DIR` when set, else the SLURM job id or the torchrun
run id. Register it (`register_resolvers()`) before `@hydra.main` composes the config.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clika.errors import ClikaError

# keys build_strategy derives from trainer / data / method: setting them in strategy.kwargs collides
DERIVED_STRATEGY_KEYS = ("stage", "offload_optimizer", "offload_parameters", "logging_batch_size_per_gpu",
                         "exclude_frozen_parameters")


from clika.launch_env import (  # noqa: F401  (re-exported: the launch environment lives in clika)
    RUN_DIR_ENV, _env, cluster_environment, global_rank, is_rank_zero, launch_id, rank_zero_only,
    register_resolvers, shared_run_dir, srun_used, torchelastic_used)


# ---------------------------------------------------------------- helpers
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        val = OmegaConf.select(cfg, key, default=default, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001 - an unresolvable interpolation counts as unset here
        return default
    return default if val is None else val


def _hydra_node(cfg: DictConfig) -> Any:
    """The Hydra config: cfg.hydra (callback side) or HydraConfig (inside a job), else None (compose API)."""
    if isinstance(cfg, DictConfig) and "hydra" in cfg:
        return cfg.hydra
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001
        return None


def launcher_kind(hydra_cfg: Any) -> str | None:
    """'slurm' | 'submitit_local' | 'basic' | other launcher class name | None (no Hydra)."""
    if hydra_cfg is None:
        return None
    target = str(_get(hydra_cfg, "launcher._target_", "") or "")
    if target.endswith("SlurmLauncher"):
        return "slurm"
    if target.endswith("submitit_launcher.LocalLauncher"):
        return "submitit_local"
    if target.endswith("BasicLauncher") or not target:
        return "basic"
    return target.rsplit(".", 1)[-1]


def _is_multirun(hydra_cfg: Any) -> bool:
    if hydra_cfg is None:
        return False
    mode = _get(hydra_cfg, "mode")
    return str(getattr(mode, "name", mode)).upper() == "MULTIRUN"


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _leading_int(text: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def _fail(key: str, message: str, fix: str) -> None:
    raise ClikaError(f"{key}: {message}", fix=fix)


def netrc_has_wandb(env: Mapping[str, str] | None = None) -> bool:
    e = _env(env)
    path = Path(e.get("NETRC") or Path(e.get("HOME") or Path.home()) / ".netrc")
    try:
        return "api.wandb.ai" in path.read_text() or bool(e.get("WANDB_BASE_URL") and
                                                           e["WANDB_BASE_URL"].split("//")[-1] in path.read_text())
    except OSError:
        return False


# ---------------------------------------------------------------- checks
def check_cluster(cfg: DictConfig, hydra_cfg: Any, env: Mapping[str, str]) -> None:
    """trainer.devices / trainer.num_nodes against what SLURM (or the launcher) provides."""
    t = cfg.trainer
    devices, nodes = _get(t, "devices", 1), _as_int(_get(t, "num_nodes", 1)) or 1
    n_dev = _as_int(devices)
    kind = launcher_kind(hydra_cfg)
    ext = cluster_environment(env)

    if ext == "slurm":
        ntasks = int(env.get("SLURM_NTASKS", "1"))
        per_node = _leading_int(env.get("SLURM_NTASKS_PER_NODE"))
        if ntasks > 1 and per_node is None:
            _fail("trainer.devices", f"SLURM started {ntasks} tasks with --ntasks but without --ntasks-per-node",
                  "use #SBATCH --ntasks-per-node=<GPUs per node> (one task per device) instead of --ntasks")
        if per_node is not None and n_dev != per_node:
            _fail("trainer.devices", f"trainer.devices={devices} but SLURM starts --ntasks-per-node={per_node} "
                  "tasks per node (one process per device)",
                  f"set trainer.devices={per_node}, or #SBATCH --ntasks-per-node={devices} / "
                  f"hydra.launcher.tasks_per_node={devices}")
        nnodes = _as_int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES"))
        if nnodes is not None and nnodes != nodes:
            _fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but the SLURM allocation has {nnodes} nodes",
                  f"set trainer.num_nodes={nnodes} (or #SBATCH --nodes={nodes} / hydra.launcher.nodes={nodes})")
    elif ext == "torchelastic":
        local_world = _as_int(env.get("LOCAL_WORLD_SIZE"))
        if local_world is not None and n_dev != local_world:
            _fail("trainer.devices", f"trainer.devices={devices} but torchrun started --nproc-per-node={local_world}",
                  f"set trainer.devices={local_world} (or torchrun --nproc-per-node={devices})")
        world = _as_int(env.get("WORLD_SIZE"))
        if local_world and world and world // local_world != nodes:
            _fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but torchrun's world is {world // local_world} "
                  f"node(s) x {local_world}", f"set trainer.num_nodes={world // local_world}")

    if kind in ("slurm", "submitit_local"):
        launcher = hydra_cfg.launcher
        if n_dev is None or n_dev < 1:
            _fail("trainer.devices", f"hydra/launcher={kind} needs an explicit device count, got {devices!r}",
                  "set trainer.devices=<GPUs per node>, e.g. trainer.devices=8")
        tpn, lnodes = _as_int(_get(launcher, "tasks_per_node")), _as_int(_get(launcher, "nodes"))
        if tpn is not None and tpn != n_dev:
            _fail("hydra.launcher.tasks_per_node", f"{tpn} tasks per node but trainer.devices={n_dev}: SLURM must "
                  "start exactly one process per device",
                  "leave hydra.launcher.tasks_per_node=${trainer.devices} (conf/hydra/launcher/slurm.yaml)")
        if lnodes is not None and lnodes != nodes:
            _fail("hydra.launcher.nodes", f"{lnodes} nodes but trainer.num_nodes={nodes}",
                  "leave hydra.launcher.nodes=${trainer.num_nodes}")
        gpn = _as_int(_get(launcher, "gpus_per_node"))
        accel = str(_get(t, "accelerator", "auto"))
        if kind == "slurm" and accel in ("gpu", "cuda") and gpn is not None and gpn < n_dev:
            _fail("hydra.launcher.gpus_per_node", f"{gpn} GPUs per node for trainer.devices={n_dev}",
                  f"set hydra.launcher.gpus_per_node={n_dev} (or leave it at ${{trainer.devices}})")
        if kind == "submitit_local" and (n_dev != 1 or nodes != 1):
            _fail("trainer.devices", f"hydra/launcher=submitit_local runs one process per job, got "
                  f"trainer.devices={n_dev} trainer.num_nodes={nodes}",
                  "use trainer.devices=1 with submitit_local; several devices: hydra/launcher=slurm, "
                  "launch/torchrun_multinode.sh, or a single run (no -m) with trainer.devices=N")

    if kind == "basic" and _is_multirun(hydra_cfg) and ext is None and (n_dev is None or n_dev != 1):
        _fail("trainer.devices", f"a multirun (-m) with the basic launcher and trainer.devices={devices}: Lightning "
              "would re-execute the whole sweep in every extra rank",
              "use hydra/launcher=slurm (one SLURM task per device), one device per job (trainer.devices=1), or "
              "launch each run without -m")

    if nodes > 1 and ext is None and kind != "slurm":
        _fail("trainer.num_nodes", f"trainer.num_nodes={nodes} but no cluster environment (SLURM srun, torchrun, "
              "MPI, or MASTER_ADDR/MASTER_PORT/NODE_RANK/WORLD_SIZE) started this process",
              "launch with hydra/launcher=slurm, launch/sbatch_train.sh or launch/torchrun_multinode.sh; on one "
              "machine set trainer.num_nodes=1")


def check_strategy(cfg: DictConfig, env: Mapping[str, str]) -> None:
    """DeepSpeed settings: derived keys, ZeRO-3 + LoRA checkpoints, ZeRO-3 resume across world sizes."""
    s = cfg.strategy
    name = str(_get(s, "name", "auto"))
    if not name.startswith("deepspeed"):
        return
    kwargs = dict(_get(s, "kwargs", {}) or {})
    lora = str(_get(cfg, "method.name", "")) == "lora"
    for key in DERIVED_STRATEGY_KEYS:
        if key in kwargs:
            _fail(f"strategy.kwargs.{key}", f"is derived by the preset (stage/offload from strategy, micro batch "
                  "from data.batch_size, exclude_frozen_parameters from method)",
                  f"remove strategy.kwargs.{key}; pick the preset (strategy=...) or set method= / data.batch_size")
    stage = _as_int(_get(s, "stage", 0)) or 0
    if stage == 3 and lora:
        if kwargs.get("load_full_weights"):
            _fail("strategy.kwargs.load_full_weights", "ZeRO-3 with LoRA: checkpoints hold the adapter only (frozen "
                  "base weights are excluded), so they cannot be loaded as full single-file weights",
                  "remove strategy.kwargs.load_full_weights; resume=auto resumes the sharded ZeRO checkpoint, and "
                  "init_from=<export/hf> starts from merged weights")
        if kwargs.get("save_full_weights") is False:
            _fail("strategy.kwargs.save_full_weights", "ZeRO-3 with LoRA needs the consolidated adapter weights "
                  "for export and the CLiKA evaluation", "remove strategy.kwargs.save_full_weights")
    resume = _get(cfg, "resume")
    if stage == 3 and resume not in (None, "auto"):
        ckpt = Path(str(resume))
        if ckpt.is_dir() and (ckpt / "checkpoints").is_dir():
            ckpt = ckpt / "checkpoints" / "last.ckpt"
        shards = _zero_shards(ckpt)
        devices = _as_int(_get(cfg, "trainer.devices", 1))
        world = (devices or 0) * (_as_int(_get(cfg, "trainer.num_nodes", 1)) or 1)
        if shards and devices and devices > 0 and shards != world:
            _fail("resume", f"the ZeRO-3 checkpoint '{resume}' was written by {shards} ranks, this run has {world} "
                  "(ZeRO-3 shards are tied to the world size)",
                  f"resume with trainer.devices x trainer.num_nodes = {shards}, or consolidate it "
                  "(task=export resume=...) and start a new run with init_from=<run dir>/export/hf")


def _zero_shards(ckpt: Path) -> int:
    """Ranks that wrote a ZeRO checkpoint dir (<dir>/<tag>/*_optim_states.pt); 0 when not one."""
    if not ckpt.is_dir():
        return 0
    tag_file = ckpt / "latest"
    tag_dir = ckpt / tag_file.read_text().strip() if tag_file.exists() else ckpt
    return len(list(tag_dir.glob("*optim_states.pt")))


def check_data(cfg: DictConfig) -> None:
    """Streamed sources have no known length: an epoch-bounded run never ends / cannot be scheduled."""
    t = cfg.trainer
    max_steps = _as_int(_get(t, "max_steps", -1))
    sources = _get(cfg, "data.mix.sources", {}) or {}
    for name, src in sources.items():
        if _get(src, "streaming", False) and _get(src, "limit") is None and (max_steps is None or max_steps <= 0):
            _fail("trainer.max_steps", f"data.mix.sources.{name} is streamed without a limit (unknown length) "
                  "and trainer.max_steps is not set",
                  f"set trainer.max_steps=N (scheduler and requeue need a fixed length), or "
                  f"data.mix.sources.{name}.limit=N")


def check_wandb(cfg: DictConfig, env: Mapping[str, str]) -> None:
    """W&B online needs credentials: WANDB_API_KEY or a ~/.netrc entry (`wandb login`)."""
    node = _get(cfg, "logger.wandb")
    if node is None or "_target_" not in node:
        return
    mode = str(_get(node, "mode", "") or "")
    if _get(node, "offline", False):
        mode = "offline"
    if not mode:
        mode = env.get("WANDB_MODE") or ("online" if env.get("WANDB_API_KEY") else "offline")
    if mode in ("online", "run") and not env.get("WANDB_API_KEY") and not netrc_has_wandb(env):
        _fail("logger.wandb", "W&B is online (WANDB_MODE / logger.wandb.mode) but no credentials were found "
              "(WANDB_API_KEY, ~/.netrc)",
              "export WANDB_API_KEY=... or run `wandb login` on the submit host; or keep WANDB_MODE=offline and "
              "upload later with launch/wandb_sync.sh")


def check_requeue(cfg: DictConfig, hydra_cfg: Any) -> None:
    """Auto-requeue restarts the job in the same dir: without resume=auto it would start from step 0."""
    if launcher_kind(hydra_cfg) != "slurm":
        return
    if (_as_int(_get(hydra_cfg, "launcher.max_num_timeout", 0)) or 0) > 0 and _get(cfg, "resume") != "auto":
        _fail("resume", f"hydra/launcher=slurm requeues on timeout (hydra.launcher.max_num_timeout="
              f"{_get(hydra_cfg, 'launcher.max_num_timeout')}) but resume={_get(cfg, 'resume')}",
              "add resume=auto (a requeued job continues from its last checkpoint), or "
              "hydra.launcher.max_num_timeout=0")


def check_sweep(cfg: DictConfig) -> None:
    metric = _get(cfg, "optimized_metric")
    if metric is not None and not isinstance(metric, str):
        _fail("optimized_metric", f"must be a logged metric name, got {metric!r}",
              "e.g. optimized_metric=clika/fictional/xrr or optimized_metric=val/loss_zh")


def validate_launch(cfg: DictConfig, hydra_cfg: Any = None, env: Mapping[str, str] | None = None) -> None:
    """All launch checks; `hydra_cfg` defaults to cfg.hydra or the running Hydra job's config."""
    e = _env(env)
    register_resolvers()  # a submitit job unpickles the config without train.py's registration
    h = hydra_cfg if hydra_cfg is not None else _hydra_node(cfg)
    check_cluster(cfg, h, e)
    check_strategy(cfg, e)
    check_data(cfg)
    check_wandb(cfg, e)
    check_requeue(cfg, h)
    check_sweep(cfg)


# ---------------------------------------------------------------- sweeps
def optimized_value(cfg: DictConfig, result: Mapping[str, Any]) -> float | None:
    """The value a sweeper plugin optimises: result['metrics'][cfg.optimized_metric] (None when unset)."""
    metric = _get(cfg, "optimized_metric")
    if metric is None:
        return None
    metrics = dict(result.get("metrics") or {})
    if metric not in metrics and metric.startswith("clika/") and any(k.startswith("clika/") for k in metrics):
        # evaluated, but no number: e.g. XRR of a run that missed the gate is never reported
        logging.getLogger(__name__).warning(
            "optimized_metric %s has no value in this run (a gated conductivity run reports no XRR); returning None",
            metric)
        return None
    if metric not in metrics:
        _fail("optimized_metric", f"'{metric}' was not logged by this run (logged: {sorted(metrics)[:12]})",
              "pick a logged metric, e.g. clika/fictional/xrr needs callbacks.clika with the fictional probe")
    return float(metrics[metric])


# ---------------------------------------------------------------- Hydra callback
try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class LaunchChecks(_HydraCallback):
    """Hydra callback: validate the composed config before a run starts / before a multirun is submitted."""

    def _check(self, config: DictConfig) -> None:
        try:
            validate_launch(config, hydra_cfg=config.get("hydra"))
        except ClikaError as e:
            if os.environ.get("CLIKA_DEBUG") or config.get("traceback"):
                raise
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from copy import deepcopy

        from hydra.core.hydra_config import HydraConfig

        # Hydra instantiates the launcher before any job sets HydraConfig: the default sweep dir (paths.log_dir
        # -> ${hydra:runtime.cwd}) in submitit_folder needs it resolvable then (a copy: set_config freezes it)
        HydraConfig.instance().set_config(deepcopy(config))
        self._check(config)
