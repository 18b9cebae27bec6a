"""Data-parallel evaluation: under torchrun or srun each rank scores its shard through the one task runner
(clika.scoring.api.run_tasks), results are gathered once, and only rank 0 writes.

Who launched the processes, and where their rendezvous is, is Lightning's cluster environments' knowledge
(TorchElasticEnvironment, SLURMEnvironment: the same rules training follows); the process group is torch's.
CPU ranks use gloo with one thread each; CUDA ranks nccl, one device per local rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment


@dataclass(frozen=True)
class EvalWorld:
    rank: int = 0
    world: int = 1
    device: str = "cpu"
    gather: Callable[[Any], list] | None = None

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _gather(obj: Any) -> list:
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


def launcher():
    """The external launcher's environment (torchrun or srun with several tasks), or None for one process."""
    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return SLURMEnvironment()
    return None


def world_size() -> int:
    env = launcher()
    return env.world_size() if env is not None else 1


def start(device: str | None = None, threads: int | None = None) -> EvalWorld:
    """Join the launch's process group (when there is one) and pick this rank's device."""
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    env = launcher()
    if env is None or env.world_size() <= 1:
        return EvalWorld(device=device or ("cuda" if cuda else "cpu"))
    if cuda:
        torch.cuda.set_device(env.local_rank())
    else:
        torch.set_num_threads(int(threads or 1))  # CPU ranks share the cores: one thread each unless told
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=env.global_rank(), world_size=env.world_size(),
                                init_method=f"tcp://{env.main_address}:{env.main_port}")
    return EvalWorld(rank=env.global_rank(), world=env.world_size(),
                     device=f"cuda:{env.local_rank()}" if cuda else "cpu", gather=_gather)
