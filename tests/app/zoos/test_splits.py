"""Splits are a pure, seeded function; groups never straddle splits; labels are stratified."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app.zoos.splits import SPLITS, assign_splits

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}

items = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", None]), st.one_of(st.none(), st.integers(0, 12))),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(items=items, seed=st.integers(0, 2**31 - 1))
def test_every_item_gets_one_split_groups_stay_whole_and_seeds_repeat(items, seed) -> None:
    labels = [label for label, _ in items]
    groups = [None if g is None else f"g{g}" for _, g in items]
    splits = assign_splits(labels, groups, FRACTIONS, seed)
    assert len(splits) == len(items) and set(splits) <= set(SPLITS)
    by_group: dict[str, set[str]] = {}
    for group, split in zip(groups, splits, strict=True):
        if group is not None:
            by_group.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    assert assign_splits(labels, groups, FRACTIONS, seed) == splits


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(20, 200), min_size=1, max_size=4), seed=st.integers(0, 10**6))
def test_ungrouped_items_follow_the_fractions_in_every_class(counts, seed) -> None:
    labels = [f"class{c}" for c, n in enumerate(counts) for _ in range(n)]
    splits = assign_splits(labels, [None] * len(labels), FRACTIONS, seed)
    per_class = Counter(zip(labels, splits, strict=True))
    for c, n in enumerate(counts):
        for split, fraction in FRACTIONS.items():
            assert abs(per_class[f"class{c}", split] - fraction * n) <= 1


def test_different_seeds_give_different_splits() -> None:
    labels = ["x"] * 100
    splits = {tuple(assign_splits(labels, [None] * 100, FRACTIONS, seed)) for seed in range(5)}
    assert len(splits) == 5
