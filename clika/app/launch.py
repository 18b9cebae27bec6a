"""Who launched this process and which run dir all its ranks share (no torch, no Lightning).

Ranks started by `srun` or `torchrun` each compose the Hydra config themselves, so a `${now:...}` run dir
could differ between them; the `clika_run_dir` resolver gives them a dir that depends only on what they
share: `CLIKA_RUN_DIR` when set, else the SLURM job id or the torchrun run id. Both entry points register
the resolvers before `@hydra.main` composes the config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from clika.app.defaults import register_defaults

RUN_DIR_ENV = "CLIKA_RUN_DIR"


# ---------------------------------------------------------------- environment
def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def srun_used(env: Mapping[str, str] | None = None) -> bool:
    """Processes started by srun (Lightning's SLURMEnvironment rule: SLURM_NTASKS set, not an interactive job)."""
    e = _env(env)
    return "SLURM_NTASKS" in e and e.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def torchelastic_used(env: Mapping[str, str] | None = None) -> bool:
    """Processes started by torchrun (it exports TORCHELASTIC_RUN_ID, and RANK/WORLD_SIZE, to every worker)."""
    e = _env(env)
    return bool(e.get("TORCHELASTIC_RUN_ID")) and "RANK" in e and "WORLD_SIZE" in e


def cluster_environment(env: Mapping[str, str] | None = None) -> str | None:
    """Which external launcher started this process (the cluster environments Lightning detects), or None."""
    e = _env(env)
    if torchelastic_used(e):
        return "torchelastic"
    if srun_used(e):
        return "slurm"
    if "OMPI_COMM_WORLD_SIZE" in e or "PMI_SIZE" in e:
        return "mpi"
    if "LSB_JOBID" in e and "JSM_NAMESPACE_RANK" in e:
        return "lsf"
    if all(k in e for k in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "WORLD_SIZE")):
        return "manual"  # Lightning's own environment driven by env vars (one launch per node)
    return None


def global_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's global rank before any process group exists (0 when launched alone)."""
    e = _env(env)
    if "RANK" in e:
        return int(e["RANK"])
    if srun_used(e) and "SLURM_PROCID" in e:
        return int(e["SLURM_PROCID"])
    for key in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "JSM_NAMESPACE_RANK"):
        if key in e:
            return int(e[key])
    local = int(e.get("LOCAL_RANK", 0))
    node = int(e.get("NODE_RANK", e.get("GROUP_RANK", 0)))
    return local if node == 0 else max(1, node) * 100000 + local  # any node > 0 is never rank 0


def is_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    return global_rank(env) == 0


def launch_id(env: Mapping[str, str] | None = None) -> str | None:
    """An id every rank of this launch shares (and a requeued SLURM job keeps), or None for a lone process."""
    e = _env(env)
    if torchelastic_used(e) and e["TORCHELASTIC_RUN_ID"] != "none":
        return f"torchrun-{e['TORCHELASTIC_RUN_ID']}"
    if srun_used(e) and int(e.get("SLURM_NTASKS", "1")) > 1 and e.get("SLURM_JOB_ID"):
        array = e.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{e['SLURM_ARRAY_TASK_ID']}" if array else e["SLURM_JOB_ID"]
        return f"slurm-{job}"
    return None


def shared_run_dir(base: str, stamp: str, env: Mapping[str, str] | None = None, output_dir: str | None = None) -> str:
    """The run dir of this launch: `output_dir` when the user named one (eval.py output_dir=OUT), else
    $CLIKA_RUN_DIR, else <base>/<launch id> (srun/torchrun), else <base>/<stamp>."""
    if output_dir not in (None, "", "None"):
        return str(output_dir)
    e = _env(env)
    if e.get(RUN_DIR_ENV):
        return str(e[RUN_DIR_ENV])
    lid = launch_id(e)
    return f"{base}/{lid}" if lid else f"{base}/{stamp}"


def rank_zero_only(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """`value` on global rank 0, None elsewhere (e.g. hydra.output_subdir: only rank 0 writes .hydra/)."""
    return value if is_rank_zero(env) else None


def register_config() -> None:
    """What conf/ needs before Hydra composes it (idempotent): the resolvers `${clika_run_dir:<base>,<stamp>
    [,<output_dir>]}`, `${clika_rank_zero:<value>}`, `${clika_data:}` (CLIKA_DATA, else the release fetched by
    `eval.py task=get_data`, else null) and the others below, and the nodes of dataclass defaults
    (clika.app.defaults: conf/model/ starts from them)."""
    register_defaults()
    if not OmegaConf.has_resolver("clika_data"):
        from clika.data.release import default_data_root

        OmegaConf.register_new_resolver("clika_data", default_data_root)
    if not OmegaConf.has_resolver("clika_run_dir"):
        OmegaConf.register_new_resolver(
            "clika_run_dir", lambda base, stamp, out=None: shared_run_dir(str(base), str(stamp), output_dir=out),
            use_cache=True)
    if not OmegaConf.has_resolver("clika_cwd"):  # = ${hydra:runtime.cwd} (no chdir), also before HydraConfig is set
        OmegaConf.register_new_resolver("clika_cwd", os.getcwd)
    if not OmegaConf.has_resolver("clika_gpus_per_node"):  # SLURM GPUs per node: none for CPU runs
        OmegaConf.register_new_resolver("clika_gpus_per_node",
                                        lambda accelerator, devices: None if accelerator == "cpu" else devices)
    if not OmegaConf.has_resolver("clika_rank_zero"):
        OmegaConf.register_new_resolver("clika_rank_zero", lambda value: rank_zero_only(value))
    if not OmegaConf.has_resolver("clika_upper"):  # the release's file stems: train/DE.json for lang de
        OmegaConf.register_new_resolver("clika_upper", lambda value: str(value).upper())
