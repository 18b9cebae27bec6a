"""Checks of an evaluation suite config (`clika` in conf/eval.yaml, `callbacks.clika.suite` in training): the
data root and its layout, then `Suite.validate` (datasets, references, languages, prompt style, limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from clika.data.datasets import REGISTRY, check_root
from clika.util.errors import ClikaError


def check_data_layout(root: str | Path, datasets: list[str], langs: list[str], langs_key: str = "clika.langs") -> None:
    """The release's dataset folders under the data root: a root without them is the wrong path (the fix is
    CLIKA_DATA), a missing language folder of a present dataset is the language list's (`langs_key`)."""
    root = check_root(root)
    release = [d for d in datasets if d in REGISTRY]
    absent = [d for d in release if not (root / d).is_dir()]
    if absent and len(absent) == len(release):
        raise ClikaError(f"paths.clika_data: '{root}' holds none of {absent} (CLIKA_DATA points at the wrong folder?)",
                         fix="set CLIKA_DATA (or paths.clika_data) to the official release folder, the one holding "
                             + " ".join(f"{d}/" for d in REGISTRY))
    for ds in release:
        if ds in absent:
            raise ClikaError(f"clika.datasets: '{root}' has no {ds}/ folder",
                             fix=f"drop {ds} from clika.datasets, or point CLIKA_DATA at a complete release")
        for lang in langs:
            folder = REGISTRY[ds].path(root, lang).parent
            if not folder.is_dir():
                raise ClikaError(f"{langs_key}: {ds} has no '{lang}' folder ('{folder}' is missing)",
                                 fix=f"drop '{lang}' from {langs_key}, or restore the folder")


def check_eval(suite: Any, need_data: bool = False, langs_key: str = "clika.langs", need_root: bool = False) -> None:
    """`need_data`: the data root must exist with the datasets' folders (training's callback loads its items at
    setup); `need_root`: the data root must be set when a release dataset is selected (eval.py's tasks that load
    items: it fails before the config tree is printed); `langs_key` names where the languages were set (training:
    callbacks.clika.langs)."""
    if suite is None:
        return
    if OmegaConf.is_config(suite):
        suite = OmegaConf.to_container(suite, resolve=True)
    if need_root and any(d in REGISTRY for d in (REGISTRY if suite.get("datasets") is None else suite["datasets"])):
        check_root(suite.get("data_root"))
    # Deferred: clika.scoring.suite imports torch (1.2 s of `python -X importtime`), which a config error found by an
    # earlier check never needs (`python train.py data.block_size=1` ends in 0.5 s; importing it first adds 1.2 s).
    from clika.scoring.suite import Suite

    try:
        s = Suite.from_dict(suite)
    except ClikaError as e:  # the suite names clika.langs; training sets them as callbacks.clika.langs
        if langs_key != "clika.langs" and str(e).startswith("clika.langs:"):
            raise ClikaError(langs_key + str(e).removeprefix("clika.langs")) from None
        raise
    if need_data:
        check_data_layout(suite["data_root"], list(s.datasets), list(s.langs), langs_key)
