"""The vectorised bootstrap (clika.metrics.alignment): percentile method, seed semantics, the paired delta."""

import math
import random

import numpy as np
import pytest

from clika.metrics.alignment import (bootstrap_ci, bootstrap_indices, bootstrap_weights, paired_bootstrap_ci,
                                     percentile_interval)


def _items(k=400, p=0.7, seed=3):
    rng = random.Random(seed)
    return [rng.random() < p for _ in range(k)]


def test_percentile_indices_are_floor_and_ceil_of_the_sorted_stats():
    stats = list(range(1000))[::-1]  # unsorted on purpose
    assert percentile_interval(stats, 0.95) == (float(math.floor(0.025 * 999)), float(math.ceil(0.975 * 999)))
    assert percentile_interval([0.5] * 7) == (0.5, 0.5)


def test_bootstrap_ci_is_the_percentile_interval_of_the_seeded_resamples():
    correct = _items()
    idx = bootstrap_indices(len(correct), 500, 11)
    means = sorted(np.asarray(correct)[idx].mean(axis=1))
    assert bootstrap_ci(correct, n=500, seed=11) == (means[math.floor(0.025 * 499)], means[math.ceil(0.975 * 499)])


def test_bootstrap_reproducible_by_seed_and_covers_the_estimate():
    correct = _items()
    acc = sum(correct) / len(correct)
    a, b = bootstrap_ci(correct, 1000, seed=5), bootstrap_ci(correct, 1000, seed=5)
    assert a == b and a[0] < acc < a[1]
    assert not np.array_equal(bootstrap_indices(400, 1000, 5), bootstrap_indices(400, 1000, 6))  # another draw
    se = math.sqrt(acc * (1 - acc) / len(correct))  # the interval has the binomial width, about ±1.96 se
    assert a[1] - a[0] == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert np.array_equal(bootstrap_indices(50, 20, 9), bootstrap_indices(50, 20, 9))


def test_weights_count_the_items_of_the_same_resamples():
    k, n = 37, 25
    idx, w = bootstrap_indices(k, n, 2), bootstrap_weights(k, n, 2)
    assert w.shape == (n, k) and (w.sum(axis=1) == k).all()
    vals = np.arange(k, dtype=float) ** 2
    assert np.allclose(w @ vals, vals[idx].sum(axis=1))


def test_paired_bootstrap_of_a_delta():
    base = _items(seed=1)
    rng = random.Random(2)
    treated = [c if rng.random() < 0.9 else not c for c in base]  # mostly the same verdicts: strongly paired
    delta, lo, hi = paired_bootstrap_ci(base, treated, 1000, seed=0)
    assert delta == pytest.approx((sum(treated) - sum(base)) / len(base))
    assert lo <= delta <= hi and paired_bootstrap_ci(base, treated, 1000, seed=0) == (delta, lo, hi)
    # pairing matters: independent resamples would give a delta interval ~ sqrt(2) = 1.41 x one accuracy's width;
    # resampling the items together gives ~ sqrt(0.1 / 0.21) = 0.69 x, since 90% of the verdicts are shared
    one = bootstrap_ci(base, 1000, seed=0)
    assert hi - lo < 0.8 * (one[1] - one[0])
    assert paired_bootstrap_ci(base, base, 200) == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in paired_bootstrap_ci([], [], 10))
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_ci([1, 0], [1], 10)


def test_empty_or_no_resamples():
    assert all(math.isnan(v) for v in bootstrap_ci([], n=10))
    assert all(math.isnan(v) for v in bootstrap_ci([1, 0], n=0))
    assert bootstrap_ci([1] * 10, n=100) == (1.0, 1.0)
