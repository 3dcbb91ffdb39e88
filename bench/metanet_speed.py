"""Graph metanetwork speed and memory, side by side with NFN, on the same SIREN graphs.

The graphs are digits-inr-sized SIRENs (2-32-32-1, w0 = 15: 67 nodes, 1,120 edges, what
the shipped ``digits-inr-classifier`` reads) with random weights; the same checkpoints go
to NFN as weight-space tensors. Ours is the shipped INR classifier (probes and layer
statistics included; a fresh copy of its configuration when training). NFN is the ``nfn``
package's HNP network, three ``HNPLinear`` layers of 128 channels with ReLU, ``HNPPool``
and a 256-unit head (Zhou et al. 2023's recipe at the width its speed was quoted at).

Every timing runs the contenders in one process in interleaved rounds (A, B, A, B, ...) and
reports medians and ratios: the machine these run on is shared, and only figures measured
side by side compare. Memory is measured in a fresh subprocess per figure (peak RSS from
``getrusage`` minus the RSS before the measured step; CUDA: ``max_memory_allocated``).

Sections (``--device cpu``, the default):

* one CPU thread, batch 128: inference and training steps (forward, cross-entropy,
  backward, AdamW) in graphs/s, ours (block path and edge-list path) against NFN;
* two CPU threads: INR graphs/s of the shipped classifier, collation from built graphs
  included (graph building from checkpoints is not: bench/graph_build measures it); ours
  runs its sub-batches on two single-threaded workers (``models.runtime.map_threads``, what
  the model does by itself with two torch threads), NFN both ways (two intra-op threads,
  and two single-threaded workers on halves of each batch);
* peak memory of a training step at batch 1,024 (ours with and without message
  checkpointing, NFN) and of inference on 1,024 INR graphs.

* training throughput (graphs/s) of the generalization metanetwork over whole epochs on a
  1,000-network CNN zoo (``--zoo DIR``: the first 1,000 of a built zoo; default: random-weight
  digits-shaped CNNs); ``--training`` runs this section alone.

``--device cuda``: inference and training at batches 128 / 1,024 / 8,192 with peak memory
(ours in float32 and under bfloat16 autocast, NFN in float32), and the training throughput.

    .venv/bin/python -m bench.metanet_speed [--rounds 7] [--device cpu|cuda]
    .venv/bin/python -m bench.metanet_speed --training --zoo zoos/digits-cnn-recipes
"""

from __future__ import annotations

import os

# Before torch loads libgomp, which reads it once: worker threads that sleep between
# parallel regions instead of spinning. On a shared, oversubscribed machine a spinning or
# descheduled peer stalls every parallel op (two threads ran the block path at 10 graphs/s
# against 170/s on one thread; 200/s with this), and the block path runs thousands of ops.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch, Data

import graphs
from models import GraphMetanet, MetanetConfig
from models.data import graph_of
from models.registry import BUILTIN_DIR, load_from
from models.runtime import keep_freed_memory, map_threads

BUILTIN = "digits-inr-classifier"
NFN_CHANNELS = 128
NFN_LAYERS = 3


# --- data ------------------------------------------------------------------------------------


def small_siren() -> graphs.Checkpoint:
    net = nn.Sequential(nn.Linear(2, 32), graphs.Sine(15.0), nn.Linear(32, 32),
                        graphs.Sine(15.0), nn.Linear(32, 1))
    return graphs.from_module(net, torch.zeros(1, 2))


def small_cnn(widths: list[int]) -> graphs.Checkpoint:
    layers: list[nn.Module] = []
    prev = 1
    for w in widths:
        layers += [nn.Conv2d(prev, w, 3, 2, 1), nn.ReLU()]
        prev = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, 10)]
    return graphs.from_module(nn.Sequential(*layers), torch.zeros(1, 1, 8, 8))


def checkpoints(n: int, seed: int = 0, kind: str = "siren") -> list[graphs.Checkpoint]:
    """``n`` checkpoints: traced architectures, fresh random weights for each."""
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
        out.append(graphs.Checkpoint(tensors, base.architecture))
    return out


def small_graphs(n: int, seed: int = 0, kind: str = "siren", max_kernel: int = 1) -> list[Data]:
    """Parameter graphs of :func:`checkpoints`, with a random target (a class for SIRENs)."""
    g = torch.Generator().manual_seed(seed + 1)
    out = []
    for c in checkpoints(n, seed, kind):
        data = graph_of(c, max_kernel)
        data.y = torch.randint(10, (1,), generator=g) if kind == "siren" else torch.rand(1)
        out.append(data)
    return out


