"""Guessing the op graph from tensor names and shapes, for a few common layouts only.

A state dict does not record parameter-free layers (activations, pooling, flatten) nor
strides and paddings, so inference follows fixed conventions and refuses anything else:

* ``nn.Sequential`` **MLP/CNN** (``0.weight``, ``3.weight``... optionally under one prefix
  such as ``net.``): index gaps are parameter-free modules. After a weight layer (and its
  BatchNorm, if any) one gap slot is ``ReLU``; between convs a second slot is
  ``MaxPool2d(2)`` (``MaxPool1d(2)`` for conv1d); between the last conv and the first linear
  the last slot is ``Flatten`` and a third slot is an adaptive average pool to the size the
  linear's input implies (input spatial size then unknown). Without it the input spatial
  size is derived from the linear's input (square images). Convs use stride 1 and padding
  ``k // 2``. A single slot before the first linear of an MLP is ``Flatten``.
* **SIREN INRs** in the reference layout (``net.0.linear.weight`` ... ``net.N.weight``):
  ``Linear -> Sine(30)`` per layer (w0=30 everywhere, as the reference code), last layer
  linear (or sine-activated too if it is also ``.linear``).
* **torchvision-style ResNets** (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``fc``), BasicBlock
  or Bottleneck; stride 2 in the first block of ``layer2``-``layer4`` and on the
  ``downsample`` 1×1 conv; a 7×7 stem means stride 2 + ``MaxPool2d(3, 2, 1)``, a 3×3 stem
  (CIFAR variant) stride 1 and no max-pool.
* **torchvision-style VGGs** (``features.N``, ``classifier.N``; ``vgg11`` ... ``vgg19``, with
  or without BatchNorm): ``features`` is ``make_layers``: 3×3 convs with padding 1, the
  BatchNorm at the next index, then ReLU; one missing index after a conv (or its BatchNorm)
  is that ReLU, two are ReLU + ``MaxPool2d(2)`` (an ``"M"`` of the config). The config's
  last ``"M"`` follows the last conv and no index shows it: it is assumed (every torchvision
  config ends with one). Then ``avgpool`` (``AdaptiveAvgPool2d`` to the square that
  ``classifier.0``'s input implies, (7, 7) for torchvision), flatten, and ``classifier``:
  linears with ReLU between them, plus ``Dropout(0.5)`` where two indices are missing
  (torchvision's Linear, ReLU, Dropout). Other kernels
  (AlexNet's features) or a classifier that does not start at index 0 are refused.
* **CIFAR VGGs** as kuangliu/pytorch-cifar writes them (``features.N`` as above, always
  with BatchNorm, closed by a parameter-free ``AvgPool2d(1, 1)``, the identity; then one
  ``classifier`` Linear, ``classifier.weight``): no adaptive pool, so ``classifier``'s
  input fixes the input size: ``side · 2^pools`` per side of a square (512 features of 512
  channels after 5 pools: 3×32×32), listed as the ``input_shape`` assumption.
* **named modules** ``conv1`` ... ``convN`` then ``fc1`` ... ``fcM`` (LeNet-5, the PyTorch
  MNIST example; ``fc1..fcM`` alone is an MLP that flattens its input), applied in number
  order with ReLU after every conv and every fc but the last, stride 1, a flatten before
  ``fc1``; square kernels only. The padding and the 2×2 max-pools are not in the tensors;
  fc1's input size fixes the spatial arithmetic, so the conventions are tried in this order:
  padding 0 (the ``nn.Conv2d`` default) then ``kernel//2``, each with a pool after every
  conv (LeNet-5), after the last conv only (the MNIST example) or none; then per-conv
  paddings (up to 4 convs).
  The first that takes a square input of a common size (28, 32, 8, 16, 64, 96, 224; or the
  given ``input_shape``) exactly to ``fc1.in_features`` is used, and the others that also fit
  are named in the note; if none fits, :class:`MissingArchitectureError`. LeNet-5 reads as
  padding 0 on 32×32 (pools after both convs), the MNIST example as padding 0 on 28×28 (one
  pool after conv2). A final ``log_softmax`` is not reproduced (listed in the notes).
  ``bn{i}`` is a BatchNorm right after ``conv{i}``, before its ReLU (a ``bn`` numbered past
  the convs is refused).

Everything else raises :class:`MissingArchitectureError` explaining how to attach one.

**Assumptions are never silent.** What the tensors cannot decide is returned by
:func:`infer` in ``Inferred.assumptions`` (value used) and ``Inferred.notes`` (one line each,
for people), and each can be settled by the caller:

* ``activation``: a state dict never records it. Given ``activation=`` (``"relu"``,
  ``"gelu"``, ``"gelu(tanh)"``, ``"silu"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu(0.01)"``,
  ``"sine(30)"``) it is used everywhere the layout puts one. Otherwise the default is the
  layout's own (``relu``; ``sine(30)`` for the SIREN reference layout), **except** that a
  plain ``nn.Sequential`` stack of linears whose weights look like a SIREN's is inferred as
  ``sine(30)``: a name hint (a word ``sin``/``sine``/``siren`` in the prefix), or every
  layer after the first with ``max|W|·√fan_in < 0.6`` (at least 64 weights in all, so chance
  cannot do it). A SIREN initialises them to ``√6/w0`` (0.08 for w0 30) and fitted SIRENs
  stay near it (0.27-0.31 for w0 30, 0.46 for w0 15 in our fits); PyTorch's default init
  gives about 1 and trained ReLU nets 1.7-8. The first layer cannot tell (about 1/√fan_in
  for both). Either way the choice and its evidence are listed: an assumption, not a fact.
* ``input_shape``: listed whenever the tensors do not fix it: the spatial size of a conv net
  that pools globally (``null``: any size works, the network does not depend on it), the
  square size derived from a flatten→linear, or the image shape an MLP flattens. Given
  ``input_shape=`` (per-sample, e.g. ``(1, 8, 8)``) it is used and checked against the
  tensors.
* ``padding``, ``pooling`` (and ``dropout``, ``batchnorm``): for every layout with convs
  (``nn.Sequential`` CNNs, ResNets, VGGs, named modules), the conv padding (per conv in
  order for ``nn.Sequential`` CNNs and named modules; ``kernel//2`` for ResNets, 1 for VGGs),
  where the pools sit (module indices or names; ``none``), the dropout rate and where a
  BatchNorm sits, as the layout's conventions (or, for named modules, fc1's arithmetic)
  chose; ``input_shape=`` settles the named modules' choice where the common sizes cannot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError, MissingArchitectureError

__all__ = ["Inferred", "activation_text", "infer", "infer_architecture", "parse_activation"]

# How to attach an architecture, for library users; the service appends its own hint (an
# upload reads the architecture from the file, so it is written there before uploading).
HOW_TO = ("attach one: save the model with graphs.save(module, path, example_input), which "
          "writes its op graph into the file, or give the op graph yourself with "
          "graphs.load(path, arch=op_graph_json) (graphs.save_checkpoint(loaded, new_path) "
          "then writes it into a file)")


@dataclass(frozen=True)
class Inferred:
    """An inferred op graph and everything it rests on that the tensors did not decide."""

    architecture: Architecture
    layout: str  # "resnet", "vgg", "named", "siren" or "sequential"
    assumptions: dict[str, Any]  # e.g. {"activation": "relu", "input_shape": [3, None, None]}
    notes: tuple[str, ...]  # one line per assumption: what was assumed, why, how to settle it


def infer(tensors: dict[str, torch.Tensor], *, activation: str | None = None,
          input_shape: Sequence[int] | None = None) -> Inferred:
    """The op graph of a state dict in one of the known layouts, or a clear error.

    ``activation`` and ``input_shape`` settle what a state dict cannot say; whatever is not
    given and had to be assumed is listed in the result (never silently chosen).
    """
    act = parse_activation(activation) if activation is not None else None
    shape = _parse_shape(input_shape) if input_shape is not None else None
    for guess in (_resnet, _vgg, _named, _siren, _sequential):
        try:
            spec = guess(tensors, act, shape)
        except _NoMatch:
            continue
        if shape is not None:
            spec.shape = shape
            spec.assumptions.pop("input_shape", None)
            spec.notes.pop("input_shape", None)
        layout = guess.__name__.strip("_")
        try:
            arch = Architecture.from_json(spec.done())
            arch.check_tensors(tensors)
        except ArchitectureError as exc:
            given = f" with input_shape {shape}" if shape is not None else ""
            raise MissingArchitectureError(
                f"tensors look like a {layout} layout but do not fit it{given} "
                f"({exc}); {HOW_TO}") from None
        return Inferred(arch, layout, dict(spec.assumptions), tuple(spec.notes.values()))
    raise MissingArchitectureError(f"no architecture in the file and the tensor names match "
                                   f"no known layout; {HOW_TO}")


def infer_architecture(tensors: dict[str, torch.Tensor], *, activation: str | None = None,
                       input_shape: Sequence[int] | None = None) -> Architecture:
    """:func:`infer`'s op graph alone (for callers that do not report assumptions)."""
    return infer(tensors, activation=activation, input_shape=input_shape).architecture


