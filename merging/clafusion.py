"""Fusing networks of different depths: cross-layer alignment, then OT fusion.

CLAFusion (Nguyen, Nguyen, Nguyen & Ho, "Model Fusion of Heterogeneous Neural Networks via
Cross-Layer Alignment", ICASSP 2023) reduces depth mismatch to width mismatch:

1. **cross-layer alignment**: every hidden layer gets a representation (its post-activation
   values on data), a cost between a layer of the shallower network and one of the deeper
   (here 1 − linear CKA, Kornblith et al. 2019, which compares layers of any widths; without
   data, the difference of relative depths); dynamic programming finds the increasing
   assignment of the shallower network's hidden layers to the deeper's of least total cost;
2. **depth balancing**: the shallower network gets an identity layer (weight I, bias 0) at
   every unassigned position. After a ReLU the values are ≥ 0, so ReLU(I·h) = h and the
   network's function is unchanged; the first hidden layers are always assigned to each
   other so that no identity layer acts on raw (possibly negative) inputs;
3. **OT fusion** (:mod:`merging.ot_fusion`) of the now equally deep networks, whose widths
   may still differ, into the target network's widths (on activations when data is given).

Supported: MLP chains — an optional flatten of the input, then linear layers with one
activation between consecutive ones (dropout is dropped; it is the identity at inference).
Different depths need ReLU (the identity trick); equal depths take any activation. The
balanced networks and the result use a canonical layout (``fc0``, ``act0``, ...). Anything
else raises :class:`~merging.errors.UnsupportedMergeError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphs import Architecture, Checkpoint
from merging.assignment import best_device
from merging.errors import MergeInputError, UnsupportedMergeError
from merging.finetune import FinetuneRecipe
from merging.forward import load_module, run_values
from merging.ot_fusion import FusionResult, Masses, Mode, Solver, ot_fusion

__all__ = ["Chain", "ClaFusionResult", "check_chain", "check_clafusion", "clafusion",
           "layer_alignment"]

_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "sine")


@dataclass(frozen=True)
class Chain:
    """An MLP as data: input, optional flatten, linear layers, the activation between them."""

    input_name: str
    input_shape: tuple[int | None, ...]
    flatten: bool
    in_features: int
    widths: tuple[int, ...]  # out_features of every linear layer, the output layer last
    activation: tuple[str, tuple[tuple[str, Any], ...]]  # op and attrs
    linears: tuple[str, ...]  # node names of the linear layers in the source checkpoint
    activations: tuple[str, ...]  # node names of the hidden activations (post values)

    @property
    def hidden(self) -> int:
        return len(self.widths) - 1


def check_chain(arch: Architecture) -> Chain:
    """The architecture as an MLP chain, or :class:`UnsupportedMergeError` saying why not."""
    if len(arch.inputs) != 1 or len(arch.outputs) != 1:
        raise UnsupportedMergeError("clafusion fuses MLPs with one input and one output")
    spec = arch.inputs[0]
    prev, flatten = spec.name, False
    linears: list[str] = []
    acts: list[str] = []
    act: tuple[str, tuple[tuple[str, Any], ...]] | None = None
    widths: list[int] = []
    in_features = None
    expect_act = False
    for node in arch.nodes:
        if node.inputs != (prev,):
            raise UnsupportedMergeError(
                f"clafusion fuses MLP chains; node {node.name!r} does not read the node "
                "before it (branches and residual connections are not supported)")
        if node.op == "dropout":
            prev = node.name
            continue
        if node.op == "flatten" and prev == spec.name:
            flatten = True
        elif node.op == "linear" and not expect_act:
            if in_features is None:
                in_features = node.attrs["in_features"]
            linears.append(node.name)
            widths.append(node.attrs["out_features"])
            expect_act = True
        elif expect_act and node.op in _ACTIVATIONS:
            this = (node.op, tuple(sorted(node.attrs.items())))
            if act is not None and this != act:
                raise UnsupportedMergeError(
                    f"clafusion needs one activation throughout; node {node.name!r} is "
                    f"{node.op}, earlier ones {act[0]}")
            act = this
            acts.append(node.name)
            expect_act = False
        else:
            raise UnsupportedMergeError(
                f"clafusion fuses MLPs (linear layers with an activation between them); node "
                f"{node.name!r} is {node.op}")
        prev = node.name
    if not linears or arch.outputs[0] != prev or arch.node(prev).op != "linear":
        raise UnsupportedMergeError("clafusion fuses MLPs that end in a linear layer")
    assert in_features is not None
    return Chain(spec.name, spec.shape, flatten, in_features, tuple(widths),
                 act or ("relu", ()), tuple(linears), tuple(acts))


def _chain_architecture(chain: Chain, widths: Sequence[int]) -> Architecture:
    nodes: list[dict[str, Any]] = []
    prev = chain.input_name
    if chain.flatten:
        nodes.append({"name": "flatten", "op": "flatten", "inputs": [prev], "attrs": {},
                      "params": {}})
        prev = "flatten"
    fan_in = chain.in_features
    op, attrs = chain.activation
    for i, width in enumerate(widths):
        name = f"fc{i}"
        nodes.append({"name": name, "op": "linear", "inputs": [prev],
                      "attrs": {"in_features": fan_in, "out_features": width, "bias": True},
                      "params": {"weight": f"{name}.weight", "bias": f"{name}.bias"}})
        prev, fan_in = name, width
        if i < len(widths) - 1:
            nodes.append({"name": f"act{i}", "op": op, "inputs": [prev], "attrs": dict(attrs),
                          "params": {}})
            prev = f"act{i}"
    return Architecture.from_json({"version": 1,
                                   "inputs": [{"name": chain.input_name,
                                               "shape": list(chain.input_shape)}],
                                   "nodes": nodes, "outputs": [prev]})


def _layers(ckpt: Checkpoint, chain: Chain) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for name in chain.linears:
        node = ckpt.architecture.node(name)
        w = ckpt.tensors[node.params["weight"]]
        b = ckpt.tensors[node.params["bias"]] if "bias" in node.params else torch.zeros(
            w.shape[0], dtype=w.dtype)
        out.append((w, b))
    return out


def _linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    x = x - x.mean(0)
    y = y - y.mean(0)
    xy = (x.T @ y).norm() ** 2
    denom = (x.T @ x).norm() * (y.T @ y).norm()
    return float(xy / denom) if denom > 0 else 0.0


def _representations(ckpt: Checkpoint, chain: Chain, x: torch.Tensor,
                     device: torch.device) -> list[torch.Tensor]:
    module = load_module(ckpt, device)
    values = run_values(module, x.to(device), chain.activations)
    return [values[a].detach().to("cpu", torch.float64) for a in chain.activations]


def layer_alignment(cost: np.ndarray) -> list[int]:
    """Increasing map of the shallower network's layers (rows) to the deeper's (columns).

    Dynamic programming over ``cost`` (n × m, n ≤ m) with the first layers assigned to each
    other: ``D[j, i] = cost[j, i] + min_{i' < i} D[j−1, i']``; returns ``f`` with ``f[j]``
    the deeper layer that shallower layer ``j`` is assigned to.
    """
    n, m = cost.shape
    if n > m:
        raise MergeInputError("layer_alignment: the rows must be the shallower network")
    if n == 0:
        return []
    d = np.full((n, m), np.inf)
    arg = np.zeros((n, m), dtype=np.int64)
    d[0, 0] = cost[0, 0]
    for j in range(1, n):
        best, best_i = np.inf, -1
        for i in range(1, m):
            if d[j - 1, i - 1] < best:
                best, best_i = d[j - 1, i - 1], i - 1
            d[j, i] = cost[j, i] + best
            arg[j, i] = best_i
    f = [int(np.argmin(d[n - 1]))]
    for j in range(n - 1, 0, -1):
        f.append(int(arg[j, f[-1]]))
    return f[::-1]


def _balanced(ckpt: Checkpoint, chain: Chain, mapping: list[int], depth: int,
              arch_of: Any) -> Checkpoint:
    """The chain with identity layers at the deeper network's unassigned positions."""
    src = _layers(ckpt, chain)
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    width, k = chain.in_features, 0
    for i in range(depth):
        if k < len(mapping) and mapping[k] == i:
            layers.append(src[k])
            width = src[k][0].shape[0]
            k += 1
        else:
            dtype = src[0][0].dtype
            layers.append((torch.eye(width, dtype=dtype), torch.zeros(width, dtype=dtype)))
    layers.append(src[-1])
    arch = arch_of([w.shape[0] for w, _ in layers])
    tensors: dict[str, torch.Tensor] = {}
    for i, (w, b) in enumerate(layers):
        tensors[f"fc{i}.weight"] = w.detach().clone()
        tensors[f"fc{i}.bias"] = b.detach().clone()
    return Checkpoint(tensors, arch, {})


