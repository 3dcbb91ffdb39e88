"""The architecture op graph: a small, versioned JSON description of how tensors are wired.

A state dict does not say how its tensors are connected and the service never runs uploaded
code, so the wiring travels as data. The format (``version`` 1)::

    {"version": 1,
     "inputs":  [{"name": "x", "shape": [3, 32, 32]}],      # per-sample shape, no batch dim
     "nodes":   [{"name": "conv1", "op": "conv2d", "inputs": ["x"],
                  "attrs": {"in_channels": 3, ...},
                  "params": {"weight": "conv1.weight", "bias": "conv1.bias"}}, ...],
     "outputs": ["fc"],
     "ties":    {"lm_head.weight": "wte.weight"}}            # optional: shared tensors

``params`` maps an op's parameter roles to state-dict names; all names of one node share one
module prefix (``conv1.``), which is how :func:`graphs.build_module` reproduces the user's
state-dict keys. Spatial input dims may be ``null`` (unknown) when an adaptive pooling makes
the rest of the network independent of them. ``ties`` names tensors that are the same
tensor as another (weight tying); only the target is stored. What each op means is in its
module under :mod:`graphs.ops`. Validation is strict and complete: every
problem is an :class:`~graphs.errors.ArchitectureError` naming the node, never a crash later.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from graphs.errors import ArchitectureError
from graphs.ops import ACTIVATIONS, OPS, PASSTHROUGH
from graphs.ops.base import InputSpec, Node, Op, Shape, fail, is_pos

__all__ = ["ACTIVATIONS", "OPS", "PASSTHROUGH", "VERSION", "Architecture", "InputSpec", "Node"]

VERSION = 1
MAX_NODES = 20_000  # far above real networks; bounds the work an uploaded op graph can cause


@dataclass(eq=False)
class Architecture:
    """A validated op graph; nodes are kept in topological order."""

    inputs: tuple[InputSpec, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    version: int = VERSION
    ties: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- (de)serialisation -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = {
            "version": self.version,
            "inputs": [{"name": i.name, "shape": list(i.shape)} for i in self.inputs],
            "nodes": [
                {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": dict(n.attrs),
                 "params": dict(n.params)}
                for n in self.nodes
            ],
            "outputs": list(self.outputs),
        }
        if self.ties:  # written only when used, so older graphs keep their exact bytes
            out["ties"] = dict(self.ties)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, source: str | bytes | Mapping[str, Any] | Architecture) -> Architecture:
        """Parse and strictly validate an op graph from JSON text or an already-parsed dict."""
        if isinstance(source, Architecture):
            return source
        if isinstance(source, str | bytes):
            try:
                source = json.loads(source)
            except (ValueError, RecursionError) as exc:
                raise ArchitectureError(f"architecture is not valid JSON: {exc}") from None
        if not isinstance(source, Mapping):
            raise ArchitectureError("architecture must be a JSON object")
        return _parse(source)

    # --- queries ---------------------------------------------------------------------

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every stored tensor (a tied name is stored as its target)."""
        return {k: v for k, v in self.all_param_shapes().items() if k not in self.ties}

    def all_param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every tensor name the nodes use, tied names included."""
        out: dict[str, tuple[int, ...]] = {}
        for n in self.nodes:
            for role, shape in OPS[n.op].roles(n.attrs).items():
                out[n.params[role]] = shape
        return out

    def stored(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``tensors`` without the tied names (a module's state dict lists both) and the
        buffers an op declares it does not need (a causal-mask buffer)."""
        skip = set(self.ties) | self.ignored()
        return {k: v for k, v in tensors.items() if k not in skip}

    def ignored(self) -> set[str]:
        """State-dict names the source module has but the op graph does not use."""
        return {name for n in self.nodes for name in n.attrs.get("ignored", ())}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {i.name: [] for i in self.inputs}
        for n in self.nodes:
            out[n.name] = []
            for src in n.inputs:
                out[src].append(n)
        return out

    def check_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Raise unless ``tensors`` holds exactly the named tensors with the expected shapes."""
        expected = self.param_shapes()
        tensors = self.stored(tensors)
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing:
            raise ArchitectureError(f"tensors missing for the architecture: {_few(missing)}")
        if extra:
            raise ArchitectureError(f"tensors not in the architecture: {_few(extra)}")
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise ArchitectureError(
                    f"tensor {name!r} has shape {list(tensors[name].shape)}, "
                    f"the architecture expects {list(shape)}"
                )

    def num_parameters(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def summary(self) -> dict[str, Any]:
        """JSON-able overview: families of ops, op counts, parameter count, in/out shapes."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        families = sorted({OPS[n.op].family for n in self.nodes})
        return {
            "version": self.version,
            "families": families,
            "op_counts": dict(sorted(counts.items())),
            "num_nodes": len(self.nodes),
            "num_parameters": self.num_parameters(),
            "num_tensors": len(self.param_shapes()),
            "inputs": {i.name: list(i.shape) for i in self.inputs},
            "outputs": {o: list(self.shapes[o]) for o in self.outputs},
        }


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


