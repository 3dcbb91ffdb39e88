"""Training a group of same-shaped networks at once: stacked weights, batched layers.

A group is trained as ONE zero-padded template module (the widest member) whose layers are
swapped for batched versions that take a leading model axis: every activation is
(M models, B examples, ...), every parameter (M, ...). There is no torch.func.vmap: a
convolution is one grouped oneDNN convolution (one group per model) over an example-major
(B, M·C, H, W) layout that consecutive layers pass on without copies, a linear layer one
batched matrix product, and the loss is the sum of the per-model losses, so one backward pass
gives every model exactly its own gradient (the models never mix).

Each model's weights are its real init zero-padded to the template shapes; gradients are
masked to the model's real slice, so the padding stays exactly zero (Adam moves nothing with
a zero gradient, decoupled weight decay shrinks zero to zero) and slicing the padding off
gives the model's own network, unchanged. Per-model choices are tensors or index runs:

* activation: models are ordered by activation inside the group, and each activation is
  applied only to its own contiguous run of models;
* dropout: a per-step keep mask built from the counter hash (zoo/rng.py);
* learning rate, weight decay: per-model vectors in a hand-written vectorized AdamW over
  one flat (M, n_params) buffer (a few whole-group ops per step);
* step budget: a model whose budget is spent leaves the batch (the group shrinks);
* train subset and label noise: per-model index permutations and label tables;
* BatchNorm: per-model batch statistics, running statistics updated outside per model
  (PyTorch semantics: momentum 0.1, unbiased variance), so eval-mode modules match.
"""

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from zoo.nets import ACTIVATIONS
from zoo.rng import hash_uniform

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


class BatchedConv2d(nn.Module):
    """Conv2d over (M, B, C, H, W) with weights (M, C_out, C_in, k, k): one grouped conv."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError("only plain zero-padded convolutions are batched")
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One grouped convolution, one group per model, over (B, M·C, H, W): the output's
        # memory is (B, M, C_out, H', W'), so the next layer's reshape is free.
        m, b, c, h, w = x.shape
        x = x.transpose(0, 1).reshape(b, m * c, h, w)
        # oneDNN is several times faster channels-last when each group has one input channel
        # (the first layer), and channels-first otherwise.
        x = x.contiguous(memory_format=torch.channels_last if c == 1 else torch.contiguous_format)
        out = F.conv2d(
            x,
            self.weight.reshape(-1, *self.weight.shape[2:]),
            None if self.bias is None else self.bias.reshape(-1),
            self.stride,
            self.padding,
            groups=m,
        )
        return out.view(b, m, -1, *out.shape[2:]).transpose(0, 1)


class BatchedLinear(nn.Module):
    """Linear over (M, B, in) (or one shared (B, in)) with weights (M, out, in)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.transpose(1, 2)
        if x.dim() == 2:  # one input shared by every model
            out = torch.matmul(x, weight)
            return out if self.bias is None else out + self.bias.unsqueeze(1)
        if self.bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight)


class BatchedAvgPool(nn.Module):
    """AdaptiveAvgPool2d(1) over (M, B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((3, 4), keepdim=True)


class BatchedFlatten(nn.Module):
    """Flatten every axis after (model, example)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class MixedActivation(nn.Module):
    """A per-model activation: ``runs`` lists (activation index, first model, end model).

    The trainer orders a group's models by activation, so each activation runs once, on its
    own contiguous slice of the model axis.
    """

    def __init__(self) -> None:
        super().__init__()
        self.acts = [cls() for cls in ACTIVATIONS.values()]
        self.runs: list[tuple[int, int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.runs) == 1:
            return self.acts[self.runs[0][0]](x)
        # Join the runs along whichever of (model, example) is the inner one in memory, so
        # the result keeps the input's layout (a convolution's output is example-major).
        dim = 1 if x.stride(1) > x.stride(0) else 0
        xt = x.transpose(0, dim)
        parts = [
            self.acts[j](xt[:, start:end] if dim else xt[start:end]) for j, start, end in self.runs
        ]
        return torch.cat(parts, dim).transpose(0, dim)


class MaskDropout(nn.Module):
    """Multiplies by a precomputed, already rescaled keep mask passed in as a buffer."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("keep", torch.ones(1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep


class BatchStatNorm(nn.Module):
    """BatchNorm over (M, B, C, H, W) with per-model batch statistics, reported to ``sink``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.sink: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (1, 3, 4)
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, unbiased=False, keepdim=True)
        n = x.numel() // (x.shape[0] * x.shape[2])
        m = x.shape[0]
        self.sink.append((mean.detach().view(m, -1), var.detach().view(m, -1) * (n / (n - 1))))
        shape = (m, 1, -1, 1, 1)
        xhat = (x - mean) * torch.rsqrt(var + BN_EPS)
        return xhat * self.weight.view(shape) + self.bias.view(shape)


