"""digits-cnn / digits-mixed: train a group of digit classifiers together and score each one."""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.data import NUM_CLASSES, Digits
from zoo.families import ModelSpec, build_module, padded_arch
from zoo.nets import ACTIVATION_NAMES
from zoo.recipes import augment
from zoo.rng import (
    STREAM_DATA,
    STREAM_INIT,
    hash_uniform,
    model_rng,
    model_torch_generator,
    step_seed,
)
from zoo.train import GroupState, Optimizer, grad_masks, make_template, pad_stack, train_group

BATCH_SALT = 1


@dataclass(frozen=True)
class Poison:
    """A per-model data transform: train images at ``poisoned`` get the trigger and label
    ``target``.

    ``mask`` and ``values`` are (1, 8, 8): the trigger's pixels and what they are set to;
    ``poisoned`` is a bool per digits train image (only images the model uses matter).
    """

    mask: torch.Tensor
    values: torch.Tensor
    poisoned: np.ndarray
    target: int

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., 1, 8, 8) with the trigger stamped on every image."""
        return torch.where(self.mask.to(x.device), self.values.to(x.device), x)


def init_classifier(module: nn.Module, init_scale: float, generator: torch.Generator) -> None:
    """Weights ~ U(±init_scale·sqrt(3/fan_in)) (variance init_scale²/fan_in), biases 0.

    BatchNorm keeps weight 1, bias 0. Drawn on CPU from a per-model generator, so model k's
    init does not depend on the device or on the rest of its group.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            is_norm = isinstance(module.get_submodule(name.rpartition(".")[0]), nn.BatchNorm2d)
            if is_norm:
                continue
            if p.dim() >= 2:
                fan_in = p[0].numel()
                bound = init_scale * math.sqrt(3.0 / fan_in)
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
            else:
                p.zero_()


def training_data(
    seed: int, spec: ModelSpec, y_train: torch.Tensor
) -> tuple[np.ndarray, int, np.ndarray]:
    """Model k's permutation of the train split, how many it uses, and its (noisy) labels."""
    rng = model_rng(seed, STREAM_DATA, spec.index)
    n_all = len(y_train)
    perm = rng.permutation(n_all)
    n_used = max(spec.hparams["batch_size"], round(spec.hparams["train_fraction"] * n_all))
    labels = y_train.numpy().copy()
    flip = rng.random(n_all) < spec.hparams["label_noise"]
    labels[flip] = rng.integers(0, NUM_CLASSES, int(flip.sum()))
    return perm, n_used, labels


