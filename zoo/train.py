"""Training a group of same-shaped networks at once: stacked weights + torch.func.vmap.

A group is trained as ONE zero-padded template module (the widest member). Each model's
weights are its real init zero-padded to the template shapes; gradients are masked to the
model's real slice, so the padding stays exactly zero (Adam moves nothing with a zero
gradient, decoupled weight decay shrinks zero to zero) and slicing the padding off gives the
model's own network, unchanged. Per-model choices are tensors:

* activation: a one-hot per model mixing the candidate activations (exact: 1·a + 0·b = a);
* dropout: a per-step keep mask built from the counter hash (zoo/rng.py);
* learning rate, weight decay: per-model vectors in a hand-written vectorized AdamW;
* step budget: a model whose budget is spent leaves the batch (the group shrinks);
* train subset and label noise: per-model index permutations and label tables;
* BatchNorm: batch statistics inside vmap, running statistics updated outside per model
  (PyTorch semantics: momentum 0.1, unbiased variance), so eval-mode modules match.
"""

import copy
import dataclasses
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


# batch_fn(step, alive) -> (x, y, x_is_shared) for the models at positions ``alive`` (int64):
# inputs (A, B, ...) or one shared (B, ...) for all, targets (A, B, ...)
BatchFn = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor, bool]]


def train_group(
    template: Template,
    state: GroupState,
    batch_fn: BatchFn,
    loss: str,
) -> GroupState:
    """Run vectorized AdamW on every model of a group for its own step budget.

    A model whose budget is spent is set aside and the group shrinks, so the group costs
    the sum of its budgets, not size × longest budget. Which models are alive at a step
    depends only on the group's budgets, so the batched computation (and hence every bit
    of the result) is a function of the group alone.
    """
    module = template.module
    bn_modules = [module.get_submodule(p) for p in template.batchnorms]
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
    final_params = {k: v.clone() for k, v in state.params.items()}
    final_running = {k: v.clone() for k, v in state.running.items()}
    alive = torch.arange(state.steps.shape[0], device=state.steps.device)
    params = {k: v.clone() for k, v in state.params.items()}
    running = {k: v.clone() for k, v in state.running.items()}
    exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
    exp_sq = {k: torch.zeros_like(v) for k, v in params.items()}
    masks = dict(state.masks)
    vec = {
        "activation": state.activation,
        "dropout": state.dropout,
        "lr": state.lr,
        "weight_decay": state.weight_decay,
        "steps": state.steps,
        "keys": state.keys,
    }

    def retire(done: torch.Tensor) -> None:
        for name in params:
            final_params[name][alive[done]] = params[name][done]
        for name in running:
            final_running[name][alive[done]] = running[name][done]

    step = 0
    n_steps = int(state.steps.max().item())
    while step < n_steps:
        done = vec["steps"] <= step
        if bool(done.any()):
            retire(done)
            keep = ~done
            alive = alive[keep]
            for d in (params, running, exp_avg, exp_sq, masks, vec):
                for name in d:
                    d[name] = d[name][keep]
        m = alive.shape[0]
        x, y, shared = batch_fn(step, alive)
        buffers = {f"{a}.choice": vec["activation"] for a in template.activations}
        for j, (path, features) in enumerate(template.dropouts):
            u = hash_uniform(vec["keys"], step, 100 + j, (y.shape[1], features))
            p = vec["dropout"].view(m, 1, 1)
            buffers[f"{path}.keep"] = (u >= p).to(u.dtype) / (1.0 - p)
        grads, (_, stats) = step_grads[shared](params, buffers, x, y)
        with torch.no_grad():
            t = step + 1
            c1, c2 = 1 - b1**t, 1 - b2**t
            for name, p in params.items():
                view = (m,) + (1,) * (p.dim() - 1)
                g = grads[name] * masks[name]
                exp_avg[name] = b1 * exp_avg[name] + (1 - b1) * g
                exp_sq[name] = b2 * exp_sq[name] + (1 - b2) * g * g
                adam = (exp_avg[name] / c1) / (torch.sqrt(exp_sq[name] / c2) + ADAM_EPS)
                params[name] = p - vec["lr"].view(view) * (
                    adam + vec["weight_decay"].view(view) * p
                )
            for i, path in enumerate(template.batchnorms):
                for j, key in enumerate((f"{path}.running_mean", f"{path}.running_var")):
                    batch_value = stats[2 * i + j]
                    running[key] = (1 - BN_MOMENTUM) * running[key] + BN_MOMENTUM * batch_value
        step += 1
    retire(torch.ones_like(alive, dtype=torch.bool))
    return dataclasses.replace(state, params=final_params, running=final_running)
