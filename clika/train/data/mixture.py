"""Mixtures: how many tokens each source contributes to an epoch, and the realised share per language.

Shares are token shares (what a pretraining "mixing ratio" means). `weights` fixes them directly;
`temperature` sets p_i ∝ n_i^alpha over source sizes n_i in tokens (alpha=1: natural sizes, 0: uniform).
Sources are up- or down-sampled deterministically (whole passes over a seeded permutation), so the
realised share matches the configured one up to one item per source.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from clika.app.checks.train import SAMPLING
from clika.util.errors import ClikaError


def mixture_probs(sizes: dict[str, int], sampling: str, weights: dict[str, float] | None = None,
                  alpha: float = 1.0) -> dict[str, float]:
    if sampling == "weights":
        weights = dict(weights or {})
        if set(weights) != set(sizes):
            raise ClikaError(f"data.mix.weights: keys {sorted(weights)} differ from sources {sorted(sizes)}",
                             fix="give one weight per source name")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ClikaError("data.mix.weights: weights must be >= 0 with a positive sum", fix="fix the weights")
        raw = weights
    elif sampling == "temperature":
        raw = {k: float(n) ** alpha for k, n in sizes.items()}
    else:
        raise ClikaError(f"data.mix.sampling: unknown '{sampling}'", fix=f"use one of {SAMPLING}")
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def allocate(lengths: dict[str, np.ndarray], probs: dict[str, float], total_tokens: int,
             seed: int) -> list[tuple[str, int]]:
    """(source, item) pairs giving each source ~probs[source] * total_tokens tokens."""
    out: list[tuple[str, int]] = []
    for s, (name, lens) in enumerate(sorted(lengths.items())):
        target = probs[name] * total_tokens
        if target <= 0 or len(lens) == 0:
            continue
        rng = np.random.default_rng([seed, s])
        got, picked = 0, []
        while got < target:
            for i in rng.permutation(len(lens)):
                if got + lens[i] / 2 >= target:  # stop at the item that lands closest to the target
                    break
                picked.append(int(i))
                got += int(lens[i])
            else:
                continue
            break
        out += [(name, i) for i in picked]
    return out


def realised_shares(chosen: list[tuple[str, int]], lengths: dict[str, np.ndarray],
                    langs: dict[str, str]) -> dict[str, float]:
    """Token share per language of an allocation."""
    tokens: dict[str, int] = defaultdict(int)
    for name, i in chosen:
        tokens[langs[name]] += int(lengths[name][i])
    total = sum(tokens.values()) or 1
    return {lang: n / total for lang, n in sorted(tokens.items())}