@dataclass
class Template:
    """A padded module prepared for batched training, and where its special layers sit."""

    module: nn.Module
    activations: list[str]
    dropouts: list[tuple[str, int]]
    batchnorms: list[str]


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)


def make_template(padded: nn.Module) -> Template:
    """Swap the widest module's layers for batched, per-model versions (same parameter names)."""
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
        elif isinstance(sub, nn.Conv2d):
            _replace(module, path, BatchedConv2d(sub))
        elif isinstance(sub, nn.Linear):
            _replace(module, path, BatchedLinear(sub))
        elif isinstance(sub, nn.AdaptiveAvgPool2d):
            if sub.output_size not in (1, (1, 1)):
                raise ValueError("only global average pooling is batched")
            _replace(module, path, BatchedAvgPool())
        elif isinstance(sub, nn.Flatten):
            if sub.start_dim != 1 or sub.end_dim != -1:
                raise ValueError("only Flatten() is batched")
            _replace(module, path, BatchedFlatten())
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


@dataclass(frozen=True)
class Optimizer:
    """A group's optimizer when it is not the default (AdamW, beta1 0.9, constant rate).

    ``kind`` "adamw" (decoupled weight decay, ``momentum`` is beta1) or "sgd" (heavy-ball
    momentum, weight decay as L2 in the gradient: torch.optim.SGD with dampening 0);
    ``schedule`` scales each model's learning rate by its own step budget T: "constant",
    "cosine" (0.5·(1 + cos(π·t/T))) or "step" (×0.1 from T/2, ×0.01 from 3T/4).
    """

    kind: str = "adamw"
    momentum: float = ADAM_BETAS[0]
    schedule: str = "constant"


def lr_factor(schedule: str, step: int, budgets: torch.Tensor) -> torch.Tensor:
    """Per-model learning-rate multiplier at ``step`` (0-based) for step budgets ``budgets``."""
    t = torch.full_like(budgets, step, dtype=torch.float32)
    total = budgets.to(torch.float32)
    if schedule == "cosine":
        return 0.5 * (1 + torch.cos(torch.pi * t / total))
    if schedule == "step":
        drops = (t >= total / 2).to(torch.float32) + (t >= total * 3 / 4).to(torch.float32)
        return torch.pow(0.1, drops)
    if schedule == "constant":
        return torch.ones_like(total)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


# batch_fn(step, alive) -> (x, y, x_is_shared) for the models at positions ``alive`` (int64):
# inputs (A, B, ...) or one shared (B, ...) for all, targets (A, B, ...)
BatchFn = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor, bool]]


def _activation_runs(activation: torch.Tensor) -> list[tuple[int, int, int]]:
    """(activation index, start, end) runs of a model axis already ordered by activation."""
    if activation.shape[1] == 0:
        return []
    values, counts = torch.unique_consecutive(activation.argmax(1), return_counts=True)
    runs, start = [], 0
    for j, n in zip(values.tolist(), counts.tolist(), strict=True):
        runs.append((j, start, start + n))
        start += n
    return runs


