"""What every check shares: reading the composed config, failing with the key and the fix, the debug flag,
and the one error wrapper (a ClikaError prints one line and exits 2).

Debug (one meaning everywhere): `CLIKA_DEBUG` set to anything but '', 0, false, no or off, or `traceback=true`
(in the config or on the command line). It adds the full traceback; a ClikaError still exits 2.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NoReturn

from omegaconf import OmegaConf

from clika.util.errors import ClikaError

DEBUG_ENV = "CLIKA_DEBUG"
_OFF = ("", "0", "false", "no", "off")


# ---------------------------------------------------------------- reading the config
def get(cfg: Any, key: str, default: Any = None) -> Any:
    """`cfg.<key>` (dotted), or `default` when unset, null or not resolvable yet (e.g. `${hydra:...}`
    before Hydra created the job)."""
    try:
        val = OmegaConf.select(cfg, key, default=default, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001 - an unresolvable interpolation counts as unset here
        return default
    return default if val is None else val


def plain(cfg: Any, key: str, default: Any = None) -> Any:
    """`get`, as plain Python containers (resolved)."""
    val = get(cfg, key, default)
    return OmegaConf.to_container(val, resolve=True) if OmegaConf.is_config(val) else val


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def leading_int(text: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def fail(key: str, message: str, fix: str) -> NoReturn:
    raise ClikaError(f"{key}: {message}", fix=fix)


def need(ok: bool, key: str, message: str, fix: str) -> None:
    if not ok:
        fail(key, message, fix)


# ---------------------------------------------------------------- debug flag and the one error wrapper
def is_debug(config: Any = None) -> bool:
    """Full tracebacks requested: CLIKA_DEBUG (not ''/0/false/no/off) or traceback=true."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in _OFF:
        return True
    if config is not None and get(config, "traceback", False) is True:
        return True
    return "traceback=true" in sys.argv


def report(error: ClikaError, config: Any = None) -> NoReturn:
    """The ending of every user error: one line `error: ... — fix: ...` (traceback too in debug), exit 2."""
    if is_debug(config):
        traceback.print_exception(error)
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


@contextmanager
def reported(config: Any = None) -> Iterator[None]:
    """`with reported(cfg): ...` turns a ClikaError into `report` (the Hydra callback uses this form, as Hydra
    turns an exception raised by a callback into a warning and carries on)."""
    try:
        yield
    except ClikaError as e:
        report(e, config)


def friendly_errors(fn: Callable) -> Callable:
    """Decorator form of `reported` for entry points; the config is the first Mapping argument, if any."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        config = next((a for a in args if isinstance(a, Mapping) or OmegaConf.is_config(a)), None)
        with reported(config):
            return fn(*args, **kwargs)

    return wrapper
