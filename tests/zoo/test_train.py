"""The batched group trainer equals plain per-model PyTorch training (AdamW, BatchNorm)."""

import copy

import torch
import torch.nn.functional as F

from zoo import nets
from zoo.nets import ACTIVATION_NAMES
from zoo.train import GroupState, grad_masks, make_template, pad_stack, train_group


def _group(
    models: list[torch.nn.Module],
    padded: torch.nn.Module,
    activations: list[str],
    lr: list[float],
    wd: list[float],
    steps: list[int],
) -> tuple:
    template = make_template(padded)
    names = [n for n, _ in template.module.named_parameters()]
    shapes = dict(template.module.named_parameters())
    params = {
        n: pad_stack([m.get_parameter(n).detach() for m in models], shapes[n].shape) for n in names
    }
    real = [{n: m.get_parameter(n).shape for n in names} for m in models]
    running = {}
    for path in template.batchnorms:
        c = template.module.get_submodule(path).weight.shape[0]
        running[f"{path}.running_mean"] = torch.zeros(len(models), c)
        running[f"{path}.running_var"] = torch.ones(len(models), c)
    onehot = torch.zeros(len(models), len(ACTIVATION_NAMES))
    for k, a in enumerate(activations):
        onehot[k, ACTIVATION_NAMES.index(a)] = 1.0
    m = len(models)
    state = GroupState(
        params,
        grad_masks(params, real),
        running,
        onehot,
        torch.zeros(m),
        torch.tensor(lr),
        torch.tensor(wd),
        torch.tensor(steps),
        torch.arange(m, dtype=torch.int64),
    )
    return template, state


def _batches(m: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.rand(m, 16, 1, 8, 8, generator=g), torch.randint(0, 10, (m, 16), generator=g))
        for _ in range(n)
    ]


def _slice(t: torch.Tensor, k: int, shape: torch.Size) -> torch.Tensor:
    return t[(k, *(slice(0, s) for s in shape))]


def test_group_training_matches_per_model_adamw_and_keeps_padding_zero() -> None:
    torch.manual_seed(0)
    acts = ["relu", "tanh", "gelu"]
    models = [
        nets.ConvNet([4, 8], acts[0]),
        nets.ConvNet([12, 4], acts[1]),
        nets.ConvNet([16, 16], acts[2]),
    ]
    lr, wd, steps = [3e-3, 1e-2, 5e-3], [0.0, 0.1, 1e-3], [6, 3, 5]
    template, state = _group(models, nets.ConvNet([16, 16], "relu"), acts, lr, wd, steps)
    batches = _batches(len(models), max(steps))
    final = train_group(
        template,
        state,
        lambda s, alive: (batches[s][0][alive], batches[s][1][alive], False),
        "cross_entropy",
    )
    for k, model in enumerate(models):
        ref = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(ref.parameters(), lr=lr[k], weight_decay=wd[k], eps=1e-8)
        for s in range(steps[k]):
            opt.zero_grad()
            F.cross_entropy(ref(batches[s][0][k]), batches[s][1][k]).backward()
            opt.step()
        for name, p in ref.named_parameters():
            got = _slice(final.params[name], k, p.shape)
            torch.testing.assert_close(got, p.detach(), atol=2e-5, rtol=1e-4)
            outside = final.params[name][k].clone()
            outside[tuple(slice(0, s) for s in p.shape)] = 0
            assert torch.count_nonzero(outside) == 0, f"padding of {name} moved"


def test_batchnorm_running_statistics_follow_pytorch() -> None:
    torch.manual_seed(1)
    models = [
        nets.ConvNet([4, 8], "relu", batchnorm=True),
        nets.ConvNet([8, 16], "silu", batchnorm=True),
    ]
    steps = [4, 2]
    template, state = _group(
        models,
        nets.ConvNet([16, 16], "relu", batchnorm=True),
        ["relu", "silu"],
        [1e-2, 1e-2],
        [0.0, 0.0],
        steps,
    )
    batches = _batches(len(models), max(steps))
    final = train_group(
        template,
        state,
        lambda s, alive: (batches[s][0][alive], batches[s][1][alive], False),
        "cross_entropy",
    )
    for k, model in enumerate(models):
        ref = copy.deepcopy(model).train()
        opt = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-8)
        for s in range(steps[k]):
            opt.zero_grad()
            F.cross_entropy(ref(batches[s][0][k]), batches[s][1][k]).backward()
            opt.step()
        for name, buf in ref.named_buffers():
            if name.endswith("num_batches_tracked"):
                continue
            torch.testing.assert_close(
                _slice(final.running[name], k, buf.shape), buf, atol=1e-5, rtol=1e-4
            )
