import math

import pytest

from clika.metrics.alignment import (accuracy, aggregate, bootstrap_ci, co, co_chance_adjusted, co_matrix, dataset_metrics,
                           relative_accuracy)


def test_relative_accuracy_by_hand():
    assert relative_accuracy(0.964, 2, 0.964) == pytest.approx(1.0)
    assert relative_accuracy(0.73, 2, 0.96) == pytest.approx((0.73 - 0.5) / (0.96 - 0.5))
    assert relative_accuracy(0.20, 4, 0.97) == 0.0  # below chance clips at 0
    with pytest.raises(ValueError):
        relative_accuracy(0.5, 2, 0.5)


def test_co_by_hand_and_empty_sets():
    en = [1, 1, 0, 0, 1]
    de = [1, 0, 1, 0, 1]
    assert co(en, de) == pytest.approx(2 / 4)  # {0,4} over {0,1,2,4}
    assert co([0, 0], [0, 0]) == 0.0
    assert co([1, 0], [0, 1]) == 0.0
    assert co(en, en) == 1.0
    with pytest.raises(ValueError):
        co([1], [1, 0])
    m = co_matrix({"en": en, "de": de})
    assert m["en"]["de"] == m["de"]["en"] == 0.5 and m["en"]["en"] == 1.0


def test_chance_adjusted_co_by_hand():
    en, de = [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]
    p = q = 0.6
    expected = p * q / (p + q - p * q)
    assert co_chance_adjusted(en, de) == pytest.approx((0.5 - expected) / (1 - expected))
    assert co_chance_adjusted(en, en) == pytest.approx(1.0)


def test_accuracy_and_bootstrap():
    assert accuracy([1, 0, 1, 1]) == 0.75 and accuracy([]) == 0.0
    lo, hi = bootstrap_ci([1] * 70 + [0] * 30, n=500, seed=1)
    assert lo < 0.7 < hi and 0.55 < lo and hi < 0.85
    assert bootstrap_ci([1] * 10, n=100) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([], n=10))


def test_dataset_metrics_and_aggregate():
    correct = {"en": [1, 1, 1, 0], "zh": [1, 0, 0, 0], "de": [1, 1, 0, 0]}
    m = dataset_metrics(correct, 2, 1.0, bootstrap=20)
    assert m["langs"]["zh"]["acc"] == 0.25 and m["langs"]["zh"]["ra"] == 0.0
    assert m["langs"]["de"]["ra"] == 0.0 and m["langs"]["en"]["ra"] == pytest.approx(0.5)
    assert m["langs"]["zh"]["en_co"] == pytest.approx(1 / 3) and m["langs"]["de"]["en_co"] == pytest.approx(2 / 3)
    agg = aggregate({"x_copa": m}, {"basic": ["x_copa", "x_csqa"], "factual": ["x_geo"]})
    assert agg["streams"]["basic"]["en_co"] == pytest.approx(0.5)  # mean of zh and de, en excluded
    assert agg["streams"]["basic"]["acc"] == pytest.approx(0.375)
    assert "factual" not in agg["streams"] and agg["overall"]["ra"] == 0.0
