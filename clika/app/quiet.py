"""Console noise that tells a user nothing, silenced by message (never all warnings): each filter names the
exact message of the library that emits it, so anything new still shows.

- Lightning's `srun` hint, printed once per Trainer/plugin check on any machine with Slurm installed (launching
  on SLURM is documented in launch/README.md);
- Lightning's pytree deprecation (`isinstance(treespec, LeafSpec)`), internal to Lightning;
- Lightning's litlogger advertisement ("💡 Tip: ... litlogger");
- Hydra's deprecation notice that conf/hydra/launcher/submitit_local.yaml shares its name with the submitit
  plugin's ConfigStore schema (it extends that schema on purpose).
(W&B's "anonymous setting" warning is not filtered: clika/train/loggers.py no longer passes the setting.)
"""

from __future__ import annotations

import logging
import warnings

WARNINGS = (
    r"The `srun` command is available on your system but is not used",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"[\s\S]*is validated against ConfigStore schema with the same name",
)
LOG_RECORDS = {"lightning.pytorch.utilities.rank_zero": ("litlogger",)}


class _DropMessages(logging.Filter):
    def __init__(self, needles: tuple[str, ...]):
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.needles)


def quiet_known_noise() -> None:
    """Install the filters (idempotent)."""
    for pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, needles in LOG_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(needles))
