"""``build_module``: a runnable module from an op graph, without running any user code.

The result is an :class:`OpGraphModule` whose ``forward`` walks the topologically sorted
nodes and calls a fixed set of torch modules and functions. Parametric nodes become standard
torch modules placed at their original module paths (``layer1.0.conv1``), so ``state_dict()``
keys equal the checkpoint's tensor names and a strict ``load_state_dict`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from graphs.architecture import Architecture, Node
from graphs.errors import ArchitectureError
from graphs.modules import Sine

__all__ = ["OpGraphModule", "build_module"]


def build_module(architecture: Architecture | dict[str, Any] | str) -> OpGraphModule:
    """Rebuild a runnable module (random init, ``eval()`` mode) from an op graph."""
    return OpGraphModule(Architecture.from_json(architecture)).eval()


def _parametric(node: Node) -> nn.Module:
    a = node.attrs
    match node.op:
        case "linear":
            return nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
        case "conv1d" | "conv2d":
            cls = nn.Conv1d if node.op == "conv1d" else nn.Conv2d
            return cls(a["in_channels"], a["out_channels"], tuple(a["kernel_size"]),
                       stride=tuple(a["stride"]), padding=tuple(a["padding"]),
                       dilation=tuple(a["dilation"]), bias=a["bias"])
        case "batchnorm1d" | "batchnorm2d":
            cls = nn.BatchNorm1d if node.op == "batchnorm1d" else nn.BatchNorm2d
            return cls(a["num_features"], eps=a["eps"], momentum=a["momentum"],
                       affine=a["affine"], track_running_stats=a["track_running_stats"])
        case "layernorm":
            return nn.LayerNorm(a["normalized_shape"], eps=a["eps"],
                                elementwise_affine=a["elementwise_affine"], bias=a["bias"])
        case "self_attention":
            return nn.MultiheadAttention(a["embed_dim"], a["num_heads"], dropout=a["dropout"],
                                         bias=a["bias"], batch_first=True)
    raise ArchitectureError(f"node {node.name!r}: op {node.op} has no module")


def _functional(node: Node) -> Callable[..., torch.Tensor]:
    a = node.attrs
    op = node.op
    if op == "relu":
        return F.relu
    if op == "gelu":
        return lambda x: F.gelu(x, approximate=a["approximate"])
    if op == "silu":
        return F.silu
    if op == "tanh":
        return torch.tanh
    if op == "sigmoid":
        return torch.sigmoid
    if op == "leaky_relu":
        return lambda x: F.leaky_relu(x, a["negative_slope"])
    if op == "sine":
        return Sine(a["w0"]).forward
    if op == "add":
        return torch.add
    if op == "flatten":
        return lambda x: torch.flatten(x, 1)
    if op.startswith("adaptive_"):
        fn = getattr(F, op)
        size = tuple(a["output_size"])
        return lambda x: fn(x, size)
    if op.startswith("avg_pool"):
        fn = getattr(F, op)
        return lambda x: fn(x, a["kernel_size"], a["stride"], a["padding"])
    if op.startswith("max_pool"):
        fn = getattr(F, op)
        return lambda x: fn(x, a["kernel_size"], a["stride"], a["padding"], a["dilation"])
    raise ArchitectureError(f"node {node.name!r}: op {op} has no function")


class OpGraphModule(nn.Module):
    """Interprets an :class:`Architecture`; parameters live at the user's module paths."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self._steps: list[tuple[Node, Callable[..., torch.Tensor]]] = []
        for node in architecture.nodes:
            if node.params:
                path = node.module_path
                if not path:
                    raise ArchitectureError(f"node {node.name!r}: tensor names need a module "
                                            "prefix (e.g. 'fc.weight') to be rebuilt")
                self._place(path, _parametric(node))
                self._steps.append((node, self._caller(node, path)))
            elif node.op == "dropout":
                p = node.attrs["p"]
                self._steps.append((node, lambda x, p=p: F.dropout(x, p, self.training)))
            else:
                self._steps.append((node, _functional(node)))

    def _place(self, path: str, module: nn.Module) -> None:
        parent: nn.Module = self
        *parents, leaf = path.split(".")
        for part in parents:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        if leaf in parent._modules or hasattr(parent, leaf):
            raise ArchitectureError(f"module path {path!r} is used twice")
        parent.add_module(leaf, module)

    def _caller(self, node: Node, path: str) -> Callable[..., torch.Tensor]:
        module = self.get_submodule(path)
        if node.op == "self_attention":
            return lambda x: module(x, x, x, need_weights=False)[0]
        return module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        specs = self.architecture.inputs
        if len(inputs) != len(specs):
            raise ValueError(f"expected {len(specs)} input(s), got {len(inputs)}")
        env: dict[str, torch.Tensor] = {s.name: x for s, x in zip(specs, inputs, strict=True)}
        for node, fn in self._steps:
            env[node.name] = fn(*(env[s] for s in node.inputs))
        outs = tuple(env[o] for o in self.architecture.outputs)
        return outs[0] if len(outs) == 1 else outs
