"""Everything validated before a run, in one place: `train.py`, `eval.py` and the launchers.

Checks are pure functions over the composed config (OmegaConf, no Lightning, no Hydra import) that raise
`ClikaError(msg, fix=)` naming the key the user set. They run
- on the command line before Hydra composes (`check_group_choices`, called by train.py / eval.py);
- in the launching process before Hydra creates a run dir, loggers or a W&B run: the Hydra callback
  `ConfigChecks`, registered once for train and eval in conf/hydra/default.yaml (Hydra calls
  `on_run_start` / `on_multirun_start` on any object `hydra.callbacks.*` instantiates);
- again at the start of every job (`train(cfg)` calls `run_train_checks`): ranks started by srun / torchrun
  and the compose API (tests, notebooks) pass no Hydra callback.
Every error ends the same way (`friendly_errors` / `reported`): one line, exit 2; debug (CLIKA_DEBUG or
traceback=true) adds the traceback. Checks that need the model stay beside it (clika/train/module.py) and end the
same way through the entry point's wrapper.

Modules: core (config access, debug flag, the wrapper), overrides (command line: group choices, unknown keys,
`+` additions), renames (renamed keys, one table), train (train config), resume (a changed config on resume),
strategy (presets, DeepSpeed), launch (cluster, launcher, W&B, requeue), paths (writable run dir), eval (suite
and data layout).
The settings of the checks (open nodes, keys fixed across a resume) live in conf/hydra/default.yaml
(`hydra.callbacks.checks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from clika.app.checks.core import friendly_errors, get, is_debug, report, reported
from clika.app.checks.eval import check_eval
from clika.app.checks.launch import check_launch, check_requeue
from clika.app.checks.overrides import check_command_line, check_group_choices
from clika.app.checks.renames import check_renamed
from clika.util.paths import check_output_dir
from clika.app.checks.resume import check_resume
from clika.app.checks.train import alignment_suite, check_accelerator, check_missing_values, check_train
from clika.app.env import PROJECT_ROOT

__all__ = ["ConfigChecks", "check_command_line", "check_group_choices", "check_output_dir", "friendly_errors",
           "is_debug", "report", "reported", "run_checks", "run_eval_checks", "run_train_checks"]


def settings(hydra_cfg: Any = None) -> Any:
    """The checks' settings (`hydra.callbacks.checks`): from the running Hydra config, else from
    conf/hydra/default.yaml (compose API, tests)."""
    node = get(hydra_cfg, "callbacks.checks") if hydra_cfg is not None else None
    if node is None:
        node = get(OmegaConf.load(PROJECT_ROOT / "conf" / "hydra" / "default.yaml"), "callbacks.checks", {})
    return node


def is_train_config(cfg: Any) -> bool:
    """conf/train.yaml composes a `trainer`; conf/eval.yaml does not."""
    return get(cfg, "trainer") is not None


def run_train_checks(cfg: Any, hydra_cfg: Any = None, env: Mapping[str, str] | None = None) -> None:
    """The model-free checks of a train config, launch checks included (`hydra_cfg`: the Hydra config)."""
    check_renamed(cfg)
    check_train(cfg)
    check_accelerator(cfg, hydra_cfg)
    check_launch(cfg, hydra_cfg, env)
    suite = alignment_suite(cfg)
    if suite is not None:
        langs_key = "callbacks.clika.langs" if get(cfg, "callbacks.clika.langs") is not None else "clika.langs"
        check_eval(suite, need_data=True, langs_key=langs_key)
    s = settings(hydra_cfg)
    run_dir = get(cfg, "paths.output_dir") or get(hydra_cfg, "run.dir")
    check_resume(cfg, run_dir, list(get(s, "resume_fixed", []) or []), list(get(s, "resume_ignored", []) or []))


def run_eval_checks(cfg: Any, hydra_cfg: Any = None) -> None:
    check_renamed(cfg)
    check_missing_values(cfg)
    check_eval(get(cfg, "clika"), need_root=get(cfg, "task") in ("evaluate", "dump_prompts"))  # they load items
    check_requeue(cfg, hydra_cfg)  # a requeued evaluation continues from its journal only with resume=auto


def run_checks(cfg: Any, hydra_cfg: Any = None, env: Mapping[str, str] | None = None) -> None:
    if is_train_config(cfg):
        run_train_checks(cfg, hydra_cfg, env)
    else:
        run_eval_checks(cfg, hydra_cfg)


class ConfigChecks:
    """Hydra callback (`hydra.callbacks.checks`): all model-free checks, then the run dir's writability, before
    Hydra creates the run dir (single run) or submits the jobs (multirun). No Hydra base class is needed:
    Hydra instantiates `_target_` (with the settings in conf/hydra/default.yaml, read by `settings`) and calls
    these six hooks by name."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def _check(self, config: Any, run_dir_key: str) -> None:
        with reported(config):
            run_checks(config, hydra_cfg=get(config, "hydra"))
            run_dir = get(config, run_dir_key)
            if run_dir:
                check_output_dir(str(run_dir), key=run_dir_key)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        pass

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        pass
