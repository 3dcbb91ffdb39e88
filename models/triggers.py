"""Trigger search: is there a small patch that sends almost every digit to one class?

A BadNets backdoor is a patch (in digits-backdoor: 2×2 or 3×3 pixels, any pattern,
anywhere) that sends inputs of every class to a target class. Weight statistics and learned
queries read that only indirectly (ZOOS.md); this branch asks the network, as Neural Cleanse
does (Wang et al. 2019) but within the patch family: for every window position and class a
patch pattern is optimised by a few Adam steps to send a handful of digits to that class,
then scored on other digits. A backdoored network has a class its patch reaches for nearly
every digit; a clean one gives way on some digits only.

The features are the network's function on fixed digits (buffers of the metanetwork), so
they are invariant to neuron permutations. The search optimises patterns, never the
metanetwork, and its result is a deterministic function of the checkpoint, so training
computes it once per graph (:func:`attach_trigger_features`) instead of every epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from models.layers import mlp
from models.probes import conv_probe_supported, probe_supported
from models.queries import chain_activations, output_logits

#: digits the patterns are fitted on, and the other digits they are scored on
FIT_DIGITS, SCORE_DIGITS = 8, 60
#: graphs searched at once, and score digits per pass: bounds the stamped images in memory
GRAPH_CHUNK, SCORE_CHUNK = 32, 10
LEARNING_RATE = 0.3
#: per class: best soft-pattern attack rate, best binarised-pattern rate, best mean probability
MEASURES = 3


def digit_set(count: int, skip: int = 0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(count, 64)`` sklearn digits in [0, 1] and their labels: a seeded draw, after
    skipping the first ``skip`` of it (so fit and score digits never overlap)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.tensor(d.images / 16.0, dtype=torch.float32).flatten(1)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    pick = pick[skip : skip + count]
    return images[pick], torch.tensor(d.target[pick.numpy()], dtype=torch.long)


def windows(side: int, window: int) -> Tensor:
    """``(positions, side²)`` 0/1 masks: every ``window × window`` square inside the image."""
    out = []
    for r in range(side - window + 1):
        for c in range(side - window + 1):
            m = torch.zeros(side, side)
            m[r : r + window, c : c + window] = 1.0
            out.append(m.flatten())
    return torch.stack(out)


def _stamp(x: Tensor, masks: Tensor, patterns: Tensor) -> Tensor:
    """Digits ``(B, S)`` with each graph's pattern ``(G, W, C, S)`` pasted in each window:
    ``(B·W·C, G, S)`` per-graph images, points ordered (digit, window, class)."""
    keep = (1 - masks)[None, :, None, :]  # (1, W, 1, S)
    xs = x[:, None, None, None, :] * keep[:, None] + (masks[:, None, :] * patterns)[None]
    b, g, w, c, s = xs.shape
    return xs.permute(0, 2, 3, 1, 4).reshape(b * w * c, g, s)


def _logits(batch: Batch, num_graphs: int, images: Tensor, classes: int) -> Tensor:
    """``(G, classes, P)`` logits of every graph on its own images ``(P, G, S)``."""
    values = chain_activations(batch, num_graphs, images)
    if values is None:
        raise ValueError("trigger search needs plain conv/linear chains")
    return output_logits(batch, num_graphs, values, classes)[0]


def attack_rates(batch: Batch, num_graphs: int, fit: tuple[Tensor, Tensor],
                 score: tuple[Tensor, Tensor], steps: int, window: int, classes: int) -> Tensor:
    """``(G, MEASURES, classes)``: for each graph and target class, over the windows, the
    best attack rate of the fitted patch, of the patch rounded to 0/1 pixels, and the best
    mean probability of the class, all on the score digits not of that class."""
    # the search needs autograd even when called for inference (the registry answers under
    # inference_mode): its tensors are made outside that mode, the networks' weights copied
    with torch.inference_mode(False), torch.enable_grad():
        return _attack_rates(batch.clone(), num_graphs, fit, score, steps, window, classes)


def _attack_rates(batch: Batch, num_graphs: int, fit: tuple[Tensor, Tensor],
                  score: tuple[Tensor, Tensor], steps: int, window: int, classes: int
                  ) -> Tensor:
    fit = (fit[0].clone(), fit[1].clone())
    score = (score[0].clone(), score[1].clone())
    fit_x, fit_y = fit
    side = math.isqrt(fit_x.shape[1])
    masks = windows(side, window).to(fit_x)
    g, w, c = num_graphs, masks.shape[0], classes
    cls = torch.arange(c, device=fit_x.device)
    # the networks' weights are constants here: only the patterns are optimised
    batch.x, batch.edge_attr = batch.x.detach(), batch.edge_attr.detach()
    theta = torch.zeros(g, w, c, fit_x.shape[1], device=fit_x.device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=LEARNING_RATE)
    other = (fit_y[:, None] != cls[None]).to(fit_x)  # (B, C): digits not already of class c
    target = cls[None, None, :].expand(len(fit_x), w, c).reshape(-1)
    weight = other[:, None, :].expand(-1, w, -1).reshape(-1)
    for _ in range(steps):
        logits = _logits(batch, g, _stamp(fit_x, masks, torch.sigmoid(theta)), c)
        ce = F.cross_entropy(logits, target[None].expand(g, -1), reduction="none")
        loss = (ce * weight[None]).sum() / len(fit_x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    theta = theta.detach()
    score_x, score_y = score
    hits = {name: torch.zeros(g, w, c, device=fit_x.device) for name in ("soft", "binary")}
    prob = torch.zeros(g, w, c, device=fit_x.device)
    with torch.no_grad():
        for name, pattern in (("soft", torch.sigmoid(theta)), ("binary", (theta > 0).to(theta))):
            for i in range(0, len(score_x), SCORE_CHUNK):
                x, y = score_x[i : i + SCORE_CHUNK], score_y[i : i + SCORE_CHUNK]
                logits = _logits(batch, g, _stamp(x, masks, pattern), c)
                logits = logits.view(g, c, len(x), w, c)  # (G, out class, digit, window, class)
                keep = (y[:, None] != cls[None]).to(x)[None, :, None, :]  # (1, B, 1, C)
                pred = logits.argmax(1)  # (G, B, W, C)
                hits[name] += ((pred == cls).to(x) * keep).sum(1)
                if name == "soft":
                    p = logits.softmax(1).diagonal(dim1=1, dim2=4)  # (G, B, W, C): p(class c)
                    prob += (p * keep).sum(1)
    count = (score_y[:, None] != cls[None]).sum(0).clamp_min(1).to(score_x)  # (C,)
    measures = [hits["soft"] / count, hits["binary"] / count, prob / count]
    return torch.stack([m.max(1).values for m in measures], dim=1)


def search(batch: Batch, num_graphs: int, fit: tuple[Tensor, Tensor],
           score: tuple[Tensor, Tensor], steps: int, window: int, classes: int) -> Tensor:
    """``(G, MEASURES · classes)`` features: :func:`attack_rates` with each measure's
    classes sorted in descending order (which class is the target does not matter)."""
    rates = attack_rates(batch, num_graphs, fit, score, steps, window, classes)
    return rates.sort(dim=2, descending=True).values.flatten(1)


class TriggerReadout(nn.Module):
    """``(num_graphs, hidden)`` features from a trigger search on each network.

    The fit and score digits are buffers (stored with the weights). Graphs that are not
    plain conv/linear chains of one image input get zero features and a zero flag.
    """

    def __init__(self, steps: int, window: int, side: int, classes: int, hidden: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.steps, self.window, self.classes = steps, window, classes
        s = side * side
        self.register_buffer("fit_images", torch.zeros(FIT_DIGITS, s))
        self.register_buffer("fit_labels", torch.zeros(FIT_DIGITS, dtype=torch.long))
        self.register_buffer("score_images", torch.zeros(SCORE_DIGITS, s))
        self.register_buffer("score_labels", torch.zeros(SCORE_DIGITS, dtype=torch.long))
        self.width = MEASURES * classes + 1
        self.mlp = mlp([self.width, hidden, hidden], dropout)

    @torch.no_grad()
    def init_digits(self) -> None:
        """The fixed digits (seed 0): features depend on the checkpoint alone, so a graph's
        features computed once (:func:`attach_trigger_features`) serve any model."""
        fx, fy = digit_set(FIT_DIGITS)
        sx, sy = digit_set(SCORE_DIGITS, skip=FIT_DIGITS)
        for name, value in (("fit_images", fx), ("fit_labels", fy), ("score_images", sx),
                            ("score_labels", sy)):
            getattr(self, name).copy_(value)

    def key(self) -> str:
        """Names what the features depend on besides the checkpoint."""
        return f"steps{self.steps}-window{self.window}-digits{FIT_DIGITS}+{SCORE_DIGITS}"

    def features(self, batch: Batch, num_graphs: int) -> Tensor:
        """``(num_graphs, width)``: the search's measures and a flag (1: searched)."""
        out = batch.x.new_zeros(num_graphs, self.width, dtype=self.fit_images.dtype)
        ok = conv_probe_supported(batch, num_graphs) | probe_supported(batch, num_graphs)
        if not bool(ok.any()):
            return out
        graphs = batch.index_select(range(num_graphs)) if num_graphs > GRAPH_CHUNK \
            or not bool(ok.all()) else None
        for start in range(0, num_graphs, GRAPH_CHUNK):
            idx = [i for i in range(start, min(start + GRAPH_CHUNK, num_graphs)) if ok[i]]
            if not idx:
                continue
            part = batch if graphs is None else Batch.from_data_list([graphs[i] for i in idx])
            try:
                out[idx, :-1], out[idx, -1] = self._search(part, len(idx)), 1.0
            except ValueError:  # some graph is not a plain chain: search the others alone
                graphs = graphs or batch.index_select(range(num_graphs))
                for i in idx:
                    try:
                        out[i, :-1] = self._search(Batch.from_data_list([graphs[i]]), 1)[0]
                        out[i, -1] = 1.0
                    except ValueError:
                        continue
        return out

    def _search(self, batch: Batch, num_graphs: int) -> Tensor:
        return search(batch, num_graphs, (self.fit_images, self.fit_labels),
                      (self.score_images, self.score_labels), self.steps, self.window,
                      self.classes)

    def forward(self, batch: Batch, num_graphs: int) -> Tensor:
        f = getattr(batch, "trigger_features", None)
        if f is None or f.shape != (num_graphs, self.width):
            f = self.features(batch, num_graphs)
        return self.mlp(f.to(self.fit_images.dtype))


