"""Learning-rate schedules used as Hydra partials (the Trainer fills in `total_steps`)."""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(optimizer, *, total_steps: int, warmup_ratio: float = 0.03,
                       warmup_steps: int | None = None, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `total_steps`."""
    warm = warmup_steps if warmup_steps is not None else int(round(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
