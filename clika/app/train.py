"""`python train.py [experiment=...] [key=value ...]` (config: conf/train.yaml): the command behind the shim."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: shared CPUs stay usable

import sys  # noqa: E402
from functools import partial  # noqa: E402

from clika.app.quiet import quiet_known_noise  # noqa: E402

quiet_known_noise()  # before Hydra composes (its launcher-schema notice) and Lightning starts

from clika.train.cluster.slurm_signals import install_early_handlers  # noqa: E402  (light: no torch / Lightning)

install_early_handlers()  # in a SLURM job, a requeue signal during start-up is recorded instead of killing it

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from clika.app.checks import check_command_line, friendly_errors  # noqa: E402
from clika.app.checks.train import COMMANDS  # noqa: E402
from clika.app.compose import CONF, compose  # noqa: E402
from clika.app.env import setup_env  # noqa: E402
from clika.app.help import register_help  # noqa: E402
from clika.app.launch import register_config  # noqa: E402

register_config()  # ${clika_run_dir:...} / ${clika_rank_zero:...} and the conf/model default nodes
register_help("train", list(COMMANDS))  # ${clika_help:} (hydra.help.template)


@hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig):
    # Deferred: clika.train.run imports Lightning, transformers and torch (3.7 s of `python -X importtime`),
    # which `--help`, `--cfg` and the config errors found before the run starts (clika/app/checks) never need.
    from clika.train.run import main as run_main

    return run_main(cfg)  # optimized_metric value for sweeper plugins


def main(argv: list[str] | None = None) -> None:
    setup_env()  # before huggingface_hub is imported: it reads CLIKA_HF_HOME's HF_HUB_CACHE once (clika/app/env.py)
    friendly_errors(check_command_line)(sys.argv[1:] if argv is None else argv, CONF, partial(compose, "train"),
                                        "train.py")
    hydra_main()
