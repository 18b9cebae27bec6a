"""Mixtures: how many tokens each source contributes to an epoch, and the realised share per language.

Shares are token shares (what a pretraining "mixing ratio" means). `weights` fixes them directly;
`temperature` sets p_i ∝ n_i^alpha over source sizes n_i in tokens (alpha=1: natural sizes, 0: uniform).
Sources are up- or down-sampled deterministically (whole passes over a seeded permutation), so the
realised share matches the configured one up to one item per source.
"""

from __future__ import annotations

import math
from bisect import bisect_right
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


class Uniform:
    """The lengths of `count` items of `length` tokens each (a pt source's blocks) without a per-item array:
    `len`, `sum()` and indexing (an index array or slice gives the Uniform of the items it selects)."""

    __slots__ = ("count", "length")

    def __init__(self, count: int, length: int):
        self.count, self.length = int(count), int(length)

    def __len__(self) -> int:
        return self.count

    def sum(self) -> int:
        return self.count * self.length

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            if not -self.count <= idx < self.count:
                raise IndexError(f"index {idx} out of range for {self.count} items")
            return self.length
        if isinstance(idx, slice):
            return Uniform(len(range(*idx.indices(self.count))), self.length)
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.count,):
                raise IndexError(f"boolean index of {idx.shape} for {self.count} items")
            return Uniform(int(idx.sum()), self.length)
        if idx.size and (int(idx.max()) >= self.count or int(idx.min()) < -self.count):
            raise IndexError(f"index out of range for {self.count} items")
        return Uniform(idx.size, self.length)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.full(self.count, self.length, dtype or np.int64)

    def __eq__(self, other) -> bool:
        return isinstance(other, Uniform) and (other.count, other.length) == (self.count, self.length)

    def __repr__(self) -> str:
        return f"Uniform({self.count}, {self.length})"


INT32_MAX = 2**31 - 1


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """`rng.permutation(n)` (the same values, the same draws), int32 when n fits: 4 bytes an item, no int64 copy."""
    if n > INT32_MAX:
        return rng.permutation(n)
    out = np.arange(n, dtype=np.int32)
    rng.shuffle(out)  # what Generator.permutation(n) does to its arange
    return out


def _narrow(a) -> np.ndarray:
    """An index array as int32 when its values fit (else int64)."""
    a = np.asarray(a)
    if a.dtype == np.int32:
        return a
    a = np.asarray(a, np.int64)
    if not a.size or (int(a.max()) <= INT32_MAX and int(a.min()) >= -INT32_MAX - 1):
        return a.astype(np.int32)
    return a


