"""Running rebuilt networks and reading intermediate values as (samples, features) matrices.

Activation matching and REPAIR need the op graph's intermediate values, which
``OpGraphModule.forward`` keeps in a local environment; :func:`run_values` walks the same
steps and returns the values asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from graphs import Architecture, Checkpoint, NeuronMap, OpGraphModule, build_module

__all__ = ["activation_values", "batches", "features", "load_module", "run_values"]


def load_module(checkpoint: Checkpoint | tuple[Architecture, dict[str, torch.Tensor]],
                device: torch.device) -> OpGraphModule:
    """``graphs.build_module`` with the checkpoint's tensors loaded (strict), in eval mode."""
    arch, tensors = ((checkpoint.architecture, checkpoint.tensors)
                     if isinstance(checkpoint, Checkpoint) else checkpoint)
    module = build_module(arch).to(device)
    module.load_state_dict({k: v.to(device) for k, v in tensors.items()})
    return module.eval()


def batches(x: torch.Tensor, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), size):
        yield x[i:i + size].to(device)


@torch.no_grad()
def run_values(module: OpGraphModule, x: torch.Tensor, names: Iterable[str]
               ) -> dict[str, torch.Tensor]:
    """The named op-graph values (node outputs or inputs) for one batch."""
    wanted = set(names)
    (spec,) = module.architecture.inputs
    env: dict[str, torch.Tensor] = {spec.name: x}
    for node, fn in module._steps:  # the interpreter's own steps, in topological order
        env[node.name] = fn(*(env[s] for s in node.inputs))
    return {n: env[n] for n in wanted}


def activation_values(arch: Architecture, nmap: NeuronMap, groups: Iterable[str]) -> dict[str, str]:
    """The per-sample values (value -> group) whose features are neurons of ``groups``.

    Inputs, learned parameters (no batch axis) and concatenations (several groups) are left
    out: their features are not one group's neurons over samples.
    """
    wanted = set(groups)
    skip = {i.name for i in arch.inputs} | {n.name for n in arch.nodes if n.op == "parameter"}
    return {v: value.segments[0][0] for v, value in nmap.values.items()
            if v not in skip and len(value.segments) == 1 and value.segments[0][0] in wanted}


def features(nmap: NeuronMap, name: str, value: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of a value as (samples, size): positions and pixels count as samples.

    After a spatial flatten a value has C·H·W features for a C-channel group; each
    channel's pixel block then becomes extra samples.
    """
    if value.dim() == 2:
        n, f = value.shape
        if f == size:
            return value
        return value.reshape(n, size, f // size).transpose(1, 2).reshape(-1, size)
    # the neuron map knows where the feature axis went (conv channels, tokens, after permute)
    return value.movedim(nmap.values[name].axis + 1, -1).reshape(-1, size)
