"""`python eval.py model=<preset> [clika.datasets=[x_copa] clika.limit=50] [task=<command>]` (conf/eval.yaml)."""

import sys
from functools import partial

from clika.app.quiet import quiet_known_noise

quiet_known_noise()  # before Hydra composes

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from clika.app.checks import check_command_line, friendly_errors  # noqa: E402
from clika.app.compose import CONF, compose  # noqa: E402
from clika.app.env import setup_env  # noqa: E402
from clika.app.help import register_help  # noqa: E402
from clika.app.launch import register_config  # noqa: E402
from clika.eval.run import COMMANDS, run  # noqa: E402

register_config()  # the resolvers of conf/hydra/default.yaml and the conf/model default nodes
register_help("eval", list(COMMANDS))  # ${clika_help:} (hydra.help.template)


@friendly_errors
def run_checked(cfg: DictConfig):
    return run(cfg)


@hydra.main(config_path=str(CONF), config_name="eval", version_base="1.3")
def hydra_main(cfg: DictConfig):
    return run_checked(cfg)


def main(argv: list[str] | None = None) -> None:
    setup_env()
    friendly_errors(check_command_line)(sys.argv[1:] if argv is None else argv, CONF, partial(compose, "eval"),
                                        "eval.py")
    hydra_main()
