"""Evaluation metrics and split-conformal intervals.

Kendall's τ is τ-b (ties in either ranking are corrected for), and the share of tied pairs
is reported with it: zoos where many networks collapse to the same accuracy make τ-a and
τ-b differ (the SVHN-GS pitfall).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import kendalltau


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(target)))


def kendall_tau_b(pred: np.ndarray, target: np.ndarray) -> float:
    """τ-b; 0 when either side is constant (τ is undefined there)."""
    tau = kendalltau(pred, target, variant="b").statistic
    return 0.0 if tau is None or math.isnan(tau) else float(tau)


def tied_pair_fraction(values: np.ndarray) -> float:
    """The fraction of pairs with equal values."""
    _, counts = np.unique(np.asarray(values), return_counts=True)
    n = len(values)
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    ss = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((target - pred) ** 2).sum()) / ss if ss > 0 else 0.0


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(target, float))))


def regression_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {"tau_b": kendall_tau_b(pred, target), "r2": r2(pred, target),
            "mae": mae(pred, target), "target_ties": tied_pair_fraction(target),
            "pred_ties": tied_pair_fraction(pred)}


def conformal_quantile(pred: np.ndarray, target: np.ndarray, coverage: float) -> float:
    """Split-conformal half-width: the ⌈(n+1)·coverage⌉-th smallest calibration residual.

    With exchangeable calibration and test points, ``[pred - q, pred + q]`` holds the truth
    with probability at least ``coverage`` (Vovk et al.; Lei et al. 2018).
    """
    residuals = np.sort(np.abs(np.asarray(pred, float) - np.asarray(target, float)))
    n = len(residuals)
    if n == 0:
        raise ValueError("conformal calibration needs at least one point")
    rank = math.ceil((n + 1) * coverage)
    return float(residuals[rank - 1]) if rank <= n else math.inf


def interval_coverage(pred: np.ndarray, target: np.ndarray, half_width: float) -> float:
    """The fraction of targets inside ``pred ± half_width``."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(target, float))
                         <= half_width))
