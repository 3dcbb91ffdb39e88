"""The digits data every zoo is trained on (sklearn's load_digits: ships with sklearn).

The digits are split once into train/test by a fixed seed (DIGITS_SPLIT_SEED, stratified,
25% test) that is independent of any zoo seed, so every classifier in every zoo is scored on
the same held-out images.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25
NUM_CLASSES = 10


@dataclass(frozen=True)
class Digits:
    """Images in [0, 1] of shape (N, 1, 8, 8) and int64 labels, for train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device | str) -> "Digits":
        return Digits(
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test))
        )


@lru_cache(maxsize=1)
def all_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as float32 (N, 8, 8) in [0, 1], and their labels (cached: read-only)."""
    d = load_digits()
    images, labels = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@lru_cache(maxsize=1)
def digits_split() -> Digits:
    """The fixed train (1,347) / test (450) split of the digits."""
    images, labels = all_digits()
    idx = np.arange(len(labels))
    tr, te = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    x = torch.tensor(images).unsqueeze(1)
    y = torch.tensor(labels)
    return Digits(x[tr], y[tr], x[te], y[te])


def inr_grid(side: int) -> torch.Tensor:
    """Pixel-centre (row, col) coordinates in [-1, 1]^2 of a side×side grid: (side*side, 2)."""
    lin = torch.linspace(-1.0, 1.0, side)
    rows, cols = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([rows, cols], dim=-1).reshape(-1, 2)


def inr_targets(images: np.ndarray, side: int) -> torch.Tensor:
    """Images resampled bilinearly (corner-aligned) to side×side in [-1, 1]: (N, side*side, 1)."""
    x = torch.tensor(images).unsqueeze(1)
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=True)
    return (x * 2.0 - 1.0).reshape(len(images), side * side, 1)
