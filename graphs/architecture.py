"""The architecture op graph: a small, versioned JSON description of how tensors are wired.

A state dict does not say how its tensors are connected and the service never runs uploaded
code, so the wiring travels as data. The format (``version`` 1)::

    {"version": 1,
     "inputs":  [{"name": "x", "shape": [3, 32, 32]}],      # per-sample shape, no batch dim
     "nodes":   [{"name": "conv1", "op": "conv2d", "inputs": ["x"],
                  "attrs": {"in_channels": 3, ...},
                  "params": {"weight": "conv1.weight", "bias": "conv1.bias"}}, ...],
     "outputs": ["fc"]}

``params`` maps an op's parameter roles to state-dict names; all names of one node share one
module prefix (``conv1.``), which is how :func:`graphs.build_module` reproduces the user's
state-dict keys. Spatial input dims may be ``null`` (unknown) when an adaptive pooling makes
the rest of the network independent of them. Validation is strict and complete: every
problem is an :class:`~graphs.errors.ArchitectureError` naming the node, never a crash later.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from graphs.errors import ArchitectureError

__all__ = ["ACTIVATIONS", "OPS", "VERSION", "Architecture", "InputSpec", "Node"]

VERSION = 1
MAX_NODES = 20_000  # far above real networks; bounds the work an uploaded op graph can cause
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "sine")
PASSTHROUGH = ("dropout", *ACTIVATIONS)

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: Shape


@dataclass(frozen=True)
class Node:
    """One op: ``params`` maps parameter roles (``weight``, ``running_mean``...) to tensor names."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, Any]
    params: dict[str, str]

    @property
    def module_path(self) -> str:
        """The module prefix shared by this node's tensor names ('' for a bare module)."""
        role, name = next(iter(self.params.items()))
        return name[: len(name) - len(role)].rstrip(".")


# --- attribute checkers ----------------------------------------------------------------


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _pos(v: Any) -> bool:
    return _int(v) and v > 0


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _opt_num(v: Any) -> bool:
    return v is None or _num(v)


def _ints(n: int, positive: bool = False) -> Callable[[Any], bool]:
    check = _pos if positive else _int
    return lambda v: isinstance(v, list) and len(v) == n and all(check(x) for x in v)


def _one_of(*values: str) -> Callable[[Any], bool]:
    return lambda v: v in values


@dataclass(frozen=True)
class OpSpec:
    n_inputs: int
    attrs: dict[str, Callable[[Any], bool]]
    roles: Callable[[dict[str, Any]], dict[str, tuple[int, ...]]]
    infer: Callable[[Node, list[Shape]], Shape]


def _fail(node: Node, msg: str) -> ArchitectureError:
    return ArchitectureError(f"node {node.name!r} ({node.op}): {msg}")


