import torch

from zoo import families
from zoo.rng import hash_uniform


def test_hash_values_do_not_depend_on_other_models_or_padded_width() -> None:
    keys = torch.tensor([11, 22, 33])
    wide = hash_uniform(keys, step=5, salt=100, shape=(4, 16))
    narrow = hash_uniform(keys[1:2], step=5, salt=100, shape=(4, 8))
    assert torch.equal(wide[1, :, :8], narrow[0])
    assert wide.min() >= 0 and wide.max() < 1
    assert not torch.equal(wide[0], wide[1])
    assert not torch.equal(wide, hash_uniform(keys, step=6, salt=100, shape=(4, 16)))


def test_hash_is_roughly_uniform() -> None:
    u = hash_uniform(torch.arange(50), step=0, salt=1, shape=(2000,))
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs((u < 0.1).float().mean().item() - 0.1) < 0.01


def test_model_spec_depends_only_on_seed_and_index() -> None:
    fam = families.get_family("digits-mixed")
    assert fam.spec(3, 17) == fam.spec(3, 17)
    assert fam.spec(3, 17) != fam.spec(4, 17)
    kinds = {fam.spec(0, k).arch["kind"] for k in range(60)}
    assert kinds == {"mlp", "cnn", "cnn-bn", "resnet"}


def test_sampled_hyperparameters_stay_in_their_ranges() -> None:
    fam = families.get_family("digits-cnn")
    for k in range(200):
        spec = fam.spec(0, k)
        h = spec.hparams
        assert 5e-4 <= h["lr"] <= 3e-2
        assert 0.05 <= h["train_fraction"] <= 1.0
        assert 0.0 <= h["label_noise"] <= 0.8 and 0.0 <= h["dropout"] <= 0.5
        assert families.STEPS_RANGE[0] <= h["steps"] <= families.STEPS_RANGE[1]
        assert 2 <= len(spec.arch["widths"]) <= 3
        assert set(spec.arch["widths"]) <= set(families.CONV_WIDTHS)


def test_inr_views_of_one_image_share_its_split() -> None:
    fam = families.get_family("digits-inr")
    specs = [fam.spec(7, k) for k in range(families.INR_VIEWS * 40)]
    by_image: dict[int, set[str]] = {}
    for s in specs:
        by_image.setdefault(s.labels["image"], set()).add(s.split)
        assert s.labels["view"] == s.index % families.INR_VIEWS
    assert all(len(splits) == 1 for splits in by_image.values())
    assert {next(iter(v)) for v in by_image.values()} == {"train", "val", "test"}


def test_model_splits_are_fixed_by_seed() -> None:
    a = [families.split_of(5, k) for k in range(300)]
    assert a == [families.split_of(5, k) for k in range(300)]
    assert a != [families.split_of(6, k) for k in range(300)]
    assert 0.55 < a.count("train") / 300 < 0.85