def nfn_inputs(ckpts: list[graphs.Checkpoint]) -> Any:  # nfn's WeightSpaceFeatures
    """The checkpoints as NFN weight-space features, ``(B, 1, out, in)`` and ``(B, 1, out)``."""
    from nfn.common import WeightSpaceFeatures

    names = list(ckpts[0].tensors)
    ws = [torch.stack([c.tensors[k] for c in ckpts])[:, None] for k in names if
          k.endswith("weight")]
    bs = [torch.stack([c.tensors[k] for c in ckpts])[:, None] for k in names if
          k.endswith("bias")]
    return WeightSpaceFeatures(ws, bs)


# --- models ----------------------------------------------------------------------------------


def nfn_model(ckpt: graphs.Checkpoint, outputs: int = 10) -> nn.Module:
    """HNP x 3 (``nfn`` package), 128 channels, HNP pooling, MLP head."""
    from nfn import layers
    from nfn.common import NetworkSpec
    from nfn.common.data import ArraySpec

    ws = [v for k, v in ckpt.tensors.items() if k.endswith("weight")]
    bs = [v for k, v in ckpt.tensors.items() if k.endswith("bias")]
    spec = NetworkSpec([ArraySpec(tuple(w.shape)) for w in ws],
                       [ArraySpec(tuple(b.shape)) for b in bs])
    body: list[nn.Module] = []
    width = 1
    for _ in range(NFN_LAYERS):
        body += [layers.HNPLinear(spec, width, NFN_CHANNELS), layers.TupleOp(nn.ReLU())]
        width = NFN_CHANNELS
    body += [layers.HNPPool(spec), nn.Flatten(start_dim=-2),
             nn.Linear(layers.HNPPool.get_num_outs(spec) * NFN_CHANNELS, 256), nn.ReLU(),
             nn.Linear(256, outputs)]
    return nn.Sequential(*body)


def ours_model(fresh: bool, device: torch.device) -> GraphMetanet:
    """The shipped classifier, or (``fresh``) a new model of its configuration."""
    model = load_from(BUILTIN_DIR, BUILTIN, torch.device("cpu")).model
    if fresh:
        trained = model
        model = GraphMetanet(MetanetConfig.from_dict(trained.config.to_dict()))
        model.load_state_dict(trained.state_dict())  # same normalisation buffers
    return model.to(device)


