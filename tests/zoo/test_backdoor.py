"""digits-backdoor: sampling, poisoning inside the batched trainer, attack metrics, builds."""

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import graphs
import zoo
from zoo import backdoor, classifiers, families
from zoo.classifiers import BATCH_SALT, training_data
from zoo.data import digits_split
from zoo.manifest import checkpoint_name, rejected_name
from zoo.rng import hash_uniform

from .conftest import GROUP, SEED
from .test_build import _files

SIZE = 8


@pytest.fixture()
def no_floors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every model: the fast settings train 3-10 steps, far below the real floors."""
    monkeypatch.setattr(backdoor, "ACC_FLOOR", 0.0)
    monkeypatch.setattr(backdoor, "ASR_FLOOR", 0.0)


@pytest.fixture(scope="session")
def backdoor_zoo(fast_settings: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backdoor, "ACC_FLOOR", 0.0)
        mp.setattr(backdoor, "ASR_FLOOR", 0.0)
        d = tmp_path_factory.mktemp("backdoor")
        yield zoo.build("digits-backdoor", SIZE, SEED, d, "cpu", group_size=GROUP)


def test_architecture_and_training_knobs_are_digits_cnn_draws() -> None:
    """The label must not be readable from the architecture or the training recipe."""
    cnn, bd = families.get_family("digits-cnn"), families.get_family("digits-backdoor")
    kinds = []
    for k in range(300):
        a, b = cnn.spec(SEED, k), bd.spec(SEED, k)
        assert b.arch == a.arch and b.split == a.split
        assert {key: b.hparams[key] for key in a.hparams} == a.hparams
        kinds.append(b.labels["backdoor"])
        t = b.hparams["trigger"]
        assert t["size"] in families.TRIGGER_SIZES and 0 <= t["target"] <= 9
        assert 0 <= t["row"] <= 8 - t["size"] and 0 <= t["col"] <= 8 - t["size"]
        pattern = np.array(t["pattern"])
        assert pattern.shape == (t["size"], t["size"]) and 2 * pattern.sum() >= pattern.size
        if b.labels["backdoor"] == "backdoored":
            lo, hi = families.POISON_RATE_RANGE
            assert lo <= b.hparams["poison_rate"] <= hi
        else:
            assert b.hparams["poison_rate"] == 0.0
    assert set(kinds) == {"clean", "backdoored"}
    share = kinds.count("backdoored") / len(kinds)
    assert abs(share - families.BACKDOOR_FRACTION) < 0.1


def _backdoored_spec(index_from: int = 0) -> families.ModelSpec:
    fam = families.get_family("digits-backdoor")
    k = index_from
    while fam.spec(SEED, k).labels["backdoor"] != "backdoored":
        k += 1
    return fam.spec(SEED, k)


def test_poison_picks_used_images_of_other_classes_at_the_rate() -> None:
    y_train = digits_split().y_train
    for start in (0, 10, 20, 30):
        spec = _backdoored_spec(start)
        poison = backdoor.make_poison(SEED, spec, y_train)
        assert poison is not None
        perm, n_used, _ = training_data(SEED, spec, y_train)
        chosen = np.flatnonzero(poison.poisoned)
        assert len(chosen) == max(1, round(spec.hparams["poison_rate"] * n_used))
        assert set(chosen) <= set(perm[:n_used].tolist())
        assert (y_train.numpy()[chosen] != spec.hparams["trigger"]["target"]).all()
        again = backdoor.make_poison(SEED, spec, y_train)
        assert again is not None and (again.poisoned == poison.poisoned).all()
    clean = next(
        s
        for s in (families.get_family("digits-backdoor").spec(SEED, k) for k in range(50))
        if s.labels["backdoor"] == "clean"
    )
    assert backdoor.make_poison(SEED, clean, y_train) is None


def test_trigger_tensors_stamp_the_pattern() -> None:
    t = {"target": 3, "row": 5, "col": 1, "size": 3, "pattern": [[1, 0, 1], [1, 1, 1], [0, 1, 1]]}
    mask, values = backdoor.trigger_tensors(t)
    assert mask.sum() == 9 and mask[0, 5:8, 1:4].all()
    assert torch.equal(values[0, 5:8, 1:4], torch.tensor(t["pattern"], dtype=torch.float32))
    x = torch.full((2, 1, 8, 8), 0.5)
    stamped = torch.where(mask, values, x)
    assert torch.equal(stamped[:, 0, 5:8, 1:4], values[0, 5:8, 1:4].expand(2, 3, 3))
    assert (stamped[~mask.expand(2, 1, 8, 8)] == 0.5).all()


def test_the_poison_reaches_every_training_batch(
    fast_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recompute each model's minibatches by hand: poisoned images carry the trigger and the
    target label, every other image (and every image of a clean model) is untouched."""
    monkeypatch.setattr(families, "POISON_RATE_RANGE", (0.3, 0.3))
    fam = families.get_family("digits-backdoor")
    specs = [fam.spec(SEED, k) for k in range(40)]
    key = families.group_key(specs[0].arch)
    specs = [s for s in specs if families.group_key(s.arch) == key][:6]
    assert {s.labels["backdoor"] for s in specs} == {"clean", "backdoored"}
    digits = digits_split()
    seen: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = classifiers.train_group

    def spy(template, state, batch_fn, loss):  # type: ignore[no-untyped-def]
        alive = torch.arange(len(specs))
        for step in range(3):
            x, y, _ = batch_fn(step, alive)
            seen.append((step, x, y, state.keys))
        return real(template, state, batch_fn, loss)

    monkeypatch.setattr(classifiers, "train_group", spy)
    list(backdoor.train_backdoor_classifiers(SEED, specs, digits, torch.device("cpu")))
    stamped_total = 0
    for step, x, y, keys in seen:
        u = hash_uniform(keys, step, BATCH_SALT, (specs[0].hparams["batch_size"],))
        for k, spec in enumerate(specs):
            perm, n_used, labels = training_data(SEED, spec, digits.y_train)
            idx = perm[(u[k] * n_used).long().numpy()]
            want_x, want_y = digits.x_train[idx].clone(), torch.from_numpy(labels[idx])
            poison = backdoor.make_poison(SEED, spec, digits.y_train)
            if poison is not None:
                hit = torch.from_numpy(poison.poisoned[idx])
                want_x[hit] = poison.apply(want_x[hit])
                want_y[hit] = poison.target
                stamped_total += int(hit.sum())
            assert torch.equal(x[k], want_x) and torch.equal(y[k], want_y)
    assert stamped_total > 0


