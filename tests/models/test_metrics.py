"""Metrics and split-conformal intervals."""

import numpy as np
import pytest
from scipy.stats import kendalltau

from models.metrics import (
    accuracy,
    conformal_quantile,
    interval_coverage,
    kendall_tau_b,
    mae,
    r2,
    regression_metrics,
    tied_pair_fraction,
)


def test_tau_b_with_ties_matches_scipy_and_differs_from_tau_a() -> None:
    target = np.array([0.1, 0.1, 0.1, 0.5, 0.7, 0.9, 0.1, 0.8])
    pred = np.array([0.2, 0.1, 0.3, 0.4, 0.9, 0.8, 0.0, 0.7])
    tau_b = kendall_tau_b(pred, target)
    assert tau_b == pytest.approx(kendalltau(pred, target, variant="b").statistic)
    assert tau_b != pytest.approx(kendalltau(pred, target, variant="c").statistic)
    assert tied_pair_fraction(target) == pytest.approx(6 / 28)
    assert kendall_tau_b(pred, np.full(8, 0.3)) == 0.0


def test_regression_metrics() -> None:
    y = np.array([0.0, 0.5, 1.0])
    assert r2(y, y) == 1.0 and mae(y, y) == 0.0
    assert r2(np.full(3, 0.5), y) == pytest.approx(0.0)
    assert mae(y + 0.1, y) == pytest.approx(0.1)
    m = regression_metrics(y[::-1], y)
    assert m["tau_b"] == pytest.approx(-1.0) and m["r2"] == pytest.approx(-3.0)
    assert accuracy(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_conformal_interval_reaches_its_coverage(coverage: float) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    y, pred = rng.normal(size=n), np.zeros(n)
    q = conformal_quantile(pred[:2000], y[:2000], coverage)
    measured = interval_coverage(pred[2000:], y[2000:], q)
    assert abs(measured - coverage) < 0.03


def test_conformal_quantile_is_finite_sample_corrected() -> None:
    residuals = np.arange(1, 10, dtype=float)  # n = 9: rank ceil(10 * 0.9) = 9
    assert conformal_quantile(np.zeros(9), residuals, 0.9) == 9.0
    assert conformal_quantile(np.zeros(9), residuals, 0.5) == 5.0
    assert conformal_quantile(np.zeros(3), residuals[:3], 0.9) == float("inf")
    with pytest.raises(ValueError):
        conformal_quantile(np.zeros(0), np.zeros(0), 0.9)
