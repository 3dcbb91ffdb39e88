"""Multi-head self-attention as one structured op, however it is written.

``self_attention`` is ``nn.MultiheadAttention`` (packed ``in_proj_weight``). ``attention``
is the same computation written by hand: a fused qkv ``Linear`` (``packed``) or separate
q/k/v ``Linear``s, heads split by ``view``/``reshape`` + ``transpose``/``permute``,
``F.scaled_dot_product_attention`` or ``softmax(q @ kᵀ / √d) @ v``, causal or not, then an
output ``Linear``. The tracer recognises such a subgraph, checks numerically on the example
input that it computes exactly this, and emits one node whose tensors keep the user's names.

Masks: a causal one (``is_causal=True``, or a constant lower-triangular mask) is the
``causal`` flag. Any other mask must be a constant of the model, a buffer stored with the
checkpoint like other buffers: the node names it (param ``mask``, shape ``mask_shape``) and
says how it is read (``mask``): ``keep`` (attend where it is non-zero: a boolean
``attn_mask``, ``masked_fill(mask == 0, -inf)``), ``drop`` (attend where it is zero:
``masked_fill(mask, -inf)``) or ``add`` (added to the scores: a float ``attn_mask``,
``scores + mask``). Its leading dims are 1 and its last two are sliced to the sequence
length (nanoGPT's ``bias[:, :, :T, :T]``). One mask for every head and sample leaves the
symmetry unchanged. A mask computed from the input or passed to ``forward`` (key padding
per batch) is refused: the op graph has one input.

Symmetry (H heads of d dims, E = H·d): the head order is one permutation shared by q, k, v
and the output projection's columns; within a head, one permutation of the d dims acts on
q and k rows together (``q·k`` is unchanged), another on v rows and the output columns.
The neuron map expresses this with the structured groups ``:qk``, ``:vo`` (blocks ``(H,
d)``) and ``:heads``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from graphs.errors import UnsupportedOpError
from graphs.ops.base import (
    Check,
    Host,
    Node,
    Op,
    Shape,
    Step,
    Value,
    fail,
    is_bool,
    is_pos,
    is_prob,
    one_of,
)

if TYPE_CHECKING:
    from graphs.neuron_map import _Builder
    from graphs.parameter_graph import _LayoutBuilder
    from graphs.trace import _Builder as TraceBuilder

PARTS = ("q", "k", "v")
MASK_KINDS = ("keep", "drop", "add")  # how a stored mask is read (see the module docstring)


def ints_list_pos(v: Any) -> bool:
    return isinstance(v, list) and all(is_pos(x) for x in v)


@dataclass(frozen=True)
class _Piece:
    """One projection's rows: ``tensor[start:stop]`` (the whole tensor if start is None)."""

    view: str
    tensor: str
    start: int | None
    stop: int | None