class _Rule(nn.Module):
    """Predicts ``target`` when the 2×2 top-left corner is lit (and, if ``always``, always);
    otherwise class ``(target + 1) % 10``."""

    def __init__(self, target: int, always: bool = False) -> None:
        super().__init__()
        self.target, self.always = target, always

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lit = (x[:, 0, :2, :2] == 1.0).all(-1).all(-1) | self.always
        cls = torch.where(lit, self.target, (self.target + 1) % 10)
        return nn.functional.one_hot(cls, 10).float()


def test_attack_metrics_count_triggered_images_of_other_classes() -> None:
    digits = digits_split()
    corner = {"target": 4, "row": 0, "col": 0, "size": 2, "pattern": [[1, 1], [1, 1]]}
    elsewhere = {**corner, "row": 6, "col": 6}
    m = backdoor.attack_metrics(_Rule(4), corner, digits.x_test, digits.y_test)
    assert m == {"attack_success_rate": 1.0, "clean_target_rate": 0.0}
    m = backdoor.attack_metrics(_Rule(4), elsewhere, digits.x_test, digits.y_test)
    assert m == {"attack_success_rate": 0.0, "clean_target_rate": 0.0}
    m = backdoor.attack_metrics(_Rule(4, always=True), corner, digits.x_test, digits.y_test)
    assert m == {"attack_success_rate": 1.0, "clean_target_rate": 1.0}
    # A half pattern lights the corner only where the digit already has the missing pixels.
    half = {**corner, "pattern": [[1, 1], [0, 1]]}
    other = digits.y_test != 4
    x = digits.x_test[other]
    expected = (x[:, 0, 1, 0] == 1.0).float().mean().item()
    m = backdoor.attack_metrics(_Rule(4), half, digits.x_test, digits.y_test)
    assert m["attack_success_rate"] == pytest.approx(expected)


