"""Why weight matching does not lower the barrier of two trained digits transformers.

Trains the bench/merge.py transformer pair (an encoder block on 8 rows of 8 pixels, seeds 1
and 2) and prints the evidence: the loss at λ = 0.5 when only one part is interpolated
(the rest kept from A), how alike A's and aligned B's heads are (cosine of each head's
logit bilinear form Wqᵀ·Wk; total variation between attention maps), the softmax
temperature at the midpoint, and the barrier after two exact symmetries that weight
matching does not use: heads paired by their attention maps, and an orthogonal rotation
within each head (Procrustes on q/k together and on v/out together).

    .venv/bin/python bench/transformer_barrier.py [--steps 1200]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "merging"))

import _merging_models as M  # noqa: E402

import graphs  # noqa: E402
import merging  # noqa: E402
from merging.forward import load_module  # noqa: E402
from merging.interpolation import evaluate, lerp_tensors  # noqa: E402

E, H = 64, 4
D = E // H
Tensors = dict[str, torch.Tensor]


def loss(arch: graphs.Architecture, t: Tensors, test: tuple) -> float:
    return evaluate(load_module((arch, t), torch.device("cpu")), test)[0]


def barrier(arch: graphs.Architecture, a: Tensors, b: Tensors, test: tuple) -> tuple[float, float]:
    """(loss barrier over 11 λ points, loss at λ = 0.5)."""
    ls = [loss(arch, lerp_tensors(a, b, i / 10), test) for i in range(11)]
    return max(v - ((1 - i / 10) * ls[0] + i / 10 * ls[-1]) for i, v in enumerate(ls)), ls[5]


def blocks(t: Tensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views (3, H, D, E) of q/k/v rows, (3, H, D) of their biases, (E, H, D) of out cols."""
    return (t["attn.in_proj_weight"].view(3, H, D, E), t["attn.in_proj_bias"].view(3, H, D),
            t["attn.out_proj.weight"].view(E, H, D))


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x * y).sum() / (x.norm() * y.norm()))


def attention_maps(arch: graphs.Architecture, t: Tensors, x: torch.Tensor) -> torch.Tensor:
    m = load_module((arch, t), torch.device("cpu"))
    with torch.no_grad():
        h = m.ln1(m.embed(x))
        return m.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]


def logit_spread(t: Tensors, arch: graphs.Architecture, x: torch.Tensor) -> float:
    m = load_module((arch, t), torch.device("cpu"))
    with torch.no_grad():
        h = m.ln1(m.embed(x))
        w, b, _ = blocks(t)
        q = F.linear(h, w[0].reshape(E, E), b[0].reshape(E)).view(*h.shape[:2], H, D)
        k = F.linear(h, w[1].reshape(E, E), b[1].reshape(E)).view(*h.shape[:2], H, D)
        logits = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2) / D ** 0.5
    return float(logits.std(-1).mean())


def reorder_heads(t: Tensors, order: list[int]) -> Tensors:
    t = {k: v.clone() for k, v in t.items()}
    w, b, o = blocks(t)
    w[:], b[:], o[:] = w[:, order], b[:, order], o[:, order]
    return t


