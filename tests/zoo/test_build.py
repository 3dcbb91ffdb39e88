"""Whole builds: determinism, resumption, extension, split hygiene, checkpoints that load."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

import graphs
import zoo
from zoo import families
from zoo.data import all_digits, digits_split, inr_grid, inr_targets
from zoo.inr import psnr
from zoo.manifest import MANIFEST, checkpoint_name, rejected_name

from .conftest import GROUP, SEED, SIZE


def _files(d: Path) -> dict[str, object]:
    """Every file but zoo.json: text files as bytes, checkpoints as (metadata, tensor bytes).

    (safetensors writes its header metadata in hash-map order, so raw bytes may differ.)
    """
    out: dict[str, object] = {}
    for p in sorted(d.iterdir()):
        if p.name == "zoo.json":
            continue
        if p.suffix == ".safetensors":
            with safe_open(str(p), framework="pt") as f:
                tensors = {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}  # noqa: SIM118
                out[p.name] = (f.metadata(), tensors)
        else:
            out[p.name] = p.read_bytes()
    return out


def test_same_seed_gives_identical_manifest_and_tensors(cnn_zoo: Path, tmp_path: Path) -> None:
    again = zoo.build("digits-cnn", SIZE, SEED, tmp_path / "again", "cpu", group_size=GROUP)
    assert _files(again) == _files(cnn_zoo)


def test_resumed_build_equals_uninterrupted_one(cnn_zoo: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    shutil.copytree(cnn_zoo, resumed)
    for k in (0, 5, 11):
        (resumed / checkpoint_name(k)).unlink()
    (resumed / MANIFEST).unlink()
    (resumed / ".000005.safetensors.partial").write_bytes(b"half-written")
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    zoo.build("digits-cnn", SIZE, SEED, resumed, "cpu", progress=progress, group_size=GROUP)
    assert seen[0] == (SIZE - 3, SIZE) and seen[-1] == (SIZE, SIZE)
    assert {k: v for k, v in _files(resumed).items() if not k.startswith(".")} == _files(cnn_zoo)


def test_growing_a_zoo_equals_building_it_at_full_size(cnn_zoo: Path, tmp_path: Path) -> None:
    grown = tmp_path / "grown"
    zoo.build("digits-cnn", SIZE // 2, SEED, grown, "cpu", group_size=GROUP)
    assert len(zoo.read_manifest(grown)) == SIZE // 2
    zoo.build("digits-cnn", SIZE, SEED, grown, "cpu", group_size=GROUP)
    assert _files(grown) == _files(cnn_zoo)


def test_a_directory_refuses_another_seed_or_group_size(cnn_zoo: Path, tmp_path: Path) -> None:
    d = tmp_path / "z"
    shutil.copytree(cnn_zoo, d)
    with pytest.raises(ValueError, match="refusing"):
        zoo.build("digits-cnn", SIZE, SEED + 1, d, "cpu", group_size=GROUP)
    with pytest.raises(ValueError, match="refusing"):
        zoo.build("digits-cnn", SIZE, SEED, d, "cpu", group_size=GROUP * 2)


def test_manifest_rows_and_zoo_json(cnn_zoo: Path) -> None:
    rows = zoo.read_manifest(cnn_zoo)
    info = zoo.read_zoo_json(cnn_zoo)
    assert [r["index"] for r in rows] == list(range(SIZE))
    assert info["complete"] and info["size"] == SIZE and info["checkpoints"] == SIZE
    assert info["digits"] == {
        "source": "sklearn.datasets.load_digits",
        "split_seed": 0,
        "train": 1347,
        "test": 450,
    }
    for r in rows:
        spec = families.get_family("digits-cnn").spec(SEED, r["index"])
        assert r["split"] == spec.split and r["hparams"] == spec.hparams and r["arch"] == spec.arch
        assert r["target"] == r["metrics"]["test_accuracy"]
        assert 0.0 <= r["metrics"]["train_accuracy"] <= 1.0
    stats = zoo.stats(cnn_zoo)
    assert stats["checkpoints"] == SIZE and sum(stats["splits"].values()) == SIZE
    assert stats["metrics"]["test_accuracy"]["q00"] <= stats["metrics"]["test_accuracy"]["q100"]


def _reproduce_accuracies(zoo_dir: Path) -> None:
    digits = digits_split()
    for row in zoo.read_manifest(zoo_dir):
        ckpt = graphs.load(zoo_dir / row["file"])
        assert json.loads(ckpt.metadata["weightscope.zoo"]) == row
        module = graphs.build_module(ckpt.architecture)
        module.load_state_dict(ckpt.tensors)
        module.eval()
        with torch.no_grad():
            logits = module(digits.x_test)
        assert (logits.argmax(1) == digits.y_test).float().mean().item() == row["metrics"][
            "test_accuracy"
        ]
        assert F.cross_entropy(logits, digits.y_test).item() == pytest.approx(
            row["metrics"]["test_loss"], abs=1e-5
        )


def test_every_checkpoint_loads_and_reproduces_its_accuracy(cnn_zoo: Path) -> None:
    _reproduce_accuracies(cnn_zoo)


def test_mixed_zoo_checkpoints_reproduce_their_accuracy(
    fast_settings: None, tmp_path: Path
) -> None:
    # Seed 4's first 4 models are one of each kind (MLP, CNN, BN-CNN, ResNet).
    d = zoo.build("digits-mixed", 4, 4, tmp_path / "mixed", "cpu", group_size=2)
    assert set(zoo.stats(d)["kinds"]) == {"mlp", "cnn", "cnn-bn", "resnet"}
    _reproduce_accuracies(d)


def test_inr_zoo_labels_splits_and_psnr(fast_settings: None, tmp_path: Path) -> None:
    size = 2 * families.INR_VIEWS
    d = zoo.build("digits-inr", size, SEED, tmp_path / "inr", "cpu", group_size=GROUP)
    rows = zoo.read_manifest(d)
    labels = all_digits()[1]
    assert len(rows) == size
    grid = inr_grid(families.INR_GRID)
    targets = inr_targets(all_digits()[0], families.INR_GRID)
    for r in rows:
        image = r["labels"]["image"]
        assert r["target"] == r["labels"]["digit"] == labels[image]
        assert r["split"] == families.split_of(SEED, image)
        ckpt = graphs.load(d / r["file"])
        module = graphs.build_module(ckpt.architecture)
        module.load_state_dict(ckpt.tensors)
        with torch.no_grad():
            mse = torch.mean((module(grid) - targets[image]) ** 2).item()
        assert psnr(mse) == pytest.approx(r["metrics"]["psnr"], abs=1e-3)
    views = {(r["labels"]["image"], r["labels"]["view"]) for r in rows}
    assert len(views) == size


def test_inr_fits_under_the_psnr_floor_are_rejected_and_not_refitted(
    fast_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(families, "INR_PSNR_FLOOR_DB", 1000.0)
    d = zoo.build("digits-inr", 4, SEED, tmp_path / "inr", "cpu", group_size=GROUP)
    assert zoo.read_manifest(d) == []
    assert zoo.read_zoo_json(d)["rejected"] == [0, 1, 2, 3]
    assert all((d / rejected_name(k)).exists() for k in range(4))
    calls: list[int] = []
    monkeypatch.setattr("zoo.builder._train", lambda *a: calls.append(1) or iter(()))
    zoo.build("digits-inr", 4, SEED, d, "cpu", group_size=GROUP)
    assert calls == []