# --- parsing and validation --------------------------------------------------------------


def _parse(d: Mapping[str, Any]) -> Architecture:
    _keys(d, {"version", "inputs", "nodes", "outputs"}, "architecture", {"ties"})
    if d["version"] != VERSION:
        raise ArchitectureError(f"unsupported architecture version {d['version']!r} "
                                f"(this library reads version {VERSION})")
    if not isinstance(d["inputs"], list) or not d["inputs"]:
        raise ArchitectureError("architecture 'inputs' must be a non-empty list")
    if not isinstance(d["nodes"], list) or not isinstance(d["outputs"], list):
        raise ArchitectureError("architecture 'nodes' and 'outputs' must be lists")
    if len(d["nodes"]) + len(d["inputs"]) + len(d["outputs"]) > MAX_NODES:
        raise ArchitectureError(f"architecture has more than {MAX_NODES} entries")
    inputs = []
    for i, raw in enumerate(d["inputs"]):
        if not isinstance(raw, Mapping):
            raise ArchitectureError(f"input #{i} must be an object")
        _keys(raw, {"name", "shape"}, f"input #{i}")
        shape = raw["shape"]
        if not isinstance(shape, list) or not all(s is None or is_pos(s) for s in shape):
            raise ArchitectureError(f"input {raw['name']!r}: shape must be a list of positive "
                                    "ints or null")
        inputs.append(InputSpec(_name(raw["name"], f"input #{i}"), tuple(shape)))
    nodes = []
    for i, raw in enumerate(d["nodes"]):
        if not isinstance(raw, Mapping):
            raise ArchitectureError(f"node #{i} must be an object")
        _keys(raw, {"name", "op", "inputs", "attrs", "params"}, f"node #{i}")
        name = _name(raw["name"], f"node #{i}")
        if raw["op"] not in OPS:
            raise ArchitectureError(f"node {name!r}: unknown op {raw['op']!r}")
        if not isinstance(raw["inputs"], list) or not all(isinstance(s, str) for s in
                                                            raw["inputs"]):
            raise ArchitectureError(f"node {name!r}: inputs must be a list of names")
        if not isinstance(raw["attrs"], Mapping) or not isinstance(raw["params"], Mapping):
            raise ArchitectureError(f"node {name!r}: attrs and params must be objects")
        nodes.append(Node(name, raw["op"], tuple(raw["inputs"]), dict(raw["attrs"]),
                          dict(raw["params"])))
    if not all(isinstance(o, str) for o in d["outputs"]):
        raise ArchitectureError("architecture 'outputs' must be a list of names")
    ties = d.get("ties", {})
    if not isinstance(ties, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ties.items()):
        raise ArchitectureError("architecture 'ties' must map tensor names to tensor names")
    return Architecture(tuple(inputs), tuple(nodes), tuple(d["outputs"]), d["version"],
                        dict(ties))


def _keys(d: Mapping[str, Any], expected: set[str], what: str,
          optional: set[str] | None = None) -> None:
    missing, extra = expected - set(d), set(d) - expected - (optional or set())
    if missing:
        raise ArchitectureError(f"{what}: missing key(s) {sorted(missing)}")
    if extra:
        raise ArchitectureError(f"{what}: unknown key(s) {sorted(map(str, extra))}")


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v or len(v) > 256:
        raise ArchitectureError(f"{what}: name must be a non-empty string")
    return v


