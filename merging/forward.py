"""Running rebuilt networks and reading intermediate values as (samples, features) matrices.

Activation matching and REPAIR need the op graph's intermediate values, which
``OpGraphModule.forward`` keeps in a local environment; :func:`run_values` walks the same
steps and returns the values asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from graphs import Architecture, Checkpoint, OpGraphModule, build_module
from graphs.architecture import PASSTHROUGH

__all__ = ["batches", "features", "load_module", "run_values"]

_CHANNEL_FIRST = ("conv", "batchnorm", "avg_pool", "max_pool", "adaptive")


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


def channel_first(arch: Architecture, name: str) -> bool:
    """Whether a value's features sit on axis 1 (conv layout) rather than the last axis."""
    consumers = arch.consumers()
    while True:
        if any(i.name == name for i in arch.inputs):
            return any(c.op.startswith(_CHANNEL_FIRST) for c in consumers[name])
        node = arch.node(name)
        if node.op.startswith(_CHANNEL_FIRST):
            return True
        if node.op in (*PASSTHROUGH, "add"):
            name = node.inputs[0]
            continue
        return False


def features(arch: Architecture, name: str, value: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of a value as (samples, size): positions and pixels count as samples.

    After a spatial flatten a value has C·H·W features for a C-channel group; each
    channel's pixel block then becomes extra samples.
    """
    if value.dim() == 2:
        n, f = value.shape
        if f == size:
            return value
        return value.reshape(n, size, f // size).transpose(1, 2).reshape(-1, size)
    if channel_first(arch, name):
        return value.movedim(1, -1).reshape(-1, size)
    return value.reshape(-1, size)
