"""Parameter-graph construction speed and size, on one CPU thread.

Prints, for a ~5k-parameter CNN, a ResNet-18-sized network (torchvision layout, 7×7 stem,
architecture inferred from the state dict), a ResNet-50-sized one (torchvision Bottleneck
layout with its real 7×7 stride-2 stem, traced) and a 12-layer 768-wide transformer
(traced): build time (first call, which also lays out the graph for the architecture, then
the median of repeated calls), nodes, edges, kernel values stored per kernel shape, graph
bytes and the process' peak memory (each row runs in a fresh process). Kernels are stored
at their own size (``edge_kernel``); ``max_kernel`` is only the width of the ``edge_attr``
view: 1 (one value per edge) for the library rows, 9 in the ``resnet50_k9`` row (what a
metanetwork configured for 3×3 kernels reads, the stem area-resampled to 3×3).
Targets: <= 2 ms for the small CNN; <= 1 s and <= 1.5 GB for ResNet-18; <= 3 s and <= 2 GB
for ResNet-50.

    nice .venv/bin/python -m bench.graph_build [row ...]
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import graphs
from bench.merge_large import ResNet50


def small_cnn() -> graphs.Checkpoint:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    return graphs.from_module(model, torch.randn(1, 3, 32, 32))


def resnet18_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors with torchvision's ResNet-18 names and shapes."""
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k) * 0.05

    def bn(name: str, n: int) -> None:
        sd.update(
            {
                f"{name}.weight": torch.rand(n) + 0.5,
                f"{name}.bias": torch.randn(n) * 0.1,
                f"{name}.running_mean": torch.randn(n) * 0.1,
                f"{name}.running_var": torch.rand(n) + 0.5,
                f"{name}.num_batches_tracked": torch.tensor(0),
            }
        )

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            conv(f"{p}.conv1", width, cin, 3)
            bn(f"{p}.bn1", width)
            conv(f"{p}.conv2", width, width, 3)
            bn(f"{p}.bn2", width)
            if block == 0 and cin != width:
                conv(f"{p}.downsample.0", width, cin, 1)
                bn(f"{p}.downsample.1", width)
            cin = width
    sd["fc.weight"] = torch.randn(1000, 512) * 0.05
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def resnet50(stem_kernel: int) -> graphs.Checkpoint:
    """ResNet-50 (blocks 3, 4, 6, 3; 25.5M parameters) with a ``stem_kernel`` stem."""
    model = ResNet50(stem_kernel=stem_kernel).eval()
    return graphs.from_module(model, torch.randn(1, 3, 64, 64))


