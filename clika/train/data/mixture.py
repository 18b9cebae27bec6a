"""Mixtures: how many tokens each source contributes to an epoch, and the realised share per language.

Shares are token shares (what a pretraining "mixing ratio" means). `weights` fixes them directly;
`temperature` sets p_i ∝ n_i^alpha over source sizes n_i in tokens (alpha=1: natural sizes, 0: uniform).
Sources are up- or down-sampled deterministically (whole passes over a seeded permutation), so the
realised share matches the configured one up to one item per source.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

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


class Items(Sequence):
    """(source, item) pairs held as two arrays (16 bytes a pair, not a Python tuple each): an epoch of a large
    corpus is millions of blocks, and every rank holds its list."""

    def __init__(self, names: list[str], source: np.ndarray, index: np.ndarray):
        self.names, self.source, self.index = list(names), np.asarray(source, np.int32), np.asarray(index, np.int64)

    @classmethod
    def concat(cls, parts: dict[str, np.ndarray]) -> "Items":
        names = list(parts)
        return cls(names, np.concatenate([np.zeros(0, np.int32)] + [np.full(len(v), k, np.int32)
                                                                      for k, v in enumerate(parts.values())]),
                   np.concatenate([np.zeros(0, np.int64)] + [np.asarray(v, np.int64) for v in parts.values()]))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Items(self.names, self.source[i], self.index[i])
        return self.names[self.source[i]], int(self.index[i])

    def __iter__(self):
        for s, j in zip(self.source.tolist(), self.index.tolist()):
            yield self.names[s], j

    def tokens(self, lengths: dict[str, np.ndarray]) -> dict[str, int]:
        """Tokens per source of these items."""
        out = {}
        for k, n in enumerate(self.names):
            idx = self.index[self.source == k]
            if len(idx):
                out[n] = int(lengths[n][idx].sum())
        return out


def allocate(lengths: dict[str, np.ndarray], probs: dict[str, float], total_tokens: int, seed: int) -> Items:
    """(source, item) pairs giving each source ~probs[source] * total_tokens tokens: whole passes over a seeded
    permutation, stopping at the item that lands closest to the target."""
    parts: dict[str, np.ndarray] = {}
    for s, (name, lens) in enumerate(sorted(lengths.items())):
        target = probs[name] * total_tokens
        if target <= 0 or len(lens) == 0:
            continue
        rng = np.random.default_rng([seed, s])
        got, picked = 0, []
        while got < target:
            perm = rng.permutation(len(lens))
            took = np.asarray(lens, np.int64)[perm]
            before = got + np.concatenate([[0], np.cumsum(took)[:-1]])
            stop = before + took / 2 >= target
            if stop.any():
                picked.append(perm[: int(np.argmax(stop))])
                break
            picked.append(perm)
            got += int(took.sum())
        parts[name] = np.concatenate(picked)
    return Items.concat(parts)


def realised_shares(chosen: Items, lengths: dict[str, np.ndarray], langs: dict[str, str]) -> dict[str, float]:
    """Token share per language of an allocation."""
    tokens: dict[str, int] = defaultdict(int)
    for name, n in chosen.tokens(lengths).items():
        tokens[langs[name]] += n
    total = sum(tokens.values()) or 1
    return {lang: n / total for lang, n in sorted(tokens.items())}
