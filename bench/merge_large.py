"""Weight matching at scale: time and peak memory, ours vs the `rebasin` package (PyPI).

Two pairs of randomly initialised networks (this row is about the cost of matching, not
about barriers):

* ``resnet50``: torchvision's ResNet-50 layout (Bottleneck blocks 3/4/6/3, widths 256..2048,
  25.6M parameters), written here because torchvision is not installed; traced on a
  2×3×64×64 input;
* ``transformer``: 12 pre-LN encoder blocks, width 768, 12 heads, MLP 3072
  (``nn.MultiheadAttention``, the digits encoder block of tests/merging scaled up),
  a linear embedding of 64-dim tokens and a 1000-way readout (85.9M parameters).

Each (pair, method) runs in its own process, one CPU thread: the models are built first,
then the peak-RSS counter is reset (``/proc/self/clear_refs``) and the method runs; "peak MB"
is the process's peak resident memory during the method above what it held before (the two
models). "ours": ``graphs.from_module`` of both models ("trace"), then ``merging.weight_matching``
("match"); "rebasin": ``PermutationCoordinateDescent(a, b, x)`` ("init", its tracing), then
its coordinate-descent steps and ``apply_permutations`` ("match"). Both are capped at
``--sweeps`` passes over all permutations (each run gets a fraction of a core on this
shared 2-core machine); "/sweep" is match time per pass, the comparable figure (ours: the
anchored start pass is in "match" but not counted as a sweep, so our figure is an upper
bound). Times are CPU seconds of the measuring process (one
thread): wall time on a shared machine measures the neighbours. "same f" says whether the
permuted B still computes B's function.

    nice .venv/bin/python bench/merge_large.py [--only resnet50|transformer] [--sweeps N]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3×3 conv), same attribute names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's ``resnet50()`` layout: stem 7×7/2 (``stem_kernel``) + max pool, stages
    3/4/6/3."""

    def __init__(self, classes: int = 1000, stem_kernel: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, stem_kernel, 2, stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3),
                                                 strict=True)):
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(inplanes, planes, 2 if j == 0 and i > 0 else 1))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Block(nn.Module):
    """A pre-LN encoder block (the digits ``EncoderBlock`` without embedding and readout)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class Transformer(nn.Module):
    """12 blocks of width 768 (ViT-B/BERT-base sized) between a linear embedding and readout."""

    def __init__(self, d_in: int = 64, dim: int = 768, depth: int = 12, heads: int = 12,
                 hidden: int = 3072, classes: int = 1000) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)))


def pair(name: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    make, x = ((ResNet50, torch.randn(2, 3, 64, 64)) if name == "resnet50"
               else (Transformer, torch.randn(2, 8, 64)))
    torch.manual_seed(0)
    a = make().eval()
    torch.manual_seed(1)
    b = make().eval()
    return a, b, x


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def run_one(name: str, method: str, sweeps: int) -> dict[str, object]:
    """One measurement in this process (called in a fresh subprocess by :func:`main`).

    Times are CPU seconds of this process (one thread), not wall time: the machine's cores
    are shared, and wall time there measures the neighbours.
    """
    torch.set_num_threads(1)
    a, b, x = pair(name)
    with torch.no_grad():
        out_b = b(x)
    params = sum(p.numel() for p in a.parameters())
    base = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    start = time.process_time()
    info: dict[str, object] = {"params": params}
    if method == "ours":
        import graphs
        import merging
        from merging.forward import load_module

        ca, cb = graphs.from_module(a, x), graphs.from_module(b, x)
        setup = time.process_time() - start
        r = merging.weight_matching(ca, cb, device="cpu", max_sweeps=sweeps)
        done = r.sweeps
        peak = _rss_mb("VmHWM") - base
        total = time.process_time() - start
        with torch.no_grad():
            out = load_module(r.apply(cb), torch.device("cpu"))(x)
    else:
        from rebasin import PermutationCoordinateDescent

        pcd = PermutationCoordinateDescent(copy.deepcopy(a), b, x)
        setup = time.process_time() - start
        # The package's loop, counted: it stops at max_iterations or without progress.
        done = 0
        for _ in range(sweeps):
            done += 1
            if not pcd._calculate_permutations_step(tqdm_off()):
                break
        pcd.apply_permutations()
        peak = _rss_mb("VmHWM") - base
        total = time.process_time() - start
        with torch.no_grad():
            out = b(x)
    same = bool(torch.allclose(out, out_b, atol=1e-3, rtol=1e-3))
    info.update(setup_s=setup, match_s=total - setup, sweeps=done, peak_mb=peak, same=same)
    return info


def tqdm_off() -> object:
    """A disabled tqdm loop: rebasin's step takes one to write its debug lines to."""
    from tqdm import tqdm

    return tqdm(range(1), disable=True)


def measure(name: str, method: str, sweeps: int, timeout: float) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--run", name, method, str(sweeps)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result in {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed: {last[:70]}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("resnet50", "transformer"))
    parser.add_argument("--sweeps", type=int, default=2,
                        help="sweeps (rebasin: iterations) at most, for both")
    parser.add_argument("--timeout", type=float, default=1800.0, help="wall seconds per run")
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        name, method, sweeps = args.run
        print(json.dumps(run_one(name, method, int(sweeps))))
        return
    head = (f"{'pair':<12} {'params':>7} | {'ours trace':>10} {'match':>7} {'sweeps':>6} "
            f"{'/sweep':>6} {'peak MB':>7} {'same f':>6} | {'rebasin init':>12} {'match':>7} "
            f"{'sweeps':>6} {'/sweep':>6} {'peak MB':>7} {'same f':>6} | {'/sweep ×':>8} "
            f"{'mem ×':>5}")
    print(f"Weight matching of two random-init networks: CPU seconds (one thread), at most "
          f"{args.sweeps} sweeps each; × = rebasin / ours")
    print(head)
    print("-" * len(head))
    for name in [args.only] if args.only else ["resnet50", "transformer"]:
        ours = measure(name, "ours", args.sweeps, args.timeout)
        theirs = measure(name, "rebasin", args.sweeps, args.timeout)
        if "error" in ours:
            print(f"{name:<12} ours {ours['error']}")
            continue
        per = ours["match_s"] / ours["sweeps"]
        cells = (f"{name:<12} {ours['params'] / 1e6:>6.1f}M | {ours['setup_s']:>10.1f} "
                 f"{ours['match_s']:>7.1f} {ours['sweeps']:>6} {per:>6.1f} "
                 f"{ours['peak_mb']:>7.0f} {ours['same']!s:>6} | ")
        if "error" in theirs:
            cells += f"rebasin {theirs['error']}"
        else:
            per_r = theirs["match_s"] / theirs["sweeps"]
            cells += (f"{theirs['setup_s']:>12.1f} {theirs['match_s']:>7.1f} "
                      f"{theirs['sweeps']:>6} {per_r:>6.1f} {theirs['peak_mb']:>7.0f} "
                      f"{theirs['same']!s:>6} | {per_r / per:>8.1f} "
                      f"{theirs['peak_mb'] / max(ours['peak_mb'], 1.0):>5.1f}")
        print(cells, flush=True)


if __name__ == "__main__":
    main()
