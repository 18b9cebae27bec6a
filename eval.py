"""Evaluate a model on the CLiKA suite: `python eval.py model=gemma3_270m clika.datasets=[x_copa] clika.limit=50`.

Side tasks: `task=dump_prompts output_dir=OUT`, `task=rescore results_dir=DIR output_dir=OUT`.
`import eval` resolves to the package eval/ (a package directory wins over this same-named module).
"""

import sys
from pathlib import Path

from clika.quiet import quiet_known_noise

quiet_known_noise()  # before Hydra composes

import hydra
from omegaconf import DictConfig

from clika.checks import check_command_line, friendly_errors
from clika.env import setup_env
from clika.launch_env import register_resolvers
from clika.cli import register_help
from eval.run import TASK_NAMES, run

register_resolvers()  # run-dir resolvers used by conf/hydra/default.yaml
register_help("eval", list(TASK_NAMES))  # ${clika_help:} (hydra.help.template)
CONF = Path(__file__).parent / "conf"


def compose(overrides: list[str]):
    """The config Hydra composes for `overrides`, hydra node included (the command-line checks compare with it)."""
    with hydra.initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra.compose("eval", overrides=overrides, return_hydra_config=True)


@friendly_errors
def main(cfg: DictConfig):
    return run(cfg)


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def hydra_main(cfg: DictConfig):
    return main(cfg)


if __name__ == "__main__":
    setup_env()
    friendly_errors(check_command_line)(sys.argv[1:], CONF, compose, "eval.py")
    hydra_main()
