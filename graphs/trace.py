"""``describe``: turn a live ``nn.Module`` into an op graph by ``torch.fx`` tracing.

Tracing records the calls ``forward`` makes; each one is handed to the op that registered
it as a pattern (a module type, function or tensor method, see :mod:`graphs.ops`), which
emits op-graph nodes or refuses with an :class:`~graphs.errors.UnsupportedOpError` naming
the module path, the call and what to write instead. Before that walk, subgraph rules
(hand-written attention) claim the calls they replace with one node.

The example input is run once through the traced graph: every value is known, so shapes,
``x.size(-1) ** -0.5`` constants and Python control flow on tensors (``assert t <= n``, the
fast-path guards of ``nn.TransformerEncoderLayer``) are decided on the real input.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import fx, nn
from torch.fx import _symbolic_trace

from graphs.architecture import Architecture
from graphs.errors import UnsupportedOpError
from graphs.neuron_map import neuron_map
from graphs.ops import CLAIMS, OPS, TRACE_ONLY
from graphs.ops.base import Op

__all__ = ["describe"]

_RULES = (*OPS.values(), *TRACE_ONLY.values())
_MODULES: dict[type, Op] = {t: op for op in _RULES for t in op.modules}
_FUNCTIONS: dict[Any, Op] = {f: op for op in _RULES for f in op.functions}
_METHODS: dict[str, Op] = {m: op for op in _RULES for m in op.methods}
# torch containers traced through, not kept whole
_TRACE_THROUGH = (nn.TransformerEncoder, nn.TransformerEncoderLayer)


class _Tracer(fx.Tracer):
    """Leaves are the modules an op knows; Python ``bool()`` of a traced value is evaluated
    on the example input (the graph so far is run), so guards take the branch they take."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example
        self.proxy_buffer_attributes = True  # a mask buffer sliced by a traced length

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m) in _MODULES:
            return True
        if isinstance(m, _TRACE_THROUGH):
            return False
        return super().is_leaf_module(m, qualname)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.concrete(obj))

    def concrete(self, obj: fx.Proxy) -> Any:
        """The value a traced expression has on the example input."""
        target = obj.node  # an attribute proxy (x.is_nested) creates its node on access
        graph, env = fx.Graph(), {}
        graph.graph_copy(self.graph, env)
        graph.output(env[target])
        # fx patches nn.Module.__call__/__getattr__ while tracing; the graph so far must run
        # on real tensors, so lift the patches for the run (torch pinned: private API).
        patcher = _symbolic_trace.CURRENT_PATCHER
        if patcher is None:
            raise fx.proxy.TraceError("a traced value is used in Python control flow")
        patcher.revert_all_patches()
        try:
            with torch.no_grad():
                return fx.GraphModule(self.root, graph)(self.example)
        finally:
            patcher.reapply_all_patches()


class _Proxy(fx.Proxy):
    """``len(x.size())`` is read on the example input, like ``bool()``."""

    tracer: _Tracer

    def __len__(self) -> int:
        return len(self.tracer.concrete(self))


def describe(module: nn.Module, example_input: torch.Tensor) -> Architecture:
    """Trace ``module`` on ``example_input`` (batched) and return its validated op graph."""
    _one_input(module)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            graph = _Tracer(example_input).trace(module, concrete_args=_defaults(module))
            gm = fx.GraphModule(module, graph)
            values = _Record(gm).values_on(example_input)
    except UnsupportedOpError:
        raise
    except Exception as exc:  # fx raises many types for untraceable code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedOpError(f"module cannot be traced by torch.fx: {first}") from None
    finally:
        module.train(was_training)
    builder = _Builder(gm, values, module)
    for claim in CLAIMS:
        claim(builder)
    for node in gm.graph.nodes:
        builder.visit(node)
    arch = Architecture.from_json(builder.result())
    arch.check_tensors(module.state_dict())
    neuron_map(arch)  # a layout the symmetry rules refuse is an error now, not at first use
    return arch


def _one_input(module: nn.Module) -> None:
    """An op graph has one input: a second required ``forward`` argument (a per-batch
    attention or padding mask, typically) is refused up front, saying what to do."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return
    required = [p.name for p in params[1:] if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required:
        raise UnsupportedOpError(
            f"forward takes more than one input ({', '.join(required)}): the op graph has "
            "one input, so a mask passed per batch (key padding) cannot be part of the "
            "architecture; register a fixed mask as a buffer (register_buffer), give the "
            "argument a default of None to describe the network without it, or send arch=")


def _defaults(module: nn.Module) -> dict[str, Any]:
    """``forward``'s optional arguments at their defaults (``targets=None``): only the
    example input is traced."""
    params = list(inspect.signature(module.forward).parameters.values())[1:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


class _Record(fx.Interpreter):
    """Runs the traced graph once and keeps every node's value."""

    def values_on(self, x: torch.Tensor) -> dict[fx.Node, Any]:
        self.values: dict[fx.Node, Any] = {}
        self.run(x)
        return self.values

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out