@dataclass
class ClaFusionResult:
    """``fusion``: the OT fusion of the balanced networks (its checkpoint is the result);
    ``mappings[j][k]``: the position in the deepest network of input ``j``'s hidden layer
    ``k``; ``balanced[j]``: input ``j`` with identity layers, same function."""

    fusion: FusionResult
    mappings: list[list[int]]
    balanced: list[Checkpoint]
    costs: list[np.ndarray | None]

    @property
    def checkpoint(self) -> Checkpoint:
        return self.fusion.checkpoint


def check_clafusion(architectures: Sequence[Architecture]) -> list[Chain]:
    """Raise :class:`UnsupportedMergeError` unless CLAFusion can fuse these networks."""
    if len(architectures) < 2:
        raise MergeInputError("fusion needs at least two checkpoints")
    chains = [check_chain(a) for a in architectures]
    first = chains[0]
    for i, c in enumerate(chains[1:], 1):
        if c.activation != first.activation:
            raise UnsupportedMergeError(f"checkpoint {i} uses {c.activation[0]}, checkpoint 0 "
                                        f"{first.activation[0]}: clafusion needs one activation")
        if (c.input_shape, c.flatten, c.in_features, c.widths[-1]) != \
                (first.input_shape, first.flatten, first.in_features, first.widths[-1]):
            raise UnsupportedMergeError(f"checkpoint {i}: inputs or outputs differ from "
                                        "checkpoint 0")
    if len({c.hidden for c in chains}) > 1 and first.activation[0] != "relu":
        raise UnsupportedMergeError(
            f"networks of different depths are balanced with identity layers, which keep "
            f"the function only after ReLU (these use {first.activation[0]})")
    return chains