# --- activations ---------------------------------------------------------------------------

_Act = tuple[str, dict[str, Any]]
_ACT = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")
_ACT_DEFAULTS: dict[str, tuple[str | None, Callable[[str | None], dict[str, Any]]]] = {
    "relu": (None, lambda a: {}),
    "silu": (None, lambda a: {}),
    "tanh": (None, lambda a: {}),
    "sigmoid": (None, lambda a: {}),
    "gelu": ("none", lambda a: {"approximate": a}),
    "leaky_relu": ("0.01", lambda a: {"negative_slope": float(a)}),  # type: ignore[arg-type]
    "sine": ("30", lambda a: {"w0": float(a)}),  # type: ignore[arg-type]
}
SIREN_ACTIVATION: _Act = ("sine", {"w0": 30.0})
RELU: _Act = ("relu", {})


def parse_activation(text: str) -> _Act:
    """``"relu"``, ``"gelu(tanh)"``, ``"leaky_relu(0.2)"``, ``"sine(30)"`` -> (op, attrs)."""
    m = _ACT.match(text) if isinstance(text, str) and len(text) <= 64 else None
    if m is None or m.group(1) not in _ACT_DEFAULTS:
        raise ArchitectureError(
            f"activation {text!r} is not one of: {', '.join(_ACT_DEFAULTS)} (an argument in "
            "parentheses for gelu, leaky_relu and sine, e.g. 'sine(30)')")
    name, arg = m.group(1), m.group(2)
    default, build = _ACT_DEFAULTS[name]
    if arg is not None and default is None:
        raise ArchitectureError(f"activation {name!r} takes no argument, got {text!r}")
    try:
        attrs = build(arg if arg is not None else default)
    except ValueError:
        raise ArchitectureError(f"activation {text!r}: {arg!r} is not a number") from None
    if name == "gelu" and attrs["approximate"] not in ("none", "tanh"):
        raise ArchitectureError(f"activation {text!r}: gelu takes 'none' or 'tanh'")
    if any(isinstance(v, float) and not math.isfinite(v) for v in attrs.values()):
        raise ArchitectureError(f"activation {text!r}: the argument must be finite")
    return name, attrs