def transformer(layers: int = 12, dim: int = 768, heads: int = 12) -> graphs.Checkpoint:
    """A pre-LN encoder (nn.MultiheadAttention, 4x MLP): 85M parameters at 12 x 768."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.fc1, self.act, self.fc2 = (
                nn.Linear(dim, 4 * dim),
                nn.GELU(),
                nn.Linear(4 * dim, dim),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.ln1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    model = nn.Sequential(
        nn.Linear(16, dim), *[Block() for _ in range(layers)], nn.LayerNorm(dim), nn.Linear(dim, 10)
    )
    return graphs.from_module(model.eval(), torch.randn(1, 8, 16))


def measure(build: Callable[[], object], repeats: int) -> tuple[float, float, float, float]:
    """Wall seconds of the first call and the median of ``repeats`` more, then the same in
    CPU seconds of this one-thread process (on a shared machine wall time also measures
    the neighbours)."""
    wall, cpu = [], []
    for _ in range(repeats + 1):
        w, c = time.perf_counter(), time.process_time()
        build()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return wall[0], statistics.median(wall[1:]), cpu[0], statistics.median(cpu[1:])


def report(name: str, ckpt: graphs.Checkpoint, max_kernel: int, repeats: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    first, median, cpu_first, cpu_median = measure(
        lambda: graphs.to_graph(ckpt, max_kernel=max_kernel), repeats
    )
    g = graphs.to_graph(ckpt, max_kernel=max_kernel)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; before stats
    kernel_edges = int((g.edge_type == graphs.EDGE_TYPES["conv"]).sum())
    params = ckpt.architecture.num_parameters()
    shape = g.edge_kernel_shape
    shapes = {
        (kh, kw): int(((shape[:, 0] == kh) & (shape[:, 1] == kw)).sum())
        for kh, kw in [(1, 1), *graphs.kernel_shapes(ckpt.architecture)]
    }
    print(f"{name}: {params:,} parameters, edge features max_kernel={max_kernel}")
    print(
        f"  build: first {first * 1e3:.2f} ms (incl. layout), median of {repeats} "
        f"{median * 1e3:.2f} ms (CPU: {cpu_first * 1e3:.2f} / {cpu_median * 1e3:.2f} ms)"
    )
    print(
        f"  nodes {g.num_nodes:,}  edges {g.edge_index.shape[1]:,} "
        f"(conv kernel edges {kernel_edges:,})  bytes {graphs.graph_bytes(g):,} "
        f"({graphs.graph_bytes(g) / 2**20:.1f} MiB)"
    )
    print(
        f"  kernel values {g.edge_kernel.numel():,}; edges per kernel shape: "
        + ", ".join(f"{kh}x{kw} {n:,}" for (kh, kw), n in sorted(shapes.items()))
    )
    print(
        f"  peak memory {peak / 2**20:.2f} GiB (of which building the graph "
        f"{(peak - before) / 2**20:.2f} GiB)",
        flush=True,
    )


def _resnet18() -> graphs.Checkpoint:
    sd = resnet18_state_dict()
    return graphs.Checkpoint(sd, graphs.infer_architecture(sd))


ROWS: dict[str, tuple[str, Callable[[], graphs.Checkpoint], int, int]] = {
    "small_cnn": ("small CNN", small_cnn, 9, 200),
    "resnet18": ("ResNet-18 (7x7 stem, inferred)", _resnet18, 1, 5),
    "resnet50": ("ResNet-50 (7x7 stem, traced)", lambda: resnet50(7), 1, 3),
    "resnet50_k9": ("ResNet-50 (7x7 stem, traced)", lambda: resnet50(7), 9, 3),
    "transformer": ("transformer 12 x 768 (traced)", transformer, 1, 1),
}


def families() -> None:
    """The test networks of every module style (tests/graphs/_families.py)."""
    sys.path.insert(0, "tests/graphs")
    from _families import FAMILY_NAMES, build

    print(
        "family: parameters, op-graph nodes, describe ms, to_graph ms (first / median), "
        "graph nodes, edges (edge features max_kernel=9)"
    )
    for name in FAMILY_NAMES:
        model, x = build(name, 0)
        start = time.perf_counter()
        ckpt = graphs.from_module(model, x)
        traced = time.perf_counter() - start
        first, median, _, _ = measure(lambda c=ckpt: graphs.to_graph(c), 20)
        g = graphs.to_graph(ckpt)
        print(
            f"  {name}: {ckpt.architecture.num_parameters():,}, "
            f"{len(ckpt.architecture.nodes)}, {traced * 1e3:.0f}, "
            f"{first * 1e3:.2f} / {median * 1e3:.2f}, {g.num_nodes:,}, "
            f"{g.edge_index.shape[1]:,}"
        )


def _row(key: str) -> None:
    torch.set_num_threads(1)
    if key == "families":
        families()
        return
    name, make, max_kernel, repeats = ROWS[key]
    report(name, make(), max_kernel, repeats)


def main() -> None:
    ctx = multiprocessing.get_context("spawn")  # a fresh process: its own memory peak
    for key in sys.argv[1:] or [*ROWS, "families"]:
        proc = ctx.Process(target=_row, args=(key,))
        proc.start()
        proc.join()


if __name__ == "__main__":
    main()
