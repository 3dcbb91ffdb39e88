"""The statistics baseline (Unterthiner et al., "Predicting Neural Network Accuracy from
Weights", 2020): per-tensor weight statistics fed to gradient-boosted trees.

Statistics of a tensor do not change when its neurons are permuted, so the baseline is
invariant by construction and applies to any architecture ``graphs`` can load. Tensors are
taken in the op graph's order; architectures with fewer tensors are padded with NaN, which
the trees treat as missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from graphs import Checkpoint

STATS = ("mean", "var", "q0", "q25", "q50", "q75", "q100", "abs_mean")
QUANTILES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)


def tensor_stats(t: torch.Tensor) -> list[float]:
    """The :data:`STATS` of one tensor."""
    v = t.detach().double().flatten()
    if v.numel() > 1_000_000:  # torch.quantile's limit; a strided sample is plenty
        v = v[:: v.numel() // 1_000_000 + 1]
    q = torch.quantile(v, QUANTILES).tolist()
    return [v.mean().item(), v.var(unbiased=False).item(), *q, v.abs().mean().item()]


def checkpoint_features(checkpoint: Checkpoint, max_tensors: int) -> np.ndarray:
    """Statistics of the first ``max_tensors`` float tensors, NaN-padded, plus the number of
    tensors and log10 of the parameter count."""
    tensors = [t for t in checkpoint.tensors.values() if t.is_floating_point()]
    rows = [tensor_stats(t) for t in tensors[:max_tensors]]
    rows += [[np.nan] * len(STATS)] * (max_tensors - len(rows))
    total = sum(t.numel() for t in tensors)
    return np.array([x for r in rows for x in r] + [len(tensors), np.log10(max(total, 1))])


class StatNN:
    """Gradient-boosted trees on per-tensor statistics.

    ``task`` is ``"classification"`` (labels are integers) or ``"generalization"``
    (targets are test accuracies in [0, 1]; predictions are clipped to that range).
    """

    def __init__(self, task: str, seed: int = 0, max_tensors: int | None = None) -> None:
        if task not in ("classification", "generalization"):
            raise ValueError(f"unknown task {task!r}")
        self.task, self.seed, self.max_tensors = task, seed, max_tensors
        params = {"max_iter": 500, "learning_rate": 0.05, "early_stopping": True,
                  "validation_fraction": 0.15, "n_iter_no_change": 30, "random_state": seed}
        self.model = (HistGradientBoostingClassifier(**params) if task == "classification"
                      else HistGradientBoostingRegressor(**params))

    def features(self, checkpoints: Sequence[Checkpoint]) -> np.ndarray:
        if self.max_tensors is None:
            raise RuntimeError("StatNN is not fitted")
        return np.stack([checkpoint_features(c, self.max_tensors) for c in checkpoints])

    def fit(self, checkpoints: Sequence[Checkpoint], targets: Sequence[float]) -> StatNN:
        if self.max_tensors is None:
            self.max_tensors = max(sum(t.is_floating_point() for t in c.tensors.values())
                                   for c in checkpoints)
        self.model.fit(self.features(checkpoints), np.asarray(targets))
        return self

    def predict(self, checkpoints: Sequence[Checkpoint]) -> np.ndarray:
        out = self.model.predict(self.features(checkpoints))
        return out if self.task == "classification" else np.clip(out, 0.0, 1.0)