class Items(Sequence):
    """(source, item) pairs: one index array (int32 when it fits: 4 bytes a pair, not a Python tuple each) and the
    bounds of each source's contiguous run in it. An epoch of a large corpus is millions of blocks, and every rank
    holds its list."""

    def __init__(self, names: list[str], index, bounds: Sequence[int] | None = None):
        self.names = list(names)
        index = np.asarray(index)
        self.index = index if index.dtype in (np.int32, np.int64) else np.asarray(index, np.int64)
        if bounds is None:
            if len(self.names) > 1 and len(self.index):
                raise ValueError("Items: give the bounds of each source's run")
            bounds = [0] * len(self.names) + [len(self.index)]
        bounds = [int(b) for b in bounds]
        if len(bounds) != len(self.names) + 1 or bounds[0] != 0 or bounds[-1] != len(self.index) or \
                any(a > b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"Items: bounds {bounds[:8]} do not cut {len(self.index)} items into "
                             f"{len(self.names)} runs")
        self.bounds = bounds

    @classmethod
    def concat(cls, parts: dict[str, np.ndarray]) -> "Items":
        """The items of each source in turn (a single non-empty int32 part is held as it is, not copied)."""
        names, arrays = list(parts), [_narrow(v) for v in parts.values()]
        bounds = np.concatenate([[0], np.cumsum([len(a) for a in arrays], dtype=np.int64)]).tolist()
        full = [a for a in arrays if len(a)]
        if len(full) == 1:
            index = full[0]
        else:
            dtype = np.int32 if all(a.dtype == np.int32 for a in full) else np.int64
            index = np.concatenate([np.zeros(0, dtype)] + [a.astype(dtype, copy=False) for a in full])
        return cls(names, index, bounds)

    @classmethod
    def from_source(cls, names: list[str], source, index) -> "Items":
        """From a per-item source array whose sources come in contiguous runs of increasing number."""
        source = np.asarray(source, np.int64)
        if len(source) and np.any(np.diff(source) < 0):
            raise ValueError("Items.from_source: sources must come in runs of increasing number")
        bounds = np.searchsorted(source, np.arange(len(names) + 1), side="left").tolist()
        return cls(names, index, bounds)

    @property
    def source(self) -> np.ndarray:
        """Each item's source number (into `names`), built on demand."""
        return np.repeat(np.arange(len(self.names), dtype=np.int32), np.diff(self.bounds))

    def runs(self):
        """(name, index view) per source, in order."""
        for k, n in enumerate(self.names):
            yield n, self.index[self.bounds[k]:self.bounds[k + 1]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step == 1:
                stop = max(start, stop)
                return Items(self.names, self.index[start:stop], [min(max(b - start, 0), stop - start)
                                                                  for b in self.bounds])
            pos = np.arange(start, stop, step, dtype=np.int64)
            src = np.searchsorted(self.bounds, pos, side="right") - 1
            cut = np.flatnonzero(np.diff(src)) + 1
            first = np.concatenate([[0], cut]).astype(np.int64) if len(pos) else np.zeros(0, np.int64)
            return Items([self.names[int(src[f])] for f in first], self.index[pos],
                         first.tolist() + [len(pos)])
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"item {i} out of range for {n} items")
        return self.names[bisect_right(self.bounds, i) - 1], int(self.index[i])

    def __iter__(self):
        for n, idx in self.runs():
            for a in range(0, len(idx), 1 << 16):
                for j in idx[a:a + (1 << 16)].tolist():
                    yield n, j

    def tokens(self, lengths: dict[str, np.ndarray | Uniform]) -> dict[str, int]:
        """Tokens per source of these items."""
        out: dict[str, int] = {}
        for n, idx in self.runs():
            if len(idx):
                out[n] = out.get(n, 0) + int(lengths[n][idx].sum())
        return out


def _uniform_stop(got: int, length: int, n: int, target: float) -> int | None:
    """allocate's stop rule on a pass of n items of `length` tokens each: the first k with
    `before_k + length / 2 >= target` (before_k = got + k * length, the same float expression), or None."""

    def stop(k: int) -> bool:
        return float(got + k * length) + length / 2 >= target

    if not stop(n - 1):
        return None
    k = min(n - 1, max(0, math.ceil((target - got - length / 2) / length)))
    while k > 0 and stop(k - 1):
        k -= 1
    while not stop(k):
        k += 1
    return k


def allocate(lengths: dict[str, np.ndarray | Uniform], probs: dict[str, float], total_tokens: int, seed: int
             ) -> Items:
    """(source, item) pairs giving each source ~probs[source] * total_tokens tokens: whole passes over a seeded
    permutation, stopping at the item that lands closest to the target. A source's lengths are an array, or a
    Uniform (pt blocks): then the stop is found arithmetically, with no per-item array."""
    parts: dict[str, np.ndarray] = {}
    for s, (name, lens) in enumerate(sorted(lengths.items())):
        target = probs[name] * total_tokens
        if target <= 0 or len(lens) == 0:
            continue
        rng = np.random.default_rng([seed, s])
        n, got, picked = len(lens), 0, []
        if not isinstance(lens, Uniform):
            lens = np.asarray(lens, np.int64)
        while got < target:
            perm = permutation(rng, n)
            if isinstance(lens, Uniform):
                k = _uniform_stop(got, lens.length, n, target)
                if k is not None:
                    picked.append(perm[:k])
                    break
                picked.append(perm)
                got += n * lens.length
                continue
            took = lens[perm]
            before = got + np.concatenate([[0], np.cumsum(took)[:-1]])
            stop = before + took / 2 >= target
            if stop.any():
                picked.append(perm[: int(np.argmax(stop))])
                break
            picked.append(perm)
            got += int(took.sum())
            del took, before, stop
        parts[name] = picked[0] if len(picked) == 1 else np.concatenate(picked)
        del picked
    return Items.concat(parts)


def realised_shares(chosen: Items, lengths: dict[str, np.ndarray | Uniform], langs: dict[str, str]
                    ) -> dict[str, float]:
    """Token share per language of an allocation."""
    tokens: dict[str, int] = defaultdict(int)
    for name, n in chosen.tokens(lengths).items():
        tokens[langs[name]] += n
    total = sum(tokens.values()) or 1
    return {lang: n / total for lang, n in sorted(tokens.items())}
