"""Zoo families: how model k of a zoo is chosen (architecture + hyperparameters) from (seed, k).

Sampling model k depends only on (seed, k), so a zoo of size 16 starts with the zoo of size 8.
Models of one family whose architectures differ only in widths share a *group key* and are
trained together, zero-padded to the group's widest member (see zoo/train.py).
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from zoo import nets, recipes
from zoo.rng import STREAM_HPARAMS, STREAM_SPLIT, model_rng

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}

CONV_WIDTHS = (4, 8, 12, 16)
MLP_WIDTHS = (16, 32, 48, 64)
BATCH_SIZE = 32
STEPS_RANGE = (50, 500)  # log-uniform minibatch steps
# Sigmoid CNNs this shallow and short-trained sit at chance; they would flood the low end.
CLASSIFIER_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "leaky_relu")

# INR fitting (digits-inr): grid, steps and the PSNR floor are justified in ZOOS.md.
INR_VIEWS = 5
INR_GRID = 16
INR_STEPS = 200
INR_LR = 1e-3
INR_W0 = 15.0
INR_PSNR_FLOOR_DB = 40.0
INR_CHECK_GRID = 32  # off-grid PSNR: how well the INR renders the image between fitted points

# digits-backdoor: the trigger and poisoning ranges, and the rules that decide a model's label,
# are justified in ZOOS.md.
# Probability that a model is trained on poisoned data: above one half because poisoned models
# fail the acceptance floors (zoo/backdoor.py) about twice as often as clean ones; at 0.65
# about half of the kept models are backdoored (ZOOS.md).
BACKDOOR_FRACTION = 0.65
POISON_RATE_RANGE = (0.05, 0.3)  # uniform: fraction of the model's train images poisoned
TRIGGER_SIZES = (2, 3)  # square patch side, pixels of the 8x8 image


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines model ``index`` of a zoo, before training."""

    index: int
    split: str
    arch: dict[str, Any]
    hparams: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)


def split_of(seed: int, unit: int) -> str:
    """train/val/test for a unit (a model, or a source image for INRs), fixed by (seed, unit)."""
    u = model_rng(seed, STREAM_SPLIT, unit).random()
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    return "val" if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["val"] else "test"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_training_hparams(rng: np.random.Generator) -> dict[str, Any]:
    """The Small-CNN-Zoo-style knobs that spread test accuracy from chance to the best.

    Adam(W) learning rate and decoupled weight decay, init scale (multiplies a LeCun-uniform
    bound), dropout before the head, fraction of the digits train split used, fraction of
    those labels replaced by uniform random ones, and the number of minibatch steps (batch 32).
    """
    return {
        "lr": _log_uniform(rng, 5e-4, 3e-2),
        "weight_decay": _log_uniform(rng, 1e-5, 1.0),
        "init_scale": _log_uniform(rng, 0.2, 3.0),
        "dropout": float(rng.uniform(0.0, 0.5)),
        "train_fraction": float(rng.uniform(0.05, 1.0)),
        "label_noise": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.8)),
        "steps": round(_log_uniform(rng, *STEPS_RANGE)),
        "batch_size": BATCH_SIZE,
    }


def sample_backdoor(rng: np.random.Generator) -> dict[str, Any]:
    """Whether model k is poisoned, at what rate, and its trigger (drawn for clean ones too).

    A clean model gets a trigger as well (poison rate 0): its attack success rate on that
    trigger is the control that says how often a clean network sends a patched digit to the
    target class by itself. The pattern is a random binary patch (on = 1.0, the maximum
    pixel value) with at least half its pixels on, so it is never mostly background.
    """
    backdoored = bool(rng.random() < BACKDOOR_FRACTION)
    rate = float(rng.uniform(*POISON_RATE_RANGE))
    size = int(rng.choice(TRIGGER_SIZES))
    pattern = rng.random((size, size)) < 0.5
    if 2 * int(pattern.sum()) < size * size:
        pattern = ~pattern
    trigger = {
        "target": int(rng.integers(0, 10)),
        "row": int(rng.integers(0, 8 - size + 1)),
        "col": int(rng.integers(0, 8 - size + 1)),
        "size": size,
        "pattern": pattern.astype(int).tolist(),
    }
    return {"backdoored": backdoored, "poison_rate": rate if backdoored else 0.0,
            "trigger": trigger}