class _Builder:
    """Walks the fx graph; the helpers below are what the ops' trace rules may use."""

    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any],
                 module: nn.Module) -> None:
        self.gm = gm
        self.root = module
        self.values = values
        self.modules = dict(gm.named_modules())
        self.params = {id(p): name for name, p in module.named_parameters()}
        self.aliases: dict[fx.Node, str] = {}
        self.inputs: list[dict[str, Any]] = []
        self.nodes: dict[str, dict[str, Any]] = {}
        self.outputs: list[str] = []
        self.ties: dict[str, str] = {}
        self.aranges: dict[fx.Node, list[int]] = {}
        self.tuples: dict[fx.Node, str] = {}  # multi-output modules -> where
        self.claimed: dict[fx.Node, Any] = {}  # node -> None (skip) or an emission
        self.pending: set[fx.Node] = set()  # parameters not yet used as values
        self.used: set[str] = set()  # tensor names of emitted nodes
        self.calls: dict[str, int] = {}  # module path -> times called

    def result(self) -> dict[str, Any]:
        out = {"version": 1, "inputs": self.inputs, "nodes": list(self.nodes.values()),
               "outputs": self.outputs}
        if self.ties:
            out["ties"] = self.ties
        return out

    # --- helpers for op trace rules -----------------------------------------------------

    def where(self, node: fx.Node) -> str:
        """The module path and call of a node, for error messages."""
        stack = node.meta.get("nn_module_stack") or {}
        path = next(reversed(stack), "") if stack else ""
        if node.op == "call_module":
            path = str(node.target)
        call = getattr(node.target, "__name__", str(node.target))
        return f"{path or '<root>'} ({node.op} {call})"

    def path(self, node: fx.Node) -> str:
        return str(node.target)

    def param_path(self, arg: Any) -> str | None:
        """The parameter name a ``get_attr`` node reads (consumed by the caller), else None."""
        if isinstance(arg, fx.Node) and arg.op == "get_attr":
            return str(arg.target)
        return None

    def holds_tensors(self, arg: Any) -> bool:
        """A traced tensor or a tuple of them (``split``), not a size or a number."""
        v = self.values.get(arg) if isinstance(arg, fx.Node) else None
        return isinstance(v, torch.Tensor) or (
            isinstance(v, tuple | list) and any(isinstance(x, torch.Tensor) for x in v))

    def is_tensor(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and isinstance(self.values.get(arg), torch.Tensor)

    def const(self, arg: Any) -> float | None:
        """A Python number, or a traced non-tensor value that is one (``x.size(-1)**-0.5``)."""
        value = self.values.get(arg) if isinstance(arg, fx.Node) else arg
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None  # type: ignore[arg-type]

    def shape(self, arg: Any) -> tuple[int, ...]:
        value = self.values.get(arg)
        if not isinstance(value, torch.Tensor):
            raise UnsupportedOpError(f"{arg}: value is not a single tensor")
        return tuple(value.shape)

    def src(self, arg: Any, user: fx.Node) -> str:
        if isinstance(arg, fx.Node) and arg in self.pending and arg not in self.aliases:
            OPS["parameter"].trace(self, arg, arg.target)
        if not isinstance(arg, fx.Node) or arg not in self.aliases:
            raise UnsupportedOpError(f"{self.where(user)}: operand {arg!r} is not a traced "
                                     "tensor of the network")
        return self.aliases[arg]

    def one(self, node: fx.Node) -> list[str]:
        return [self.src(node.args[0], node)]

    def alias(self, node: fx.Node, arg: Any) -> None:
        self.aliases[node] = self.src(arg, node)

    def emit(self, node: fx.Node, op: str, srcs: list[str], attrs: dict[str, Any],
             path: str | None = None, params: dict[str, str] | None = None) -> None:
        """Add an op-graph node for ``node``; ``path`` names its module (and tensors).

        A module called a second time gets the path ``<path>@2`` and its tensors are tied
        to the first call's (weight sharing by reuse)."""
        if params is None and path and any(f"{path}.{r}" in self.used
                                           for r in OPS[op].roles(attrs)):
            calls = self.calls[path] = self.calls.get(path, 1) + 1
            first, path = path, f"{path}@{calls}"
            params = {r: f"{path}.{r}" for r in OPS[op].roles(attrs)}
            self.ties.update({f"{path}.{r}": f"{first}.{r}" for r in params})
        name = path if path and path not in self.nodes and path not in self.inputs_names() \
            else node.name
        while name in self.nodes or name in self.inputs_names():
            name += "_"
        if params is None:
            params = {role: f"{path}.{role}" for role in OPS[op].roles(attrs)} if path else {}
        self.nodes[name] = {"name": name, "op": op, "inputs": srcs, "attrs": attrs,
                            "params": params}
        self.used.update(params.values())
        self.aliases[node] = name
        self._find_ties(params)

    def inputs_names(self) -> set[str]:
        return {i["name"] for i in self.inputs}

    def fold_scale(self, arg: Any) -> tuple[float, str] | None:
        """If ``arg`` is a ``mul_scalar`` used only here, remove it: (factor, its input)."""
        name = self.aliases.get(arg) if isinstance(arg, fx.Node) else None
        node = self.nodes.get(name) if name else None
        if node is None or node["op"] != "mul_scalar" or len(arg.users) != 1:
            return None
        del self.nodes[name]  # type: ignore[arg-type]
        return node["attrs"]["value"], node["inputs"][0]

    def mark_arange(self, node: fx.Node) -> None:
        self.aranges[node] = [int(i) for i in self.values[node].tolist()]

    def arange(self, arg: Any) -> list[int] | None:
        return self.aranges.get(arg)

    def tuple_output(self, node: fx.Node, where: str) -> None:
        """A module returning (output, extras): only ``[0]`` may be used."""
        self.tuples[node] = where

    def claim(self, nodes: set[fx.Node], at: fx.Node, op: str, x: fx.Node,
              attrs: dict[str, Any], params: dict[str, str], path: str | None = None) -> None:
        """Replace ``nodes`` by one ``op`` node emitted when the walk reaches ``at``
        (named ``path``, else after ``at``'s module)."""
        for n in nodes:
            self.claimed[n] = None
        self.claimed[at] = (op, x, attrs, params, path)

    # --- the walk -----------------------------------------------------------------------

    def _find_ties(self, params: dict[str, str]) -> None:
        for name in params.values():
            try:
                p = self.root.get_parameter(name)
            except AttributeError:
                continue
            first = self.params.get(id(p))
            if first is not None and first != name:
                self.ties[name] = first

    def visit(self, node: fx.Node) -> None:
        if node in self.claimed:
            emission = self.claimed[node]
            if emission is not None:
                op, x, attrs, params, where = emission
                where = where or str(node.target).rpartition(".")[0] or None
                self.emit(node, op, [self.src(x, node)], attrs, where, params)
            return
        if node.op == "placeholder":
            if self.inputs:
                if node.args:  # an optional argument left at its default
                    return
                raise UnsupportedOpError(f"{node.name}: only single-input modules are "
                                         "supported")
            self.inputs.append({"name": node.name, "shape": list(self.shape(node)[1:])})
            self.aliases[node] = node.name
        elif node.op == "output":
            outs = node.args[0]
            outs = list(outs) if isinstance(outs, tuple | list) else [outs]
            self.outputs = [self.src(o, node) for o in outs if o is not None]  # (y, None)
        elif node.op == "get_attr":
            self.pending.add(node)  # emitted on first use as a value (see src)
        elif node.op == "call_function" and node.args and node.args[0] in self.tuples:
            if node.target.__name__ != "getitem" or node.args[1] != 0:  # type: ignore[union-attr]
                raise UnsupportedOpError(f"{self.tuples[node.args[0]]}: only the output "
                                         "([0]) of this module may be used")
            self.aliases[node] = self.aliases[node.args[0]]  # type: ignore[index]
        else:
            self.visit_call(node)

    def visit_call(self, node: fx.Node) -> None:
        if node.op == "call_module":
            m = self.modules[str(node.target)]
            rule, target = _MODULES.get(type(m)), m
            if rule is None:
                raise UnsupportedOpError(
                    f"{node.target}: module type {type(m).__name__} is not supported; "
                    "see the op list in the README (or send arch=)")
        else:
            table = _FUNCTIONS if node.op == "call_function" else _METHODS
            rule, target = table.get(node.target), node.target
            if rule is None:
                if not isinstance(self.values.get(node), torch.Tensor):
                    return  # sizes, dtypes, devices: read on the example, not part of the graph
                name = getattr(node.target, "__name__", str(node.target))
                raise UnsupportedOpError(f"{self.where(node)}: {name} is not supported; "
                                         "see the op list in the README (or send arch=)")
        if node.op != "call_module" and not self.holds_tensors(node):
            return  # arithmetic on sizes (x.size()[:-1] + (h, d)), not part of the graph
        if rule.name == "take" and not self.is_tensor(node.args[0]):
            if isinstance(self.values.get(node), torch.Tensor):
                raise UnsupportedOpError(f"{self.where(node)}: indexing the tuple result of "
                                         f"{node.args[0]} is not supported")
            return  # indexing a shape tuple
        rule.trace(self, node, target)
