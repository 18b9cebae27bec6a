"""Base checkpoints built once and cached: `init_from=experiment:<name>`.

A run that continues from another run's weights (continued pretraining starts from an English-pretrained model)
names that run as an experiment, e.g. `init_from: experiment:pretrain_en`. The first time it is asked for, the
base run is composed from `conf/experiment/<name>.yaml`, trained through the same `train(cfg)` (no loggers, no
CLiKA callback) and its `export/hf` is kept in `<cache>/models/base-<name>-<key>`; later runs reuse it. The key
hashes the base run's resolved training settings and the fictional world key (which covers the generator's
code), as the tiny model's folder is keyed by its config and corpus. A file lock makes concurrent runs build it
once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from clika.util.atomic import atomic_dir
from clika.app.env import PROJECT_ROOT, cache_root
from clika.util.errors import ClikaError
from clika.fictional.generated import world_key

PREFIX = "experiment:"
# What the base weights depend on (paths, loggers, callbacks, progress bars do not change them).
KEYED = ("model", "data", "method", "optimizer", "scheduler", "seed", "init_from")
TRAINER_KEYED = ("max_steps", "max_epochs", "accumulate_grad_batches", "gradient_clip_val", "precision")


def is_base(init_from) -> bool:
    return isinstance(init_from, str) and init_from.startswith(PREFIX)


def compose_train(overrides: list[str]) -> DictConfig:
    """conf/train.yaml composed with `overrides`, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def base_config(name: str, parent: DictConfig, output_dir: Path) -> DictConfig:
    if not (PROJECT_ROOT / "conf" / "experiment" / f"{name}.yaml").is_file():
        raise ClikaError(f"init_from: no experiment '{name}' (conf/experiment/{name}.yaml)",
                         fix="use init_from=experiment:<a file of conf/experiment>, e.g. experiment:pretrain_en")
    overrides = [f"experiment={name}", f"paths.root_dir={PROJECT_ROOT}", f"paths.output_dir={output_dir}",
                 "logger=csv", "callbacks.clika=null", "print_config=false", "export.merge=false",
                 f"threads={parent.get('threads', 'auto')}"]
    if "enable_progress_bar" in parent.trainer:
        overrides.append(f"trainer.enable_progress_bar={parent.trainer.enable_progress_bar}")
    return compose_train(overrides)


def base_key(cfg: DictConfig) -> str:
    c = OmegaConf.to_container(cfg, resolve=True)
    keyed = {k: c.get(k) for k in KEYED}
    keyed["trainer"] = {k: c["trainer"].get(k) for k in TRAINER_KEYED}
    keyed["world"] = world_key((c.get("fictional") or {}).get("world"))
    blob = json.dumps(keyed, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_base(init_from: str, parent: DictConfig) -> str:
    """The HF folder of the base run `experiment:<name>`, trained now if the cache has none."""
    name = init_from[len(PREFIX):]
    models = cache_root() / "models"
    probe = base_config(name, parent, models / f".build-{name}")
    out = models / f"base-{name}-{base_key(probe)}"
    if (out / "config.json").is_file():
        return str(out)
    from filelock import FileLock

    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "config.json").is_file():  # another process built it while we waited
            return str(out)
        from clika.train.run import train

        print(f"building the base checkpoint {init_from} once (cached in {out}) ...", flush=True)
        started = time.perf_counter()
        with atomic_dir(out) as tmp:
            run_dir = tmp / "run"
            result = train(base_config(name, parent, run_dir))
            for f in Path(result["export"]["hf"]).iterdir():
                shutil.move(str(f), tmp / f.name)
            (tmp / "base_run.json").write_text(json.dumps(
                {"experiment": name, "global_step": result["global_step"], "metrics": result["metrics"]},
                indent=2, default=str) + "\n", encoding="utf-8")
            shutil.rmtree(run_dir)
        print(f"base checkpoint {init_from} built in {time.perf_counter() - started:.0f}s -> {out}", flush=True)
    return str(out)
