"""Offline, single-threaded, project-local caches for every test."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CLIKA_CACHE", str(ROOT / ".cache"))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Never the user's Hugging Face home (hub cache, token): a throwaway one per session, hub-offline (setup_env below).
for _k in ("HF_HUB_CACHE", "HF_XET_CACHE", "HF_TOKEN", "HF_TOKEN_PATH", "CLIKA_HF_HOME"):
    os.environ.pop(_k, None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="clika-tests-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)

from clika.app.env import setup_env  # noqa: E402
from clika.app.launch import register_resolvers  # noqa: E402

setup_env(offline=True)
register_resolvers()  # ${clika_data:} etc., as train.py / eval.py register them


def _data_root() -> Path | None:
    env = os.environ.get("CLIKA_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "clika-data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("CLiKA data not found: set CLIKA_DATA to the official release")
    return root


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the embedded tiny model, built once per session."""
    from clika.models.load import ModelSpec, load_model

    return load_model(ModelSpec())


# ---- training (train/): compose conf/train.yaml the way `python train.py ...` does ----
TRAIN_TEST_OVERRIDES = ["logger=csv", "threads=1", "trainer.enable_progress_bar=false",
                        "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1"]


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: train_cfg(*overrides, run_dir=None) -> composed DictConfig with the run dir under tmp_path."""
    from hydra import compose, initialize_config_dir

    def make(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("train", overrides=[f"paths.root_dir={ROOT}", f"paths.output_dir={run_dir}",
                                               *TRAIN_TEST_OVERRIDES, *overrides])

    return make
