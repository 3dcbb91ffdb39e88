"""File-level merge for the CLI: read A, B and data, merge, and compute the curves (the CLI
prints them)."""

from __future__ import annotations

import os
from pathlib import Path as FilePath

import torch

import graphs
from graphs.safe_io import read_checkpoint
from merging.interpolation import BnMode, InterpolationResult, interpolate
from merging.merge import MergeResult, Method, merge

__all__ = ["load_data", "merge_files"]


def load_data(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation data from a safetensors file with tensors ``x`` (inputs) and ``y`` (labels)."""
    tensors = read_checkpoint(path).tensors
    missing = {"x", "y"} - set(tensors)
    if missing:
        raise ValueError(f"data file needs tensors x and y; missing {sorted(missing)}")
    x, y = tensors["x"].float(), tensors["y"].long()
    if len(x) != len(y) or y.dim() != 1:
        raise ValueError("data file: y must be 1-D class labels, one per row of x")
    return x, y


def merge_files(a_path: str | os.PathLike[str], b_path: str | os.PathLike[str],
                out: str | os.PathLike[str], data_path: str | os.PathLike[str] | None = None,
                method: Method = "weight", lam: float = 0.5, bn: BnMode | None = None,
                points: int = 25, canonical: bool = False
                ) -> tuple[MergeResult, InterpolationResult | None]:
    """Merge two checkpoint files into ``out`` and compute the naive/aligned curves (none
    for a fusion of networks of different shapes: there is no straight path between them)."""
    if bn not in (None, "stale", "reset", "repair"):
        raise ValueError(f"unknown bn mode {bn!r} (stale, reset or repair)")
    a, b = graphs.load(a_path), graphs.load(b_path)
    data = load_data(data_path) if data_path is not None else None
    parents = [FilePath(a_path).name, FilePath(b_path).name]
    result = merge(a, b, method=method, lam=lam, data=data, bn=bn, parents=parents,
                   canonical=canonical)
    curve = None
    if a.architecture == b.architecture:
        curve = interpolate(a, b, points, data, match=result.match, bn=bn)
    graphs.save_checkpoint(result.checkpoint, out)
    return result, curve