def clafusion(checkpoints: Sequence[Checkpoint], *, target: int = 0,
              data: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
              mode: Mode | None = None, solver: Solver = "emd", reg: float = 0.01,
              masses: Masses = "uniform", weights: Sequence[float] | None = None,
              max_samples: int = 512, recipe: FinetuneRecipe | None = None,
              device: torch.device | str | None = None) -> ClaFusionResult:
    """Fuse MLPs of different depths (and widths) into the deepest depth, target's widths.

    Each shallower network is aligned to the (first) deepest one; the target's widths hold
    for its own layers, and its identity layers keep the width of the layer before them.
    ``mode`` defaults to ``"activations"`` with data, else ``"weights"``.
    """
    chains = check_clafusion([c.architecture for c in checkpoints])
    if not 0 <= target < len(checkpoints):
        raise MergeInputError(f"target {target} is not one of the {len(checkpoints)} "
                              "checkpoints")
    dev = torch.device(device) if device is not None else best_device()
    x = data[0] if isinstance(data, tuple | list) else data
    deepest = max(range(len(chains)), key=lambda j: chains[j].hidden)
    depth = chains[deepest].hidden
    reps = None
    if x is not None:
        xs = x[:max_samples]
        reps = [_representations(c, ch, xs, dev) for c, ch in zip(checkpoints, chains,
                                                                   strict=True)]
    mappings: list[list[int]] = []
    costs: list[np.ndarray | None] = []
    for j, ch in enumerate(chains):
        if ch.hidden == depth:
            mappings.append(list(range(depth)))
            costs.append(None)
            continue
        if reps is not None:
            cost = np.array([[1 - _linear_cka(rj, rd) for rd in reps[deepest]]
                             for rj in reps[j]])
        else:
            cost = np.array([[abs((k + 1) / (ch.hidden + 1) - (i + 1) / (depth + 1))
                              for i in range(depth)] for k in range(ch.hidden)])
        mappings.append(layer_alignment(cost))
        costs.append(cost)

    def arch_of(widths: list[int], chain: Chain = chains[0]) -> Architecture:
        return _chain_architecture(chain, widths)

    balanced = [_balanced(c, ch, mp, depth, arch_of)
                for c, ch, mp in zip(checkpoints, chains, mappings, strict=True)]
    fusion = ot_fusion(balanced, target=target,
                       mode=mode or ("activations" if x is not None else "weights"),
                       solver=solver, reg=reg, masses=masses, weights=weights, data=data,
                       max_samples=max_samples, recipe=recipe, device=dev)
    return ClaFusionResult(fusion, mappings, balanced, costs)
