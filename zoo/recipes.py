"""Training recipes: named ways to train a digits classifier (digits-cnn-recipes).

A generalization predictor trained on one recipe's zoo may only have learned what that
recipe's weights look like (AdamW's per-coordinate steps, one batch size, no augmentation).
digits-cnn-recipes draws, per model and keyed by (seed, k), one of these named recipes; each
fixes the optimizer and its momentum, the learning-rate schedule, the batch size and the
augmentation, and its own ranges for the learning rate, weight decay, training length and
data fraction. Architecture, init scale, dropout and label noise are drawn as in digits-cnn.
Models with different recipes never share a training group (the recipe is in the group key).

``adamw-constant`` is exactly digits-cnn's recipe (same ranges); the others are held out in
turn by ``bench/quality.py --loro`` (leave-one-recipe-out).
"""

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.rng import hash_uniform


@dataclass(frozen=True)
class Recipe:
    """How a model is trained; the ``*_range`` knobs are drawn per model (log-uniform for
    lr, weight decay and steps; uniform for train fraction and input noise)."""

    name: str
    optimizer: str  # "adamw" (decoupled weight decay) or "sgd" (heavy ball, L2 in the gradient)
    momentum: float  # AdamW's beta1, or SGD's momentum
    schedule: str  # "constant", "cosine" (to 0 at the last step), "step" (x0.1 at 1/2, 3/4)
    batch_size: int
    shift: int  # augmentation: each image moved by up to this many pixels (zero fill)
    lr_range: tuple[float, float]
    weight_decay_range: tuple[float, float]
    steps_range: tuple[int, int]
    train_fraction_range: tuple[float, float]
    input_noise_range: tuple[float, float]  # std of Gaussian noise added to each input pixel


NOISE_SALTS = (2, 3)  # hash salts (zoo/rng.py): 1 is the minibatch draw, 100+ dropout
SHIFT_SALT = 4
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("adamw-constant", "adamw", 0.9, "constant", 32, 0,
               (5e-4, 3e-2), (1e-5, 1.0), (50, 500), (0.05, 1.0), (0.0, 0.0)),
        Recipe("sgd-cosine", "sgd", 0.9, "cosine", 64, 0,
               (3e-3, 1e-1), (1e-6, 1e-2), (100, 800), (0.2, 1.0), (0.0, 0.0)),
        Recipe("adamw-step-noise", "adamw", 0.7, "step", 16, 0,
               (1e-3, 3e-2), (1e-4, 1e-1), (100, 800), (0.05, 0.5), (0.05, 0.5)),
        Recipe("sgd-shift", "sgd", 0.5, "constant", 128, 1,
               (1e-2, 5e-1), (1e-6, 1e-3), (30, 300), (0.5, 1.0), (0.0, 0.0)),
    )
}
RECIPE_NAMES = tuple(RECIPES)
STEPS_SCALE = 1.0  # tests shorten training by shrinking every recipe's step range


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_recipe_hparams(rng: np.random.Generator) -> dict[str, Any]:
    """A recipe drawn uniformly by name, then its per-model knobs, as manifest hparams."""
    recipe = RECIPES[RECIPE_NAMES[int(rng.integers(len(RECIPE_NAMES)))]]
    lo, hi = recipe.steps_range
    return {
        "recipe": recipe.name,
        "optimizer": recipe.optimizer,
        "momentum": recipe.momentum,
        "schedule": recipe.schedule,
        "shift": recipe.shift,
        "lr": _log_uniform(rng, *recipe.lr_range),
        "weight_decay": _log_uniform(rng, *recipe.weight_decay_range),
        "init_scale": _log_uniform(rng, 0.2, 3.0),
        "dropout": float(rng.uniform(0.0, 0.5)),
        "train_fraction": float(rng.uniform(*recipe.train_fraction_range)),
        "label_noise": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.8)),
        "input_noise": float(rng.uniform(*recipe.input_noise_range)),
        "steps": max(1, round(_log_uniform(rng, lo * STEPS_SCALE, hi * STEPS_SCALE))),
        "batch_size": recipe.batch_size,
    }


def describe() -> list[dict[str, Any]]:
    """The recipe table, as recorded in zoo.json."""
    return [asdict(r) for r in RECIPES.values()]


def augment(
    x: torch.Tensor, keys: torch.Tensor, step: int, input_noise: torch.Tensor, shift: int
) -> torch.Tensor:
    """A training batch ``x`` (models, examples, C, H, W) as the recipe augments it.

    Each image is moved by a per-example offset in [-shift, shift]² (zero fill), then gets
    Gaussian noise of its model's std ``input_noise`` (models,). Every draw comes from the
    counter hash keyed by the model (``keys``), the step and the example's position, so it
    does not depend on the rest of the group.
    """
    a, b, c, h, w = x.shape
    if shift:
        off = (hash_uniform(keys, step, SHIFT_SALT, (b, 2)) * (2 * shift + 1)).long()
        padded = F.pad(x, (shift, shift, shift, shift))
        rows = off[..., :1] + torch.arange(h, device=x.device)  # (a, b, h)
        cols = off[..., 1:] + torch.arange(w, device=x.device)  # (a, b, w)
        index = rows[:, :, None, :, None].expand(a, b, c, h, padded.shape[-1])
        padded = padded.gather(3, index)
        x = padded.gather(4, cols[:, :, None, None, :].expand(a, b, c, h, w))
    if bool((input_noise > 0).any()):
        u1 = hash_uniform(keys, step, NOISE_SALTS[0], (b, c, h, w))
        u2 = hash_uniform(keys, step, NOISE_SALTS[1], (b, c, h, w))
        z = torch.sqrt(-2 * torch.log1p(-u1)) * torch.cos(2 * torch.pi * u2)  # Box-Muller
        x = x + input_noise.view(a, 1, 1, 1, 1) * z
    return x
