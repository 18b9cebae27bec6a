"""Training entry point: `python train.py [experiment=...] [key=value ...]` (config: conf/train.yaml)."""
# `import train` resolves to the train/ package (package dirs win over same-named modules); nothing imports this file.

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: shared CPUs stay usable

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from clika.quiet import quiet_known_noise  # noqa: E402

quiet_known_noise()  # before Hydra composes (its launcher-schema notice) and Lightning starts

from train.slurm_signals import install_early_handlers  # noqa: E402  (light: no torch / Lightning)

install_early_handlers()  # in a SLURM job, a requeue signal during start-up is recorded instead of killing it

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from clika.checks import check_command_line, friendly_errors  # noqa: E402
from clika.checks.train import TASKS  # noqa: E402
from clika.cli import register_help  # noqa: E402
from clika.launch_env import register_resolvers  # noqa: E402

register_resolvers()  # ${clika_run_dir:...} / ${clika_rank_zero:...} in conf/hydra/default.yaml
register_help("train", list(TASKS))  # ${clika_help:} (hydra.help.template)
CONF = Path(__file__).parent / "conf"


def compose(overrides: list[str]):
    """The config Hydra composes for `overrides`, hydra node included (the command-line checks compare with it)."""
    with hydra.initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra.compose("train", overrides=overrides, return_hydra_config=True)


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    # Deferred: train.run imports Lightning, transformers and torch (3.7 s of `python -X importtime`), which
    # `--help`, `--cfg` and the config errors found before the run starts (clika/checks) never need.
    from train.run import main as run_main

    return run_main(cfg)  # optimized_metric value for sweeper plugins


if __name__ == "__main__":
    friendly_errors(check_command_line)(sys.argv[1:], CONF, compose, "train.py")
    main()