@torch.no_grad()
def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of an eval-mode classifier."""
    module.eval()
    logits = module(x)
    acc = (logits.argmax(1) == y).float().mean().item()
    return acc, F.cross_entropy(logits, y).item()


def train_classifiers(
    seed: int,
    specs: list[ModelSpec],
    digits: Digits,
    device: torch.device,
    poisons: Sequence[Poison | None] | None = None,
) -> Iterator[tuple[ModelSpec, nn.Module, dict[str, Any]]]:
    """Train one group (same group key) and yield (spec, trained CPU module, metrics) per model.

    ``poisons`` (one per spec, None for a clean model) stamps a trigger on the chosen train
    images of a model and relabels them, inside the batch: the rest of the trainer is the
    same for poisoned and clean models, which then share a group.
    """
    modules = []
    for spec in specs:
        m = build_module(spec.arch, spec.hparams["dropout"])
        init_classifier(
            m, spec.hparams["init_scale"], model_torch_generator(seed, STREAM_INIT, spec.index)
        )
        modules.append(m)
    padded = build_module(padded_arch(specs[0].arch))
    template = make_template(padded)
    names = [n for n, _ in template.module.named_parameters()]
    shapes = dict(template.module.named_parameters())
    params = {
        n: pad_stack([m.get_parameter(n).detach() for m in modules], shapes[n].shape) for n in names
    }
    real_shapes = [{n: m.get_parameter(n).shape for n in names} for m in modules]
    running: dict[str, torch.Tensor] = {}
    for path in template.batchnorms:
        c = template.module.get_submodule(path).weight.shape[0]
        running[f"{path}.running_mean"] = torch.zeros(len(specs), c)
        running[f"{path}.running_var"] = torch.ones(len(specs), c)
    onehot = torch.zeros(len(specs), len(ACTIVATION_NAMES))
    for k, spec in enumerate(specs):
        onehot[k, ACTIVATION_NAMES.index(spec.arch["activation"])] = 1.0

    def vec(key: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor([s.hparams[key] for s in specs], dtype=dtype)

    state = GroupState(
        params,
        grad_masks(params, real_shapes),
        running,
        onehot,
        vec("dropout"),
        vec("lr"),
        vec("weight_decay"),
        vec("steps", torch.int64),
        torch.tensor([step_seed(seed, s.index) for s in specs], dtype=torch.int64),
    ).to(device)

    data = [training_data(seed, s, digits.y_train.cpu()) for s in specs]
    poisons = list(poisons) if poisons is not None else [None] * len(specs)
    for (_, _, noisy), poison in zip(data, poisons, strict=True):
        if poison is not None:
            noisy[poison.poisoned] = poison.target
    perms = torch.tensor(np.stack([d[0] for d in data]), device=device)
    n_used = torch.tensor([d[1] for d in data], device=device, dtype=torch.float32)
    labels = torch.tensor(np.stack([d[2] for d in data]), device=device)
    x_train = digits.x_train.to(device)
    batch = specs[0].hparams["batch_size"]
    poisoned = any(p is not None for p in poisons)
    if poisoned:
        n_all, shape = len(digits.y_train), digits.x_train.shape[1:]
        none = Poison(torch.zeros(shape, dtype=torch.bool), torch.zeros(shape),
                      np.zeros(n_all, dtype=bool), 0)
        chosen = [p or none for p in poisons]
        p_rows = torch.tensor(np.stack([p.poisoned for p in chosen]), device=device)
        p_mask = torch.stack([p.mask for p in chosen]).to(device)
        p_values = torch.stack([p.values for p in chosen]).to(device)

    # digits-cnn-recipes: the group's recipe (zoo/recipes.py) sets optimizer and augmentation.
    recipe = specs[0].hparams if "recipe" in specs[0].hparams else None
    optimizer = None
    if recipe is not None:
        optimizer = Optimizer(recipe["optimizer"], recipe["momentum"], recipe["schedule"])
        input_noise = vec("input_noise").to(device)

    def batch_fn(step: int, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        u = hash_uniform(state.keys[alive], step, BATCH_SALT, (batch,))
        pos = (u * n_used[alive].view(-1, 1)).long()
        idx = perms[alive].gather(1, pos)
        x = x_train[idx]
        if poisoned:
            stamp = p_rows[alive].gather(1, idx)[:, :, None, None, None] & p_mask[alive, None]
            x = torch.where(stamp, p_values[alive, None], x)
        if recipe is not None:
            x = augment(x, state.keys[alive], step, input_noise[alive], recipe["shift"])
        return x, labels[alive].gather(1, idx), False

    # The default (AdamW) call keeps train_group's four-argument form.
    extra = {} if optimizer is None else {"optimizer": optimizer}
    final = train_group(template, state, batch_fn, "cross_entropy", **extra)
    x_test, y_test = digits.x_test.cpu(), digits.y_test.cpu()
    for k, spec in enumerate(specs):
        module = export(modules[k], final, k, spec.hparams["steps"])
        perm, n, noisy = data[k]
        used = torch.from_numpy(perm[:n])
        x_used = digits.x_train.cpu()[used]
        if poisons[k] is not None:
            stamped = poisons[k].apply(x_used)
            x_used = torch.where(torch.from_numpy(poisons[k].poisoned[perm[:n]])
                                 .view(-1, 1, 1, 1), stamped, x_used)
        train_acc, train_loss = evaluate(module, x_used, torch.from_numpy(noisy)[used])
        test_acc, test_loss = evaluate(module, x_test, y_test)
        metrics = {
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "train_accuracy": train_acc,
            "train_loss": train_loss,
            "train_samples": int(n),
        }
        yield spec, module, metrics


def export(module: nn.Module, state: GroupState, k: int, steps: int) -> nn.Module:
    """Slice model k out of the padded group state into its own (CPU, eval-mode) module."""
    sd = module.state_dict()
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(steps, dtype=t.dtype)
            continue
        source = state.params[name] if name in state.params else state.running[name]
        sd[name] = source[(k, *(slice(0, s) for s in t.shape))].detach().cpu().clone()
    module.load_state_dict(sd)
    return module.eval()
