"""Parameter-graph construction speed and size, on one CPU thread.

Prints, for a ~5k-parameter CNN and a ResNet-18-sized network (torchvision layout,
architecture inferred from the state dict): build time (first call, which also lays out the
graph for the architecture, then the median of repeated calls), nodes, edges and bytes.
Targets: <= 2 ms for the small CNN; <= 1 s and <= 1.5 GB for ResNet-18.

    .venv/bin/python -m bench.graph_build
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import graphs


def small_cnn() -> graphs.Checkpoint:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )
    return graphs.from_module(model, torch.randn(1, 3, 32, 32))


def resnet18_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors with torchvision's ResNet-18 names and shapes."""
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k) * 0.05

    def bn(name: str, n: int) -> None:
        sd.update({f"{name}.weight": torch.rand(n) + 0.5, f"{name}.bias": torch.randn(n) * 0.1,
               f"{name}.running_mean": torch.randn(n) * 0.1,
               f"{name}.running_var": torch.rand(n) + 0.5,
               f"{name}.num_batches_tracked": torch.tensor(0)})

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


def measure(build: Callable[[], object], repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    build()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def report(name: str, ckpt: graphs.Checkpoint, max_kernel: int, repeats: int) -> None:
    first, median = measure(lambda: graphs.to_graph(ckpt, max_kernel=max_kernel), repeats)
    g = graphs.to_graph(ckpt, max_kernel=max_kernel)
    kernel_edges = int((g.edge_type == graphs.EDGE_TYPES["conv"]).sum())
    params = ckpt.architecture.num_parameters()
    print(f"{name}: {params:,} parameters, max_kernel={max_kernel}")
    print(f"  build: first {first * 1e3:.2f} ms (incl. layout), median of {repeats} "
          f"{median * 1e3:.2f} ms")
    print(f"  nodes {g.num_nodes:,}  edges {g.edge_index.shape[1]:,} "
          f"(conv kernel edges {kernel_edges:,})  bytes {graphs.graph_bytes(g):,} "
          f"({graphs.graph_bytes(g) / 2**20:.1f} MiB)")


def main() -> None:
    torch.set_num_threads(1)
    report("small CNN", small_cnn(), 9, 200)
    sd = resnet18_state_dict()
    arch = graphs.infer_architecture(sd)
    report("ResNet-18", graphs.Checkpoint(sd, arch), 49, 5)


if __name__ == "__main__":
    main()
