"""Train/val/test splits, made once when a zoo is created: seeded, by group when items
have one (a group never straddles splits), stratified by label for classification."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

SPLITS = ("train", "val", "test")


def assign_splits(
    labels: Sequence[str | None],
    groups: Sequence[str | None],
    fractions: Mapping[str, float],
    seed: int,
) -> list[str]:
    """The split of every item, a pure function of its arguments.

    Units are groups (an item without a group is a unit of one). A unit's stratum is its
    most common label (None for regression). Within a stratum the units, in a seeded
    order (largest first), each go to the split the most items short of its share.
    """
    units: dict[tuple[str, object], list[int]] = {}
    for index, group in enumerate(groups):
        key = ("group", group) if group is not None else ("item", index)
        units.setdefault(key, []).append(index)
    strata: dict[str, list[list[int]]] = {}
    for members in units.values():
        counts = Counter(labels[i] for i in members)
        top = max(counts.values())
        stratum = min(str(label) for label, n in counts.items() if n == top)
        strata.setdefault(stratum, []).append(members)
    total = sum(fractions[s] for s in SPLITS)
    share = {s: fractions[s] / total for s in SPLITS}
    rng = random.Random(seed)
    out = [""] * len(labels)
    for stratum in sorted(strata):
        stratum_units = strata[stratum]
        rng.shuffle(stratum_units)
        stratum_units.sort(key=len, reverse=True)  # stable: big groups placed first
        size = sum(len(unit) for unit in stratum_units)
        filled = dict.fromkeys(SPLITS, 0)
        for unit in stratum_units:
            goal = {s: share[s] * size for s in SPLITS}
            split = max(SPLITS, key=lambda s: goal[s] - filled[s])
            filled[split] += len(unit)
            for index in unit:
                out[index] = split
    return out
