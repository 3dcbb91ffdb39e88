"""Git Re-Basin benchmark: our weight matching vs the `rebasin` package (PyPI), same pairs.

Pairs are digits classifiers trained from two seeds (sklearn digits, the split and trainer of
tests/merging/_merging_models.py): MLP, CNN, CNN+BN, a ResNet with shortcuts and a
transformer encoder block (8 rows of 8 pixels as tokens). For each pair: the naive barrier,
our weight matching (time, sweeps, barrier), our activation matching (barrier), and
rebasin's PermutationCoordinateDescent (time, barrier, whether B still computes the same
function), then our time for two ResNet-18-sized networks (torchvision layout, 11.7M
parameters). BatchNorm networks are evaluated with statistics reset on the data (also
REPAIR for the CNNs). Barriers are on the held-out digits, 25 λ points.

    nice .venv/bin/python bench/merge.py [--quick] [--skip-resnet18]
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


class Rows(nn.Module):
    """Digits as a sequence: 8 tokens (image rows) of 8 pixels, into an encoder block."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.block = M.EncoderBlock(8, dim, heads, hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


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
        o1, o2 = load_module(c1, torch.device("cpu"))(x), load_module(c2, torch.device("cpu"))(x)
    return bool(torch.allclose(o1, o2, atol=1e-4, rtol=1e-4))


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def bench_pairs(quick: bool) -> None:
    head = (
        f"{'pair':<12} {'params':>8} {'naive':>7} | {'ours wm':>7} {'ratio':>6} {'sweeps':>6} "
        f"{'time s':>7} | {'ours am':>7} | {'rebasin':>7} {'time s':>7} {'same f':>6}"
    )
    print("Loss barriers on held-out digits (25 λ points; 'ratio' = ours / naive)")
    print(head)
    print("-" * len(head))
    extra: list[str] = []
    for name, make, layout, steps in families(quick):
        train, test = data_for(layout)
        torch.manual_seed(0)
        ma = M.train(make(), train, seed=1, steps=steps, lr=3e-3)
        mb = M.train(make(), train, seed=2, steps=steps, lr=3e-3)
        a, b = M.checkpoint(ma, test[0][:2]), M.checkpoint(mb, test[0][:2])
        wm = merging.weight_matching(a, b)
        ours = merging.interpolate(a, b, 25, test, match=wm)
        am = merging.interpolate(a, b, 25, test, match="activation")
        try:
            mb_rb, t_rb = rebasin_align(ma, mb, test[0][:8])
            b_rb = M.checkpoint(mb_rb, test[0][:2])
            same = same_function(b, b_rb, test[0][:64])
            # A permuted B that computes another function has no meaningful barrier.
            rb = merging.interpolate(a, b_rb, 25, test, match=None).naive
            cell = fmt(rb.barrier) if same else "broken"
            rb_cell = f"{cell:>7} {t_rb:>7.3f} {same!s:>6}"
        except Exception as exc:
            rb_cell = f"gave up: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
        naive = ours.naive.barrier
        print(
            f"{name:<12} {a.architecture.num_parameters():>8} {fmt(naive):>7} | "
            f"{fmt(ours.aligned.barrier):>7} {ours.aligned.barrier / naive:>6.1%} "
            f"{wm.sweeps:>6} {wm.seconds:>7.3f} | {fmt(am.aligned.barrier):>7} | {rb_cell}"
        )
        if name in ("cnn", "cnn_bn", "resnet"):
            acc_a, acc_b = ours.naive.accuracies[0], ours.naive.accuracies[-1]
            mean = (acc_a + acc_b) / 2
            line = [
                f"{name}: endpoint acc {acc_a:.3f}/{acc_b:.3f} (mean {mean:.3f});",
                "aligned (weight matching) midpoint acc",
            ]
            has_bn = merging.batchnorm.has_batchnorm(a.architecture)
            for bn in ("stale", "reset", "repair") if has_bn else ("stale", "repair"):
                r = merging.interpolate(a, b, [0.0, 0.5, 1.0], test, match=wm, bn=bn)
                label = bn if has_bn or bn == "repair" else "plain"
                line.append(
                    f"{label} {r.aligned.accuracies[1]:.3f} (loss barrier "
                    f"{r.aligned.barrier:.3f}, naive {r.naive.barrier:.3f})"
                )
            extra.append(" ".join(line[:2]) + " " + "; ".join(line[2:]))
    print()
    for line in extra:
        print(line)


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
    args = parser.parse_args()
    torch.set_num_threads(1)  # the CPU cores are shared: oversubscribed threads stall
    bench_pairs(args.quick)
    if not args.skip_resnet18:
        bench_resnet18(merging.assignment.best_device())


if __name__ == "__main__":
    main()
