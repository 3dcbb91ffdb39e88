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

Everything else raises :class:`MissingArchitectureError` explaining how to attach one.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from graphs.architecture import Architecture
from graphs.errors import ArchitectureError, MissingArchitectureError

__all__ = ["infer_architecture"]

HOW_TO = ("attach one: save with graphs.save(module, path, example_input), or send the op "
          "graph JSON as the 'arch' argument")


def infer_architecture(tensors: dict[str, torch.Tensor]) -> Architecture:
    """The op graph of a state dict in one of the known layouts, or a clear error."""
    for guess in (_resnet, _siren, _sequential):
        try:
            spec = guess(tensors)
        except _NoMatch:
            continue
        try:
            arch = Architecture.from_json(spec)
            arch.check_tensors(tensors)
        except ArchitectureError as exc:
            raise MissingArchitectureError(
                f"tensors look like a {guess.__name__.strip('_')} layout but do not fit it "
                f"({exc}); {HOW_TO}") from None
        return arch
    raise MissingArchitectureError(f"no architecture in the file and the tensor names match "
                                   f"no known layout; {HOW_TO}")


class _NoMatch(Exception):
    pass


class _Spec:
    """Accumulates op-graph nodes in order."""

    def __init__(self, shape: list[int | None]) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.shape = shape
        self.last = "x"

    def add(self, op: str, attrs: dict[str, Any], path: str | None = None,
            roles: list[str] | None = None, name: str | None = None,
            inputs: list[str] | None = None) -> str:
        name = name or path or f"{op}_{len(self.nodes)}"
        params = {r: f"{path}.{r}" for r in roles or []}
        self.nodes.append({"name": name, "op": op, "inputs": inputs or [self.last],
                           "attrs": attrs, "params": params})
        self.last = name
        return name

    def done(self) -> dict[str, Any]:
        return {"version": 1, "inputs": [{"name": "x", "shape": self.shape}],
                "nodes": self.nodes, "outputs": [self.last]}


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


def _sequential(t: dict[str, torch.Tensor]) -> dict[str, Any]:
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
    first = t[f"{prefix}{order[0]}.weight"]
    conv_dims = first.dim() - 2
    kinds = [("conv" if t[f"{prefix}{i}.weight"].dim() > 2 else "linear")
             if layers[i] == "weight" else "bn" for i in order]
    n_pools = 0
    # Input spatial size: needed only when a conv stack is flattened without adaptive pooling.
    spec = _Spec([])
    if conv_dims > 0:
        spec.shape = [first.shape[1], *[None] * conv_dims]
    else:
        spec.shape = [first.shape[1]]
        if order[0] == 1:
            spec.add("flatten", {})
        elif order[0] != 0:
            raise _NoMatch
    if conv_dims > 0 and order[0] != 0:
        raise _NoMatch
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
            spec.add("relu", {})
            if gap == 3:
                spec.add(f"adaptive_avg_pool{conv_dims}d", {"output_size": [side] * conv_dims})
            else:
                spec.shape = [spec.shape[0], *[side * 2**n_pools] * conv_dims]
            spec.add("flatten", {})
        elif gap == 1:
            spec.add("relu", {})
        elif gap == 2 and kinds[pos] != "linear" and prev_weight(kinds, pos) == "conv":
            spec.add("relu", {})
            spec.add(f"max_pool{conv_dims}d", {"kernel_size": [2] * conv_dims,
                                              "stride": [2] * conv_dims,
                                              "padding": [0] * conv_dims,
                                              "dilation": [1] * conv_dims})
            n_pools += 1
        elif gap != 0:
            raise _NoMatch
        prev = kind if kind != "bn" else prev
    return spec.done()


def prev_weight(kinds: list[str], pos: int) -> str | None:
    """The kind of the nearest weight layer at or before ``pos`` (skipping norms)."""
    for k in reversed(kinds[: pos + 1]):
        if k != "bn":
            return k
    return None


# --- SIREN -------------------------------------------------------------------------------

_SIREN = re.compile(r"^(.*?)(\d+)\.(linear\.)?(weight|bias)$")


def _siren(t: dict[str, torch.Tensor]) -> dict[str, Any]:
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
    spec = _Spec([first.shape[1]])
    for i, sine in layers:
        path = f"{prefix}{i}.linear" if sine else f"{prefix}{i}"
        _linear(spec, t, path)
        if sine:
            spec.add("sine", {"w0": 30.0})
    return spec.done()


# --- torchvision ResNet --------------------------------------------------------------------

_BLOCK = re.compile(r"^layer([1-9])\.(\d+)\.")


def _resnet(t: dict[str, torch.Tensor]) -> dict[str, Any]:
    if "conv1.weight" not in t or "fc.weight" not in t or "layer1.0.conv1.weight" not in t:
        raise _NoMatch
    stem = t["conv1.weight"]
    k = stem.shape[-1]
    if stem.dim() != 4:
        raise _NoMatch
    spec = _Spec([stem.shape[1], None, None])
    big = k == 7
    _conv(spec, t, "conv1", 2 if big else 1, k // 2)
    _bn(spec, t, "bn1", 2)
    spec.add("relu", {}, name="relu")
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
        spec.add("relu", {}, name=f"{p}.relu1")
        _conv(spec, t, f"{p}.conv2", stride if bottleneck else 1, 1)
        _bn(spec, t, f"{p}.bn2", 2)
        if bottleneck:
            spec.add("relu", {}, name=f"{p}.relu2")
            _conv(spec, t, f"{p}.conv3", 1, 0)
            _bn(spec, t, f"{p}.bn3", 2)
        main = spec.last
        if f"{p}.downsample.0.weight" in t:
            _conv(spec, t, f"{p}.downsample.0", stride, 0, inputs=[identity])
            identity = _bn(spec, t, f"{p}.downsample.1", 2)
        spec.add("add", {}, name=f"{p}.add", inputs=[main, identity])
        spec.add("relu", {}, name=f"{p}.relu")
    spec.add("adaptive_avg_pool2d", {"output_size": [1, 1]}, name="avgpool")
    spec.add("flatten", {}, name="flatten")
    _linear(spec, t, "fc")
    return spec.done()
