"""The worker side of predictions: resident metanetworks and a parameter-graph cache.

One engine per worker process and blob store. A metanetwork version (a built-in, whose
weights are a file in the built-ins folder, or a trained one, whose weights are a blob) is
loaded once and stays on the
worker's device; checkpoints and their parameter graphs are cached by the stored blob's
path (a blob's bytes never change under its hash), so a checkpoint asked about again, or
by another metanetwork, skips reading and graph building. A batch for one metanetwork is
answered by a single forward pass.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import graphs
from app.device import worker_device
from app.jobs.kind import Outcome
from app.settings import Settings
from models.data import graph_of
from models.registry import Metanetwork

Item = tuple[Path, bool] | None  # a blob's path and whether out-of-domain is allowed


@dataclass(frozen=True)
class Version:
    """The metanetwork version a batch asks: its row id (the cache key), card, weights
    file (a blob, or a built-in's file) with their sha256, and the label predictions
    record."""

    id: int
    card: dict[str, Any]
    weights: Path
    weights_sha256: str
    label: str


class PredictionEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = worker_device(settings)
        self._metanetworks: dict[int, Metanetwork] = {}
        self._lock = threading.Lock()
        size = settings.graph_cache_size
        self._checkpoint = lru_cache(maxsize=size)(graphs.load)
        self._graph = lru_cache(maxsize=size)(self._build_graph)

    def metanetwork(self, version: Version) -> Metanetwork:
        """The resident metanetwork (loaded from its weights blob on first use)."""
        with self._lock:
            if version.id not in self._metanetworks:
                self._metanetworks[version.id] = self._load(version)
            return self._metanetworks[version.id]

    def _load(self, version: Version) -> Metanetwork:
        """The weights must be the bytes the version was registered with: a built-in's file
        replaced on disk is a new version, registered when the service restarts."""
        from safetensors.torch import load

        from models.config import MetanetConfig
        from models.metanet import GraphMetanet

        data = version.weights.read_bytes()
        if hashlib.sha256(data).hexdigest() != version.weights_sha256:
            raise ValueError(
                f"the weights of metanetwork {version.card.get('name')!r} changed on disk "
                "since it was registered; restart the service to register them"
            )
        model = GraphMetanet(MetanetConfig.from_dict(version.card["config"]))
        model.load_state_dict(load(data))
        model.to(self.device).eval()
        return Metanetwork(version.card, model)

    def _build_graph(self, path: Path, max_kernel: int, scale_invariant: bool) -> Any:
        """The parameter graph, or None when it cannot be built (kernels wider than the
        metanetwork's ``max_kernel`` are read area-resampled; the domain check flags them).

        Cached by all three arguments: a scale-invariant metanetwork reads the canonical
        form's graph, which must never be served to one that reads the plain graph.
        """
        try:
            return graph_of(self._checkpoint(path), max_kernel, scale_invariant)
        except graphs.GraphsError:
            return None

    def predict(self, version: Version, items: Sequence[Item]) -> list[Outcome]:
        """One outcome per item: the answer as a dict, or the exception that refuses it
        (None items are checkpoints that no longer exist)."""
        metanetwork = self.metanetwork(version)
        max_kernel = metanetwork.model.config.max_kernel
        scale_invariant = metanetwork.model.config.scale_invariant
        outcomes: list[Outcome] = []
        ready: list[tuple[int, Any, Any, bool, dict[str, float]]] = []
        for index, item in enumerate(items):
            if item is None:
                outcomes.append(ValueError("checkpoint no longer exists"))
                continue
            path, force = item
            started = time.perf_counter()
            try:
                checkpoint = self._checkpoint(path)
                loaded = time.perf_counter()
                graph = self._graph(path, max_kernel, scale_invariant)
            except ValueError as exc:
                outcomes.append(exc)
                continue
            timings = {
                "load_ms": (loaded - started) * 1000,
                "graph_ms": (time.perf_counter() - loaded) * 1000,
            }
            outcomes.append({})
            ready.append((index, checkpoint, graph, force, timings))
        if not ready:
            return outcomes
        started = time.perf_counter()
        answers = metanetwork.answer(
            [r[1] for r in ready], [r[2] for r in ready], force=[r[3] for r in ready]
        )
        forward_ms = (time.perf_counter() - started) * 1000
        answered = sum(not isinstance(a, Exception) for a in answers)
        batch = {"forward_ms": forward_ms, "batch_size": answered, "device": self.device.type}
        for (index, _, _, _, timings), answer in zip(ready, answers, strict=True):
            outcomes[index] = (
                type(answer)(f"checkpoint is {answer}")
                if isinstance(answer, Exception)
                else _fields(answer)
                | {"metanetwork_version": version.label, "timings": timings | batch}
            )
        return outcomes


def _fields(answer: Any) -> dict[str, Any]:
    """A dataclass's fields, without ``asdict``'s deep copy (a fresh answer is not shared)."""
    return {f.name: getattr(answer, f.name) for f in fields(answer)}


_engines: dict[tuple[Path, Path], PredictionEngine] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings) -> PredictionEngine:
    """The process's engine for this blob store and built-ins folder (models stay
    resident)."""
    key = (settings.blob_dir, settings.metanetwork_dir)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = PredictionEngine(settings)
        return engine
