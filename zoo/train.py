"""Training a group of same-shaped networks at once: stacked weights + torch.func.vmap.

A group is trained as ONE zero-padded template module (the widest member). Each model's
weights are its real init zero-padded to the template shapes; gradients are masked to the
model's real slice, so the padding stays exactly zero (Adam moves nothing with a zero
gradient, decoupled weight decay shrinks zero to zero) and slicing the padding off gives the
model's own network, unchanged. Per-model choices are tensors:

* activation: a one-hot per model mixing the candidate activations (exact: 1·a + 0·b = a);
* dropout: a per-step keep mask built from the counter hash (zoo/rng.py);
* learning rate, weight decay: per-model vectors in a hand-written vectorized AdamW;
* step budget: the group runs the longest budget; a model whose budget is spent is frozen;
* train subset and label noise: per-model index permutations and label tables;
* BatchNorm: batch statistics inside vmap, running statistics updated outside per model
  (PyTorch semantics: momentum 0.1, unbiased variance), so eval-mode modules match.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from zoo.nets import ACTIVATIONS
from zoo.rng import hash_uniform

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


class MixedActivation(nn.Module):
    """sum_j choice[j] · act_j(x): a per-model activation inside one vmapped template."""

    def __init__(self) -> None:
        super().__init__()
        self.acts = [cls() for cls in ACTIVATIONS.values()]
        self.register_buffer("choice", torch.zeros(len(self.acts)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.choice[0] * self.acts[0](x)
        for j in range(1, len(self.acts)):
            out = out + self.choice[j] * self.acts[j](x)
        return out


class MaskDropout(nn.Module):
    """Multiplies by a precomputed, already rescaled keep mask passed in as a buffer."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("keep", torch.ones(1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep


class BatchStatNorm(nn.Module):
    """BatchNorm with batch statistics that reports them (to ``sink``) instead of tracking them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.sink: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0, 2, 3)
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        n = x.numel() // x.shape[1]
        self.sink.append((mean, var * (n / (n - 1))))
        shape = (1, -1, 1, 1)
        xhat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + BN_EPS)
        return xhat * self.weight.view(shape) + self.bias.view(shape)


@dataclass
class Template:
    """A padded module prepared for vmapped training, and where its special layers sit."""

    module: nn.Module
    activations: list[str]
    dropouts: list[tuple[str, int]]
    batchnorms: list[str]


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)


def make_template(padded: nn.Module) -> Template:
    """Swap activations/dropout/BatchNorm of the widest module for their per-model versions."""
    module = copy.deepcopy(padded).train()
    acts, drops, bns = [], [], []
    dropout_features = _dropout_features(module)
    for path, sub in list(module.named_modules()):
        if isinstance(sub, tuple(ACTIVATIONS.values())):
            _replace(module, path, MixedActivation())
            acts.append(path)
        elif isinstance(sub, nn.Dropout):
            _replace(module, path, MaskDropout(dropout_features))
            drops.append((path, dropout_features))
        elif isinstance(sub, nn.BatchNorm2d):
            _replace(module, path, BatchStatNorm(sub.num_features))
            bns.append(path)
    return Template(module, acts, drops, bns)


def _dropout_features(module: nn.Module) -> int:
    # Every zoo network applies its single dropout right before its linear head.
    head = getattr(module, "head", None)
    return head.in_features if isinstance(head, nn.Linear) else 0


def grad_masks(
    params: dict[str, torch.Tensor], real_shapes: list[dict[str, torch.Size]]
) -> dict[str, torch.Tensor]:
    """1 on each model's real slice of every padded parameter, 0 on the padding."""
    masks = {}
    for name, p in params.items():
        m = torch.zeros_like(p)
        for k, shapes in enumerate(real_shapes):
            m[(k, *(slice(0, s) for s in shapes[name]))] = 1.0
        masks[name] = m
    return masks