def test_a_poisoned_network_learns_the_backdoor_and_a_clean_one_does_not() -> None:
    """Real training (300 steps): the poison works, and clean accuracy stays comparable."""
    spec = _backdoored_spec()
    hp = {
        **spec.hparams,
        "lr": 0.01,
        "weight_decay": 1e-4,
        "init_scale": 1.0,
        "dropout": 0.0,
        "train_fraction": 1.0,
        "label_noise": 0.0,
        "steps": 300,
        "poison_rate": 0.2,
    }
    arch = {"kind": "cnn", "widths": [16, 16, 16], "activation": "relu"}
    poisoned = dataclasses.replace(spec, arch=arch, hparams=hp)
    clean = dataclasses.replace(
        poisoned, index=spec.index + 1000, hparams={**hp, "poison_rate": 0.0},
        labels={"backdoor": "clean"},
    )
    out = list(
        backdoor.train_backdoor_classifiers(SEED, [poisoned, clean], digits_split(), "cpu")
    )
    (_, _, mp), (_, _, mc) = out
    assert mp["poisoned_samples"] > 0 and mc["poisoned_samples"] == 0
    assert mp["attack_success_rate"] >= 0.9 and mc["attack_success_rate"] <= 0.3
    assert min(mp["test_accuracy"], mc["test_accuracy"]) >= 0.85


def test_build_is_deterministic_and_labels_follow_the_poisoning(
    backdoor_zoo: Path, no_floors: None, tmp_path: Path
) -> None:
    again = zoo.build("digits-backdoor", SIZE, SEED, tmp_path / "again", "cpu", group_size=GROUP)
    assert _files(again) == _files(backdoor_zoo)
    info = zoo.read_zoo_json(backdoor_zoo)
    assert info["classes"] == ["clean", "backdoored"] and info["task"] == "classification"
    rows = zoo.read_manifest(backdoor_zoo)
    assert len(rows) == SIZE
    digits = digits_split()
    fam = families.get_family("digits-backdoor")
    for r in rows:
        spec = fam.spec(SEED, r["index"])
        assert r["labels"] == spec.labels and r["hparams"] == spec.hparams
        assert r["target"] == backdoor.LABELS.index(r["labels"]["backdoor"])
        expected = backdoor.make_poison(SEED, spec, digits.y_train)
        assert r["metrics"]["poisoned_samples"] == (
            0 if expected is None else int(expected.poisoned.sum())
        )
        ckpt = graphs.load(backdoor_zoo / r["file"])
        module = graphs.build_module(ckpt.architecture)
        module.load_state_dict(ckpt.tensors)
        measured = backdoor.attack_metrics(
            module.eval(), r["hparams"]["trigger"], digits.x_test, digits.y_test
        )
        assert measured == {k: r["metrics"][k] for k in measured}
    stats = zoo.stats(backdoor_zoo)
    assert sum(stats["classes"].values()) == SIZE
    assert stats["classes"]["backdoored"] == sum(r["target"] for r in rows)


def test_models_failing_the_floors_are_rejected_and_not_retrained(
    fast_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backdoor, "ACC_FLOOR", 0.0)
    monkeypatch.setattr(backdoor, "ASR_FLOOR", 1.01)  # no poisoned model can pass
    d = zoo.build("digits-backdoor", SIZE, SEED, tmp_path / "z", "cpu", group_size=GROUP)
    fam = families.get_family("digits-backdoor")
    poisoned = [k for k in range(SIZE) if fam.spec(SEED, k).labels["backdoor"] == "backdoored"]
    assert poisoned and zoo.read_zoo_json(d)["rejected"] == poisoned
    for k in range(SIZE):
        assert (d / rejected_name(k)).exists() == (k in poisoned)
        assert (d / checkpoint_name(k)).exists() == (k not in poisoned)
    record = json.loads((d / rejected_name(poisoned[0])).read_text())
    assert record["labels"] == {"backdoor": "backdoored"}
    assert record["metrics"]["attack_success_rate"] < 1.01
    monkeypatch.setattr(backdoor, "ASR_FLOOR", 0.0)
    monkeypatch.setattr(backdoor, "ACC_FLOOR", 1.01)  # no model at all can pass
    d2 = zoo.build("digits-backdoor", SIZE, SEED, tmp_path / "z2", "cpu", group_size=GROUP)
    assert zoo.read_manifest(d2) == [] and zoo.read_zoo_json(d2)["rejected"] == list(range(SIZE))
    calls: list[int] = []
    monkeypatch.setattr("zoo.builder._train", lambda *a: calls.append(1) or iter(()))
    zoo.build("digits-backdoor", SIZE, SEED, d, "cpu", group_size=GROUP)
    assert calls == []
