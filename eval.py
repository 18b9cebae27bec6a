"""Evaluate a model on the CLiKA suite: `python eval.py model=gemma3_270m clika.datasets=[x_copa] clika.limit=50`.

Side tasks: `task=dump_prompts output_dir=OUT`, `task=rescore results_dir=DIR output_dir=OUT`.
`import eval` resolves to the package eval/ (a package directory wins over this same-named module).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from clika.checks import check_group_choices, friendly_errors
from clika.env import setup_env
from clika.launch_env import register_resolvers
from eval.run import run

register_resolvers()  # run-dir resolvers used by conf/hydra/default.yaml


@friendly_errors
def main(cfg: DictConfig):
    return run(cfg)


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def hydra_main(cfg: DictConfig):
    return main(cfg)


if __name__ == "__main__":
    setup_env()
    friendly_errors(check_group_choices)(sys.argv[1:], Path(__file__).parent / "conf")
    hydra_main()
