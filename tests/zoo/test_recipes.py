"""digits-cnn-recipes: named training recipes, the SGD/schedule trainer path, augmentation."""

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_train import _batches, _group, _slice

import zoo
from zoo import families, nets, recipes
from zoo.recipes import RECIPES, augment
from zoo.train import Optimizer, lr_factor, train_group


def test_each_model_draws_a_named_recipe_within_its_ranges() -> None:
    fam = families.get_family("digits-cnn-recipes")
    seen = set()
    for k in range(200):
        spec = fam.spec(0, k)
        h = spec.hparams
        r = RECIPES[h["recipe"]]
        seen.add(r.name)
        assert (h["optimizer"], h["momentum"], h["schedule"], h["batch_size"], h["shift"]) == (
            r.optimizer, r.momentum, r.schedule, r.batch_size, r.shift)
        assert r.lr_range[0] <= h["lr"] <= r.lr_range[1]
        assert r.weight_decay_range[0] <= h["weight_decay"] <= r.weight_decay_range[1]
        assert r.steps_range[0] <= h["steps"] <= r.steps_range[1]
        assert r.train_fraction_range[0] <= h["train_fraction"] <= r.train_fraction_range[1]
        assert r.input_noise_range[0] <= h["input_noise"] <= r.input_noise_range[1]
        assert spec == fam.spec(0, k)
    assert seen == set(RECIPES)
    assert {RECIPES[n].optimizer for n in seen} == set(recipes.OPTIMIZERS)
    assert {RECIPES[n].schedule for n in seen} == set(recipes.SCHEDULES)


def test_the_default_recipe_is_digits_cnns() -> None:
    r = RECIPES["adamw-constant"]
    assert (r.optimizer, r.momentum, r.schedule, r.batch_size) == ("adamw", 0.9, "constant",
                                                                   families.BATCH_SIZE)
    # digits-cnn's steps are log-U[50, 500] (families.STEPS_RANGE, which tests shorten)
    assert r.steps_range == (50, 500) and r.input_noise_range == (0.0, 0.0)
    assert (r.lr_range, r.weight_decay_range, r.train_fraction_range) == (
        (5e-4, 3e-2), (1e-5, 1.0), (0.05, 1.0))


def test_recipes_never_share_a_training_group_and_old_families_keep_their_keys() -> None:
    rec = families.get_family("digits-cnn-recipes")
    keys = {families.spec_group_key(rec.spec(0, k)) for k in range(100)}
    assert {k[-1] for k in keys} == set(RECIPES)
    cnn = families.get_family("digits-cnn")
    for k in range(20):
        spec = cnn.spec(0, k)
        assert families.spec_group_key(spec) == families.group_key(spec.arch)


def test_lr_schedules() -> None:
    budgets = torch.tensor([4, 8])
    assert torch.equal(lr_factor("constant", 3, budgets), torch.ones(2))
    torch.testing.assert_close(lr_factor("cosine", 2, budgets),
                               torch.tensor([0.5, 0.5 * (1 + math.cos(math.pi / 4))]))
    assert lr_factor("step", 3, budgets).tolist() == pytest.approx([0.01, 1.0])
    assert lr_factor("step", 4, budgets).tolist() == pytest.approx([0.01, 0.1])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 0, budgets)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_group_sgd_matches_torch_sgd_with_momentum_weight_decay_and_schedule(
    schedule: str,
) -> None:
    torch.manual_seed(2)
    acts = ["relu", "tanh"]
    models = [nets.ConvNet([4, 8], acts[0]), nets.ConvNet([12, 16], acts[1])]
    lr, wd, steps = [0.05, 0.2], [1e-3, 0.0], [6, 4]
    template, state = _group(models, nets.ConvNet([16, 16], "relu"), acts, lr, wd, steps)
    batches = _batches(len(models), max(steps))
    final = train_group(
        template, state, lambda s, alive: (batches[s][0][alive], batches[s][1][alive], False),
        "cross_entropy", Optimizer("sgd", 0.9, schedule),
    )
    for k, model in enumerate(models):
        ref = copy.deepcopy(model).train()
        opt = torch.optim.SGD(ref.parameters(), lr=lr[k], momentum=0.9, weight_decay=wd[k])
        factor = [float(lr_factor(schedule, s, torch.tensor([steps[k]]))) for s in range(9)]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, f=factor: f[s])
        for s in range(steps[k]):
            opt.zero_grad()
            F.cross_entropy(ref(batches[s][0][k]), batches[s][1][k]).backward()
            opt.step()
            sched.step()
        for name, p in ref.named_parameters():
            torch.testing.assert_close(_slice(final.params[name], k, p.shape), p.detach(),
                                       atol=2e-5, rtol=1e-4)
            outside = final.params[name][k].clone()
            outside[tuple(slice(0, s) for s in p.shape)] = 0
            assert torch.count_nonzero(outside) == 0, f"padding of {name} moved"


