"""Zoos as training data: ``manifest.jsonl`` rows -> parameter graphs with targets.

A zoo directory (written by ``zoo.build``) holds self-describing safetensors checkpoints,
``manifest.jsonl`` (one row per checkpoint: ``file``, ``split``, ``target``, ``arch`` ...)
and ``zoo.json`` (``name``, ``task``, ``command``, ``seed``). Graphs are built once and
cached next to the manifest as plain tensors (loadable with ``weights_only=True``), keyed
by the manifest's hash so a rebuilt zoo is never read from a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

import graphs
from graphs import Checkpoint

GRAPH_KEYS = ("x", "edge_index", "edge_attr", "node_type", "edge_type", "node_act",
              "node_layer", "node_pos")
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1


@dataclass
class Zoo:
    """A zoo's description and rows; ``task`` is ``classification`` or ``generalization``."""

    path: Path
    name: str
    task: str
    command: str
    seed: int
    rows: list[dict[str, Any]]
    info: dict[str, Any]

    def split_indices(self, split: str) -> list[int]:
        return [i for i, r in enumerate(self.rows) if r["split"] == split]

    def targets(self) -> list[float]:
        return [r["target"] for r in self.rows]


def read_zoo(path: str | Path) -> Zoo:
    """The zoo at ``path`` (``zoo.json`` + ``manifest.jsonl``)."""
    path = Path(path)
    manifest, info_file = path / "manifest.jsonl", path / "zoo.json"
    if not manifest.is_file() or not info_file.is_file():
        raise FileNotFoundError(f"{path} is not a zoo: manifest.jsonl and zoo.json expected "
                                f"(build one with 'weightscope zoo build NAME --out {path}')")
    info = json.loads(info_file.read_text())
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    task = "classification" if info["task"] == "classification" else "generalization"
    return Zoo(path, info["name"], task, info.get("command", ""), int(info.get("seed", 0)),
               rows, info)


def load_checkpoints(zoo: Zoo, indices: list[int] | None = None) -> list[Checkpoint]:
    rows = zoo.rows if indices is None else [zoo.rows[i] for i in indices]
    return [graphs.load(zoo.path / r["file"]) for r in rows]


def graph_of(checkpoint: Checkpoint, max_kernel: int = graphs.DEFAULT_MAX_KERNEL,
             scale_invariant: bool = False) -> Data:
    """The parameter graph with only the fields the metanetwork reads.

    ``scale_invariant`` graphs the canonical form (:func:`graphs.scale_invariant_input`):
    a metanetwork configured with it must see that form both in training and at prediction,
    so every caller passes its config's flag here.
    """
    if scale_invariant:
        checkpoint = graphs.scale_invariant_input(checkpoint)
    g = graphs.to_graph(checkpoint, max_kernel=max_kernel)
    return Data(**{k: g[k] for k in GRAPH_KEYS}, num_nodes=g.num_nodes)


def zoo_graphs(zoo: Zoo, max_kernel: int = graphs.DEFAULT_MAX_KERNEL,
               cache: bool = True, scale_invariant: bool = False) -> list[Data]:
    """One graph per manifest row, in row order, with ``y`` (the target) set.

    The cache file's name carries ``scale_invariant`` (``-si``): plain and canonicalized
    graphs of one zoo differ, and a cache of the other kind must never be read.
    """
    digest = hashlib.sha256((zoo.path / "manifest.jsonl").read_bytes()).hexdigest()[:16]
    kind = "-si" if scale_invariant else ""
    cache_file = (zoo.path
                  / f".metanet-graphs-k{max_kernel}{kind}-v{CACHE_VERSION}-{digest}.pt")
    if cache and cache_file.is_file():
        stored = torch.load(cache_file, weights_only=True)
        out = [Data(**g, num_nodes=g["x"].shape[0]) for g in stored]
    else:
        out = [graph_of(c, max_kernel, scale_invariant) for c in load_checkpoints(zoo)]
        if cache:
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")  # concurrent builders
            torch.save([{k: g[k] for k in GRAPH_KEYS} for g in out], tmp)
            tmp.replace(cache_file)
    dtype = torch.long if zoo.task == "classification" else torch.float32
    for g, r in zip(out, zoo.rows, strict=True):
        g.y = torch.tensor([r["target"]], dtype=dtype)
    return out


def zoo_cache_file(zoo: Zoo, stem: str) -> Path:
    """A cache file in the zoo's folder whose name changes when its manifest does."""
    digest = hashlib.sha256((zoo.path / "manifest.jsonl").read_bytes()).hexdigest()[:16]
    return zoo.path / f".{stem}-{digest}.pt"
