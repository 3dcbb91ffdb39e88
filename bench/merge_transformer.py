"""Why alignment did not lower the barrier of trained digits transformers, as tables.

The pair is bench/merge.py's transformer (``EncoderBlock(8, 64, 4, 128, 10)`` of
tests/merging/_merging_models.py, 8 image rows of 8 pixels as tokens, Adam 3e-3, 1200 steps,
seeds 1 and 2). Weight matching "from identity" is the descent as it was before the
anchored start (``init`` = identity permutations); "anchored" is today's default.

1. Alignments of the same pair: objective Σ<A, π(B)>, the part of it earned on the stream's
   anchored tensors (embedding, readout), agreement of the stream permutation with the
   anchored one (=anch), the mean correlation of matched features over the test digits, whether
   π(B) still computes B's function, the loss barrier and the midpoint accuracy.
2. What the midpoint's loss is made of: only one part's tensors interpolated, the rest A's;
   2b: one group's permutation swapped between weight and activation matching.
3. A planted copy π(A): the neuron map, the head blocks and the permutations are right.
4. How much of each group's weight mass is anchored (other axes fixed) before any solve.
5. Widths and seeds (skipped with ``--quick``): barriers of every alignment.

Activation matching uses the training digits; every barrier is on the held-out digits.

    nice .venv/bin/python bench/merge_transformer.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "merging"))

import _merging_models as M  # noqa: E402

import graphs  # noqa: E402
import merging  # noqa: E402
from merging.assignment import units  # noqa: E402
from merging.forward import load_module, run_values  # noqa: E402
from merging.weight_matching import MatchResult, _Objective  # noqa: E402

CPU = torch.device("cpu")
Split = tuple[torch.Tensor, torch.Tensor]
PARTS = {"attn": ("attn.",), "mlp": ("fc1.", "fc2."), "embed/ln/head": ("embed.", "ln", "head.")}


def digits_rows() -> tuple[Split, Split]:
    train, test = M.digits(flat=False)
    return (train[0].reshape(-1, 8, 8), train[1]), (test[0].reshape(-1, 8, 8), test[1])


def trained_pair(s: int, steps: int, seeds: tuple[int, int], train: Split, test: Split
                 ) -> tuple[graphs.Checkpoint, graphs.Checkpoint]:
    torch.manual_seed(0)
    a, b = (M.checkpoint(M.train(M.EncoderBlock(8, 16 * s, 4, 32 * s, 10), train, seed=k,
                                 steps=steps, lr=3e-3), test[0][:2]) for k in seeds)
    return a, b


def identity(a: graphs.Checkpoint) -> dict[str, torch.Tensor]:
    return {g.id: torch.arange(g.size) for g in graphs.neuron_map(a.architecture)
            .permutable_groups()}


def barrier(a: graphs.Checkpoint, b: graphs.Checkpoint, test: Split, n: int = 25
            ) -> tuple[float, float]:
    """Loss barrier and midpoint accuracy of the straight path A → B (B as given)."""
    path = merging.interpolate(a, b, n, test, match=None).naive
    return path.barrier, path.at(0.5)[1]  # type: ignore[return-value]


def matched_corr(fa: torch.Tensor, fb: torch.Tensor, p: torch.Tensor) -> float:
    """Mean Pearson correlation of A's feature i and B's feature p[i] (tokens as samples)."""
    za, zb = (f.reshape(-1, f.shape[-1]).double() for f in (fa, fb))
    za, zb = ((z - z.mean(0)) / (z - z.mean(0)).norm(dim=0).clamp_min(1e-12) for z in (za, zb))
    return float((za * zb[:, p]).sum(0).mean())


def features(c: graphs.Checkpoint, x: torch.Tensor) -> dict[str, torch.Tensor]:
    v = run_values(load_module(c, CPU), x, ["add_1", "act", "ln1"])
    w, bias = c.tensors["attn.in_proj_weight"], c.tensors["attn.in_proj_bias"]
    q, _, val = (v["ln1"] @ w.T + bias).chunk(3, -1)
    return {"stream": v["add_1"], "fc1": v["act"], "q": q, "v": val}


FEATURE_GROUP = {"stream": "embed", "fc1": "fc1", "q": "attn:qk", "v": "attn:vo"}


def best_of_random_starts(a: graphs.Checkpoint, b: graphs.Checkpoint, n: int) -> MatchResult:
    nmap = graphs.neuron_map(a.architecture)
    results = [merging.weight_matching(a, b, seed=s, init=graphs.sample_permutations(
        nmap, torch.Generator().manual_seed(s))) for s in range(n)]
    return max(results, key=lambda r: r.objective_after)


def table_alignments(a: graphs.Checkpoint, b: graphs.Checkpoint, train: Split, test: Split
                     ) -> dict[str, MatchResult | None]:
    nmap = graphs.neuron_map(a.architecture)
    obj = _Objective(nmap, a, b, CPU)
    anchored_views = ("embed.weight", "embed.bias", "head.weight")
    old = merging.weight_matching(a, b, init=identity(a))
    new = merging.weight_matching(a, b)
    am = merging.activation_matching(a, b, train)
    rows: dict[str, MatchResult | None] = {
        "none": None,
        "weight, from identity (before)": old,
        "weight, anchored (now)": new,
        "weight, best of 20 random starts": best_of_random_starts(a, b, 20),
        "activation": am,
        "weight, from activation": merging.weight_matching(a, b, init=am.perms),
    }
    x = test[0]
    fa, fb = features(a, x), features(b, x)
    with torch.no_grad():
        out_b = load_module(b, CPU)(x)
    head = (f"{'alignment':<34} {'objective':>9} {'emb+head':>8} {'=anch':>5} "
            f"{'corr stream':>11} {'fc1':>5} {'q':>5} {'v':>5} {'|f(πB)-f(B)|':>12} "
            f"{'barrier':>7} {'mid acc':>7}")
    print("1. Alignments of the bench pair (EncoderBlock(8, 64, 4, 128, 10), 1200 steps, "
          "seeds 1/2); test digits, 25 λ points")
    print(head)
    print("-" * len(head))
    for label, r in rows.items():
        perms = {} if r is None else r.perms
        full = {**identity(a), **perms}
        anchored = sum(float(torch.vdot(obj.a[v].reshape(-1).double(),
                                        obj.permuted_b(v, full).reshape(-1).double()))
                       for v in anchored_views)
        same = float((full["embed"] == new.perms["embed"]).float().mean())
        corrs = [matched_corr(fa[k], fb[k], full[g]) for k, g in FEATURE_GROUP.items()]
        pb = b if r is None else r.apply(b)
        with torch.no_grad():
            diff = float((load_module(pb, CPU)(x) - out_b).abs().max())
        bar, mid = barrier(a, pb, test)
        print(f"{label:<34} {obj.value(full):>9.1f} {anchored:>8.1f} {same:>5.0%} "
              f"{corrs[0]:>11.3f} {corrs[1]:>5.3f} {corrs[2]:>5.3f} {corrs[3]:>5.3f} "
              f"{diff:>12.1e} {bar:>7.3f} {mid:>7.3f}")
    # Within a head, q/k and v/o also have a continuous symmetry (q·k and o·v are unchanged
    # by an orthogonal map of the head's dims): how much a permutation leaves on the table.
    line = []
    for k in ("q", "v"):
        za, zb = (f.reshape(-1, f.shape[-1]).double() for f in (fa[k], fb[k]))
        za, zb = ((z - z.mean(0)) / (z - z.mean(0)).norm(dim=0) for z in (za, zb))
        p = new.perms[FEATURE_GROUP[k]]
        h, d = 4, za.shape[1] // 4
        heads = p.view(h, d)[:, 0] // d
        perm_v, orth_v = 0.0, 0.0
        for i in range(h):
            c = (za[:, i * d:(i + 1) * d].T @ zb[:, heads[i] * d:(heads[i] + 1) * d]).numpy()
            r_, c_ = linear_sum_assignment(c, maximize=True)
            perm_v += c[r_, c_].sum()
            orth_v += np.linalg.svd(c, compute_uv=False).sum()
        line.append(f"{k}: best permutation {perm_v / (h * d):.3f}, best orthogonal map "
                    f"{orth_v / (h * d):.3f}")
    print("   matched-head feature correlation, within the anchored head order: "
          + "; ".join(line))
    return rows


def lerp_part(a: graphs.Checkpoint, b: graphs.Checkpoint, prefixes: tuple[str, ...]
              ) -> graphs.Checkpoint:
    tensors = {k: torch.lerp(v, b.tensors[k], 0.5) if k.startswith(prefixes) else v.clone()
               for k, v in a.tensors.items()}
    return graphs.Checkpoint(tensors, a.architecture, {})


def table_parts(a: graphs.Checkpoint, b: graphs.Checkpoint, test: Split,
                rows: dict[str, MatchResult | None]) -> None:
    la, acc_a = merging.evaluate(load_module(a, CPU), test)
    lb, acc_b = merging.evaluate(load_module(b, CPU), test)
    print(f"\n2. Midpoint test loss / accuracy with only one part interpolated (the rest A's); "
          f"endpoints {la:.3f}/{acc_a:.3f} and {lb:.3f}/{acc_b:.3f}")
    cols = ("all", *PARTS)
    head = f"{'alignment':<34} " + " ".join(f"{c:>15}" for c in cols)
    print(head)
    print("-" * len(head))
    for label in ("none", "weight, from identity (before)", "weight, anchored (now)",
                  "activation"):
        r = rows[label]
        pb = b if r is None else r.apply(b)
        cells = []
        for c in cols:
            prefixes = tuple(p for ps in PARTS.values() for p in ps) if c == "all" else PARTS[c]
            loss, acc = merging.evaluate(load_module(lerp_part(a, pb, prefixes), CPU), test)
            cells.append(f"{loss:.3f}/{acc:.3f}")
        print(f"{label:<34} " + " ".join(f"{c:>15}" for c in cells))


def table_swaps(a: graphs.Checkpoint, b: graphs.Checkpoint, test: Split,
                rows: dict[str, MatchResult | None]) -> None:
    """Which group's alignment carries the barrier: one group's permutation taken from the
    other method (activation matching solves every group on its own features, so any mix
    of the two methods' groups is a valid symmetry)."""
    wm, am = rows["weight, anchored (now)"], rows["activation"]
    assert wm is not None and am is not None
    print("\n2b. Barrier (11 λ points) with one group's permutation swapped between anchored "
          f"weight matching ({barrier(a, wm.apply(b), test, 11)[0]:.3f}) and activation "
          f"matching ({barrier(a, am.apply(b), test, 11)[0]:.3f})")
    for label, groups in (("stream", ("embed",)), ("attention", ("attn:heads", "attn:qk",
                                                               "attn:vo")), ("fc1", ("fc1",))):
        mixed = []
        for base, other in ((wm, am), (am, wm)):
            perms = {**base.perms, **{g: other.perms[g] for g in groups}}
            mixed.append(barrier(a, graphs.apply_permutation(b, perms), test, 11)[0])
        print(f"   {label:<10} weight matching with activation's: {mixed[0]:.3f}; "
              f"activation matching with weight's: {mixed[1]:.3f}")


def table_planted(a: graphs.Checkpoint, test: Split) -> None:
    nmap = graphs.neuron_map(a.architecture)
    q = graphs.sample_permutations(nmap, torch.Generator().manual_seed(7))
    b = graphs.apply_permutation(a, q)
    naive, _ = barrier(a, b, test)
    print("\n3. Planted: B = π(A) for a random π of every group (heads as blocks)")
    for label, kw in (("from identity", {"init": identity(a)}), ("anchored", {})):
        r = merging.weight_matching(a, b, **kw)  # type: ignore[arg-type]
        exact = all(torch.equal(r.perms[g], torch.argsort(p)) for g, p in q.items())
        bar, _ = barrier(a, r.apply(b), test)
        print(f"   weight matching {label}: recovered exactly {exact}, barrier {bar:.3f} "
              f"(naive {naive:.3f}), {r.sweeps} sweep(s)")


def table_anchored_mass(a: graphs.Checkpoint) -> None:
    nmap = graphs.neuron_map(a.architecture)
    obj = _Objective(nmap, a, a, CPU)
    fixed = {g.id for g in nmap.groups.values() if not g.permutable}
    print("\n4. Share of each group's weight mass (Σ‖A‖² over its tensors) on views whose other "
          "axes are fixed, before any group is solved")
    for unit in units(nmap):
        pairs = [(v, ax) for g in unit.groups for v, ax in nmap.groups[g].tensors if v in obj.a]
        mass = {v: float(obj.a[v].square().sum()) for v, _ in pairs}
        total = sum(mass[v] for v, _ in pairs)
        anchored = [v for v, ax in pairs if obj.anchored(v, ax, fixed)]
        matrices = [v for v in anchored if obj.a[v].dim() > 1]
        share = sum(mass[v] for v in anchored) / total
        share_m = sum(mass[v] for v in matrices) / total
        print(f"   {'+'.join(unit.groups):<18} {share:>6.1%}, of which matrices {share_m:>5.1%}"
              f" ({', '.join(matrices) or 'none'})")
    print("   (LayerNorm gains are ≈1 in every dim after training: they are anchored mass "
          "that does not tell neurons apart)")


def table_sizes(train: Split, test: Split) -> None:
    print("\n5. Loss barriers by width and seeds (11 λ points); objective of the two weight "
          "matching starts")
    head = (f"{'dim':>4} {'steps':>5} {'seeds':>5} {'naive':>7} {'from id':>7} "
            f"{'anchored':>8} {'act':>7} {'wm@act':>7} {'obj from id':>11} {'obj anch':>8}")
    print(head)
    print("-" * len(head))
    for s, steps in ((1, 300), (2, 600), (4, 1200)):
        for seeds in ((1, 2), (3, 4)):
            a, b = trained_pair(s, steps, seeds, train, test)
            old = merging.weight_matching(a, b, init=identity(a))
            new = merging.weight_matching(a, b)
            am = merging.activation_matching(a, b, train)
            wam = merging.weight_matching(a, b, init=am.perms)
            bars = [barrier(a, bb, test, 11)[0]
                    for bb in (b, old.apply(b), new.apply(b), am.apply(b), wam.apply(b))]
            print(f"{16 * s:>4} {steps:>5} {seeds[0]}/{seeds[1]:<3} "
                  + " ".join(f"{v:>7.3f}" for v in bars[:2]) + f" {bars[2]:>8.3f} "
                  + " ".join(f"{v:>7.3f}" for v in bars[3:])
                  + f" {old.objective_after:>11.1f} {new.objective_after:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the width/seed table")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the CPU cores are shared: oversubscribed threads stall
    start = time.perf_counter()
    train, test = digits_rows()
    a, b = trained_pair(4, 1200, (1, 2), train, test)
    rows = table_alignments(a, b, train, test)
    table_parts(a, b, test, rows)
    table_swaps(a, b, test, rows)
    table_planted(a, test)
    table_anchored_mass(a)
    if not args.quick:
        table_sizes(train, test)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
