"""What a sweeper plugin optimises after a fit: the value of `optimized_metric` among the run's metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clika.util.errors import ClikaError

log = logging.getLogger(__name__)


def optimized_value(cfg: DictConfig, result: Mapping[str, Any]) -> float | None:
    """result['metrics'][cfg.optimized_metric] (None when unset, or evaluated without a number)."""
    metric = OmegaConf.select(cfg, "optimized_metric", default=None)
    if metric is None:
        return None
    metrics = dict(result.get("metrics") or {})
    if metric not in metrics and metric.startswith("clika/") and any(k.startswith("clika/") for k in metrics):
        # evaluated, but no number: e.g. XRR of a run that missed the gate is never reported
        log.warning("optimized_metric %s has no value in this run (a gated conductivity run reports no XRR); "
                    "returning None", metric)
        return None
    if metric not in metrics:
        raise ClikaError(f"optimized_metric: '{metric}' was not logged by this run (logged: {sorted(metrics)[:12]})",
                         fix="pick a logged metric, e.g. clika/fictional/xrr needs callbacks.clika with the "
                             "fictional probe")
    return float(metrics[metric])