def rotate_heads(a: Tensors, t: Tensors) -> Tensors:
    """Orthogonal Procrustes within each head: R on q and k rows (R·q · R·k = q · k) and R'
    on v rows with R'ᵀ on the output columns; B computes the same function."""
    t = {k: v.clone() for k, v in t.items()}
    (wa, ba, oa), (w, b, o) = blocks(a), blocks(t)

    def best(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        u, _, vt = torch.linalg.svd(xa.double() @ xb.double().T)
        return (u @ vt).float()

    for h in range(H):
        r = best(torch.cat([wa[0, h], ba[0, h, :, None], wa[1, h], ba[1, h, :, None]], 1),
                 torch.cat([w[0, h], b[0, h, :, None], w[1, h], b[1, h, :, None]], 1))
        for i in (0, 1):
            w[i, h], b[i, h] = r @ w[i, h], r @ b[i, h]
        r = best(torch.cat([wa[2, h], ba[2, h, :, None], oa[:, h].T], 1),
                 torch.cat([w[2, h], b[2, h, :, None], o[:, h].T], 1))
        w[2, h], b[2, h], o[:, h] = r @ w[2, h], r @ b[2, h], o[:, h] @ r.T
    return t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1200)
    steps = parser.parse_args().steps
    torch.set_num_threads(1)
    train, test = M.digits(flat=False)
    train, test = ((train[0].reshape(-1, 8, 8), train[1]), (test[0].reshape(-1, 8, 8), test[1]))
    torch.manual_seed(0)
    ma = M.train(M.EncoderBlock(8, E, H, 128, 10), train, seed=1, steps=steps, lr=3e-3)
    mb = M.train(M.EncoderBlock(8, E, H, 128, 10), train, seed=2, steps=steps, lr=3e-3)
    a, b = M.checkpoint(ma, test[0][:2]), M.checkpoint(mb, test[0][:2])
    arch = a.architecture
    bw = merging.weight_matching(a, b, device="cpu").apply(b).tensors
    print(f"endpoints: loss A {loss(arch, a.tensors, test):.3f}, B {loss(arch, bw, test):.3f}")

    rows = {"q,k": (0, 2 * E), "v": (2 * E, 3 * E)}
    parts: dict[str, Callable[[str], bool | tuple[int, int]]] = {
        "everything": lambda k: True,
        "embed": lambda k: k.startswith("embed"),
        "ln1, ln2": lambda k: k.startswith(("ln1", "ln2")),
        "attention q,k": lambda k: rows["q,k"] if k.startswith("attn.in_proj") else False,
        "attention v,out": lambda k: rows["v"] if k.startswith("attn.in_proj")
        else k.startswith("attn.out_proj"),
        "mlp": lambda k: k.startswith(("fc1", "fc2")),
        "head": lambda k: k.startswith("head"),
    }
    print("loss at λ=0.5 interpolating one part only (the rest is A's):  aligned | naive")
    for name, sel in parts.items():
        cells = []
        for other in (bw, b.tensors):
            t = {}
            for k, v in a.tensors.items():
                s = sel(k)
                t[k] = v.clone()
                if s is True:
                    t[k] = torch.lerp(v, other[k], 0.5)
                elif isinstance(s, tuple):
                    t[k][s[0]:s[1]] = torch.lerp(v[s[0]:s[1]], other[k][s[0]:s[1]], 0.5)
            cells.append(loss(arch, t, test))
        print(f"  {name:16s} {cells[0]:.3f} | {cells[1]:.3f}")

    (wa, _, _), (wb, _, _) = blocks(a.tensors), blocks(bw)
    forms = [[cos(wa[0, i].T @ wa[1, i], wb[0, j].T @ wb[1, j]) for j in range(H)]
             for i in range(H)]
    print("cosine of the logit bilinear forms Wqᵀ·Wk, A head i (rows) vs aligned B head j:")
    for r in forms:
        print("  " + " ".join(f"{v:+.2f}" for v in r))
    maps_a, maps_b = attention_maps(arch, a.tensors, test[0]), attention_maps(arch, bw, test[0])
    tv = torch.tensor([[float(0.5 * (maps_a[:, i] - maps_b[:, j]).abs().sum(-1).mean())
                        for j in range(H)] for i in range(H)])
    print("attention-map total variation, A head i vs aligned B head j "
          "(A's heads vs uniform: "
          + ", ".join(f"{float(0.5 * (maps_a[:, i] - 1 / 8).abs().sum(-1).mean()):.2f}"
                      for i in range(H)) + "):")
    for r in tv.tolist():
        print("  " + " ".join(f"{v:.2f}" for v in r))
    order = linear_sum_assignment(tv.numpy())[1].tolist()
    mid = lerp_tensors(a.tensors, bw, 0.5)
    print(f"logit spread (std over keys): A {logit_spread(a.tensors, arch, test[0]):.2f}, "
          f"B {logit_spread(bw, arch, test[0]):.2f}, aligned midpoint "
          f"{logit_spread(mid, arch, test[0]):.2f}")

    variants = {
        "naive": b.tensors,
        "weight matching": bw,
        "+ rotation within heads": rotate_heads(a.tensors, bw),
        f"+ heads by attention maps {order}": reorder_heads(bw, order),
        "+ both": rotate_heads(a.tensors, reorder_heads(bw, order)),
    }
    print("barrier (11 λ) and loss at λ=0.5; every variant of B computes B's function:")
    for name, t in variants.items():
        same = abs(loss(arch, t, test) - loss(arch, b.tensors, test)) < 1e-4
        bar, half = barrier(arch, a.tensors, t, test)
        print(f"  {name:36s} {bar:.3f}  {half:.3f}  same function: {same}")


if __name__ == "__main__":
    main()