def pad_stack(tensors: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    """Zero-pad each tensor at the end of every axis to ``shape`` and stack them."""
    out = torch.zeros((len(tensors), *shape), dtype=tensors[0].dtype)
    for k, t in enumerate(tensors):
        out[(k, *(slice(0, s) for s in t.shape))] = t
    return out


@dataclass
class GroupState:
    """Stacked per-model tensors of a group (leading axis = model)."""

    params: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    running: dict[str, torch.Tensor]  # "<bn path>.running_mean" / ".running_var"
    activation: torch.Tensor  # (M, n_activations) one-hot
    dropout: torch.Tensor  # (M,)
    lr: torch.Tensor  # (M,)
    weight_decay: torch.Tensor  # (M,)
    steps: torch.Tensor  # (M,) int64 step budget
    keys: torch.Tensor  # (M,) int64 per-model hash key

    def to(self, device: torch.device) -> "GroupState":
        def move(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in d.items()}

        return GroupState(
            move(self.params),
            move(self.masks),
            move(self.running),
            *(
                t.to(device)
                for t in (
                    self.activation,
                    self.dropout,
                    self.lr,
                    self.weight_decay,
                    self.steps,
                    self.keys,
                )
            ),
        )


# batch_fn(step) -> (x, y, x_is_shared): inputs (M, B, ...) or shared (B, ...), targets (M, B, ...)
BatchFn = Callable[[int], tuple[torch.Tensor, torch.Tensor, bool]]


def train_group(
    template: Template,
    state: GroupState,
    batch_fn: BatchFn,
    loss: str,
    on_step: Callable[[int], None] | None = None,
) -> GroupState:
    """Run vectorized AdamW on all models of a group for max(steps); returns the final state."""
    module = template.module
    bn_modules = [module.get_submodule(p) for p in template.batchnorms]
    n_steps = int(state.steps.max().item())
    params = {k: v.clone() for k, v in state.params.items()}
    running = {k: v.clone() for k, v in state.running.items()}
    exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
    exp_sq = {k: torch.zeros_like(v) for k, v in params.items()}
    b1, b2 = ADAM_BETAS

    def model_loss(p: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        for bn in bn_modules:
            bn.sink = []
        out = functional_call(module, {**p, **buffers}, (x,))
        stats = tuple(s for bn in bn_modules for s in bn.sink[0])
        value = F.cross_entropy(out, y) if loss == "cross_entropy" else F.mse_loss(out, y)
        return value, stats

    step_grads = {
        shared: vmap(
            grad_and_value(model_loss, has_aux=True), in_dims=(0, 0, None if shared else 0, 0)
        )
        for shared in (False, True)
    }
    M = state.steps.shape[0]
    for step in range(n_steps):
        x, y, shared = batch_fn(step)
        buffers: dict[str, torch.Tensor] = {
            f"{a}.choice": state.activation for a in template.activations
        }
        for j, (path, features) in enumerate(template.dropouts):
            u = hash_uniform(state.keys, step, 100 + j, (y.shape[1], features))
            p = state.dropout.view(M, 1, 1)
            buffers[f"{path}.keep"] = (u >= p).to(u.dtype) / (1.0 - p)
        grads, (_, stats) = step_grads[shared](params, buffers, x, y)
        with torch.no_grad():
            active = state.steps > step
            t = step + 1
            c1, c2 = 1 - b1**t, 1 - b2**t
            for name, p in params.items():
                view = (M,) + (1,) * (p.dim() - 1)
                a = active.view(view)
                g = grads[name] * state.masks[name]
                m = torch.where(a, b1 * exp_avg[name] + (1 - b1) * g, exp_avg[name])
                v = torch.where(a, b2 * exp_sq[name] + (1 - b2) * g * g, exp_sq[name])
                update = (m / c1) / (torch.sqrt(v / c2) + ADAM_EPS) + state.weight_decay.view(
                    view
                ) * p
                params[name] = torch.where(a, p - state.lr.view(view) * update, p)
                exp_avg[name], exp_sq[name] = m, v
            for i, path in enumerate(template.batchnorms):
                mean, var = stats[2 * i], stats[2 * i + 1]
                a = active.view(M, 1)
                for key, batch_value in (
                    (f"{path}.running_mean", mean),
                    (f"{path}.running_var", var),
                ):
                    old = running[key]
                    running[key] = torch.where(
                        a, (1 - BN_MOMENTUM) * old + BN_MOMENTUM * batch_value, old
                    )
        if on_step is not None:
            on_step(step)
    return GroupState(
        params,
        state.masks,
        running,
        state.activation,
        state.dropout,
        state.lr,
        state.weight_decay,
        state.steps,
        state.keys,
    )
