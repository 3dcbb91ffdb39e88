"""digits-inr: fit SIREN INRs to digit images, all images × views of a group at once."""

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from zoo.families import ModelSpec, build_module
from zoo.rng import STREAM_INIT, model_torch_generator
from zoo.train import GroupState, make_template, train_group


def psnr(mse: float) -> float:
    """PSNR in dB for signals in [-1, 1] (peak-to-peak 2)."""
    return 10.0 * math.log10(4.0 / max(mse, 1e-20))


def init_siren(module: nn.Module, w0: float, generator: torch.Generator) -> None:
    """SIREN init (Sitzmann et al.): first layer U(±1/fan_in), later U(±sqrt(6/fan_in)/w0).

    Biases keep PyTorch's U(±1/sqrt(fan_in)); all drawn from the per-model generator.
    """
    with torch.no_grad():
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            fan_in = layer.in_features
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / w0
            layer.weight.copy_(
                (torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound
            )
            b = 1.0 / math.sqrt(fan_in)
            layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * b)


def fit_inrs(
    seed: int,
    specs: list[ModelSpec],
    coords: torch.Tensor,
    targets: torch.Tensor,
    check: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> Iterator[tuple[ModelSpec, nn.Module, dict[str, Any]]]:
    """Fit one INR per spec (targets[image] is its (P, 1) image) and yield (spec, module, metrics).

    Metrics: ``psnr`` on the fitted grid, and ``psnr_check`` on ``check`` (coordinates and
    targets of a finer resample of the same images), i.e. between the fitted points.
    """
    arch = specs[0].arch
    modules = []
    for spec in specs:
        m = build_module(arch)
        init_siren(m, arch["w0"], model_torch_generator(seed, STREAM_INIT, spec.index))
        modules.append(m)
    template = make_template(modules[0])
    names = [n for n, _ in template.module.named_parameters()]
    params = {n: torch.stack([m.get_parameter(n).detach() for m in modules]) for n in names}
    n = len(specs)
    state = GroupState(
        params,
        {k: torch.ones_like(v) for k, v in params.items()},
        {},
        torch.zeros(n, 0),
        torch.zeros(n),
        torch.tensor([s.hparams["lr"] for s in specs]),
        torch.zeros(n),
        torch.tensor([s.hparams["steps"] for s in specs], dtype=torch.int64),
        torch.zeros(n, dtype=torch.int64),
    ).to(device)
    images = torch.tensor([s.labels["image"] for s in specs])
    y = targets[images].to(device)
    x = coords.to(device)

    final = train_group(template, state, lambda step, alive: (x, y[alive], True), "mse")
    for k, spec in enumerate(specs):
        module = modules[k]
        module.load_state_dict(
            {name: final.params[name][k].detach().cpu().clone() for name in names}
        )
        module.eval()
        with torch.no_grad():
            image = spec.labels["image"]
            mse = torch.mean((module(coords) - targets[image]) ** 2).item()
            mse_check = torch.mean((module(check[0]) - check[1][image]) ** 2).item()
        yield spec, module, {"psnr": psnr(mse), "mse": mse, "psnr_check": psnr(mse_check)}