def test_group_adamw_with_another_beta1_matches_torch() -> None:
    torch.manual_seed(3)
    models = [nets.ConvNet([4, 8], "silu"), nets.ConvNet([8, 4], "silu")]
    lr, wd, steps = [3e-3, 1e-2], [1e-2, 0.0], [5, 3]
    template, state = _group(models, nets.ConvNet([16, 16], "relu"), ["silu"] * 2, lr, wd, steps)
    batches = _batches(len(models), max(steps))
    final = train_group(
        template, state, lambda s, alive: (batches[s][0][alive], batches[s][1][alive], False),
        "cross_entropy", Optimizer("adamw", 0.7, "constant"),
    )
    for k, model in enumerate(models):
        ref = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(ref.parameters(), lr=lr[k], betas=(0.7, 0.999),
                                weight_decay=wd[k], eps=1e-8)
        for s in range(steps[k]):
            opt.zero_grad()
            F.cross_entropy(ref(batches[s][0][k]), batches[s][1][k]).backward()
            opt.step()
        for name, p in ref.named_parameters():
            torch.testing.assert_close(_slice(final.params[name], k, p.shape), p.detach(),
                                       atol=2e-5, rtol=1e-4)


def test_augmentation_shifts_and_adds_noise_per_model_independently_of_the_group() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 64, 1, 8, 8, generator=g)
    keys = torch.tensor([5, 6, 7])
    noise = torch.tensor([0.0, 0.3, 0.0])
    shifted = augment(x, keys, 4, torch.zeros(3), shift=1)
    # every output is the input moved by one of the nine offsets (zero fill)
    padded = F.pad(x, (1, 1, 1, 1))
    for a in range(3):
        for b in range(64):
            crops = [padded[a, b, :, i:i + 8, j:j + 8] for i in range(3) for j in range(3)]
            assert any(torch.equal(shifted[a, b], c) for c in crops)
    assert not torch.equal(shifted, x)
    noisy = augment(x, keys, 4, noise, shift=0)
    assert torch.equal(noisy[0], x[0]) and torch.equal(noisy[2], x[2])
    assert abs((noisy[1] - x[1]).std().item() - 0.3) < 0.02
    assert abs((noisy[1] - x[1]).mean().item()) < 0.02
    alone = augment(x[1:2], keys[1:2], 4, noise[1:2], shift=1)
    assert torch.equal(alone[0], augment(x, keys, 4, noise, shift=1)[1])


@pytest.fixture(scope="module")
def recipes_zoo(fast_settings: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipes, "STEPS_SCALE", 0.05)  # 2-40 steps
        d = tmp_path_factory.mktemp("recipes")
        yield zoo.build("digits-cnn-recipes", 16, 1, d, "cpu", group_size=2)


def test_recipes_zoo_records_each_models_recipe(recipes_zoo: Path) -> None:
    rows = zoo.read_manifest(recipes_zoo)
    info = zoo.read_zoo_json(recipes_zoo)
    assert len(rows) == 16
    assert [r["name"] for r in info["recipes"]] == list(RECIPES)
    fam = families.get_family("digits-cnn-recipes")
    for r in rows:
        assert r["hparams"] == json.loads(json.dumps(fam.spec(1, r["index"]).hparams))
        assert 0.0 <= r["target"] <= 1.0
        assert math.isfinite(r["metrics"]["train_loss"])
    assert len({r["hparams"]["recipe"] for r in rows}) >= 3
