"""The worker side of predictions: resident metanetworks and a parameter-graph cache.

One engine per worker process and metanetwork folder. A metanetwork is loaded once and
stays on the worker's device; checkpoints and their parameter graphs are kept in LRU caches
keyed by the stored blob's sha256 (a checkpoint's bytes never change under one hash), so a
checkpoint asked about again, or by another metanetwork, skips reading and graph building.
A batch of checkpoints for one metanetwork is answered by a single forward pass.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from app.device import worker_device
from app.metanetworks.catalog import find_card, unknown_metanetwork
from app.settings import Settings


class LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class Item:
    """One checkpoint to answer for: its blob, and whether out-of-domain is allowed."""

    blob_sha256: str
    path: Path
    force: bool


class PredictionEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = worker_device(settings)
        self._metanetworks: dict[tuple[str, str], Any] = {}
        self._checkpoints = LRU(settings.graph_cache_size)
        self._graphs = LRU(settings.graph_cache_size)
        self._lock = threading.Lock()

    def metanetwork(self, name: str) -> tuple[Any, str]:
        """The resident metanetwork and its version (loaded on first use)."""
        from models.registry import load_from

        directory = self.settings.metanetwork_dir
        card = find_card(directory, name)
        if card is None:
            raise ValueError(unknown_metanetwork(directory, name))
        key = (name, card.version)
        with self._lock:
            if key not in self._metanetworks:
                self._metanetworks[key] = load_from(directory, name, self.device)
            return self._metanetworks[key], card.version

    def _checkpoint(self, item: Item) -> Any:
        import graphs

        checkpoint = self._checkpoints.get(item.blob_sha256)
        if checkpoint is None:
            checkpoint = graphs.load(item.path)
            self._checkpoints.put(item.blob_sha256, checkpoint)
        return checkpoint

    def _graph(self, item: Item, checkpoint: Any, max_kernel: int) -> Any:
        """The parameter graph, or None when the metanetwork's kernel size cannot hold it."""
        import graphs
        from models.data import graph_of

        key = (item.blob_sha256, max_kernel)
        cached = self._graphs.get(key)
        if cached is None:
            try:
                cached = (graph_of(checkpoint, max_kernel),)
            except graphs.GraphsError:
                cached = (None,)
            self._graphs.put(key, cached)
        return cached[0]

    def predict(self, name: str, items: Sequence[Item]) -> list[dict[str, Any] | Exception]:
        """One outcome per item: the answer as a dict, or the exception that refuses it."""
        metanetwork, version = self.metanetwork(name)
        max_kernel = metanetwork.model.config.max_kernel
        outcomes: list[dict[str, Any] | Exception] = []
        ready: list[tuple[int, Any, Any, bool, dict[str, float]]] = []
        for index, item in enumerate(items):
            started = time.perf_counter()
            try:
                checkpoint = self._checkpoint(item)
                loaded = time.perf_counter()
                graph = self._graph(item, checkpoint, max_kernel)
            except ValueError as exc:
                outcomes.append(exc)
                continue
            timings = {
                "load_ms": (loaded - started) * 1000,
                "graph_ms": (time.perf_counter() - loaded) * 1000,
            }
            outcomes.append({})
            ready.append((index, checkpoint, graph, item.force, timings))
        if not ready:
            return outcomes
        started = time.perf_counter()
        answers = metanetwork.answer(
            [c for _, c, _, _, _ in ready], [g for _, _, g, _, _ in ready],
            force=[f for _, _, _, f, _ in ready],
        )
        forward_ms = (time.perf_counter() - started) * 1000
        answered = sum(not isinstance(a, Exception) for a in answers)
        for (index, _, _, _, timings), answer in zip(ready, answers, strict=True):
            if isinstance(answer, Exception):
                outcomes[index] = type(answer)(f"checkpoint is {answer}")
                continue
            outcomes[index] = _shallow_dict(answer) | {
                "metanetwork_version": version,
                "timings": timings | {
                    "forward_ms": forward_ms,
                    "batch_size": answered,
                    "device": self.device.type,
                },
            }
        return outcomes


def _shallow_dict(answer: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without ``asdict``'s deep copy of every nested
    value (a fresh answer is not shared, and the copy was a tenth of a prediction's
    worker time with a small metanetwork)."""
    return {f.name: getattr(answer, f.name) for f in fields(answer)}


_engines: dict[Path, PredictionEngine] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings) -> PredictionEngine:
    """The process's engine for this metanetwork folder (models stay resident)."""
    with _engines_lock:
        engine = _engines.get(settings.metanetwork_dir)
        if engine is None:
            engine = _engines[settings.metanetwork_dir] = PredictionEngine(settings)
        return engine
