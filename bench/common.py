"""Shared helpers of the benchmarks: project import path, caches, threads, models, timers, memory."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from clika.app.env import setup_env  # noqa: E402

setup_env(offline=True)

MODEL_FIELDS = ("name", "name_or_path", "gguf_package", "gguf_file", "dtype", "tiny")


def model_preset(name: str) -> dict:
    """ModelSpec fields of conf/model/<name>.yaml (tiny, gemma3_270m, smollm2_135m, ...)."""
    from clika.app.defaults import model_preset as model_preset_of

    path = ROOT / "conf" / "model" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"bench: unknown model '{name}' (no {path.relative_to(ROOT)})")
    node = model_preset_of(path)
    return {k: v for k, v in node.items() if k in MODEL_FIELDS and v is not None}


def data_root() -> str:
    return os.environ.get("CLIKA_DATA", str(ROOT.parent / "shared" / "clika-data"))


def model_spec(name: str, dtype: str = "float32"):
    from clika.models.load import ModelSpec

    return ModelSpec(**{**model_preset(name), "dtype": dtype})


def wait_for_dequantized(name: str, timeout: float = 600.0) -> None:
    """Another process may be dequantizing the GGUF model right now: wait for its folder instead of racing."""
    from clika.app.env import cache_root

    if not model_preset(name).get("gguf_package"):
        return
    out = cache_root() / "models" / f"{name}-dequantized"
    tmp = list(out.parent.glob(".tmp-*")) if out.parent.exists() else []
    if (out / "config.json").exists() or not tmp:
        return
    t0 = time.time()
    while not (out / "config.json").exists() and time.time() - t0 < timeout:
        time.sleep(5)


def load(name: str, device: str = "cpu", dtype: str = "float32"):
    from clika.models.load import load_model

    wait_for_dequantized(name)
    return load_model(model_spec(name, dtype), device=device)


def set_threads(n: int) -> int:
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def clock(device: str = "cpu") -> float:
    """The benchmark clock. On CPU: this process's CPU time (time.process_time), which on a shared machine is
    insensitive to other jobs' load (with one torch thread it equals wall time on an idle machine).
    On GPU (or CLIKA_BENCH_CLOCK=wall): wall time. `Timer.wall` always holds the wall time too."""
    if str(device).startswith("cuda") or os.environ.get("CLIKA_BENCH_CLOCK") == "wall":
        return time.perf_counter()
    return time.process_time()


def clock_name(device: str = "cpu") -> str:
    wall = str(device).startswith("cuda") or os.environ.get("CLIKA_BENCH_CLOCK") == "wall"
    return "wall" if wall else "process CPU time"


class Timer:
    def __init__(self, device: str = "cpu"):
        self.device = device

    def __enter__(self):
        sync(self.device)
        self.t0, self.w0 = clock(self.device), time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = clock(self.device) - self.t0
        self.wall = time.perf_counter() - self.w0


def machine_info() -> dict:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
