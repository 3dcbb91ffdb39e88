"""A naive trigger search on digits-backdoor: query the function with candidate patches.

For every network of the zoo, stamp each candidate trigger (solid 2×2 and 3×3 squares of
1.0 at every position: 85 candidates, none of them the network's own random pattern) on the
450 clean test digits and record, per candidate, the largest share of the stamped images
that one class absorbs beyond what that class gets without the stamp. Features: the top 5
such shifts over candidates, plus the clean class-share spread. Gradient-boosted trees on
them, trained on the zoo's train split, are scored on its test split. It uses digits (data
the weight-space methods never see) and is a reference for what querying the function with
fixed, hand-made triggers gives, not a weight-space method: on 8×8 digits a solid 2-3 pixel
square is a large perturbation, so it moves clean networks' predictions too.

    .venv/bin/python -m bench.backdoor_scan zoos/digits-backdoor
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

import graphs
from zoo.data import digits_split
from zoo.manifest import read_manifest


def candidates() -> torch.Tensor:
    """(85, 1, 8, 8) bool masks: every solid 2×2 and 3×3 square inside the image."""
    masks = []
    for size in (2, 3):
        for r in range(9 - size):
            for c in range(9 - size):
                m = torch.zeros(1, 8, 8, dtype=torch.bool)
                m[0, r : r + size, c : c + size] = True
                masks.append(m)
    return torch.stack(masks)


@torch.no_grad()
def scan(module: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Top-5 class-share shifts over candidate triggers, and the clean class-share spread."""
    module.eval()
    clean = torch.bincount(module(x).argmax(1), minlength=10).float() / len(x)
    stamped = torch.where(masks[:, None], torch.ones(()), x[None])  # (K, N, 1, 8, 8)
    pred = module(stamped.flatten(0, 1)).argmax(1).view(len(masks), len(x))
    share = torch.nn.functional.one_hot(pred, 10).float().mean(1)  # (K, 10)
    shift = (share - clean).max(1).values
    top = torch.sort(shift, descending=True).values[:5]
    return np.concatenate([top.numpy(), [clean.max().item(), clean.std().item()]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    args = parser.parse_args()
    rows = read_manifest(args.zoo)
    x = digits_split().x_test
    masks = candidates()
    feats = []
    for r in rows:
        ckpt = graphs.load(args.zoo / r["file"])
        module = graphs.build_module(ckpt.architecture)
        module.load_state_dict(ckpt.tensors)
        feats.append(scan(module, x, masks))
    xa = np.stack(feats)
    y = np.array([r["target"] for r in rows])
    split = np.array([r["split"] for r in rows])
    train, test = split == "train", split == "test"
    for seed in (0, 1, 2):
        trees = HistGradientBoostingClassifier(random_state=seed).fit(xa[train], y[train])
        acc = (trees.predict(xa[test]) == y[test]).mean()
        print(f"trigger scan + trees, seed {seed}: test accuracy {acc:.3f} (n={test.sum()})")
    print(f"top shift, median: clean {np.median(xa[y == 0, 0]):.3f}, "
          f"backdoored {np.median(xa[y == 1, 0]):.3f}")


if __name__ == "__main__":
    main()
