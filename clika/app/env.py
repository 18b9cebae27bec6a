"""The project's own artefacts live in .cache/ (or CLIKA_CACHE); the user's Hugging Face and W&B setup is theirs.

- Built here (tiny model, tokenized data, bases, GGUF dequantizations, the fetched release, torch extensions,
  Triton kernels, matplotlib's font cache, W&B's artifact staging): `cache_root()`.
- Hugging Face: HF_HOME, the hub cache and the token are left to the user (library defaults: ~/.cache/huggingface,
  the token `hf auth login` stored there), so models already downloaded load by hub id without network.
  `CLIKA_HF_HOME=DIR` asks for a project-local hub cache: downloads go to DIR/hub (HF_HUB_CACHE) and DIR/xet;
  the token and the rest of the HF home stay the user's. (`CLIKA_HF_HOME=$PWD/.cache/hf` reuses the hub cache of
  releases before #23, which set HF_HOME there.)
- W&B: WANDB_CONFIG_DIR (settings, `wandb login --host`) is left alone; the mode follows the user's setup
  (`wandb_mode`).
"""

from __future__ import annotations

import configparser
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from clika.util.cache import PROJECT_ROOT, cache_root  # noqa: F401  (re-exported: the app's one import of both)

WANDB_DEFAULT_URL = "https://api.wandb.ai"


def setup_env(offline: bool | None = None) -> Path:
    """Point the project's build caches (torch extensions, Triton, matplotlib, W&B staging) into the cache root.

    Only sets variables the user has not set, and none of Hugging Face's homes unless CLIKA_HF_HOME asks for it.
    `offline=True` also forces hub-offline mode. Run it before huggingface_hub is imported (it reads its
    variables once, at import)."""
    root = cache_root()
    defaults = {
        "TORCH_EXTENSIONS_DIR": root / "torch_extensions",
        "TRITON_CACHE_DIR": root / "triton",
        "WANDB_CACHE_DIR": root / "wandb_cache",
        "WANDB_DATA_DIR": root / "wandb_data",
        "MPLCONFIGDIR": root / "matplotlib",
    }
    for key, val in defaults.items():
        os.environ.setdefault(key, str(val))
    if os.environ.get("CLIKA_HF_HOME"):  # the user's explicit request for this project wins over a global setting
        hf = Path(os.environ["CLIKA_HF_HOME"]).expanduser().resolve()
        os.environ["HF_HUB_CACHE"] = str(hf / "hub")
        os.environ["HF_XET_CACHE"] = str(hf / "xet")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    return root


# ---------------------------------------------------------------- W&B: which mode, and why
def wandb_base_url(env: Mapping[str, str] | None = None) -> str:
    """The W&B server: WANDB_BASE_URL, else the `base_url` that `wandb login --host` wrote into W&B's global
    settings file (WANDB_CONFIG_DIR/settings, else ~/.config/wandb/settings), else W&B's cloud."""
    e = os.environ if env is None else env
    if e.get("WANDB_BASE_URL"):
        return e["WANDB_BASE_URL"].rstrip("/")
    config_dir = Path(e["WANDB_CONFIG_DIR"]).expanduser() if e.get("WANDB_CONFIG_DIR") else \
        Path(e.get("HOME") or Path.home()) / ".config" / "wandb"
    parser = configparser.ConfigParser()
    try:
        parser.read(config_dir / "settings")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return WANDB_DEFAULT_URL
    return parser.get("default", "base_url", fallback=WANDB_DEFAULT_URL).rstrip("/")


def netrc_path(env: Mapping[str, str] | None = None) -> Path:
    """The netrc file W&B reads and `wandb login` writes: NETRC, else ~/.netrc."""
    e = os.environ if env is None else env
    return Path(e["NETRC"]).expanduser() if e.get("NETRC") else Path(e.get("HOME") or Path.home()) / ".netrc"


def wandb_credentials(env: Mapping[str, str] | None = None) -> str | None:
    """Where W&B finds an API key for its base URL, in words ('WANDB_API_KEY', '<netrc> (machine <host>)'), or None.

    The netrc entry is looked up with Python's netrc by the URL's host[:port], the machine name `wandb login`
    writes."""
    e = os.environ if env is None else env
    if e.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    if e.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "WANDB_IDENTITY_TOKEN_FILE"
    path, host = netrc_path(e), urlsplit(wandb_base_url(e)).netloc
    try:
        entry = netrc.netrc(str(path)).authenticators(host) if host else None
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        entry = None
    return f"{path} (machine {host})" if entry and entry[2] else None


def wandb_mode(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(mode, why) of a W&B run that sets no mode itself: WANDB_MODE when set; else online when W&B has
    credentials for its base URL, offline otherwise."""
    e = os.environ if env is None else env
    if e.get("WANDB_MODE"):
        return e["WANDB_MODE"], f"WANDB_MODE={e['WANDB_MODE']}"
    found = wandb_credentials(e)
    if found:
        return "online", f"W&B credentials for {wandb_base_url(e)} in {found}"
    return "offline", (f"no W&B credentials for {wandb_base_url(e)} (no WANDB_API_KEY, no entry in {netrc_path(e)}); "
                       "`wandb login` or WANDB_API_KEY=... logs online")