@torch.no_grad()
def attach_trigger_features(readout: TriggerReadout, graphs: list[Data],
                            on_progress: Callable[[int, int], None] | None = None) -> None:
    """Store each graph's search result on it (``trigger_features``, ``trigger_key``) unless
    it holds one for the same settings: training then never repeats a search per epoch.
    ``on_progress(done, total)`` follows the graphs searched (a zoo takes minutes on a CPU)."""
    key = readout.key()
    todo = [g for g in graphs if getattr(g, "trigger_key", None) != key]
    for start in range(0, len(todo), GRAPH_CHUNK):
        part = todo[start : start + GRAPH_CHUNK]
        batch = Batch.from_data_list(part).to(readout.fit_images.device)
        feats = readout.features(batch, len(part)).cpu()
        for g, f in zip(part, feats, strict=True):
            g.trigger_features = f[None].clone()
            g.trigger_key = key
        if on_progress is not None:
            on_progress(start + len(part), len(todo))


def cached_trigger_features(graphs: list[Data], readout: TriggerReadout, cache_file: Path,
                            on_progress: Callable[[int, int], None] | None = None) -> None:
    """:func:`attach_trigger_features` with the results kept in ``cache_file`` (one row per
    graph, in order): a zoo's search runs once, whatever trains on it afterwards."""
    if cache_file.is_file():
        stored = torch.load(cache_file, weights_only=True)
        if stored.shape == (len(graphs), readout.width):
            for g, f in zip(graphs, stored, strict=True):
                g.trigger_features, g.trigger_key = f[None].clone(), readout.key()
            return
    attach_trigger_features(readout, graphs, on_progress)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")  # concurrent writers
    torch.save(torch.cat([g.trigger_features for g in graphs]), tmp)
    tmp.replace(cache_file)