class _Attention(Op):
    family = "attention"

    def pieces(self, node: Node, kind: str) -> dict[str, _Piece]:
        """q/k/v pieces of the input projection's ``kind`` ('weight' or 'bias')."""
        raise NotImplementedError

    def out_names(self, node: Node) -> tuple[str, str | None]:
        raise NotImplementedError

    def shape(self, node: Node, shapes: list[Shape]) -> Shape:
        (s,) = shapes
        e, h = node.attrs["embed_dim"], node.attrs["num_heads"]
        if e % h:
            raise fail(node, f"embed_dim {e} is not divisible by num_heads {h}")
        if len(s) != 2 or s[1] != e:
            raise fail(node, f"expects a (tokens, {e}) input, got {list(s)}")
        return s

    def neurons(self, nb: _Builder, node: Node, ins: list[Value]) -> Value:
        (v,) = ins
        nb.feature_last(node, v)
        if "mask" in node.params:  # a constant: no neuron axis
            nb.tensor(node.params["mask"], (None,) * len(node.attrs["mask_shape"]))
        e, h, n = node.attrs["embed_dim"], node.attrs["num_heads"], node.name
        heads = nb.group(f"{n}:heads", h, n)
        groups = {"q": nb.group(f"{n}:qk", e, n), "v": nb.group(f"{n}:vo", e, n)}
        groups["k"] = groups["q"]
        out = nb.group(n, e, n)
        for g in (groups["q"], groups["v"]):
            nb.structure(g, (h, e // h), heads)
        for kind, axes in (("weight", (v.group,)), ("bias", ())):
            for part, p in self.pieces(node, kind).items():
                nb.tensor(p.tensor, (groups[part], *axes), (e, *([e] if axes else [])),
                          p.view if p.start is not None else None, p.start, p.stop)
        w, b = self.out_names(node)
        nb.tensor(w, (out, groups["v"]))
        if b is not None:
            nb.tensor(b, (out,))
        nb.use(v, n)
        return nb.value(out, 1)

    def graph(self, gb: _LayoutBuilder, node: Node) -> None:
        src = gb.resolve(node.inputs[0])
        e, n = node.attrs["embed_dim"], node.name
        sets = {}
        biases = self.pieces(node, "bias")
        for part, p in self.pieces(node, "weight").items():
            g = f"{n}:qk" if part != "v" else f"{n}:vo"
            s = sets[part] = gb.new_set(e, f"attn_{part}", [(g, e)], [src])
            gb.dense(src, 0, s, p.view, f"attn_{part}")
            if part in biases:
                gb.features(biases[part].view, s, 0)
        gb.diagonal(sets["k"], sets["q"], "attn_pair", None)
        out = gb.new_set(e, "attn_out", n, [sets["v"]])
        w, b = self.out_names(node)
        gb.dense(sets["v"], 0, out, w, "attn_out")
        if b is not None:
            gb.features(b, out, 0)
        gb.produce(n, out)


class SelfAttention(_Attention):
    """``nn.MultiheadAttention(batch_first=True)`` called as ``attn(x, x, x)``."""

    name = "self_attention"
    attrs: ClassVar[dict[str, Check]] = {
        "embed_dim": is_pos, "num_heads": is_pos, "bias": is_bool, "dropout": is_prob}
    optional: ClassVar[dict[str, Any]] = {"causal": False}
    modules = (nn.MultiheadAttention,)

    def __init__(self) -> None:
        self.attrs = {**self.attrs, "causal": is_bool}  # type: ignore[misc]

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        e = a["embed_dim"]
        roles = {"in_proj_weight": (3 * e, e), "out_proj.weight": (e, e)}
        if a["bias"]:
            roles |= {"in_proj_bias": (3 * e,), "out_proj.bias": (e,)}
        return roles

    def pieces(self, node: Node, kind: str) -> dict[str, _Piece]:
        name = node.params.get(f"in_proj_{kind}")
        e = node.attrs["embed_dim"]
        if name is None:
            return {}
        return {p: _Piece(f"{name}#{p}", name, i * e, (i + 1) * e) for i, p in enumerate(PARTS)}

    def out_names(self, node: Node) -> tuple[str, str | None]:
        return node.params["out_proj.weight"], node.params.get("out_proj.bias")

    def build(self, node: Node, host: Host) -> Step:
        a = node.attrs
        m = host.place(node.module_path, nn.MultiheadAttention(
            a["embed_dim"], a["num_heads"], dropout=a["dropout"], bias=a["bias"],
            batch_first=True))
        causal = a.get("causal", False)

        def step(x: torch.Tensor) -> torch.Tensor:
            mask = None
            if causal:
                t = x.shape[1]
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            return m(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]

        return step

    def trace(self, tb: TraceBuilder, fx_node: fx.Node, m: nn.MultiheadAttention) -> None:
        path = tb.path(fx_node)
        q, k, v = (tuple(fx_node.args) + (None,) * 3)[:3]
        q = fx_node.kwargs.get("query", q)
        if q is None or not (q is (fx_node.kwargs.get("key", k)) is fx_node.kwargs.get("value", v)):
            raise UnsupportedOpError(f"{path}: only self-attention (query is key is value)")
        causal = bool(fx_node.kwargs.get("is_causal", False))
        for key in ("attn_mask", "key_padding_mask"):
            mask = fx_node.kwargs.get(key)
            if mask is not None and not (causal and key == "attn_mask"):
                raise UnsupportedOpError(
                    f"{path}: nn.MultiheadAttention with {key} is not supported (is_causal="
                    "True is); for a fixed mask, write the attention by hand with "
                    "F.scaled_dot_product_attention(q, k, v, attn_mask=<a buffer>); a mask "
                    "per batch cannot be part of the architecture; or send arch=")
        if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None \
                or m.add_zero_attn:
            raise UnsupportedOpError(f"{path}: MultiheadAttention must use batch_first=True, "
                                     "equal q/k/v dims, no bias_kv, no add_zero_attn")
        attrs: dict[str, Any] = {"embed_dim": m.embed_dim, "num_heads": m.num_heads,
                                 "bias": m.in_proj_bias is not None, "dropout": m.dropout}
        if causal:
            attrs["causal"] = True
        tb.emit(fx_node, self.name, [tb.src(q, fx_node)], attrs, path)
        tb.tuple_output(fx_node, path)


class Attention(_Attention):
    """Hand-written self-attention (see the module docstring); tensors keep their names."""

    name = "attention"
    free_names = True
    attrs: ClassVar[dict[str, Check]] = {
        "embed_dim": is_pos, "num_heads": is_pos, "packed": is_bool, "bias": is_bool,
        "out_bias": is_bool, "causal": is_bool,
        "ignored": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "mask": one_of(*MASK_KINDS), "mask_shape": ints_list_pos}
    optional: ClassVar[dict[str, Any]] = {"ignored": [], "mask": None, "mask_shape": None}

    def roles(self, a: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        e = a["embed_dim"]
        roles: dict[str, tuple[int, ...]] = {}
        for kind, shape in (("weight", (e,)), ("bias", ())):
            if kind == "bias" and not a["bias"]:
                continue
            if a["packed"]:
                roles[f"qkv_{kind}"] = (3 * e, *shape)
            else:
                roles |= {f"{p}_{kind}": (e, *shape) for p in PARTS}
        roles["out_weight"] = (e, e)
        if a["out_bias"]:
            roles["out_bias"] = (e,)
        if a.get("mask"):
            roles["mask"] = tuple(a["mask_shape"])
        return roles

    def check(self, node: Node) -> None:
        a = node.attrs
        if ("mask" in a) != ("mask_shape" in a):
            raise fail(node, "'mask' and 'mask_shape' go together")
        if "mask" in a:
            if len(a["mask_shape"]) < 2 or any(d != 1 for d in a["mask_shape"][:-2]):
                raise fail(node, "mask_shape must be (1, ..., T, T): one mask for every head "
                                 "and sample")
            if a["causal"]:
                raise fail(node, "a causal attention takes no mask tensor")
        for role, name in node.params.items():
            if role == "mask":
                continue
            if not name.endswith("." + role.rsplit("_", 1)[1]):
                raise fail(node, f"param {role!r} must name a Linear's "
                                 f"'.{role.rsplit('_', 1)[1]}', got {name!r}")

    def pieces(self, node: Node, kind: str) -> dict[str, _Piece]:
        p, e = node.params, node.attrs["embed_dim"]
        if f"qkv_{kind}" in p:
            name = p[f"qkv_{kind}"]
            return {x: _Piece(f"{name}#{x}", name, i * e, (i + 1) * e)
                    for i, x in enumerate(PARTS)}
        return {x: _Piece(p[f"{x}_{kind}"], p[f"{x}_{kind}"], None, None) for x in PARTS
                if f"{x}_{kind}" in p}

    def out_names(self, node: Node) -> tuple[str, str | None]:
        return node.params["out_weight"], node.params.get("out_bias")

    def build(self, node: Node, host: Host) -> Step:
        a, p = node.attrs, node.params
        e, h = a["embed_dim"], a["num_heads"]

        def linear(role: str, out: int) -> nn.Module:
            path = p[f"{role}_weight"].rpartition(".")[0]
            return host.place(path, nn.Linear(e, out, bias=f"{role}_bias" in p))

        proj = host.place(p["out_weight"].rpartition(".")[0],
                          nn.Linear(e, e, bias=a["out_bias"]))
        if a["packed"]:
            qkv = linear("qkv", 3 * e)
            project = lambda x: qkv(x).split(e, dim=-1)  # noqa: E731
        else:
            ms = [linear(x, e) for x in PARTS]
            project = lambda x: [m(x) for m in ms]  # noqa: E731
        if a.get("mask"):
            stored, kind = host.buffer(p["mask"], tuple(a["mask_shape"])), a["mask"]
            return lambda x: proj(attend(project(x), h, False,
                                         attn_mask(kind, stored(), x.shape[1])))
        return lambda x: proj(attend(project(x), h, a["causal"]))


def attn_mask(kind: str, stored: torch.Tensor, t: int) -> torch.Tensor:
    """The ``attn_mask`` of ``F.scaled_dot_product_attention`` for ``t`` tokens from a
    stored mask: its last two dims sliced to ``t``; boolean (attend where True) or additive."""
    m = stored.reshape(stored.shape[-2:])
    if m.shape[0] < t or m.shape[1] < t:
        raise ValueError(f"attention mask of {list(m.shape)} is smaller than {t} tokens")
    m = m[:t, :t]
    if kind == "keep":
        return m != 0
    if kind == "drop":
        return m == 0
    return m.float()


def attend(qkv: Any, heads: int, causal: bool, mask: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Scaled dot-product attention of (B, T, E) projections split into ``heads`` heads."""
    q, k, v = qkv
    b, t, e = q.shape
    q, k, v = (x.view(b, t, heads, e // heads).transpose(1, 2) for x in (q, k, v))
    if mask is not None and mask.is_floating_point():
        mask = mask.to(q.dtype)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return y.transpose(1, 2).reshape(b, t, e)


# --- recognising hand-written attention in an fx graph ----------------------------------

_SHAPE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "unbind", "split",
                  "chunk", "unflatten", "swapaxes"}
_SHAPE_FUNCTIONS = {operator.getitem, torch.transpose, torch.permute, torch.reshape,
                    torch.unbind, torch.split, torch.chunk}
_MATMUL = {operator.matmul, torch.matmul, torch.bmm}
_SOFTMAX = {F.softmax, torch.softmax}


class _Match:
    def __init__(self, tb: TraceBuilder) -> None:
        self.tb, self.nodes = tb, set()
        self.buffers: list[str] = []  # mask buffers the matched subgraph reads
        # masks met on the way: (form, constant operand, fill value); form is "sdpa"
        # (an attn_mask), "fill" (masked_fill's condition) or "add" (added to the scores)
        self.masks: list[tuple[str, fx.Node, float | None]] = []

    def is_module(self, n: Any, cls: type | tuple[type, ...]) -> bool:
        return isinstance(n, fx.Node) and n.op == "call_module" and isinstance(
            self.tb.modules[str(n.target)], cls)

    def back(self, n: Any, scale_ok: bool = False) -> fx.Node | None:
        """Walk up through reshapes/identities (and scalar scales) to a Linear call."""
        while isinstance(n, fx.Node):
            if self.is_module(n, nn.Linear):
                return n
            self.nodes.add(n)
            shape_step = (n.op == "call_method" and n.target in _SHAPE_METHODS) or (
                n.op == "call_function" and n.target in _SHAPE_FUNCTIONS) or self.is_module(
                n, nn.Identity)
            scale_step = scale_ok and n.op in ("call_function", "call_method") and str(
                getattr(n.target, "__name__", n.target)) in ("mul", "truediv", "div") and \
                not all(self.tb.is_tensor(a) for a in n.args)
            if not (shape_step or scale_step):
                return None
            n = n.args[0] if shape_step else next(
                (a for a in n.args if self.tb.is_tensor(a)), None)
        return None

    def forward(self, n: fx.Node) -> fx.Node | None:
        """Walk down a single-user chain of reshapes/identities to a Linear call."""
        while len(users := self.tensor_users(n)) == 1:
            (n,) = users
            if self.is_module(n, nn.Linear):
                return n
            self.nodes.add(n)
            if not ((n.op == "call_method" and n.target in _SHAPE_METHODS) or
                    self.is_module(n, nn.Identity | nn.Dropout)):
                return None
        return None


    def constant(self, arg: Any) -> bool:
        """Claim ``arg``'s subgraph if it does not depend on the input (a mask built from a
        buffer, ``torch.tril(torch.ones(T, T))``); the buffers it reads are recorded."""
        todo, seen = [arg], set()
        while todo:
            n = todo.pop()
            if not isinstance(n, fx.Node) or n in seen:
                continue
            seen.add(n)
            if not self.tb.holds_tensors(n):
                continue  # a size read on the example (T of the mask slice)
            if n.op == "placeholder":
                return False
            todo.extend(n.all_input_nodes)
        for n in seen:
            if self.tb.holds_tensors(n):
                self.nodes.add(n)
                if n.op == "get_attr":
                    self.buffers.append(str(n.target))
        return True

    def tensor_users(self, n: fx.Node) -> list[fx.Node]:
        """Users computing tensors (not ``x.size()`` reads of the shape)."""
        return [u for u in n.users if self.tb.holds_tensors(u)]


def _is_softmax(n: fx.Node) -> bool:
    return (n.op == "call_function" and n.target in _SOFTMAX) or (
        n.op == "call_method" and n.target == "softmax")


_INPUT_MASK = ("the attention mask depends on the input or a forward argument (per-batch "
               "key padding); the op graph has one input, so only a mask that is a constant "
               "of the model is supported: register it as a buffer (register_buffer) and use "
               "that, drop the mask argument (attend to every token), or send arch=")


def _core(m: _Match, n: fx.Node) -> tuple[list[Any], bool, fx.Node] | None:
    """(q, k, v) operands, causal flag and output of an attention core at ``n``, if any;
    the masks it applies are collected in ``m.masks``."""
    tb = m.tb
    if n.op == "call_function" and n.target is F.scaled_dot_product_attention:
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
        bound = dict(zip(names, n.args, strict=False)) | dict(n.kwargs)
        if bound.get("scale") is not None:
            return None
        mask = bound.get("attn_mask")
        if mask is not None:
            if not m.constant(mask):
                raise UnsupportedOpError(f"{tb.where(n)}: {_INPUT_MASK}")
            m.masks.append(("sdpa", mask, None))
        return [bound["query"], bound["key"], bound["value"]], bool(bound.get("is_causal")), n
    if not _is_softmax(n):
        return None
    scores = n.args[0]
    while isinstance(scores, fx.Node) and not (scores.op == "call_function" and
                                               scores.target in _MATMUL):
        m.nodes.add(scores)
        name = str(getattr(scores.target, "__name__", scores.target))
        if name in ("masked_fill", "masked_fill_"):
            if not m.constant(scores.args[1]):
                raise UnsupportedOpError(f"{tb.where(scores)}: {_INPUT_MASK}")
            m.masks.append(("fill", scores.args[1], tb.const(scores.args[2])))
        elif name in ("add", "iadd") and all(tb.is_tensor(a) for a in scores.args[:2]):
            first, second = scores.args[:2]
            const = [a for a in (first, second) if m.constant(a)]
            if len(const) != 1:
                return None  # two terms of the input (or none): not a mask
            m.masks.append(("add", const[0], None))
            scores = second if const[0] is first else first
            continue
        scores = next((a for a in scores.args if tb.is_tensor(a)), None)
    if scores is None or len(m.tensor_users(n)) != 1:
        return None
    m.nodes.add(scores)
    q, kt = scores.args[:2]
    out = n
    while len(users := m.tensor_users(out)) == 1:
        (nxt,) = users
        m.nodes.add(out)
        if nxt.op == "call_function" and nxt.target in _MATMUL and nxt.args[0] is out:
            return [q, kt, nxt.args[1]], False, nxt
        if not (m.is_module(nxt, nn.Dropout) or (nxt.op == "call_function" and
                                                 nxt.target is F.dropout)):
            return None
        out = nxt
    return None


def claim_attention(tb: TraceBuilder) -> None:
    """Find hand-written attention subgraphs and have each traced as one ``attention`` node."""
    for n in list(tb.gm.graph.nodes):
        m = _Match(tb)
        core = _core(m, n)
        if core is None:
            continue
        (q, k, v), causal, y = core
        ends = [m.back(x, scale_ok=True) for x in (q, k, v)]
        proj = m.forward(y)
        if any(e is None for e in ends) or proj is None:
            continue
        m.nodes.add(y)
        _emit(tb, m, ends, proj, causal, tb.shape(q))  # type: ignore[arg-type]


def _read_mask(tb: TraceBuilder, m: _Match, where: str, t: int
               ) -> tuple[bool, dict[str, Any], str | None]:
    """What the matched masks amount to: (causal, mask attrs, the mask buffer's name).

    The example's mask values decide: a lower-triangular keep pattern is ``causal`` (the
    buffer is not needed); otherwise the one buffer the mask reads must give, sliced to
    ``t`` tokens, exactly the mask the source applied (as ``keep``, ``drop`` or ``add``).
    """
    if not m.masks:
        return False, {}, None
    if len(m.masks) > 1:
        raise UnsupportedOpError(f"{where}: attention with {len(m.masks)} masks; combine "
                                 "them into one buffer, or send arch=")
    ((form, arg, fill),) = m.masks
    value = tb.values.get(arg)
    if not isinstance(value, torch.Tensor) or value.numel() != t * t:
        raise UnsupportedOpError(f"{where}: the attention mask must be one ({t}, {t}) mask "
                                 "for every head and sample (leading dims 1)")
    value = value.reshape(t, t)
    additive = form == "add" or (form == "sdpa" and value.is_floating_point())
    if form == "fill" and (fill is None or fill > -1e4):
        raise UnsupportedOpError(f"{where}: masked_fill of the scores with {fill!r} is not a "
                                 "mask (fill with float('-inf'))")
    keep = None if additive else (~value.bool() if form == "fill" else value.bool())
    tril = torch.ones(t, t, dtype=torch.bool).tril()
    if keep is not None and torch.equal(keep, tril):
        return True, {}, None  # causal: the op knows it, the buffer is not needed
    buffers = sorted(set(m.buffers))
    if len(buffers) != 1:
        raise UnsupportedOpError(
            f"{where}: a non-causal attention mask must be read from one buffer of the "
            f"model (register_buffer), found {len(buffers)}; or send arch=")
    (name,) = buffers
    stored = tb.root.get_buffer(name)
    if stored.dim() < 2 or any(d != 1 for d in stored.shape[:-2]) or \
            stored.shape[-1] < t or stored.shape[-2] < t:
        raise UnsupportedOpError(f"{where}: mask buffer {name!r} of shape "
                                 f"{list(stored.shape)} is not one (T, T) mask for every "
                                 "head and sample")
    for kind in MASK_KINDS:
        want = attn_mask(kind, stored, t)
        got = value.to(want.dtype) if additive else keep
        if (kind == "add") == additive and torch.equal(want, got):
            return False, {"mask": kind, "mask_shape": list(stored.shape)}, name
    raise UnsupportedOpError(
        f"{where}: the attention mask is computed from buffer {name!r} in a way not "
        "recognised; use the buffer itself (boolean attend-mask or additive float mask, "
        "sliced [:T, :T]) or mask.masked_fill(buffer == 0, float('-inf')), or send arch=")


def _emit(tb: TraceBuilder, m: _Match, ends: list[fx.Node], proj: fx.Node, causal: bool,
          q_shape: tuple[int, ...]) -> None:
    where = tb.where(proj)
    masked_causal, mask_attrs, mask_name = _read_mask(tb, m, where, q_shape[2])
    causal = causal or masked_causal
    packed = ends[0] is ends[1] is ends[2]
    if not packed and len(set(ends)) != 3:
        raise UnsupportedOpError(f"{where}: attention whose q, k, v come from two Linears")
    inputs = {e.args[0] for e in ends}
    if len(inputs) != 1:
        raise UnsupportedOpError(f"{where}: q, k and v must read the same input "
                                 "(self-attention)")
    (x,) = inputs
    heads, e = q_shape[1], q_shape[1] * q_shape[-1]
    mods = [tb.modules[str(t.target)] for t in (*dict.fromkeys(ends), proj)]
    out_m = mods[-1]
    if any(mm.in_features != e for mm in mods) or out_m.out_features != e:
        raise UnsupportedOpError(f"{where}: attention projections must all be {e}-wide")
    paths = [str(t.target) for t in dict.fromkeys(ends)]
    params: dict[str, str] = {}
    names = ["qkv"] if packed else list(PARTS)
    for role, path, mm in zip(names, paths, mods, strict=False):
        params[f"{role}_weight"] = f"{path}.weight"
        if mm.bias is not None:
            params[f"{role}_bias"] = f"{path}.bias"
    biased = {mm.bias is not None for mm in mods[:-1]}
    if len(biased) != 1:
        raise UnsupportedOpError(f"{where}: q, k and v must all have biases or none")
    params["out_weight"] = f"{proj.target}.weight"
    if out_m.bias is not None:
        params["out_bias"] = f"{proj.target}.bias"
    attrs: dict[str, Any] = {"embed_dim": e, "num_heads": heads, "packed": packed,
                             "bias": biased.pop(), "out_bias": out_m.bias is not None,
                             "causal": causal}
    if mask_name is not None:  # a constant of the model, stored under its own name
        attrs |= mask_attrs
        params["mask"] = mask_name
    elif m.buffers:  # the source's mask buffers: not needed, the op knows it is causal
        attrs["ignored"] = sorted(set(m.buffers))
    _verify(tb, where, x, proj, mods, attrs, tb.root.get_buffer(mask_name)
            if mask_name is not None else None)
    for n in m.nodes | set(ends):
        outside = [u for u in m.tensor_users(n) if u not in m.nodes and u not in ends
                   and u is not proj]
        if outside and n not in ends:
            raise UnsupportedOpError(f"{where}: an attention intermediate ({n.name}) is also "
                                     "used outside the attention")
    tb.claim(m.nodes | set(ends), proj, "attention", x, attrs, params)


@torch.no_grad()
def _verify(tb: TraceBuilder, where: str, x: fx.Node, proj: fx.Node, mods: list[nn.Module],
            attrs: dict[str, Any], stored: torch.Tensor | None = None) -> None:
    """The recognised structure must compute what the module computed on the example."""
    xv, want = tb.values[x], tb.values[proj]
    e = attrs["embed_dim"]
    qkv = mods[0](xv).split(e, dim=-1) if attrs["packed"] else [m(xv) for m in mods[:3]]
    extra = None if stored is None else attn_mask(attrs["mask"], stored, xv.shape[1])
    got = mods[-1](attend(qkv, attrs["num_heads"], attrs["causal"], extra))
    scale = want.abs().max().clamp_min(1.0)
    mask = " with a causal mask" if attrs["causal"] else \
        f" with its {attrs['mask']} mask" if stored is not None else ""
    if got.shape != want.shape or (got - want).abs().max() > 1e-4 * scale:
        raise UnsupportedOpError(
            f"{where}: looks like attention but does not compute softmax(q·kᵀ/√d)·v over "
            f"{attrs['num_heads']} heads of (B, T, H, d) layout{mask}; write it that way "
            "or send arch=")


