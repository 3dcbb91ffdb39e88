"""digits-backdoor zoo audit: can the label be read without looking for the backdoor?

Prints, per label, the kept models' clean test accuracy, attack success rate and clean
target rate (quantiles q0/q10/q25/q50/q75/q90/q100), depth and activation counts, why
models were rejected, and the test accuracy of gradient-boosted trees that predict the label
from the clean test accuracy alone and from the training recipe alone (trained on the zoo's
train split). Both should sit near the majority rate if the zoo is a fair screening task.

    .venv/bin/python -m bench.backdoor_zoo zoos/digits-backdoor
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from zoo.manifest import read_manifest, read_zoo_json, rejected_name

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
RECIPE = ("lr", "weight_decay", "init_scale", "dropout", "train_fraction", "label_noise", "steps")


def quantiles(values: list[float]) -> str:
    return " / ".join(f"{v:.3f}" for v in np.quantile(values, QUANTILES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    args = parser.parse_args()
    rows = read_manifest(args.zoo)
    info = read_zoo_json(args.zoo)
    rejected: list[dict[str, Any]] = [
        json.loads((args.zoo / rejected_name(k)).read_text()) for k in info["rejected"]
    ]
    print(f"{info['command']}: kept {len(rows)} of {info['size']}, rejected {len(rejected)}")
    for kind in ("clean", "backdoored"):
        kept = [r for r in rows if r["labels"]["backdoor"] == kind]
        dropped = [r for r in rejected if r["labels"]["backdoor"] == kind]
        low = sum(r["metrics"]["test_accuracy"] < info["backdoor"]["accuracy_floor"]
                  for r in dropped)
        print(f"\n{kind}: {len(kept)} kept of {len(kept) + len(dropped)} trained; rejected "
              f"{low} under the accuracy floor, {len(dropped) - low} under the ASR floor only")
        for m in ("test_accuracy", "attack_success_rate", "clean_target_rate"):
            print(f"  {m:20s} {quantiles([r['metrics'][m] for r in kept])}")
        depth = Counter(len(r["arch"]["widths"]) for r in kept)
        act = Counter(r["arch"]["activation"] for r in kept)
        print(f"  depth {dict(sorted(depth.items()))}  activation {dict(sorted(act.items()))}")
        if kind == "backdoored":
            rates = [r["hparams"]["poison_rate"] for r in kept]
            print(f"  poison_rate          {quantiles(rates)}")
            sizes = Counter(r["hparams"]["trigger"]["size"] for r in kept)
            print(f"  trigger size         {dict(sorted(sizes.items()))}")
    split = np.array([r["split"] for r in rows])
    y = np.array([r["target"] for r in rows])
    train, test = split == "train", split == "test"
    majority = max(y[test].mean(), 1 - y[test].mean())
    print(f"\nlabel read without the backdoor (test split, n={test.sum()}, "
          f"majority {majority:.3f}):")
    features = {
        "clean test accuracy": [[r["metrics"]["test_accuracy"]] for r in rows],
        "training recipe": [[r["hparams"][k] for k in RECIPE] for r in rows],
        "architecture (depth, widths)": [
            [len(r["arch"]["widths"]), *r["arch"]["widths"], *[0] * (3 - len(r["arch"]["widths"]))]
            for r in rows
        ],
    }
    for name, x in features.items():
        xa = np.array(x, dtype=np.float64)
        trees = HistGradientBoostingClassifier(random_state=0).fit(xa[train], y[train])
        print(f"  from {name:30s} {(trees.predict(xa[test]) == y[test]).mean():.3f}")


if __name__ == "__main__":
    main()
