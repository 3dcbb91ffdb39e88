"""Graph metanetwork speed: batched inference throughput and training time per epoch.

Small graphs are digits-CNN-zoo-sized networks (2-3 stride-2 3×3 conv layers of 4-16
channels, a 10-way head: 40-60 nodes, 250-850 edges) with random weights; the model is the
generalization metanetwork's default configuration (or a shipped one's, with --builtin).
For a classification built-in (the INR classifier) the graphs are digits-inr SIRENs
(2-32-32-1: 67 nodes, 1,120 edges) instead, so its probe pass runs on what it reads.
Runs on the CPU (with --threads torch threads; once with glibc's default allocator, once
after models.runtime.keep_freed_memory, with the ratio) and, when CUDA is present, on the GPU.
Targets: >= 500 small graphs/s on a 2-core CPU, >= 50,000/s on an H100.

    .venv/bin/python -m bench.metanet_speed [--graphs 2048] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import graphs
from models import GraphMetanet, MetanetConfig
from models.data import graph_of
from models.fit import default_config
from models.registry import BUILTIN_DIR, available, load_from
from models.runtime import keep_freed_memory


def small_cnn(widths: list[int]) -> graphs.Checkpoint:
    layers: list[nn.Module] = []
    prev = 1
    for w in widths:
        layers += [nn.Conv2d(prev, w, 3, 2, 1), nn.ReLU()]
        prev = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, 10)]
    return graphs.from_module(nn.Sequential(*layers), torch.zeros(1, 1, 8, 8))


def small_siren() -> graphs.Checkpoint:
    net = nn.Sequential(nn.Linear(2, 32), graphs.Sine(15.0), nn.Linear(32, 32),
                        graphs.Sine(15.0), nn.Linear(32, 1))
    return graphs.from_module(net, torch.zeros(1, 2))


def small_graphs(n: int, seed: int = 0, kind: str = "cnn", max_kernel: int = 9) -> list:
    """``n`` graphs: a few traced architectures, fresh random weights for each graph."""
    g = torch.Generator().manual_seed(seed)
    if kind == "siren":
        archs = [small_siren()]
    else:
        archs = [small_cnn(w) for w in
                 ([4, 8], [8, 16], [16, 16], [4, 8, 12], [8, 12, 16], [16, 16, 16])]
    out = []
    for i in range(n):
        base = archs[i % len(archs)]
        tensors = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in base.tensors.items()}
        y = torch.rand(1, generator=g) if kind == "cnn" else torch.randint(10, (1,), generator=g)
        data = graph_of(graphs.Checkpoint(tensors, base.architecture), max_kernel)
        data.y = y
        out.append(data)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def inference(
    model: GraphMetanet, data: list, batch_size: int, device: torch.device, repeats: int
) -> tuple[float, float]:
    """graphs/s with batching on the host included, and for the forward alone."""
    model.eval().to(device)
    batches = [
        Batch.from_data_list(data[i : i + batch_size]) for i in range(0, len(data), batch_size)
    ]
    model(batches[0].to(device))  # warm-up (allocator, kernels)
    total, forward = [], []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fwd = 0.0
        for i in range(0, len(data), batch_size):
            b = Batch.from_data_list(data[i : i + batch_size]).to(device)
            sync(device)
            t1 = time.perf_counter()
            model(b)
            sync(device)
            fwd += time.perf_counter() - t1
        total.append(time.perf_counter() - t0)
        forward.append(fwd)
    return len(data) / statistics.median(total), len(data) / statistics.median(forward)


def train_epoch(model: GraphMetanet, data: list, batch_size: int, device: torch.device) -> float:
    """Seconds for one epoch (forward, BCE or cross-entropy loss, backward, AdamW step)."""
    model.train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True)
    sync(device)
    t0 = time.perf_counter()
    for b in loader:
        b = b.to(device)
        out = model(b)
        if model.config.task == "classification":
            loss = nn.functional.cross_entropy(out, b.y)
        else:
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], b.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=2048)
    parser.add_argument("--train-graphs", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--builtin", default="digits-cnn-generalization")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.builtin in available():
        cfg = load_from(BUILTIN_DIR, args.builtin, torch.device("cpu")).model.config
        source = f"config of built-in {args.builtin}"
    else:
        cfg = default_config("generalization")
        source = "default generalization config"
    kind = "siren" if cfg.task == "classification" else "cnn"
    data = small_graphs(args.graphs, kind=kind, max_kernel=cfg.max_kernel)
    nodes = statistics.mean(d.num_nodes for d in data)
    edges = statistics.mean(d.edge_index.shape[1] for d in data)
    print(
        f"model: {source}: hidden {cfg.hidden}, edge {cfg.edge_hidden}, "
        f"{cfg.layers} layers, {sum(p.numel() for p in GraphMetanet(cfg).parameters()):,} "
        f"parameters" + (f", {cfg.probes} probe points" if cfg.probes else "")
    )
    print(f"graphs: {len(data)} small {kind.upper()} graphs, mean {nodes:.0f} nodes / "
          f"{edges:.0f} edges")
    t0 = time.perf_counter()
    small_graphs(256, seed=1, kind=kind, max_kernel=cfg.max_kernel)
    print(
        f"graph building (graphs.to_graph): {256 / (time.perf_counter() - t0):,.0f} graphs/s "
        "(one CPU thread, not included below)"
    )
    # the CPU twice: glibc's default allocator first, then models.runtime.keep_freed_memory
    # (it cannot be undone within a process, so the baseline must come first)
    devices = [("cpu", torch.device("cpu"), 512), ("cpu", torch.device("cpu"), 512)]
    if torch.cuda.is_available():
        devices.append((torch.cuda.get_device_name(), torch.device("cuda"), 8192))
    print(
        f"{'device':<40}{'batch':>7}{'graphs/s':>12}{'forward-only/s':>16}"
        f"{'train s/epoch':>15}{'(graphs)':>10}"
    )
    baseline = None
    for index, (label, device, batch_size) in enumerate(devices):
        if device.type == "cpu":
            torch.set_num_threads(args.threads)
            label = f"cpu ({args.threads} threads), glibc default malloc"
            if index == 1:
                kept = keep_freed_memory()
                label = f"cpu ({args.threads} threads), keep freed memory"
                label += "" if kept else " (refused)"
        model = GraphMetanet(MetanetConfig.from_dict(cfg.to_dict()))
        model.fit_normalization(data[:256])
        full, fwd = inference(model, data, batch_size, device, repeats=3)
        epoch = train_epoch(model, data[: args.train_graphs], 64, device)
        print(
            f"{label:<40}{batch_size:>7}{full:>12,.0f}{fwd:>16,.0f}{epoch:>15.2f}"
            f"{args.train_graphs:>10}"
        )
        if baseline is None:
            baseline = (full, fwd, epoch)
        elif device.type == "cpu":
            print(
                f"{'  ratio to the default malloc':<47}{full / baseline[0]:>12.2f}x"
                f"{fwd / baseline[1]:>15.2f}x{baseline[2] / epoch:>14.2f}x"
            )


if __name__ == "__main__":
    main()