def activation_text(act: _Act) -> str:
    """The canonical text of an activation, as :func:`parse_activation` reads it."""
    name, attrs = act
    if not attrs:
        return name
    (value,) = attrs.values()
    return f"{name}({value:g})" if isinstance(value, float) else f"{name}({value})"


def _parse_shape(shape: Sequence[int]) -> list[int | None]:
    dims = list(shape)
    if not 1 <= len(dims) <= 4 or not all(isinstance(d, int) and not isinstance(d, bool)
                                          and 0 < d <= 2**20 for d in dims):
        raise ArchitectureError(
            f"input_shape must be 1 to 4 positive integers (per sample, no batch dim), got "
            f"{dims}")
    return list(dims)


class _NoMatch(Exception):
    pass


class _Spec:
    """Accumulates op-graph nodes in order, and the assumptions made on the way."""

    def __init__(self, shape: list[int | None], activation: _Act,
                 activation_note: str | None) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.shape = shape
        self.last = "x"
        self.activation = activation
        self.activation_note = activation_note  # None: given by the caller, not assumed
        self.assumptions: dict[str, Any] = {}
        self.notes: dict[str, str] = {}

    def add(self, op: str, attrs: dict[str, Any], path: str | None = None,
            roles: list[str] | None = None, name: str | None = None,
            inputs: list[str] | None = None) -> str:
        name = name or path or f"{op}_{len(self.nodes)}"
        params = {r: f"{path}.{r}" for r in roles or []}
        self.nodes.append({"name": name, "op": op, "inputs": inputs or [self.last],
                           "attrs": attrs, "params": params})
        self.last = name
        return name

    def act(self, name: str | None = None) -> str:
        """The layout's activation slot: the given activation, or the assumed one (listed)."""
        if self.activation_note is not None:
            self.assume("activation", activation_text(self.activation), self.activation_note)
        op, attrs = self.activation
        return self.add(op, dict(attrs), name=name)

    def assume(self, key: str, value: Any, note: str) -> None:
        self.assumptions[key] = value
        self.notes[key] = f"{key}: {note}"

    def input_unknown(self, channels: int, dims: int, why: str) -> None:
        """Spatial input size the tensors do not fix (any size works): listed as unknown."""
        self.shape = [channels, *[None] * dims]
        self.assume("input_shape", list(self.shape),
                    f"spatial size unknown ({why}); pass input_shape= to fix it")

    def done(self) -> dict[str, Any]:
        return {"version": 1, "inputs": [{"name": "x", "shape": self.shape}],
                "nodes": self.nodes, "outputs": [self.last]}


def _default_activation(act: _Act | None, default: _Act, why: str) -> tuple[_Act, str | None]:
    """The caller's activation (not an assumption) or the layout's default with its note."""
    if act is not None:
        return act, None
    return default, (f"not recorded in a state dict; assumed {activation_text(default)} "
                     f"({why}); pass activation= to settle it")


def _linear(spec: _Spec, t: dict[str, torch.Tensor], path: str, **kw: Any) -> str:
    w = t[f"{path}.weight"]
    bias = f"{path}.bias" in t
    return spec.add("linear", {"in_features": w.shape[1], "out_features": w.shape[0],
                               "bias": bias}, path, ["weight", "bias"] if bias else ["weight"],
                    **kw)


def _conv(spec: _Spec, t: dict[str, torch.Tensor], path: str, stride: int, padding: int,
          **kw: Any) -> str:
    w = t[f"{path}.weight"]
    dims = w.dim() - 2
    bias = f"{path}.bias" in t
    return spec.add(f"conv{dims}d", {
        "in_channels": w.shape[1], "out_channels": w.shape[0],
        "kernel_size": list(w.shape[2:]), "stride": [stride] * dims,
        "padding": [padding] * dims, "dilation": [1] * dims, "bias": bias},
        path, ["weight", "bias"] if bias else ["weight"], **kw)


def _bn(spec: _Spec, t: dict[str, torch.Tensor], path: str, dims: int, **kw: Any) -> str:
    affine = f"{path}.weight" in t
    stats = f"{path}.running_mean" in t
    roles = (["weight", "bias"] if affine else []) + \
        (["running_mean", "running_var", "num_batches_tracked"] if stats else [])
    n = (t[f"{path}.weight"] if affine else t[f"{path}.running_mean"]).shape[0]
    return spec.add(f"batchnorm{dims}d", {"num_features": n, "eps": 1e-5, "momentum": 0.1,
                                          "affine": affine, "track_running_stats": stats},
                    path, roles, **kw)


# --- nn.Sequential MLP / CNN ---------------------------------------------------------------

