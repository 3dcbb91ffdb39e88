"""``build_module``: a runnable module from an op graph, without running any user code.

The result is an :class:`OpGraphModule` whose ``forward`` walks the topologically sorted
nodes and calls each op's step (:meth:`graphs.ops.base.Op.build`). Parametric nodes become
standard torch modules placed at their original module paths (``layer1.0.conv1``), so
``state_dict()`` keys equal the checkpoint's tensor names and a strict ``load_state_dict``
works. A tied tensor (``ties``) is one ``nn.Parameter`` under both names, as in the source
module; it is saved and loaded under its stored name only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError
from graphs.ops import OPS
from graphs.ops.base import Node, Step

__all__ = ["OpGraphModule", "build_module"]


def build_module(architecture: Architecture | dict[str, Any] | str) -> OpGraphModule:
    """Rebuild a runnable module (random init, ``eval()`` mode) from an op graph."""
    return OpGraphModule(Architecture.from_json(architecture)).eval()


class OpGraphModule(nn.Module):
    """Interprets an :class:`Architecture`; parameters live at the user's module paths."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self._steps: list[tuple[Node, Callable[..., torch.Tensor]]] = []
        for node in architecture.nodes:
            try:
                self._steps.append((node, OPS[node.op].build(node, self)))
            except ArchitectureError as exc:
                raise ArchitectureError(f"node {node.name!r}: {exc}") from None
        for alias, target in architecture.ties.items():
            self._tie(alias, self.get_parameter(target))
        if architecture.ties:
            self._register_state_dict_hook(_drop_ties)
            self.register_load_state_dict_pre_hook(_fill_ties)

    @property
    def owner(self) -> nn.Module:
        return self

    def place(self, path: str, module: nn.Module) -> nn.Module:
        """Put ``module`` at the dotted ``path``, creating plain parent modules on the way."""
        if not path:
            raise ArchitectureError("tensor names need a module prefix (e.g. 'fc.weight') "
                                    "to be rebuilt")
        parent, leaf = self._parent(path)
        if leaf in parent._modules or hasattr(parent, leaf):
            raise ArchitectureError(f"module path {path!r} is used twice")
        parent.add_module(leaf, module)
        return module

    def parameter(self, name: str, shape: tuple[int, ...]) -> Step:
        parent, leaf = self._parent(name)
        if leaf in parent._modules or hasattr(parent, leaf):
            raise ArchitectureError(f"tensor name {name!r} is used twice")
        param = nn.Parameter(torch.zeros(shape))
        parent.register_parameter(leaf, param)
        return lambda: param

    def buffer(self, name: str, shape: tuple[int, ...]) -> Step:
        parent, leaf = self._parent(name)
        if leaf in parent._modules or hasattr(parent, leaf):
            raise ArchitectureError(f"tensor name {name!r} is used twice")
        parent.register_buffer(leaf, torch.zeros(shape))
        return lambda: getattr(parent, leaf)

    def _parent(self, path: str) -> tuple[nn.Module, str]:
        parent: nn.Module = self
        *parents, leaf = path.split(".")
        for part in parents:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        return parent, leaf

    def _tie(self, alias: str, param: nn.Parameter) -> None:
        parent, leaf = self._parent(alias)
        delattr(parent, leaf)
        parent.register_parameter(leaf, param)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        specs = self.architecture.inputs
        if len(inputs) != len(specs):
            raise ValueError(f"expected {len(specs)} input(s), got {len(inputs)}")
        env: dict[str, torch.Tensor] = {s.name: x for s, x in zip(specs, inputs, strict=True)}
        for node, fn in self._steps:
            env[node.name] = fn(*(env[s] for s in node.inputs))
        outs = tuple(env[o] for o in self.architecture.outputs)
        return outs[0] if len(outs) == 1 else outs


def _drop_ties(module: OpGraphModule, state: dict[str, Any], prefix: str,
               local_metadata: Any) -> None:
    for alias in module.architecture.ties:
        state.pop(prefix + alias, None)


def _fill_ties(module: nn.Module, state: Mapping[str, Any], prefix: str, *args: Any) -> None:
    assert isinstance(module, OpGraphModule)
    for alias, target in module.architecture.ties.items():
        if prefix + target in state and prefix + alias not in state:
            state[prefix + alias] = state[prefix + target]  # type: ignore[index]