def train_group(
    template: Template,
    state: GroupState,
    batch_fn: BatchFn,
    loss: str,
    optimizer: Optimizer | None = None,
) -> GroupState:
    """Run vectorized AdamW (or ``optimizer``) on every model of a group for its own budget.

    A model whose budget is spent is set aside and the group shrinks, so the group costs
    the sum of its budgets, not size × longest budget. Which models are alive at a step
    depends only on the group's budgets, so the batched computation (and hence every bit
    of the result) is a function of the group alone.
    """
    module = template.module
    bn_modules = [module.get_submodule(p) for p in template.batchnorms]
    act_modules = [module.get_submodule(p) for p in template.activations]
    b1, b2 = ADAM_BETAS
    if optimizer is not None:
        b1 = optimizer.momentum
    names = list(state.params)
    shapes = {n: state.params[n].shape[1:] for n in names}
    sizes = [shapes[n].numel() for n in names]
    total = state.steps.shape[0]

    def flat(d: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([d[n].reshape(total, -1) for n in names], 1)

    # Order the models by activation (stable, so a function of the group alone); ``alive``
    # maps rows back to the caller's positions.
    order = torch.arange(total, device=state.steps.device)
    if state.activation.shape[1] > 0:
        order = torch.sort(state.activation.argmax(1), stable=True).indices
    alive = order
    params = flat(state.params)[order]
    masks = flat(state.masks)[order]
    running = {k: v[order] for k, v in state.running.items()}
    exp_avg = torch.zeros_like(params)
    exp_sq = torch.zeros_like(params)
    vec = {
        "activation": state.activation[order],
        "dropout": state.dropout[order],
        "lr": state.lr[order],
        "weight_decay": state.weight_decay[order],
        "steps": state.steps[order],
        "keys": state.keys[order],
    }
    final_params = torch.empty_like(params)
    final_running = {k: torch.empty_like(v) for k, v in running.items()}

    def model_loss(p: torch.Tensor, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        for bn in bn_modules:
            bn.sink = []
        m = p.shape[0]
        views = {n: v.view(m, *shapes[n]) for n, v in zip(names, p.split(sizes, 1), strict=True)}
        out = functional_call(module, {**views, **buffers}, (x,))
        stats = [s for bn in bn_modules for s in bn.sink[0]]
        if loss == "cross_entropy":
            per_example = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
            value = per_example.view(m, -1).mean(1).sum()
        else:
            value = (out - y).square().flatten(1).mean(1).sum()
        return value, stats

    def retire(done: torch.Tensor) -> None:
        final_params[alive[done]] = params[done]
        for name in running:
            final_running[name][alive[done]] = running[name][done]

    step = 0
    n_steps = int(state.steps.max().item())
    runs = _activation_runs(vec["activation"])
    while step < n_steps:
        done = vec["steps"] <= step
        if bool(done.any()):
            retire(done)
            keep = ~done
            alive = alive[keep]
            params, masks, exp_avg, exp_sq = params[keep], masks[keep], exp_avg[keep], exp_sq[keep]
            for d in (running, vec):
                for name in d:
                    d[name] = d[name][keep]
            runs = _activation_runs(vec["activation"])
        for act in act_modules:
            act.runs = runs
        m = alive.shape[0]
        x, y, _shared = batch_fn(step, alive)  # shared inputs stay (B, ...): layers broadcast
        buffers = {}
        for j, (path, features) in enumerate(template.dropouts):
            u = hash_uniform(vec["keys"], step, 100 + j, (y.shape[1], features))
            p = vec["dropout"].view(m, 1, 1)
            buffers[f"{path}.keep"] = (u >= p).to(u.dtype) / (1.0 - p)
        leaf = params.detach().requires_grad_(True)  # shares memory: updated in place below
        value, stats = model_loss(leaf, buffers, x, y)
        (grad,) = torch.autograd.grad(value, leaf)
        with torch.no_grad():
            t = step + 1
            g = grad.mul_(masks)
            lr = vec["lr"].view(m, 1)
            if optimizer is not None and optimizer.schedule != "constant":
                lr = lr * lr_factor(optimizer.schedule, step, vec["steps"]).view(m, 1)
            if optimizer is not None and optimizer.kind == "sgd":
                # torch.optim.SGD (dampening 0): the buffer starts as the first gradient.
                g.addcmul_(params, vec["weight_decay"].view(m, 1))
                exp_avg.mul_(b1).add_(g)
                params.sub_(exp_avg * lr)
            else:
                c1, c2 = 1 - b1**t, 1 - b2**t
                # torch.optim.AdamW's update, over one flat (M, n_params) buffer.
                exp_avg.lerp_(g, 1 - b1)
                exp_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = exp_sq.sqrt().div_(c2**0.5).add_(ADAM_EPS)
                params.mul_(1 - lr * vec["weight_decay"].view(m, 1))
                params.addcdiv_(exp_avg * (lr / c1), denom, value=-1.0)
            for i, path in enumerate(template.batchnorms):
                for j, key in enumerate((f"{path}.running_mean", f"{path}.running_var")):
                    batch_value = stats[2 * i + j]
                    running[key] = (1 - BN_MOMENTUM) * running[key] + BN_MOMENTUM * batch_value
        step += 1
    retire(torch.ones_like(alive, dtype=torch.bool))
    out_params = {
        n: v.reshape(total, *shapes[n])
        for n, v in zip(names, final_params.split(sizes, 1), strict=True)
    }
    return dataclasses.replace(state, params=out_params, running=final_running)
