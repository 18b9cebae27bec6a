"""Keep every cache inside the project (or CLIKA_CACHE) and default to offline, quiet W&B."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("CLIKA_CACHE", PROJECT_ROOT / ".cache")).resolve()


def setup_env(offline: bool | None = None) -> Path:
    """Point HF, torch-extension, W&B and matplotlib caches into the cache root.

    Only sets variables the user has not set. `offline=True` also forces hub-offline mode;
    W&B defaults to offline whenever no API key is configured.
    """
    root = cache_root()
    defaults = {
        "HF_HOME": root / "hf",
        "TORCH_EXTENSIONS_DIR": root / "torch_extensions",
        "TRITON_CACHE_DIR": root / "triton",
        "WANDB_CACHE_DIR": root / "wandb_cache",
        "WANDB_CONFIG_DIR": root / "wandb_config",
        "WANDB_DATA_DIR": root / "wandb_data",
        "MPLCONFIGDIR": root / "matplotlib",
    }
    for key, val in defaults.items():
        if val is not None:
            os.environ.setdefault(key, str(val))
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    return root