def _same(node: Node, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _linear_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    roles = {"weight": (a["out_features"], a["in_features"])}
    if a["bias"]:
        roles["bias"] = (a["out_features"],)
    return roles


def _linear_infer(node: Node, shapes: list[Shape]) -> Shape:
    (s,) = shapes
    if len(s) < 1 or s[-1] != node.attrs["in_features"]:
        raise _fail(node, f"expects last dim {node.attrs['in_features']}, got shape {list(s)}")
    return (*s[:-1], node.attrs["out_features"])


def _conv_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    roles = {"weight": (a["out_channels"], a["in_channels"], *a["kernel_size"])}
    if a["bias"]:
        roles["bias"] = (a["out_channels"],)
    return roles


def _window(size: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    return None if size is None else (size + 2 * p - d * (k - 1) - 1) // s + 1


def _spatial(node: Node, shapes: list[Shape], dims: int) -> Shape:
    (s,) = shapes
    if len(s) != dims + 1:
        raise _fail(node, f"expects a (channels, {dims} spatial dims) input, got {list(s)}")
    return s


def _conv_infer(dims: int) -> Callable[[Node, list[Shape]], Shape]:
    def infer(node: Node, shapes: list[Shape]) -> Shape:
        s, a = _spatial(node, shapes, dims), node.attrs
        if s[0] != a["in_channels"]:
            raise _fail(node, f"expects {a['in_channels']} input channels, got {s[0]}")
        out = tuple(
            _window(s[i + 1], a["kernel_size"][i], a["stride"][i], a["padding"][i],
                    a["dilation"][i])
            for i in range(dims)
        )
        if any(o is not None and o < 1 for o in out):
            raise _fail(node, f"input {list(s)} is smaller than the kernel")
        return (a["out_channels"], *out)

    return infer


def _pool_infer(dims: int, dilation: bool) -> Callable[[Node, list[Shape]], Shape]:
    def infer(node: Node, shapes: list[Shape]) -> Shape:
        s, a = _spatial(node, shapes, dims), node.attrs
        d = a["dilation"] if dilation else [1] * dims
        if any(2 * p > k for p, k in zip(a["padding"], a["kernel_size"], strict=True)):
            raise _fail(node, "padding must be at most half the kernel size")
        out = tuple(
            _window(s[i + 1], a["kernel_size"][i], a["stride"][i], a["padding"][i], d[i])
            for i in range(dims)
        )
        if any(o is not None and o < 1 for o in out):
            raise _fail(node, f"input {list(s)} is smaller than the pooling window")
        return (s[0], *out)

    return infer


def _adaptive_infer(dims: int) -> Callable[[Node, list[Shape]], Shape]:
    def infer(node: Node, shapes: list[Shape]) -> Shape:
        s = _spatial(node, shapes, dims)
        return (s[0], *node.attrs["output_size"])

    return infer


def _bn_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    n, roles = a["num_features"], {}
    if a["affine"]:
        roles |= {"weight": (n,), "bias": (n,)}
    if a["track_running_stats"]:
        roles |= {"running_mean": (n,), "running_var": (n,), "num_batches_tracked": ()}
    return roles


def _bn_infer(node: Node, shapes: list[Shape]) -> Shape:
    (s,) = shapes
    dims = 1 if node.op == "batchnorm1d" else 2
    ok = len(s) in (1, 2) if dims == 1 else len(s) == 3
    if not ok or s[0] != node.attrs["num_features"]:
        raise _fail(node, f"expects {node.attrs['num_features']} channels, got shape {list(s)}")
    return s


def _ln_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    n, roles = a["normalized_shape"], {}
    if a["elementwise_affine"]:
        roles["weight"] = (n,)
        if a["bias"]:
            roles["bias"] = (n,)
    return roles


def _ln_infer(node: Node, shapes: list[Shape]) -> Shape:
    (s,) = shapes
    if len(s) < 1 or s[-1] != node.attrs["normalized_shape"]:
        raise _fail(node, f"normalizes {node.attrs['normalized_shape']} features, got {list(s)}")
    return s


def _add_infer(node: Node, shapes: list[Shape]) -> Shape:
    a, b = shapes
    if a != b:
        raise _fail(node, f"adds shapes {list(a)} and {list(b)}")
    return a


def _flatten_infer(node: Node, shapes: list[Shape]) -> Shape:
    (s,) = shapes
    if any(d is None for d in s):
        raise _fail(node, f"flattens a value of unknown size {list(s)}: give the input shape")
    return (math.prod(s),)  # type: ignore[arg-type]


def _attn_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    e = a["embed_dim"]
    roles = {"in_proj_weight": (3 * e, e), "out_proj.weight": (e, e)}
    if a["bias"]:
        roles |= {"in_proj_bias": (3 * e,), "out_proj.bias": (e,)}
    return roles


def _attn_infer(node: Node, shapes: list[Shape]) -> Shape:
    (s,) = shapes
    e, h = node.attrs["embed_dim"], node.attrs["num_heads"]
    if e % h:
        raise _fail(node, f"embed_dim {e} is not divisible by num_heads {h}")
    if len(s) != 2 or s[1] != e:
        raise _fail(node, f"expects a (tokens, {e}) input, got {list(s)}")
    return s


def _no_roles(a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {}


def _conv_attrs(dims: int) -> dict[str, Callable[[Any], bool]]:
    return {
        "in_channels": _pos, "out_channels": _pos, "kernel_size": _ints(dims, True),
        "stride": _ints(dims, True), "padding": _ints(dims), "dilation": _ints(dims, True),
        "bias": _bool,
    }


def _pool_attrs(dims: int, dilation: bool) -> dict[str, Callable[[Any], bool]]:
    attrs = {"kernel_size": _ints(dims, True), "stride": _ints(dims, True),
             "padding": _ints(dims)}
    if dilation:
        attrs["dilation"] = _ints(dims, True)
    return attrs


OPS: dict[str, OpSpec] = {
    "linear": OpSpec(1, {"in_features": _pos, "out_features": _pos, "bias": _bool},
                     _linear_roles, _linear_infer),
    "conv1d": OpSpec(1, _conv_attrs(1), _conv_roles, _conv_infer(1)),
    "conv2d": OpSpec(1, _conv_attrs(2), _conv_roles, _conv_infer(2)),
    "batchnorm1d": OpSpec(1, {"num_features": _pos, "eps": _num, "momentum": _opt_num,
                              "affine": _bool, "track_running_stats": _bool},
                          _bn_roles, _bn_infer),
    "batchnorm2d": OpSpec(1, {"num_features": _pos, "eps": _num, "momentum": _opt_num,
                              "affine": _bool, "track_running_stats": _bool},
                          _bn_roles, _bn_infer),
    "layernorm": OpSpec(1, {"normalized_shape": _pos, "eps": _num, "elementwise_affine": _bool,
                            "bias": _bool}, _ln_roles, _ln_infer),
    "relu": OpSpec(1, {}, _no_roles, _same),
    "gelu": OpSpec(1, {"approximate": _one_of("none", "tanh")}, _no_roles, _same),
    "silu": OpSpec(1, {}, _no_roles, _same),
    "tanh": OpSpec(1, {}, _no_roles, _same),
    "sigmoid": OpSpec(1, {}, _no_roles, _same),
    "leaky_relu": OpSpec(1, {"negative_slope": _num}, _no_roles, _same),
    "sine": OpSpec(1, {"w0": _num}, _no_roles, _same),
    "dropout": OpSpec(1, {"p": lambda v: _num(v) and 0 <= v <= 1}, _no_roles, _same),
    "add": OpSpec(2, {}, _no_roles, _add_infer),
    "flatten": OpSpec(1, {}, _no_roles, _flatten_infer),
    "avg_pool1d": OpSpec(1, _pool_attrs(1, False), _no_roles, _pool_infer(1, False)),
    "avg_pool2d": OpSpec(1, _pool_attrs(2, False), _no_roles, _pool_infer(2, False)),
    "max_pool1d": OpSpec(1, _pool_attrs(1, True), _no_roles, _pool_infer(1, True)),
    "max_pool2d": OpSpec(1, _pool_attrs(2, True), _no_roles, _pool_infer(2, True)),
    "adaptive_avg_pool1d": OpSpec(1, {"output_size": _ints(1, True)}, _no_roles,
                                  _adaptive_infer(1)),
    "adaptive_avg_pool2d": OpSpec(1, {"output_size": _ints(2, True)}, _no_roles,
                                  _adaptive_infer(2)),
    "adaptive_max_pool1d": OpSpec(1, {"output_size": _ints(1, True)}, _no_roles,
                                  _adaptive_infer(1)),
    "adaptive_max_pool2d": OpSpec(1, {"output_size": _ints(2, True)}, _no_roles,
                                  _adaptive_infer(2)),
    "self_attention": OpSpec(1, {"embed_dim": _pos, "num_heads": _pos, "bias": _bool,
                                 "dropout": lambda v: _num(v) and 0 <= v <= 1},
                             _attn_roles, _attn_infer),
}


@dataclass(eq=False)
class Architecture:
    """A validated op graph; nodes are kept in topological order."""

    inputs: tuple[InputSpec, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    version: int = VERSION
    shapes: dict[str, Shape] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- (de)serialisation -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "inputs": [{"name": i.name, "shape": list(i.shape)} for i in self.inputs],
            "nodes": [
                {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": dict(n.attrs),
                 "params": dict(n.params)}
                for n in self.nodes
            ],
            "outputs": list(self.outputs),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

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
        """Expected shape of every tensor the architecture names."""
        out: dict[str, tuple[int, ...]] = {}
        for n in self.nodes:
            for role, shape in OPS[n.op].roles(n.attrs).items():
                out[n.params[role]] = shape
        return out

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
        families = sorted(
            {"linear" if n.op == "linear" else "conv" if n.op.startswith("conv") else
             "norm" if "norm" in n.op else "attention" if n.op == "self_attention" else
             "residual" if n.op == "add" else "activation" if n.op in ACTIVATIONS else
             "pooling" if "pool" in n.op else "other" for n in self.nodes}
        )
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
    _keys(d, {"version", "inputs", "nodes", "outputs"}, "architecture")
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
        if not isinstance(shape, list) or not all(s is None or _pos(s) for s in shape):
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
    return Architecture(tuple(inputs), tuple(nodes), tuple(d["outputs"]), d["version"])


def _keys(d: Mapping[str, Any], expected: set[str], what: str) -> None:
    missing, extra = expected - set(d), set(d) - expected
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
        if len(n.inputs) != spec.n_inputs:
            raise _fail(n, f"takes {spec.n_inputs} input(s), got {len(n.inputs)}")
        for src in n.inputs:
            if src not in seen:
                raise _fail(n, f"input {src!r} is not defined anywhere (dangling)")
        _check_attrs(n, spec)
    arch.nodes = _toposort(arch)
    _check_params(arch)
    if not arch.outputs:
        raise ArchitectureError("architecture has no outputs")
    for o in arch.outputs:
        if o not in seen:
            raise ArchitectureError(f"output {o!r} is not defined anywhere")
    shapes: dict[str, Shape] = {i.name: i.shape for i in arch.inputs}
    for n in arch.nodes:
        shapes[n.name] = OPS[n.op].infer(n, [shapes[s] for s in n.inputs])
    arch.shapes = shapes


def _check_attrs(n: Node, spec: OpSpec) -> None:
    missing, extra = set(spec.attrs) - set(n.attrs), set(n.attrs) - set(spec.attrs)
    if missing or extra:
        raise _fail(n, f"attrs must be exactly {sorted(spec.attrs)} "
                       f"(missing {sorted(missing)}, unknown {sorted(map(str, extra))})")
    for key, check in spec.attrs.items():
        if not check(n.attrs[key]):
            raise _fail(n, f"invalid value for attr {key!r}: {n.attrs[key]!r}")


def _check_params(arch: Architecture) -> None:
    owner: dict[str, str] = {}
    for n in arch.nodes:
        roles = OPS[n.op].roles(n.attrs)
        if set(n.params) != set(roles):
            raise _fail(n, f"params must be exactly {sorted(roles)}, got {sorted(n.params)}")
        prefixes = set()
        for role, name in n.params.items():
            if not isinstance(name, str) or not (name == role or name.endswith("." + role)):
                raise _fail(n, f"param {role!r} must be named '<module>.{role}', got {name!r}")
            if name in owner:
                raise _fail(n, f"tensor {name!r} is also used by node {owner[name]!r} "
                               "(weight sharing is not supported)")
            owner[name] = n.name
            prefixes.add(name[: len(name) - len(role)])
        if len(prefixes) > 1:
            raise _fail(n, f"params must share one module prefix, got {sorted(prefixes)}")


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
