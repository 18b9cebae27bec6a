"""Evaluate a model on the CLiKA suite: `python eval.py model=gemma3_270m clika.datasets=[x_copa] clika.limit=50`.

Side tasks: `task=dump_prompts output_dir=OUT`, `task=rescore results_dir=DIR output_dir=OUT`.
`import eval` resolves to the package eval/ (a package directory wins over this same-named module).
"""

import hydra
from omegaconf import DictConfig

from clika.cli import friendly_errors
from clika.env import setup_env


@friendly_errors
def main(cfg: DictConfig):
    from eval.run import run

    return run(cfg)


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def hydra_main(cfg: DictConfig):
    return main(cfg)


if __name__ == "__main__":
    setup_env()
    hydra_main()
