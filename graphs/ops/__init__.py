"""The op registry: every op the op graph knows, one module each, in one table.

``OPS`` maps an op name (the ``op`` of a JSON node) to its :class:`~graphs.ops.base.Op`;
``TRACE_ONLY`` holds rules that only help tracing (``+`` picks ``add`` or a scalar op;
``.contiguous()`` and ``expand`` vanish). Adding an op is one module and one line here.
The order is append-only: parameter-graph function ids follow it.
"""

from __future__ import annotations

from graphs.ops.arithmetic import SCALAR_OPS, Add, Arithmetic, Mul, Neg
from graphs.ops.attention import Attention, SelfAttention, claim_attention
from graphs.ops.base import Op
from graphs.ops.conv import Conv
from graphs.ops.elementwise import ACTIVATION_TABLE, V1_ACTIVATIONS, Activation, Dropout, Identity
from graphs.ops.embedding import Arange, Embedding, PositionEmbedding
from graphs.ops.layout import Cat, Expand, Flatten, Permute, Reduce, Take
from graphs.ops.linear import Linear
from graphs.ops.norm import BatchNorm, LayerNorm, claim_channel_norm
from graphs.ops.parameter import Parameter
from graphs.ops.pool import POOL_OPS

__all__ = ["ACTIVATIONS", "CLAIMS", "OPS", "PASSTHROUGH", "TRACE_ONLY", "Op"]


def _table(*ops: Op) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for op in ops:
        if op.name in table:
            raise RuntimeError(f"op {op.name!r} is registered twice")
        table[op.name] = op
    return table


OPS: dict[str, Op] = _table(
    Linear(), Conv(1), Conv(2), BatchNorm(1), BatchNorm(2), LayerNorm(),
    *(Activation(row) for row in ACTIVATION_TABLE), Dropout(), Add(), Flatten(), *POOL_OPS,
    SelfAttention(), Attention(), Mul(), Neg(), *SCALAR_OPS, Cat(), Permute(), Take(),
    Reduce("mean"), Parameter(), Embedding(), PositionEmbedding(), Identity(), Reduce("amax"),
    Reduce("sum"),
)
TRACE_ONLY: dict[str, Op] = _table(Arithmetic(), Expand(), Arange())
# rules that claim a whole subgraph before the op-by-op walk
CLAIMS = (claim_attention, claim_channel_norm)

# the activations of the v1 metanetwork vocabulary (parameter-graph ``node_act`` ids)
ACTIVATIONS = V1_ACTIVATIONS
# ops that keep their input's value layout exactly (merging reads values through them)
PASSTHROUGH = ("dropout", "identity", "neg", *(r.name for r in ACTIVATION_TABLE),
               *(op.name for op in SCALAR_OPS))