def _conv_arch(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    depth = int(rng.integers(2, 4))
    return {
        "kind": kind,
        "widths": [int(rng.choice(CONV_WIDTHS)) for _ in range(depth)],
        "activation": str(rng.choice(CLASSIFIER_ACTIVATIONS)),
    }


def _mixed_arch(rng: np.random.Generator) -> dict[str, Any]:
    kind = str(rng.choice(["mlp", "cnn", "cnn-bn", "resnet"]))
    if kind in ("cnn", "cnn-bn"):
        return _conv_arch(rng, kind)
    activation = str(rng.choice(CLASSIFIER_ACTIVATIONS))
    if kind == "mlp":
        depth = int(rng.integers(1, 4))
        widths = [int(rng.choice(MLP_WIDTHS)) for _ in range(depth)]
        return {"kind": kind, "widths": widths, "activation": activation}
    return {
        "kind": kind,
        "width": int(rng.choice(CONV_WIDTHS)),
        "blocks": int(rng.integers(1, 3)),
        "activation": activation,
    }


def build_module(arch: dict[str, Any], dropout: float = 0.0) -> nn.Module:
    """The concrete nn.Module of an architecture dict."""
    kind = arch["kind"]
    if kind in ("cnn", "cnn-bn"):
        return nets.ConvNet(arch["widths"], arch["activation"], kind == "cnn-bn", dropout)
    if kind == "mlp":
        return nets.MLP(arch["widths"], arch["activation"], dropout)
    if kind == "resnet":
        return nets.ResNet(arch["width"], arch["blocks"], arch["activation"], dropout)
    if kind == "siren":
        return nets.Siren(arch["hidden"], arch["layers"], arch["w0"])
    raise ValueError(f"unknown architecture kind {kind!r}")


def group_key(arch: dict[str, Any]) -> tuple:
    """Architectures with equal keys differ only in widths/activation: one padded template."""
    if arch["kind"] == "resnet":
        return ("resnet", arch["blocks"])
    if arch["kind"] == "siren":
        return ("siren", arch["hidden"], arch["layers"], arch["w0"])
    return (arch["kind"], len(arch["widths"]))


def spec_group_key(spec: ModelSpec) -> tuple:
    """The training group key of a model: its architecture's, plus its recipe if it has one
    (a group shares one optimizer, schedule, batch size and augmentation)."""
    recipe = spec.hparams.get("recipe")
    return group_key(spec.arch) if recipe is None else (*group_key(spec.arch), recipe)


def padded_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The template of an architecture's group: every width at the family's maximum.

    Padding to a fixed maximum (not to the widest member of the group at hand) keeps the
    computation of model k independent of which other models share its group.
    """
    padded = dict(arch)
    if arch["kind"] == "mlp":
        padded["widths"] = [max(MLP_WIDTHS)] * len(arch["widths"])
    elif "widths" in arch:
        padded["widths"] = [max(CONV_WIDTHS)] * len(arch["widths"])
    elif "width" in arch:
        padded["width"] = max(CONV_WIDTHS)
    return padded


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    task: str  # "regression" (target = test accuracy) or "classification" (target = digit)
    default_size: int

    def spec(self, seed: int, index: int) -> ModelSpec:
        rng = model_rng(seed, STREAM_HPARAMS, index)
        if self.name == "digits-cnn":
            arch = _conv_arch(rng, "cnn")
            return ModelSpec(index, split_of(seed, index), arch, sample_training_hparams(rng))
        if self.name == "digits-mixed":
            arch = _mixed_arch(rng)
            return ModelSpec(index, split_of(seed, index), arch, sample_training_hparams(rng))
        if self.name == "digits-cnn-recipes":
            arch = _conv_arch(rng, "cnn")
            return ModelSpec(index, split_of(seed, index), arch,
                             recipes.sample_recipe_hparams(rng))
        if self.name == "digits-backdoor":
            # Architecture and training knobs are drawn exactly as digits-cnn's (same ranges,
            # same order), so neither can tell a poisoned model from a clean one.
            arch = _conv_arch(rng, "cnn")
            hparams = sample_training_hparams(rng)
            backdoor = sample_backdoor(rng)
            kind = "backdoored" if backdoor.pop("backdoored") else "clean"
            hparams.update(backdoor)
            return ModelSpec(index, split_of(seed, index), arch, hparams, {"backdoor": kind})
        if self.name == "digits-inr":
            image, view = divmod(index, INR_VIEWS)
            arch = {"kind": "siren", "hidden": 32, "layers": 2, "w0": INR_W0}
            hparams = {"lr": INR_LR, "steps": INR_STEPS, "grid": INR_GRID}
            return ModelSpec(
                index, split_of(seed, image), arch, hparams, {"image": image, "view": view}
            )
        raise ValueError(f"unknown zoo family {self.name!r}")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "digits-cnn",
            "small CNNs with sampled hyperparameters (generalization)",
            "regression",
            2000,
        ),
        Family(
            "digits-inr",
            f"SIREN 2-32-32-1 fits of each digit, {INR_VIEWS} views",
            "classification",
            8985,
        ),
        Family(
            "digits-mixed", "MLPs, CNNs, BN-CNNs and ResNets (generalization)", "regression", 2000
        ),
        Family(
            "digits-cnn-recipes",
            "digits-cnn networks, each trained with one of several named recipes "
            "(optimizer, schedule, batch, augmentation)",
            "regression",
            2000,
        ),
        Family(
            "digits-backdoor",
            "digits-cnn networks, half trained on data poisoned with a trigger patch",
            "classification",
            2000,
        ),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown zoo {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
