"""Merging benchmark: every method of `merging` and the `rebasin` package (PyPI), same pairs.

Pairs are digits classifiers trained from two seeds (sklearn digits, the split and trainer of
tests/merging/_merging_models.py): MLP, CNN, CNN+BN, a ResNet with shortcuts and a
transformer encoder block (8 rows of 8 pixels as tokens). One table: for each pair and
method, the loss barrier and the midpoint's accuracy on the held-out digits (25 λ points,
BatchNorm statistics reset on the data) and the alignment time:

* naive (no alignment); weight matching, also on canonical forms (graphs.canonicalize:
  ReLU scales moved out of incoming weights); activation matching; STE matching (trained
  on the training split); OT fusion exact (ot.emd) and entropic (ot.sinkhorn) on weights,
  and exact on activations: the path runs from A to B carried into A's basis by the plans
  (for Sinkhorn a soft average of B's neurons, not B's function: its accuracy is in the
  note) and the barrier is taken against the parents' own losses; rebasin's
  PermutationCoordinateDescent ("broken" when its permuted B computes another function).

Then: OT fusion of MLPs of different widths (128 and 256 hidden) against vanilla averaging
of a same-width pair, one-shot and after the same short fine-tune; CLAFusion of a 3-layer
and a 5-layer MLP; and our weight matching's time on two ResNet-18-sized networks.

    nice .venv/bin/python bench/merge.py [--quick] [--skip-resnet18] [--families mlp,cnn]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "merging"))

import _merging_models as M  # noqa: E402

import graphs  # noqa: E402
import merging  # noqa: E402
from merging.forward import load_module  # noqa: E402

CPU = torch.device("cpu")


def families(quick: bool) -> list[tuple[str, Callable[[], nn.Module], str, int]]:
    """(name, constructor, input layout, training steps); Adam lr 3e-3, batch 64."""
    s = 1 if quick else 4
    steps = 300 if quick else 1200
    return [
        ("mlp", lambda: M.mlp([64, 128 * s, 128 * s, 10]), "flat", steps),
        ("cnn", lambda: M.cnn(8 * s, 16 * s), "image", steps),
        ("cnn_bn", lambda: M.cnn_bn(16 * s, 32 * s), "image", steps),
        ("resnet", lambda: M.ResNet((16 * s, 32 * s), (1, 1), 10, 3, 1), "image", steps),
        ("transformer", lambda: M.EncoderBlock(8, 16 * s, 4, 32 * s, 10), "rows", steps),
    ]


def data_for(layout: str):
    train, test = M.digits(flat=layout == "flat")
    if layout == "rows":
        train = (train[0].reshape(-1, 8, 8), train[1])
        test = (test[0].reshape(-1, 8, 8), test[1])
    return train, test


def rebasin_align(ma: nn.Module, mb: nn.Module, x: torch.Tensor) -> tuple[nn.Module, float]:
    from rebasin import PermutationCoordinateDescent

    mb = copy.deepcopy(mb)
    start = time.perf_counter()
    pcd = PermutationCoordinateDescent(copy.deepcopy(ma), mb, x)
    pcd.rebasin()
    return mb, time.perf_counter() - start


def same_function(c1: graphs.Checkpoint, c2: graphs.Checkpoint, x: torch.Tensor) -> bool:
    with torch.no_grad():
        o1, o2 = load_module(c1, CPU)(x), load_module(c2, CPU)(x)
    return bool(torch.allclose(o1, o2, atol=1e-4, rtol=1e-4))


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def acc_of(ckpt: graphs.Checkpoint, data) -> float:
    return merging.evaluate(load_module(ckpt, CPU), data)[1]


class Table:
    def __init__(self) -> None:
        self.head = (f"{'pair':<12} {'method':<14} {'barrier':>8} {'mid acc':>8} "
                     f"{'time s':>8}  note")
        print(self.head)
        print("-" * (len(self.head) + 20))

    def row(self, pair: str, method: str, barrier: float | None, mid: float | None,
            seconds: float | None, note: str = "") -> None:
        mid_cell = "-" if mid is None else f"{100 * mid:.1f}%"
        print(f"{pair:<12} {method:<14} {fmt(barrier):>8} {mid_cell:>8} "
              f"{fmt(seconds, 2):>8}  {note}", flush=True)


def bench_pairs(quick: bool, only: set[str] | None, ste_steps: int) -> None:
    print("Loss barrier and midpoint accuracy on held-out digits (25 λ points; BatchNorm "
          "reset on the data); time = alignment / fusion only")
    table = Table()
    extra: list[str] = []
    for name, make, layout, steps in families(quick):
        if only and name not in only:
            continue
        train, test = data_for(layout)
        torch.manual_seed(0)
        ma = M.train(make(), train, seed=1, steps=steps, lr=3e-3)
        mb = M.train(make(), train, seed=2, steps=steps, lr=3e-3)
        a, b = M.checkpoint(ma, test[0][:2]), M.checkpoint(mb, test[0][:2])
        pair = f"{name} {a.architecture.num_parameters() // 1000}k"
        acc_a, acc_b = acc_of(a, test), acc_of(b, test)
        note = f"A {100 * acc_a:.1f}%, B {100 * acc_b:.1f}%"

        def report(method: str, match, seconds: float, pair=pair, a=a, b=b, test=test,
                   note: str = "") -> merging.InterpolationResult:
            r = merging.interpolate(a, b, 25, test, match=match)
            path = r.aligned if match is not None else r.naive
            table.row(pair, method, path.barrier, path.at(0.5)[1], seconds, note)
            return r

        naive = report("naive", None, 0.0, note=note)
        wm = merging.weight_matching(a, b)
        report("weight", wm, wm.seconds, note=f"{wm.sweeps} sweeps")
        wmc = merging.weight_matching(a, b, canonical=True)
        report("weight+canon", wmc, wmc.seconds, note=f"{wmc.sweeps} sweeps")
        am = merging.activation_matching(a, b, train)
        report("activation", am, am.seconds)
        ste = merging.ste_matching(a, b, train, epochs=2, steps_per_epoch=ste_steps)
        report("ste", ste, ste.seconds, note=f"{2 * ste_steps} steps")
        for label, solver, mode in (("ot exact", "emd", "weights"),
                                    ("ot sinkhorn", "sinkhorn", "weights"),
                                    ("ot exact act", "emd", "activations")):
            try:
                fused = merging.ot_fusion([a, b], solver=solver, mode=mode, data=train)
            except merging.UnsupportedMergeError as exc:
                table.row(pair, label, None, None, None, f"refused: {str(exc)[:50]}")
                continue
            r = merging.interpolate(a, fused.aligned[1], 25, test, match=None).naive
            # against the parents' losses: a soft plan's carried B is not B's function
            la, lb = naive.naive.losses[0], naive.naive.losses[-1]
            barrier = max(v - ((1 - t) * la + t * lb) for t, v in zip(r.lambdas, r.losses,
                                                                       strict=True))
            table.row(pair, label, barrier, r.at(0.5)[1], fused.seconds,
                      f"carried B {100 * r.accuracies[-1]:.1f}%")
        try:
            mb_rb, t_rb = rebasin_align(ma, mb, test[0][:8])
            b_rb = M.checkpoint(mb_rb, test[0][:2])
            if same_function(b, b_rb, test[0][:64]):
                rb = merging.interpolate(a, b_rb, 25, test, match=None).naive
                table.row(pair, "rebasin", rb.barrier, rb.at(0.5)[1], t_rb)
            else:  # a permuted B that computes another function has no meaningful barrier
                table.row(pair, "rebasin", None, None, t_rb, "broken: B's function changed")
        except Exception as exc:
            table.row(pair, "rebasin", None, None, None,
                      f"gave up: {type(exc).__name__}: {str(exc).splitlines()[0][:50]}")
        if name in ("cnn", "cnn_bn", "resnet"):
            line = [f"{name}: aligned (weight matching) midpoint acc"]
            has_bn = merging.batchnorm.has_batchnorm(a.architecture)
            for bn in ("stale", "reset", "repair") if has_bn else ("stale", "repair"):
                r = merging.interpolate(a, b, [0.0, 0.5, 1.0], test, match=wm, bn=bn)
                label = bn if has_bn or bn == "repair" else "plain"
                line.append(f"{label} {r.aligned.accuracies[1]:.3f} (loss barrier "
                            f"{r.aligned.barrier:.3f}, naive {r.naive.barrier:.3f})")
            extra.append(line[0] + " " + "; ".join(line[1:]))
    print()
    for line in extra:
        print(line)


def bench_widths(quick: bool) -> None:
    """OT fusion of MLPs 64-w-w-10 of different widths, against averaging equal widths."""
    train, test = M.digits(flat=True)
    steps = 300 if quick else 1200
    small, big = (32, 64) if quick else (128, 256)
    recipe = merging.FinetuneRecipe(steps=100 if quick else 300, lr=1e-3)

    def trained(w: int, seed: int) -> graphs.Checkpoint:
        model = M.train(M.mlp([64, w, w, 10]), train, seed=seed, steps=steps, lr=3e-3)
        return M.checkpoint(model, test[0][:2])

    a, a2, b = trained(small, 1), trained(small, 2), trained(big, 2)
    print(f"\nDifferent widths: MLP 64-{small}-{small}-10 (A, seed 1) and 64-{big}-{big}-10 "
          f"(B, seed 2); A' = 64-{small}-{small}-10 seed 2. Fine-tune: Adam lr "
          f"{recipe.lr}, {recipe.steps} steps of {recipe.batch_size} (train split).")
    print(f"parents: A {100 * acc_of(a, test):.1f}%, A' {100 * acc_of(a2, test):.1f}%, "
          f"B {100 * acc_of(b, test):.1f}%")
    head = f"{'model':<44} {'one-shot':>9} {'fine-tuned':>11} {'time s':>7}"
    print(head)
    print("-" * len(head))
    vanilla = merging.merge(a, a2, method="none").checkpoint
    tuned = merging.finetune(vanilla, train, recipe)
    print(f"{'vanilla average A + A (same width)':<44} {100 * acc_of(vanilla, test):>8.1f}% "
          f"{100 * acc_of(tuned, test):>10.1f}% {'-':>7}")
    for label, kw in (("OT exact, weights", {}),
                      ("OT sinkhorn, weights", {"solver": "sinkhorn"}),
                      ("OT exact, activations", {"mode": "activations", "data": train}),
                      ("OT exact, weights, importance masses", {"masses": "importance"}),
                      ("OT exact, weights, paper's fan-in average", {"fan_in": "average"})):
        for target, into in ((0, small), (1, big)):
            if target == 1 and kw:
                continue
            r = merging.ot_fusion([a, b], target=target, recipe=recipe, **kw)
            tuned = r.finetune(train)
            print(f"{label + f' -> {into} wide':<44} {100 * acc_of(r.checkpoint, test):>8.1f}% "
                  f"{100 * acc_of(tuned, test):>10.1f}% {r.seconds:>7.2f}")


def bench_depths(quick: bool) -> None:
    """CLAFusion of a 3-layer and a 5-layer MLP."""
    train, test = M.digits(flat=True)
    steps = 300 if quick else 1200
    w = 32 if quick else 128
    recipe = merging.FinetuneRecipe(steps=100 if quick else 300, lr=1e-3)
    a = M.checkpoint(M.train(M.mlp([64, w, w, 10]), train, seed=1, steps=steps, lr=3e-3),
                     test[0][:2])
    b = M.checkpoint(M.train(M.mlp([64, w, w, w, w, 10]), train, seed=2, steps=steps,
                             lr=3e-3), test[0][:2])
    print(f"\nDifferent depths (CLAFusion): A = 64-{w}-{w}-10 (3 linear layers), "
          f"B = 64-{w}x4-10 (5); parents A {100 * acc_of(a, test):.1f}%, "
          f"B {100 * acc_of(b, test):.1f}%")
    for label, kw in (("activations (CKA + OT on activations)", {"data": train}),
                      ("no data (relative depth + OT on weights)", {}),
                      ("activations, Sinkhorn", {"data": train, "solver": "sinkhorn"})):
        start = time.perf_counter()
        r = merging.clafusion([a, b], recipe=recipe, **kw)
        seconds = time.perf_counter() - start
        balanced = acc_of(r.balanced[0], test)
        tuned = r.fusion.finetune(train)
        print(f"  {label:<42} layers of A -> B's {r.mappings[0]}; A balanced "
              f"{100 * balanced:.1f}%; fused {100 * acc_of(r.checkpoint, test):.1f}% one-shot, "
              f"{100 * acc_of(tuned, test):.1f}% fine-tuned; {seconds:.2f} s")


def bench_resnet18(device: torch.device) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    a = M.checkpoint(M.ResNet(), x)
    torch.manual_seed(1)
    b = M.checkpoint(M.ResNet(), x)
    r = merging.weight_matching(a, b, device=device)
    print(
        f"\nResNet-18 layout ({a.architecture.num_parameters() / 1e6:.1f}M params, random init) "
        f"on {device}: weight matching {r.seconds:.2f} s, {r.sweeps} sweeps, "
        f"objective {r.objective_before:.1f} -> {r.objective_after:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="narrower nets, fewer steps")
    parser.add_argument("--skip-resnet18", action="store_true")
    parser.add_argument("--families", default="", help="comma-separated subset of the pairs")
    parser.add_argument("--ste-steps", type=int, default=40, help="STE steps per epoch (2)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the CPU cores are shared: oversubscribed threads stall
    start = time.perf_counter()
    only = set(args.families.split(",")) if args.families else None
    bench_pairs(args.quick, only, args.ste_steps)
    bench_widths(args.quick)
    bench_depths(args.quick)
    if not args.skip_resnet18:
        bench_resnet18(merging.assignment.best_device())
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