def _validate(arch: Architecture) -> None:
    if arch.version != VERSION:
        raise ArchitectureError(f"unsupported architecture version {arch.version!r}")
    seen: set[str] = set()
    for name in [i.name for i in arch.inputs] + [n.name for n in arch.nodes]:
        if name in seen:
            raise ArchitectureError(f"duplicate name {name!r} in the architecture")
        seen.add(name)
    for n in arch.nodes:
        spec = OPS.get(n.op)
        if spec is None:
            raise ArchitectureError(f"node {n.name!r}: unknown op {n.op!r}")
        if spec.n_inputs is None and not n.inputs:
            raise fail(n, "takes one or more inputs, got none")
        if spec.n_inputs is not None and len(n.inputs) != spec.n_inputs:
            raise fail(n, f"takes {spec.n_inputs} input(s), got {len(n.inputs)}")
        for src in n.inputs:
            if src not in seen:
                raise fail(n, f"input {src!r} is not defined anywhere (dangling)")
        _check_attrs(n, spec)
        spec.check(n)
    arch.nodes = _toposort(arch)
    _check_params(arch)
    if not arch.outputs:
        raise ArchitectureError("architecture has no outputs")
    for o in arch.outputs:
        if o not in seen:
            raise ArchitectureError(f"output {o!r} is not defined anywhere")
    shapes: dict[str, Shape] = {i.name: i.shape for i in arch.inputs}
    for n in arch.nodes:
        shapes[n.name] = OPS[n.op].shape(n, [shapes[s] for s in n.inputs])
    arch.shapes = shapes


def _check_attrs(n: Node, spec: Op) -> None:
    missing = set(spec.attrs) - set(spec.optional) - set(n.attrs)
    extra = set(n.attrs) - set(spec.attrs)
    if missing or extra:
        raise fail(n, f"attrs must be exactly {sorted(spec.attrs)} "
                       f"(missing {sorted(missing)}, unknown {sorted(map(str, extra))})")
    for key, check in spec.attrs.items():
        if key in n.attrs and not check(n.attrs[key]):
            raise fail(n, f"invalid value for attr {key!r}: {n.attrs[key]!r}")


def _check_params(arch: Architecture) -> None:
    owner: dict[str, str] = {}
    for n in arch.nodes:
        spec = OPS[n.op]
        roles = spec.roles(n.attrs)
        if set(n.params) != set(roles):
            raise fail(n, f"params must be exactly {sorted(roles)}, got {sorted(n.params)}")
        prefixes = set()
        for role, name in n.params.items():
            if not isinstance(name, str) or not name:
                raise fail(n, f"param {role!r} must be a tensor name")
            if not spec.free_names and not (name == role or name.endswith("." + role)):
                raise fail(n, f"param {role!r} must be named '<module>.{role}', got {name!r}")
            if name in owner:
                raise fail(n, f"tensor {name!r} is also used by node {owner[name]!r} "
                              "(for weight sharing, name it in 'ties' instead)")
            owner[name] = n.name
            prefixes.add(name[: len(name) - len(role)])
        if len(prefixes) > 1 and not spec.free_names:
            raise fail(n, f"params must share one module prefix, got {sorted(prefixes)}")
    for name in arch.ignored():
        if name in owner:
            raise ArchitectureError(f"tensor {name!r} is both used and declared ignored")
    shapes = arch.all_param_shapes()
    for alias, target in arch.ties.items():
        if alias not in owner or target not in owner or target in arch.ties:
            raise ArchitectureError(f"tie {alias!r} -> {target!r}: both must be tensors of "
                                    "the architecture, and the target stored")
        if shapes[alias] != shapes[target]:
            raise ArchitectureError(f"tie {alias!r} -> {target!r}: shapes "
                                    f"{list(shapes[alias])} and {list(shapes[target])} differ")


def _toposort(arch: Architecture) -> tuple[Node, ...]:
    """Kahn's algorithm, taking ready nodes in their given order (a sorted list is kept)."""
    index = {n.name: i for i, n in enumerate(arch.nodes)}
    missing = {n.name: sum(s in index for s in n.inputs) for n in arch.nodes}
    users: dict[str, list[int]] = {}
    for i, n in enumerate(arch.nodes):
        for s in n.inputs:
            if s in index:
                users.setdefault(s, []).append(i)
    ready = [i for i, n in enumerate(arch.nodes) if missing[n.name] == 0]
    heapq.heapify(ready)
    ordered: list[Node] = []
    while ready:
        n = arch.nodes[heapq.heappop(ready)]
        ordered.append(n)
        for u in users.get(n.name, []):
            missing[arch.nodes[u].name] -= 1
            if missing[arch.nodes[u].name] == 0:
                heapq.heappush(ready, u)
    if len(ordered) != len(arch.nodes):
        done = {n.name for n in ordered}
        raise ArchitectureError("architecture has a cycle through node(s) "
                                + _few(sorted(n.name for n in arch.nodes if n.name not in done)))
    return tuple(ordered)