_SEQ = re.compile(r"^(.*?)(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def _sequential(t: dict[str, torch.Tensor], act: _Act | None,
                shape: list[int | None] | None = None) -> _Spec:
    matches = [_SEQ.match(k) for k in t]
    if not t or not all(matches) or len({m.group(1) for m in matches if m}) != 1:
        raise _NoMatch
    prefix = matches[0].group(1)  # type: ignore[union-attr]
    layers: dict[int, str] = {}
    for m in matches:
        i = int(m.group(2))  # type: ignore[union-attr]
        path = f"{prefix}{i}"
        kind = "bn" if f"{path}.running_mean" in t else \
            "weight" if f"{path}.weight" in t and t[f"{path}.weight"].dim() >= 2 else "?"
        if kind == "?":
            raise _NoMatch
        layers[i] = kind
    order = sorted(layers)
    if layers[order[0]] != "weight":
        raise _NoMatch
    first = t[f"{prefix}{order[0]}.weight"]
    conv_dims = first.dim() - 2
    kinds = [("conv" if t[f"{prefix}{i}.weight"].dim() > 2 else "linear")
             if layers[i] == "weight" else "bn" for i in order]
    n_pools = 0
    spec = _Spec([], *_sequential_activation(t, prefix, order, kinds, act))
    if conv_dims > 0:
        # Input spatial size: fixed only when a conv stack is flattened without adaptive
        # pooling (derived below); otherwise no layer depends on it.
        spec.input_unknown(first.shape[1], conv_dims, "no layer of a conv stack that pools "
                           "globally or ends in a conv depends on it")
    else:
        spec.shape = [first.shape[1]]
        if order[0] == 1:
            spec.add("flatten", {})
            spec.assume("input_shape", list(spec.shape),
                        f"the stack flattens its input first, so only its size "
                        f"({first.shape[1]}) is known; assumed flat; pass input_shape= (e.g. "
                        "an image's channels, height, width) to fix it")
        elif order[0] != 0:
            raise _NoMatch
    if conv_dims > 0 and order[0] != 0:
        raise _NoMatch
    paddings: list[int] = []
    max_pools: list[str] = []  # the module indices where the gaps put MaxPool(2)
    global_pool = ""  # the adaptive average pool before the first linear, if any
    prev = None
    for pos, i in enumerate(order):
        path, kind = f"{prefix}{i}", kinds[pos]
        if kind == "bn":
            if prev not in ("conv", "linear"):
                raise _NoMatch
            _bn(spec, t, path, conv_dims if prev == "conv" else 1)
        elif kind == "conv":
            k = t[f"{path}.weight"].shape[2]
            if t[f"{path}.weight"].dim() - 2 != conv_dims or prev == "linear":
                raise _NoMatch
            _conv(spec, t, path, 1, k // 2)
            paddings.append(k // 2)
        else:
            _linear(spec, t, path)
        gap_end = order[pos + 1] if pos + 1 < len(order) else i + 1
        gap = gap_end - i - 1
        nxt = kinds[pos + 1] if pos + 1 < len(order) else None
        if nxt == "bn":
            if gap:
                raise _NoMatch
        elif nxt is None:
            pass
        elif kind != "linear" and prev_weight(kinds, pos) == "conv" and nxt == "linear":
            c = t[f"{path}.weight"].shape[0]
            in_features = t[f"{prefix}{order[pos + 1]}.weight"].shape[1]
            side = round((in_features / c) ** (1 / conv_dims))
            if c * side**conv_dims != in_features or gap not in (2, 3):
                raise _NoMatch
            spec.act()
            if gap == 3:
                spec.add(f"adaptive_avg_pool{conv_dims}d", {"output_size": [side] * conv_dims})
                global_pool = f"adaptive_avg_pool{conv_dims}d({side}) at {prefix}{i + 2}"
            else:
                spec.shape = [spec.shape[0], *[side * 2**n_pools] * conv_dims]
                spec.assume("input_shape", list(spec.shape),
                            f"derived from the first linear's {in_features} inputs assuming a "
                            f"square input, stride 1, padding kernel//2 and {n_pools} "
                            "2x2 max-pool(s); pass input_shape= to fix it")
            spec.add("flatten", {})
        elif gap == 1:
            spec.act()
        elif gap == 2 and kinds[pos] != "linear" and prev_weight(kinds, pos) == "conv":
            spec.act()
            spec.add(f"max_pool{conv_dims}d", {"kernel_size": [2] * conv_dims,
                                              "stride": [2] * conv_dims,
                                              "padding": [0] * conv_dims,
                                              "dilation": [1] * conv_dims})
            n_pools += 1
            max_pools.append(f"{prefix}{i + 2}")
        elif gap != 0:
            raise _NoMatch
        prev = kind if kind != "bn" else prev
    if paddings:
        spec.assume("padding", paddings, f"{paddings} on the convs in order: kernel//2, "
                    "stride 1 (the layout's convention: a conv keeps the size); a state dict "
                    "does not record it")
        pools = [f"max_pool{conv_dims}d(2) at {', '.join(max_pools)}"] if max_pools else []
        pools += [global_pool] if global_pool else []
        spec.assume("pooling", "; ".join(pools) or "none",
                    "the index gaps place the pools (module indices): two missing indices "
                    "between convs are ReLU + MaxPool(2), max not average; three before the "
                    "first linear are ReLU, AdaptiveAvgPool, Flatten; one is ReLU (two before "
                    "the first linear: ReLU, Flatten)")
    return spec


SIREN_SCALE = 0.6  # max|W|·√fan_in below this on every later layer: SIREN-like weights
SIREN_MIN_WEIGHTS = 64  # fewer later weights than this are no evidence (a small max by chance)
_SIREN_WORD = re.compile(r"(?:^|[^a-z])(?:sin|sine|siren)s?(?:[^a-z]|$)")


def _sequential_activation(t: dict[str, torch.Tensor], prefix: str, order: list[int],
                           kinds: list[str], act: _Act | None) -> tuple[_Act, str | None]:
    """The activation of an ``nn.Sequential`` stack: given, or relu, or (for a linear stack
    whose names or weights look like a SIREN) sine(30); the choice is listed with its why."""
    if act is not None or any(k != "linear" for k in kinds) or len(kinds) < 2:
        return _default_activation(act, RELU, "PyTorch's usual choice")
    if _SIREN_WORD.search(prefix.lower()):
        return _default_activation(None, SIREN_ACTIVATION, f"the prefix {prefix!r} names a "
                                   "SIREN; w0 30 as the reference code")
    later = [t[f"{prefix}{i}.weight"] for i in order[1:]]
    scales = [_init_scale(w) for w in later]
    if max(scales) < SIREN_SCALE and sum(w.numel() for w in later) >= SIREN_MIN_WEIGHTS:
        return _default_activation(None, SIREN_ACTIVATION, f"the weights look like a SIREN's: "
                                   f"max|W|*sqrt(fan_in) <= {max(scales):.3f} after the first "
                                   f"layer, where ReLU nets have about 1; w0 30 as the "
                                   "reference code")
    return _default_activation(None, RELU, f"PyTorch's usual choice; the weights do not look "
                               f"like a SIREN's (max|W|*sqrt(fan_in) up to {max(scales):.2f})")


def _init_scale(weight: torch.Tensor) -> float:
    """``max|W|·√fan_in``: about 1 for PyTorch's default init, √6/w0 for a SIREN's."""
    fan_in = math.prod(weight.shape[1:])
    return float(weight.detach().abs().max()) * math.sqrt(fan_in) if weight.numel() else 0.0


def prev_weight(kinds: list[str], pos: int) -> str | None:
    """The kind of the nearest weight layer at or before ``pos`` (skipping norms)."""
    for k in reversed(kinds[: pos + 1]):
        if k != "bn":
            return k
    return None


# --- torchvision VGG -----------------------------------------------------------------------

_VGG = re.compile(r"^(features|classifier)\.(\d+)\."
                  r"(weight|bias|running_mean|running_var|num_batches_tracked)$")
VGG_DROPOUT = 0.5  # torchvision's VGG(dropout=0.5)


def _max_pool(spec: _Spec, dims: int, name: str | None = None) -> str:
    return spec.add(f"max_pool{dims}d", {"kernel_size": [2] * dims, "stride": [2] * dims,
                                         "padding": [0] * dims, "dilation": [1] * dims},
                    name=name)


def _indexed(t: dict[str, torch.Tensor], prefix: str) -> list[tuple[int, str]]:
    """``(index, kind)`` of ``prefix.N.*`` modules in index order: "conv", "linear", "bn"."""
    out: dict[int, str] = {}
    for k in t:
        m = _VGG.match(k)
        if m is None or m.group(1) != prefix:
            continue
        path = f"{prefix}.{m.group(2)}"
        w = t.get(f"{path}.weight")
        kind = "bn" if f"{path}.running_mean" in t else \
            "?" if w is None else "linear" if w.dim() == 2 else "conv" if w.dim() == 4 else "?"
        if kind == "?":
            raise _NoMatch
        out[int(m.group(2))] = kind
    return sorted(out.items())


_CIFAR_HEAD = ("classifier.weight", "classifier.bias")  # pytorch-cifar: one Linear(512, 10)


def _vgg(t: dict[str, torch.Tensor], act: _Act | None,
         shape: list[int | None] | None = None) -> _Spec:
    """torchvision's ``VGG``: ``features`` (``make_layers``: 3×3 convs with padding 1, an
    optional BatchNorm, ReLU, ``"M"`` = MaxPool2d(2)), ``avgpool`` (AdaptiveAvgPool2d),
    flatten, ``classifier`` (Linear, ReLU, Dropout, ..., Linear). Or the CIFAR VGG of
    kuangliu/pytorch-cifar: the same ``features`` (closed by a parameter-free
    ``AvgPool2d(1, 1)``), flattened straight into one ``classifier`` Linear."""
    if not t or not all(_VGG.match(k) or k in _CIFAR_HEAD for k in t):
        raise _NoMatch
    cifar = "classifier.weight" in t
    features, classifier = _indexed(t, "features"), _indexed(t, "classifier")
    if cifar:
        if classifier or t["classifier.weight"].dim() != 2:
            raise _NoMatch
        classifier = [(0, "linear")]
    if not features or not classifier or features[0] != (0, "conv") or \
            classifier[0] != (0, "linear") or any(k != "linear" for _, k in classifier) or \
            any(k == "linear" for _, k in features):
        raise _NoMatch
    convs = [i for i, k in features if k == "conv"]
    if any(tuple(t[f"features.{i}.weight"].shape[2:]) != (3, 3) for i in convs):
        raise _NoMatch  # VGG's convs are all 3×3 (AlexNet's features are not)
    family = "pytorch-cifar" if cifar else "torchvision"
    source, make = f"{family}'s VGG", f"{family}'s {'_make_layers' if cifar else 'make_layers'}"
    spec = _Spec([], *_default_activation(act, RELU, source))
    pools: list[str] = []
    for pos, (i, kind) in enumerate(features):
        path = f"features.{i}"
        nxt = features[pos + 1] if pos + 1 < len(features) else None
        if kind == "bn":
            if pos == 0 or features[pos - 1][1] != "conv" or features[pos - 1][0] != i - 1:
                raise _NoMatch
            _bn(spec, t, path, 2)
        else:
            _conv(spec, t, path, 1, 1)
            if nxt is not None and nxt[1] == "bn":
                continue
        if nxt is None:  # the config's last "M": after the last conv, never in the indices
            spec.act()
            pools.append(f"features.{i + 2} (assumed: every {family} config ends with "
                         "'M', and the indices cannot show it)")
            _max_pool(spec, 2)
        elif nxt[0] - i == 2:  # ReLU
            spec.act()
        elif nxt[0] - i == 3:  # ReLU, "M"
            spec.act()
            pools.append(f"features.{i + 2}")
            _max_pool(spec, 2)
        else:
            raise _NoMatch
    n_pools = len(pools)
    in_channels = t["features.0.weight"].shape[1]
    c = t[f"features.{convs[-1]}.weight"].shape[0]
    head = "classifier" if cifar else "classifier.0"
    in_features = t[f"{head}.weight"].shape[1]
    side = math.isqrt(in_features // c) if in_features % c == 0 else 0
    if side < 1 or c * side * side != in_features:
        made_by = "its flattened features" if cifar else "the avgpool's output"
        raise MissingArchitectureError(
            f"tensors look like a {source} but {head}'s {in_features} inputs are not "
            f"features' {c} channels times a square ({made_by}); {HOW_TO}")
    if cifar:
        size = side * 2 ** n_pools
        spec.shape = [in_channels, size, size]
        spec.assume("input_shape", list(spec.shape),
                    f"derived from classifier's {in_features} inputs: {n_pools} 2x2 "
                    f"max-pools take {size}x{size} to features' {c}x{side}x{side} (so does "
                    f"any side up to {size + 2 ** n_pools - 1}, pools round down); square "
                    "assumed; pass input_shape= to settle it")
        spec.add("flatten", {}, name="flatten")
        _linear(spec, t, "classifier")
        closing = ("the closing AvgPool2d(kernel_size=1, stride=1) of features is the "
                   "identity and left out; the classifier flattens features' output "
                   "directly")
    else:
        spec.input_unknown(in_channels, 2,
                           "the VGG pools adaptively before its classifier; any size of at "
                           f"least {2 ** n_pools} pixels per side works")
        spec.add("adaptive_avg_pool2d", {"output_size": [side, side]}, name="avgpool")
        spec.add("flatten", {}, name="flatten")
        closing = (f"AdaptiveAvgPool2d(({side}, {side})) before the classifier from "
                   f"classifier.0's {in_features} inputs")
    dropouts = []
    for pos, (i, _) in enumerate(classifier if not cifar else []):
        _linear(spec, t, f"classifier.{i}")
        if pos + 1 == len(classifier):
            break
        gap = classifier[pos + 1][0] - i
        if gap not in (2, 3):
            raise _NoMatch
        spec.act()
        if gap == 3:  # ReLU, Dropout
            dropouts.append(f"classifier.{i + 2}")
            spec.add("dropout", {"p": VGG_DROPOUT})
    spec.assume("padding", 1, f"1 on every 3x3 conv ({make}), so a conv keeps the size; a "
                "state dict does not record it")
    spec.assume("pooling", f"max_pool2d(2) at {', '.join(pools)}",
                "the index gaps of features place the pools (two missing indices after a "
                "conv or its BatchNorm are ReLU + MaxPool2d(2), one is ReLU); max, not average, "
                f"as {make}; {closing}")
    if dropouts:
        spec.assume("dropout", VGG_DROPOUT,
                    f"Dropout(p={VGG_DROPOUT:g}) at {', '.join(dropouts)} (torchvision's "
                    "default; p is not recorded); identity in eval, so outputs do not "
                    "depend on it")
    return spec


# --- named modules: conv1..convN, fc1..fcM (LeNet-5, the PyTorch MNIST example) -------------

_NAMED = re.compile(r"^(conv|fc|bn)([1-9]\d*)\."
                    r"(weight|bias|running_mean|running_var|num_batches_tracked)$")
COMMON_SIDES = (28, 32, 8, 16, 64, 96, 224)  # MNIST family, CIFAR/LeNet-5, digits, ..., ImageNet
_POOLS = ("every", "last", "none")  # a 2x2 max-pool after every conv, after the last, or none
MAX_MIXED_PADDING = 4  # per-conv padding choices are tried for at most this many convs


def _named(t: dict[str, torch.Tensor], act: _Act | None,
           shape: list[int | None] | None = None) -> _Spec:
    """``self.conv1 ... self.convN`` then ``self.fc1 ... self.fcM``, applied in number order
    (``F.relu`` after each but the last fc, ``F.max_pool2d`` and ``torch.flatten`` in
    ``forward``): the padding and the pools are chosen by the spatial arithmetic that fc1's
    input size fixes. ``bn{i}`` (BatchNorm) follows ``conv{i}``, before its ReLU."""
    found: dict[str, set[int]] = {"conv": set(), "fc": set(), "bn": set()}
    for k in t:
        m = _NAMED.match(k)
        if m is None or (m.group(1) != "bn" and m.group(3) not in ("weight", "bias")):
            raise _NoMatch
        found[m.group(1)].add(int(m.group(2)))
    n_conv, n_fc = len(found["conv"]), len(found["fc"])
    if found["conv"] != set(range(1, n_conv + 1)) or found["fc"] != set(range(1, n_fc + 1)) \
            or not n_fc or not found["bn"] <= found["conv"] \
            or any(f"{p}{i}.weight" not in t for p in ("conv", "fc") for i in found[p]) \
            or any(f"bn{i}.weight" not in t and f"bn{i}.running_mean" not in t
                   for i in found["bn"]):
        raise _NoMatch
    convs = [t[f"conv{i}.weight"] for i in range(1, n_conv + 1)]
    fcs = [t[f"fc{i}.weight"] for i in range(1, n_fc + 1)]
    dims = convs[0].dim() - 2 if convs else 0
    if any(w.dim() != 2 for w in fcs) or any(w.dim() - 2 != dims for w in convs) or \
            dims not in (0, 1, 2) or any(len(set(w.shape[2:])) != 1 for w in convs):
        raise _NoMatch  # square kernels only: one padding per conv
    spec = _Spec([], *_default_activation(
        act, RELU, "after every conv and every fc but the last, as LeNet-5 and the PyTorch "
        "MNIST example"))
    if not convs:
        spec.shape = [fcs[0].shape[1]]
        spec.assume("input_shape", list(spec.shape),
                    f"only fc1's input size ({fcs[0].shape[1]}) is known; assumed flat (an "
                    "image is flattened first); pass input_shape= (e.g. (1, 28, 28)) to fix it")
        spec.add("flatten", {})
    else:
        _named_convs(spec, t, convs, fcs[0].shape[1], dims, shape)
        spec.add("flatten", {})
    for i in range(1, n_fc + 1):
        _linear(spec, t, f"fc{i}")
        if i < n_fc:
            spec.act()
    spec.notes["output"] = (f"output: fc{n_fc}'s raw scores; a forward that ends in "
                            "log_softmax (the PyTorch MNIST example) is not reproduced (same "
                            "argmax, logits shifted per sample); dropout holds no tensors and "
                            "is identity in eval, so it is left out")
    return spec


def _named_convs(spec: _Spec, t: dict[str, torch.Tensor], convs: list[torch.Tensor],
                 in_features: int, dims: int, shape: list[int | None] | None) -> None:
    """The convs, ReLUs and pools of the named layout: the first convention (padding 0 or
    kernel//2; a 2x2 max-pool after every conv, after the last, or none) that takes a
    common input size (or the given one) exactly to fc1's ``in_features``."""
    c = convs[-1].shape[0]
    kernels = [tuple(w.shape[2:]) for w in convs]
    n = len(convs)
    tried = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)]  # (padding, pools) in preference
    candidates = [((k,) * n, p) for k, p in tried]
    if 1 < n <= MAX_MIXED_PADDING:  # e.g. LeNet-5 on 28x28 MNIST: conv1 padding 2, conv2 none
        candidates += [(tuple((m >> j) & 1 for j in range(n)), p) for p in range(3)
                       for m in range(1, 2**n - 1)]
    if shape is not None:
        if len(shape) != dims + 1:
            raise MissingArchitectureError(
                f"input_shape {shape} does not fit conv1 ({dims}-d convs take channels and "
                f"{dims} spatial size(s)); {HOW_TO}")
        sizes = [[d for d in shape[1:] if d is not None]]
    else:
        sizes = [[s] * dims for s in COMMON_SIDES]
    fits = [(same, pools, size) for same, pools in candidates for size in sizes
            if _named_out(size, kernels, same, pools, c) == in_features]
    if not fits:
        given = f"the given input_shape {shape}" if shape is not None else \
            f"a square input of a common size ({', '.join(map(str, COMMON_SIDES))})"
        raise MissingArchitectureError(
            f"tensors look like named conv1..conv{n}, fc1.. modules, but no convention "
            "(padding 0 or kernel//2 per conv; a 2x2 max-pool after every conv, after the "
            f"last or none) takes {given} to fc1's {in_features} inputs; pass input_shape= "
            f"or {HOW_TO}")
    same, pools, size = fits[0]
    paddings = [k[0] // 2 if s else 0 for k, s in zip(kernels, same, strict=True)]
    pooled = [f"conv{j + 1}" for j in range(n) if _pooled(j, n, pools)]
    for j in range(n):
        _conv(spec, t, f"conv{j + 1}", 1, paddings[j])
        if f"bn{j + 1}.weight" in t or f"bn{j + 1}.running_mean" in t:
            _bn(spec, t, f"bn{j + 1}", dims)
        spec.act()
        if _pooled(j, n, pools):
            _max_pool(spec, dims)
    first = f"{_describe(same, pools, kernels)} on {'x'.join(map(str, size))}"
    others = list(dict.fromkeys(
        f"{_describe(s, p, kernels)} on {'x'.join(map(str, z))}" for s, p, z in fits[1:]))
    others = [o for o in others if o != first]
    also = f"; also consistent: {' | '.join(others)}" if others else ""
    settle = "fixed by the given input_shape" if shape is not None else \
        "pass input_shape= to settle it (square inputs of " + \
        ", ".join(map(str, COMMON_SIDES)) + " tried)"
    source = "nn.Conv2d's default, as LeNet-5 and the PyTorch MNIST example" \
        if not any(paddings) else "kernel//2 where not 0"
    spec.assume("padding", paddings, f"{paddings} on conv1..conv{n} ({source}), stride 1: "
                f"with the pooling it is the first convention tried (padding 0, then "
                f"kernel//2; a pool after every conv, after the last, none) that takes "
                f"{'x'.join(map(str, size))} inputs to fc1's {in_features}{also}; {settle}")
    spec.assume("pooling", f"max_pool{dims}d(2) after {', '.join(pooled)}" if pooled else
                "none", "max, not average (not recorded); placed with the padding by fc1's "
                "input size (see padding)")
    norms = [f"bn{j + 1}" for j in range(n) if f"bn{j + 1}.weight" in t
             or f"bn{j + 1}.running_mean" in t]
    if norms:
        spec.assume("batchnorm", f"{', '.join(norms)} right after conv with the same number, "
                    "before its ReLU", "conv, BatchNorm, ReLU, pool, the usual order; the "
                    "names do not record it")
    if shape is None:
        spec.shape = [convs[0].shape[1], *size]
        spec.assume("input_shape", list(spec.shape),
                    f"derived from fc1's {in_features} inputs with that padding and pooling "
                    "(see padding); pass input_shape= to settle it")
    else:
        spec.shape = list(shape)


def _pooled(j: int, n: int, pools: int) -> bool:
    return pools == 0 or (pools == 1 and j == n - 1)


def _describe(same: tuple[int, ...], pools: int, kernels: list[tuple[int, ...]]) -> str:
    pads = [k[0] // 2 if s else 0 for k, s in zip(kernels, same, strict=True)]
    return f"padding {pads}, pool {_POOLS[pools]}"


def _named_out(size: list[int], kernels: list[tuple[int, ...]], same: tuple[int, ...],
               pools: int, channels: int) -> int | None:
    """fc1's input size for a conv stack (stride 1) on ``size``, or None if it vanishes."""
    n = len(kernels)
    for j, k in enumerate(kernels):
        pad = [kk // 2 if same[j] else 0 for kk in k]
        size = [s + 2 * p - kk + 1 for s, p, kk in zip(size, pad, k, strict=True)]
        if _pooled(j, n, pools):
            size = [s // 2 if s >= 2 else 0 for s in size]
        if min(size) < 1:
            return None
    return channels * math.prod(size)


# --- SIREN -------------------------------------------------------------------------------

_SIREN = re.compile(r"^(.*?)(\d+)\.(linear\.)?(weight|bias)$")


def _siren(t: dict[str, torch.Tensor], act: _Act | None,
           shape: list[int | None] | None = None) -> _Spec:
    matches = [_SIREN.match(k) for k in t]
    if not t or not all(matches) or len({m.group(1) for m in matches if m}) != 1:
        raise _NoMatch
    if not any(m.group(3) for m in matches if m):
        raise _NoMatch
    prefix = matches[0].group(1)  # type: ignore[union-attr]
    layers = sorted({(int(m.group(2)), bool(m.group(3))) for m in matches if m})
    indices = [i for i, _ in layers]
    if indices != list(range(len(indices))) or not all(s for _, s in layers[:-1]):
        raise _NoMatch
    first = t[f"{prefix}0.linear.weight"]
    spec = _Spec([first.shape[1]], *_default_activation(
        act, SIREN_ACTIVATION, "the SIREN reference layout (.linear per layer); w0 30 as "
        "that code"))
    for i, sine in layers:
        path = f"{prefix}{i}.linear" if sine else f"{prefix}{i}"
        _linear(spec, t, path)
        if sine:
            spec.act()
    return spec


# --- torchvision ResNet --------------------------------------------------------------------

_BLOCK = re.compile(r"^layer([1-9])\.(\d+)\.")


def _resnet(t: dict[str, torch.Tensor], act: _Act | None,
            shape: list[int | None] | None = None) -> _Spec:
    if "conv1.weight" not in t or "fc.weight" not in t or "layer1.0.conv1.weight" not in t:
        raise _NoMatch
    stem = t["conv1.weight"]
    k = stem.shape[-1]
    if stem.dim() != 4:
        raise _NoMatch
    spec = _Spec([], *_default_activation(act, RELU, "torchvision's ResNet"))
    spec.input_unknown(stem.shape[1], 2, "the ResNet pools globally before fc")
    big = k == 7
    _conv(spec, t, "conv1", 2 if big else 1, k // 2)
    _bn(spec, t, "bn1", 2)
    spec.act(name="relu")
    if big:
        spec.add("max_pool2d", {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
                                "dilation": [1, 1]}, name="maxpool")
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for k_ in t if (m := _BLOCK.match(k_))})
    for layer, j in blocks:
        p = f"layer{layer}.{j}"
        stride = 2 if j == 0 and layer > 1 else 1
        identity = spec.last
        bottleneck = f"{p}.conv3.weight" in t
        _conv(spec, t, f"{p}.conv1", 1 if bottleneck else stride, 0 if bottleneck else 1)
        _bn(spec, t, f"{p}.bn1", 2)
        spec.act(name=f"{p}.relu1")
        _conv(spec, t, f"{p}.conv2", stride if bottleneck else 1, 1)
        _bn(spec, t, f"{p}.bn2", 2)
        if bottleneck:
            spec.act(name=f"{p}.relu2")
            _conv(spec, t, f"{p}.conv3", 1, 0)
            _bn(spec, t, f"{p}.bn3", 2)
        main = spec.last
        if f"{p}.downsample.0.weight" in t:
            _conv(spec, t, f"{p}.downsample.0", stride, 0, inputs=[identity])
            identity = _bn(spec, t, f"{p}.downsample.1", 2)
        spec.add("add", {}, name=f"{p}.add", inputs=[main, identity])
        spec.act(name=f"{p}.relu")
    spec.add("adaptive_avg_pool2d", {"output_size": [1, 1]}, name="avgpool")
    spec.add("flatten", {}, name="flatten")
    _linear(spec, t, "fc")
    stem_conv = f"{k // 2} on the {k}x{k} stem, stride {2 if big else 1}"
    spec.assume("padding", "kernel//2", f"kernel//2 on every conv ({stem_conv}, 1 on 3x3, 0 on "
                "1x1), stride 2 in the first block of layer2-layer4 (a BasicBlock's conv1, a "
                "Bottleneck's conv2) and its downsample, as torchvision; a state dict does not "
                "record them")
    spec.assume("pooling", ("max_pool2d(3, 2, 1) at maxpool; " if big else "") +
                "adaptive_avg_pool2d(1) at avgpool",
                "as torchvision: " + ("MaxPool2d(3, stride 2, padding 1) after a 7x7 stem"
                                      if big else f"no max-pool after a {k}x{k} stem") +
                ", AdaptiveAvgPool2d((1, 1)) before fc (average, global); neither holds "
                "tensors")
    return spec
