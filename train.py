"""Training entry point: `python train.py [experiment=...] [key=value ...]` (config: conf/train.yaml)."""
# `import train` resolves to the train/ package (package dirs win over same-named modules); nothing imports this file.

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: shared CPUs stay usable

from train.slurm_signals import install_early_handlers  # noqa: E402  (light: no torch / Lightning)

install_early_handlers()  # in a SLURM job, a requeue signal during start-up is recorded instead of killing it

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


from train.launch_checks import register_resolvers  # noqa: E402  (the package train/, not this file)

register_resolvers()  # ${clika_run_dir:...} / ${clika_rank_zero:...} in conf/hydra/default.yaml


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    from train.run import main as run_main

    return run_main(cfg)  # optimized_metric value for sweeper plugins


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from clika.cli import check_group_choices, friendly_errors

    friendly_errors(check_group_choices)(sys.argv[1:], Path(__file__).parent / "conf")
    main()
