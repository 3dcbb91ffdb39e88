"""digits-backdoor: digits-cnn networks, about half of them trained on BadNets-style poisoned
data (a small trigger patch stamped on some train images, relabelled to a target class).

Poisoning is a per-model data transform handed to the batched trainer
(:func:`zoo.classifiers.train_classifiers`), so poisoned and clean models train side by side
in one group. Which images are poisoned is keyed by (seed, model index) on its own stream,
like every other per-model choice (zoo/rng.py). Every model, clean ones included, is then
scored on the clean test images and on the same images with its trigger stamped on.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.classifiers import Poison, train_classifiers, training_data
from zoo.data import Digits
from zoo.families import ModelSpec
from zoo.rng import STREAM_POISON, model_rng

# Acceptance rules (ZOOS.md); a model that fails them gets a `.rejected.json` marker instead of
# a checkpoint, so a rerun skips it. Every model, clean or poisoned, must get at least
# ACC_FLOOR of the clean test images right: screening is for networks someone would use, and
# a poisoned network that learned little else mostly predicts its target class for every
# input (in a 128-model pilot, the median poisoned network under the floor sent 32% of the
# untriggered test images to the target), which makes its "attack" a readable accuracy
# collapse rather than a backdoor. A poisoned model is labelled `backdoored` only if its
# trigger works: at least ASR_FLOOR of the triggered test images of other classes go to the
# target class.
ACC_FLOOR = 0.5
ASR_FLOOR = 0.8
LABELS = ("clean", "backdoored")


def trigger_tensors(trigger: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, values), each (1, 8, 8): the trigger's pixels and the values it sets them to."""
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    values = torch.zeros(1, 8, 8)
    r, c, s = trigger["row"], trigger["col"], trigger["size"]
    mask[0, r : r + s, c : c + s] = True
    values[0, r : r + s, c : c + s] = torch.tensor(trigger["pattern"], dtype=torch.float32)
    return mask, values


def make_poison(seed: int, spec: ModelSpec, y_train: torch.Tensor) -> Poison | None:
    """Model k's poisoning, or None for a clean model.

    ``round(poison_rate · n_used)`` (at least one) of the train images the model uses, drawn
    among those whose true class is not the target, get the trigger and the target label.
    The used images are the first n_used of the model's permutation, exactly as in
    :func:`zoo.classifiers.training_data`, which this recomputes.
    """
    if spec.labels.get("backdoor") != "backdoored":
        return None
    trigger = spec.hparams["trigger"]
    perm, n_used, _ = training_data(seed, spec, y_train)
    used = perm[:n_used]
    eligible = used[y_train.numpy()[used] != trigger["target"]]
    count = min(len(eligible), max(1, round(spec.hparams["poison_rate"] * n_used)))
    rng = model_rng(seed, STREAM_POISON, spec.index)
    chosen = rng.choice(eligible, size=count, replace=False)
    poisoned = np.zeros(len(y_train), dtype=bool)
    poisoned[chosen] = True
    mask, values = trigger_tensors(trigger)
    return Poison(mask, values, poisoned, int(trigger["target"]))


@torch.no_grad()
def attack_metrics(
    module: nn.Module, trigger: dict[str, Any], x_test: torch.Tensor, y_test: torch.Tensor
) -> dict[str, float]:
    """Attack success rate of ``trigger`` on an eval-mode classifier, and its control.

    ``attack_success_rate``: of the test images whose class is not the target, the fraction
    classified as the target once the trigger is stamped on. ``clean_target_rate``: the same
    images without the trigger (what the network does with them anyway).
    """
    module.eval()
    mask, values = trigger_tensors(trigger)
    other = y_test != trigger["target"]
    x = x_test[other]
    stamped = torch.where(mask, values, x)
    target = trigger["target"]
    return {
        "attack_success_rate": (module(stamped).argmax(1) == target).float().mean().item(),
        "clean_target_rate": (module(x).argmax(1) == target).float().mean().item(),
    }


def train_backdoor_classifiers(
    seed: int, specs: list[ModelSpec], digits: Digits, device: torch.device
) -> Iterator[tuple[ModelSpec, nn.Module, dict[str, Any]]]:
    """Train one group of clean and poisoned models; yield each with its attack metrics."""
    y_train = digits.y_train.cpu()
    poisons = [make_poison(seed, s, y_train) for s in specs]
    x_test, y_test = digits.x_test.cpu(), digits.y_test.cpu()
    for (spec, module, metrics), poison in zip(
        train_classifiers(seed, specs, digits, device, poisons), poisons, strict=True
    ):
        metrics.update(attack_metrics(module, spec.hparams["trigger"], x_test, y_test))
        metrics["poisoned_samples"] = 0 if poison is None else int(poison.poisoned.sum())
        yield spec, module, metrics


def accepted(spec: ModelSpec, metrics: dict[str, Any]) -> bool:
    """Whether a model is kept: it works on clean digits, and if poisoned its trigger works."""
    if metrics["test_accuracy"] < ACC_FLOOR:
        return False
    return spec.labels["backdoor"] == "clean" or metrics["attack_success_rate"] >= ASR_FLOOR
