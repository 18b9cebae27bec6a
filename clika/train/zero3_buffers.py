"""ZeRO-3's buffer sizes scaled to the model (`strategy.zero3_buffers: auto`, the ZeRO-3 presets' default).

DeepSpeed sizes ZeRO-3's working buffers in absolute numbers of parameters, tuned for models of billions: up to 1e9
gathered parameters live at once (`stage3_max_live_parameters`, `stage3_max_reuse_distance`), the optimizer stepping
all of a rank's partition in one sub-group (Lightning passes `sub_group_size` 1e12), 2e8-element reduce and allgather
buckets. Below ~1B parameters those limits are larger than the model: every rank gathers the whole model and steps
its optimizer with fp32 temporaries the size of its partition, and ZeRO-3 held as much per rank as DDP did
(bench/zero3_memory.py: 0.97x DDP's model-state memory on 309M parameters over 2 ranks).

`auto` (this project's choice, as HF Trainer's `auto` ZeRO-3 values scale with `hidden_size`): every one of these
limits is min(DeepSpeed's / Lightning's default, 10 x hidden_size^2) elements, i.e. about the parameters of one
decoder layer (12 h^2 in a Llama layer): a 7B model (h 4096) keeps 1.7e8, a 309M one (h 1024) 1.0e7; and
`stage3_param_persistence_threshold` HF's 10 x hidden_size. `strategy.zero3_buffers: deepspeed` keeps DeepSpeed's
defaults; any key set in `strategy.kwargs` (or `strategy.kwargs.config.zero_optimization`) wins over both.
"""

from __future__ import annotations

from typing import Any

MODES = ("auto", "deepspeed")
PER_HIDDEN_SQUARED = 10  # the limits below in units of hidden_size^2 (one decoder layer is ~12 h^2)
DEFAULTS = {  # DeepSpeed's own defaults, and Lightning's where Lightning passes its own value
    "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9, "stage3_prefetch_bucket_size": 5e7,
    "sub_group_size": 1e12, "reduce_bucket_size": 2e8, "allgather_bucket_size": 2e8,
    "stage3_param_persistence_threshold": 1e5,
}


def zero3_buffers(mode: str, hidden: int, explicit: dict[str, Any] | None = None) -> dict[str, int]:
    """The zero_optimization buffer keys a ZeRO-3 run uses: `mode` (auto | deepspeed) for `hidden_size`, then the
    keys set explicitly by the user (`explicit`: strategy.kwargs merged with its config's zero_optimization)."""
    if mode not in MODES:
        raise ValueError(f"zero3_buffers: unknown mode {mode!r} (one of {MODES})")
    out = {k: int(v) for k, v in DEFAULTS.items()}
    if mode == "auto":
        cap = PER_HIDDEN_SQUARED * int(hidden) ** 2
        out.update({k: min(v, cap) for k, v in out.items() if k != "stage3_param_persistence_threshold"})
        out["stage3_param_persistence_threshold"] = 10 * int(hidden)
    out.update({k: int(v) for k, v in (explicit or {}).items() if k in DEFAULTS})
    return out


def explicit_keys(strategy: dict[str, Any]) -> dict[str, Any]:
    """The buffer keys a strategy config sets itself (strategy.kwargs, then strategy.kwargs.config.zero_optimization)."""
    kwargs = dict(strategy.get("kwargs") or {})
    out = {k: v for k, v in kwargs.items() if k in DEFAULTS}
    out.update({k: v for k, v in ((kwargs.get("config") or {}).get("zero_optimization") or {}).items()
                if k in DEFAULTS})
    return out


def scaled(strategy: dict[str, Any]) -> bool:
    """Whether the run's ZeRO-3 limits are scaled to the model: a stage-3 DeepSpeed preset under `auto`."""
    return (str(strategy.get("name", "")).startswith("deepspeed") and int(strategy.get("stage", 0) or 0) == 3
            and str(strategy.get("zero3_buffers", "auto")) == "auto")


def for_strategy(strategy: dict[str, Any], hidden: int) -> dict[str, int]:
    """The buffer limits a strategy config runs with (what build_strategy sets and clika.train.plan counts)."""
    return zero3_buffers("auto" if scaled(strategy) else "deepspeed", hidden, explicit_keys(strategy))