# --- timing ----------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(steps: dict[str, Callable[[], object]], rounds: int,
                device: torch.device) -> dict[str, float]:
    """Median seconds per call of each step, run A, B, A, B, ... after one warm-up each."""
    for f in steps.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, f in steps.items():
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bfloat16 autocast on CUDA only (the CPU path stays float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def ours_steps(batch: Batch, device: torch.device, amp: bool = False,
               use_layout: bool = True, fuse: bool = True,
               ) -> tuple[Callable[[], object], Callable[[], object]]:
    """(inference, training step) closures for our model on ``batch`` (``fuse`` False:
    inference through the unfused block layers, the path before NGConv.forward_fused)."""
    infer_model = ours_model(False, device).eval()
    train_model = ours_model(True, device).train()
    infer_model.use_layout = train_model.use_layout = use_layout
    infer_model.fuse_layers = fuse
    opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    batch = batch.to(device)

    def infer() -> object:
        with torch.inference_mode(), autocast(device, amp):
            return infer_model(batch)

    def train() -> object:
        with autocast(device, amp):
            loss = nn.functional.cross_entropy(train_model(batch).float(), batch.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return infer, train


def nfn_steps(ckpts: list[graphs.Checkpoint], y: torch.Tensor, device: torch.device,
              amp: bool = False) -> tuple[Callable[[], object], Callable[[], object]]:
    torch.manual_seed(0)
    model = nfn_model(ckpts[0]).to(device)
    feats = nfn_inputs(ckpts).to(device)
    y = y.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer() -> object:
        model.eval()
        with torch.inference_mode(), autocast(device, amp):
            return model(feats)

    def train() -> object:
        model.train()
        with autocast(device, amp):
            loss = nn.functional.cross_entropy(model(feats).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return infer, train


def cpu_one_thread(batch_size: int, rounds: int) -> None:
    torch.set_num_threads(1)
    device = torch.device("cpu")
    ckpts = checkpoints(batch_size)
    data = small_graphs(batch_size)
    batch = Batch.from_data_list(data)
    y = batch.y
    ours_i, ours_t = ours_steps(batch, device)
    unfused_i, _ = ours_steps(batch, device, fuse=False)
    edge_i, edge_t = ours_steps(batch, device, use_layout=False)
    nfn_i, nfn_t = nfn_steps(ckpts, y, device)
    load = os.getloadavg()[0]
    inf = interleaved({"ours": ours_i, "unfused": unfused_i, "ours, edge list": edge_i,
                       "nfn": nfn_i}, rounds, device)
    trn = interleaved({"ours": ours_t, "ours, edge list": edge_t, "nfn": nfn_t}, rounds, device)
    print(f"\nCPU, 1 thread, batch {batch_size} (graphs/s, medians of {rounds} interleaved "
          f"rounds; ratio = ours / NFN; load average {load:.2f} -> {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs)")
    print(f"{'':<18}{'ours':>10}{'unfused':>9}{'ours, edge list':>17}{'NFN HNPx3':>11}"
          f"{'ratio':>8}{'target':>8}")
    for name, t, target in (("inference", inf, 3.0), ("training step", trn, 1.5)):
        r = {k: batch_size / v for k, v in t.items()}
        unfused = f"{r['unfused']:>9,.0f}" if "unfused" in r else f"{'':>9}"
        print(f"{name:<18}{r['ours']:>10,.0f}{unfused}{r['ours, edge list']:>17,.0f}"
              f"{r['nfn']:>11,.0f}{r['ours'] / r['nfn']:>7.2f}x{target:>7.1f}x")
    print("  (unfused: inference through the block layers without NGConv.forward_fused, "
          "the path before it; training steps never fuse)")


def cpu_two_threads(num_graphs: int, batch_size: int, rounds: int) -> None:
    torch.set_num_threads(2)
    device = torch.device("cpu")
    data = small_graphs(num_graphs, seed=2)
    ckpts = checkpoints(num_graphs, seed=2)
    model = ours_model(False, device).eval()
    nfn = nfn_model(ckpts[0]).eval()
    feats = [nfn_inputs(ckpts[i:i + batch_size]) for i in range(0, num_graphs, batch_size)]

    def ours() -> None:
        with torch.inference_mode():
            for i in range(0, num_graphs, batch_size):
                model(Batch.from_data_list(data[i:i + batch_size]))

    def nfn_run() -> None:
        with torch.inference_mode():
            for f in feats:
                nfn(f)

    halves = [(nfn_inputs(ckpts[i:i + batch_size // 2]),
               nfn_inputs(ckpts[i + batch_size // 2:i + batch_size]))
              for i in range(0, num_graphs, batch_size)]

    def nfn_split() -> None:  # NFN given the same two single-threaded workers as ours
        with torch.inference_mode():
            for pair in halves:
                map_threads(nfn, pair, 2)

    load = os.getloadavg()[0]
    t = interleaved({"ours": ours, "nfn": nfn_run, "nfn-split": nfn_split}, rounds, device)
    best = min(t["nfn"], t["nfn-split"])
    print(f"\nCPU, 2 threads: {num_graphs} INR graphs in batches of {batch_size}, the "
          f"shipped {BUILTIN} (probes included, collation included; medians of {rounds} "
          f"interleaved rounds; load average {load:.2f} -> {os.getloadavg()[0]:.2f})")
    print(f"  ours {num_graphs / t['ours']:,.0f} graphs/s (target >= 500; sub-batches on two "
          f"single-threaded workers), NFN {num_graphs / t['nfn']:,.0f}/s (2 intra-op "
          f"threads) / {num_graphs / t['nfn-split']:,.0f}/s (two single-threaded workers), "
          f"ratio to the faster NFN {best / t['ours']:.2f}x")


# --- memory (one subprocess per figure) ------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Restart the kernel's peak-RSS mark (``VmHWM``) at the current RSS.

    ``getrusage``'s ``ru_maxrss`` cannot serve here: it keeps the high-water mark of the
    memory image a process had before ``exec``, i.e. the parent's RSS at ``fork``, so a
    child smaller than the bench's parent reported the parent's size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int:
    """``VmHWM``: the peak RSS since :func:`_reset_peak` (else since ``exec``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(what: str, batch_size: int, device: torch.device) -> dict[str, float]:
    """One figure, in this (fresh) process: a warm-up at batch 8, then the measured step."""
    torch.set_num_threads(2)
    keep_freed_memory()
    ckpts = checkpoints(batch_size, seed=3)
    data = small_graphs(batch_size, seed=3)
    kind, _, mode = what.partition("-")
    if kind == "nfn":
        small_i, small_t = nfn_steps(ckpts[:8], torch.zeros(8, dtype=torch.long), device)
        big_i, big_t = nfn_steps(ckpts, torch.randint(10, (batch_size,)), device)
    else:
        small = Batch.from_data_list(data[:8])
        small_i, small_t = ours_steps(small, device)
        big = Batch.from_data_list(data)
        big_i, big_t = ours_steps(big, device)
    if mode.startswith("train"):
        small_t()  # creates the optimizer state, warms the allocator
        step = big_t
    else:
        small_i()
        step = big_i
    if kind == "ours" and mode == "train-nockpt":
        _set_checkpointing(step, False)
    del small_i, small_t
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - before) / 2**20}
    before = _rss()
    whole = _peak()  # setup included
    _reset_peak()
    step()
    peak = _peak()
    return {"peak_mb": (peak - before) / 2**20, "process_peak_mb": max(peak, whole) / 2**20}


def _set_checkpointing(step: Callable[[], object], mode: bool | str) -> None:
    """Reach the model inside an :func:`ours_steps` closure."""
    for cell in step.__closure__ or ():
        if isinstance(cell.cell_contents, GraphMetanet):
            cell.cell_contents.set_checkpointing(mode)


def in_subprocess(what: str, batch_size: int, device: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.metanet_speed", "--measure", what, "--batch",
         str(batch_size), "--device", device],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_memory(batch_size: int) -> None:
    print(f"\nPeak memory, CPU (RSS above the process's RSS before the step; a fresh "
          f"process per figure), batch {batch_size}")
    rows = [("training step, ours (messages recomputed, default)", "ours-train"),
            ("training step, ours (messages kept for backward)", "ours-train-nockpt"),
            ("training step, NFN HNPx3", "nfn-train"),
            (f"inference of {batch_size} INR graphs, ours", "ours-infer"),
            (f"inference of {batch_size} INR graphs, NFN HNPx3", "nfn-infer")]
    got = {}
    for label, what in rows:
        got[what] = in_subprocess(what, batch_size, "cpu")
        print(f"  {label:<52}{got[what]['peak_mb']:>8,.0f} MB  (process peak "
              f"{got[what]['process_peak_mb']:,.0f} MB)")
    ratio = got["ours-train"]["peak_mb"] / got["nfn-train"]["peak_mb"]
    print(f"  training step ours / NFN: {ratio:.2f}x "
          f"(target <= 1); inference of {batch_size} graphs: "
          f"{got['ours-infer']['process_peak_mb'] / 1024:.2f} GB whole process (target <= 1 GB)")


# --- metanetwork training throughput on a CNN zoo -------------------------------------------


def cnn_zoo_graphs(zoo_dir: str | None, n: int) -> tuple[list[Data], str]:
    """``n`` digits-CNN parameter graphs with their test accuracy: the first ``n`` networks
    of a built zoo (``--zoo``), else random-weight CNNs of the digits-cnn shapes."""
    if zoo_dir:
        from models.data import read_zoo, zoo_graphs

        zoo = read_zoo(zoo_dir)
        if len(zoo.rows) < n:
            raise SystemExit(f"--zoo {zoo_dir} holds {len(zoo.rows)} networks, {n} wanted")
        return zoo_graphs(zoo)[:n], f"the first {n} networks of {zoo_dir} ({zoo.name})"
    return (small_graphs(n, seed=5, kind="cnn", max_kernel=graphs.DEFAULT_MAX_KERNEL),
            f"{n} random-weight digits-shaped CNNs (2-3 conv layers, 4-16 channels)")


def training_throughput(zoo_dir: str | None, n: int, epochs: int, device: torch.device,
                        threads: int | None) -> None:
    """Graphs/s of whole training epochs (collation, augmentation, forward, ranking loss,
    backward, AdamW) of the generalization metanetwork on an ``n``-network CNN zoo.

    It runs :func:`models.train.train_metanet` itself (the configuration the shipped
    ``digits-cnn-generalization`` uses), validating on 64 of the same graphs, and times each
    epoch from the per-epoch callback; the first epoch (warm-up) is reported apart.
    """
    from models.config import TrainConfig
    from models.fit import default_config
    from models.train import train_metanet

    if threads:
        torch.set_num_threads(threads)
    train, what = cnn_zoo_graphs(zoo_dir, n)
    val = train[:64]  # the validation pass only has to run: its metric is not the figure
    stamps = [time.perf_counter()]
    tcfg = TrainConfig(epochs=epochs, warmup_epochs=1, patience=epochs, seed=0)
    train_metanet(train, val, default_config("generalization", "digits-cnn"), tcfg, device=device,
                  progress=False, on_epoch=lambda _row: stamps.append(time.perf_counter()))
    times = [b - a for a, b in itertools.pairwise(stamps)]
    steady = times[1:] or times
    label = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"\nmetanetwork training throughput, {label}: {what}, batch 64, "
          f"digits-cnn-generalization configuration, {epochs} epochs (each with a 64-graph "
          f"validation pass)")
    print(f"  {n / statistics.median(steady):,.1f} graphs/s (median of epochs 2-{len(times)}: "
          f"{statistics.median(steady):.1f} s per epoch; first epoch {times[0]:.1f} s)")


# --- CUDA ------------------------------------------------------------------------------------


def cuda_rows(device: torch.device, batches: list[int], rounds: int) -> None:
    print(f"\n{torch.cuda.get_device_name(device) if device.type == 'cuda' else device}: "
          f"graphs/s (medians of {rounds} interleaved rounds) and peak memory of one call "
          "(* bfloat16 autocast: CUDA only, float32 elsewhere)")
    print(f"{'batch':>7}{'':>3}{'ours fp32':>12}{'ours bf16*':>12}{'NFN fp32':>12}{'ratio':>8}"
          f"{'peak MB ours/bf16/NFN':>26}")
    for bs in batches:
        data = small_graphs(bs, seed=4)
        ckpts = checkpoints(bs, seed=4)
        batch = Batch.from_data_list(data)
        o_i, o_t = ours_steps(batch, device)
        a_i, a_t = ours_steps(batch, device, amp=True)
        n_i, n_t = nfn_steps(ckpts, batch.y, device)
        for name, steps in (("infer", {"o": o_i, "a": a_i, "n": n_i}),
                            ("train", {"o": o_t, "a": a_t, "n": n_t})):
            t = interleaved(steps, rounds, device)
            peaks = []
            for f in steps.values():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    f()
                    torch.cuda.synchronize()
                    peaks.append(f"{(torch.cuda.max_memory_allocated() - base) / 2**20:,.0f}")
                else:
                    peaks.append("n/a")
            best = min(t["o"], t["a"])
            print(f"{bs:>7} {name:<5}{bs / t['o']:>10,.0f}{bs / t['a']:>12,.0f}"
                  f"{bs / t['n']:>12,.0f}{t['n'] / best:>7.2f}x{'/'.join(peaks):>26}")
        del o_i, o_t, a_i, a_t, n_i, n_t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128, help="the one-thread batch size")
    parser.add_argument("--graphs", type=int, default=1024, help="graphs of the 2-thread run")
    parser.add_argument("--memory-batch", type=int, default=1024)
    parser.add_argument("--cuda-batches", default="128,1024,8192")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-training", action="store_true",
                        help="without the CNN-zoo training throughput section")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--training", action="store_true",
                        help="only the metanetwork training throughput on a CNN zoo")
    parser.add_argument("--zoo", default=None,
                        help="CNN zoo for --training (default: random-weight CNNs)")
    parser.add_argument("--zoo-size", type=int, default=1000)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for --training (default: torch's)")
    args = parser.parse_args()
    if args.training:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        training_throughput(args.zoo, args.zoo_size, args.train_epochs,
                            torch.device(args.device), args.threads)
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.batch, torch.device(args.device))))
        return
    torch.manual_seed(0)
    keep_freed_memory()
    cfg = load_from(BUILTIN_DIR, BUILTIN, torch.device("cpu")).model.config
    g = small_graphs(1)[0]
    print(f"ours: {BUILTIN} (hidden {cfg.hidden}, edge {cfg.edge_hidden}, {cfg.layers} layers, "
          f"{cfg.probes} probe points, layer statistics {cfg.layer_stats}); NFN: HNPLinear x "
          f"{NFN_LAYERS}, {NFN_CHANNELS} channels; graphs: SIREN 2-32-32-1, {g.num_nodes} "
          f"nodes / {g.edge_index.shape[1]} edges; torch {torch.__version__}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        cuda_rows(torch.device("cuda"), [int(b) for b in args.cuda_batches.split(",")],
                  args.rounds)
        training_throughput(args.zoo, args.zoo_size, args.train_epochs,
                            torch.device("cuda"), None)
        return
    cpu_one_thread(args.batch, args.rounds)
    cpu_two_threads(args.graphs, 256, max(3, args.rounds // 2))
    if not args.skip_memory:
        cpu_memory(args.memory_batch)
    if not args.skip_training:
        training_throughput(args.zoo, args.zoo_size, args.train_epochs, torch.device("cpu"), 2)
    print("  (no GPU was lent to the session that measured the figures in README/ZOOS; "
          "--device cuda prints the same row on a GPU)")


if __name__ == "__main__":
    main()
