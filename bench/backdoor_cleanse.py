"""Trigger reverse-engineering on digits-backdoor (Neural Cleanse, Wang et al. 2019, batched).

For every network and every class c, a mask m and a pattern p (8×8, through sigmoids) are
optimised so that 20 train digits with ``(1 - m)·x + m·p`` go to c, with an L1 penalty on
m. A backdoored network has a class (its target) reachable with a small mask: its trigger.
Prints the AUC of the smallest mask's L1 (and two derived scores) for clean vs backdoored,
and trees on the sorted per-class L1s and attack rates (trained on the train split, scored
on val + test). Networks of one (depth, activation) are zero-padded to 16 channels (exact)
and optimised together as grouped convolutions.

    python -m bench.backdoor_cleanse zoos/digits-backdoor --limit 16
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import graphs
from models.data import read_zoo
from zoo.data import digits_split

WIDTH = 16
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
               "leaky_relu": F.leaky_relu}


def stacked(tensors: list[dict[str, torch.Tensor]], depth: int) -> list[torch.Tensor]:
    """[w1, b1, ..., head_w, head_b], each (n, ...) with hidden widths zero-padded."""
    out = []
    for i in range(1, depth + 1):
        ws, bs = [], []
        for t in tensors:
            w, b = t[f"conv{i}.weight"], t[f"conv{i}.bias"]
            pw = torch.zeros(WIDTH, 1 if i == 1 else WIDTH, 3, 3)
            pw[: w.shape[0], : w.shape[1]] = w
            pb = torch.zeros(WIDTH)
            pb[: b.shape[0]] = b
            ws.append(pw)
            bs.append(pb)
        out += [torch.stack(ws), torch.stack(bs)]
    hw = torch.zeros(len(tensors), 10, WIDTH)
    for j, t in enumerate(tensors):
        hw[j, :, : t["head.weight"].shape[1]] = t["head.weight"]
    return [*out, hw, torch.stack([t["head.bias"] for t in tensors])]


def forward(params: list[torch.Tensor], act, x: torch.Tensor) -> torch.Tensor:
    """x (B, n, 8, 8): one image batch per network -> logits (B, n, 10)."""
    n = params[0].shape[0]
    h = x
    for i in range(0, len(params) - 2, 2):
        w, b = params[i], params[i + 1]
        h = act(F.conv2d(h, w.reshape(n * WIDTH, -1, 3, 3), b.reshape(-1), stride=2,
                         padding=1, groups=n))
    pooled = h.mean((-1, -2)).view(-1, n, WIDTH)
    return torch.einsum("bnc,nkc->bnk", pooled, params[-2]) + params[-1][None]


def cleanse(params: list[torch.Tensor], act, x: torch.Tensor, steps: int, lam: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per network and class: the optimised mask's L1 and its attack rate, (n, 10) each."""
    n, b = params[0].shape[0], x.shape[0]
    m = torch.full((n, 10, 8, 8), -3.0, requires_grad=True)
    p = torch.zeros((n, 10, 8, 8), requires_grad=True)
    opt = torch.optim.Adam([m, p], lr=0.1)
    target = torch.arange(10).repeat(n).repeat(b)

    def stamped() -> torch.Tensor:
        mask, pat = torch.sigmoid(m), torch.sigmoid(p)
        xs = (1 - mask[None]) * x[:, None, None] + (mask * pat)[None]  # (B, n, 10, 8, 8)
        return xs.transpose(1, 2).reshape(b * 10, n, 8, 8)

    for _ in range(steps):
        logits = forward(params, act, stamped()).view(b, 10, n, 10).transpose(1, 2)
        loss = F.cross_entropy(logits.reshape(-1, 10), target, reduction="sum") / b
        loss = loss + lam * torch.sigmoid(m).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = forward(params, act, stamped()).view(b, 10, n, 10).argmax(-1)
        asr = (pred == torch.arange(10)[None, :, None]).float().mean(0).t()
    return torch.sigmoid(m).sum((-1, -2)).detach(), asr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--limit", type=int, default=0, help="networks per (depth, activation)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lam", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = read_zoo(args.zoo)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(zoo.rows):
        groups[(len(r["arch"]["widths"]), r["arch"]["activation"])].append(i)
    digits = digits_split()
    torch.manual_seed(0)
    x = digits.x_train[torch.randperm(len(digits.x_train))[:20], 0]
    l1s, asrs, done = {}, {}, []
    started = time.perf_counter()
    for (depth, act), members in sorted(groups.items()):
        members = members[: args.limit] if args.limit else members
        for k in range(0, len(members), 64):
            chunk = members[k : k + 64]
            params = stacked([graphs.load(zoo.path / zoo.rows[i]["file"]).tensors
                              for i in chunk], depth)
            l1, asr = cleanse(params, ACTIVATIONS[act], x, args.steps, args.lam)
            for j, i in enumerate(chunk):
                l1s[i], asrs[i] = l1[j].numpy(), asr[j].numpy()
            done += chunk
        print(f"{depth} {act}: {len(members)} networks, {time.perf_counter() - started:.0f} s",
              flush=True)
    done.sort()
    y = np.array([zoo.rows[i]["target"] for i in done])
    split = np.array([zoo.rows[i]["split"] for i in done])
    s = np.sort(np.stack([l1s[i] for i in done]), 1)
    med = np.median(s, 1)
    mad = np.median(np.abs(s - med[:, None]), 1) + 1e-6
    print(f"{len(done)} networks ({int(y.sum())} backdoored)")
    for name, score in (("smallest mask L1", -s[:, 0]), ("smallest / second", -s[:, 0] / s[:, 1]),
                        ("anomaly index (MAD)", (med - s[:, 0]) / mad)):
        print(f"AUC {name:22s} {roc_auc_score(y, score):.3f}")
    feats = np.c_[s, s / s[:, 1:2], np.sort(np.stack([asrs[i] for i in done]), 1)]
    train, held = split == "train", split != "train"
    trees = GradientBoostingClassifier(random_state=0).fit(feats[train], y[train])
    print(f"trees on val+test ({int(held.sum())}): accuracy "
          f"{(trees.predict(feats[held]) == y[held]).mean():.3f}")


if __name__ == "__main__":
    main()
