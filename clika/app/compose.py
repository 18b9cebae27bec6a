"""The one way to compose an app's config outside `@hydra.main` (the command-line checks compare with it)."""

from __future__ import annotations

from pathlib import Path

import hydra

from clika.app.env import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def compose(app: str, overrides: list[str], conf: Path = CONF):
    """The config Hydra composes for `python <app>.py <overrides>`, hydra node included."""
    with hydra.initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra.compose(app, overrides=overrides, return_hydra_config=True)
