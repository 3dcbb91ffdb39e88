"""Built-in trained metanetworks: weights (safetensors) + a JSON card, and batched prediction.

A card says what a metanetwork answers (``task``, ``labels``), on which networks it was
trained (``domain``: the architecture families, ops, input/output shapes and graph sizes of
its training zoo), how it was made (zoo command and seed, configs) and how well it does
(``metrics`` on the zoo's test split, the conformal half-width and its measured coverage).
Checkpoints outside the domain are refused with :class:`OutOfDomainError` unless the
caller passes ``force=True``, in which case the answer carries ``in_domain=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import Batch, Data

import graphs
from graphs import Checkpoint
from models.config import MetanetConfig
from models.data import graph_of
from models.metanet import GraphMetanet
from models.train import default_device

BUILTIN_DIR = Path(__file__).parent / "builtin"
CARD_VERSION = 1
CheckpointLike = Checkpoint | bytes | str | os.PathLike[str]
# A zoo's test networks can be somewhat larger than any one it trained on (widths are
# sampled), so sizes up to this factor of the training maximum stay in the domain.
SIZE_SLACK = 2.0


class MetanetworkError(ValueError):
    """A metanetwork cannot answer: unknown name, or a checkpoint outside its domain."""


class OutOfDomainError(MetanetworkError):
    """The checkpoint is not like the networks the metanetwork was trained on."""


@dataclass
class Prediction:
    """One checkpoint's answer: ``label`` + ``probabilities`` (classification) or ``value``
    + ``interval`` at ``coverage`` (generalization, predicted test accuracy)."""

    metanetwork: str
    task: str
    in_domain: bool
    domain_issues: list[str] = field(default_factory=list)
    label: str | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None
    interval: tuple[float, float] | None = None
    coverage: float | None = None
    assumptions: dict[str, Any] = field(default_factory=dict)  # of an inferred architecture


def domain_of(checkpoints: Iterable[Checkpoint], graph_list: Iterable[Data]) -> dict[str, Any]:
    """The domain card entry of a training set (checkpoints and their graphs)."""
    families: set[str] = set()
    ops: set[str] = set()
    io: set[str] = set()
    kinds, max_kernel = 0, 1
    for c in checkpoints:
        kh, kw = _largest_kernel(c)
        max_kernel = max(max_kernel, kh * kw)
        s = c.architecture.summary()
        families.update(s["families"])
        ops.update(s["op_counts"])
        io.add(graphs.io_signature(c.architecture.summary()))
        kinds += 1
    sizes = [(g.num_nodes, g.edge_index.shape[1], int(g.node_layer.max())) for g in graph_list]
    return {
        "families": sorted(families),
        "ops": sorted(ops),
        "io": sorted(io),
        "max_nodes": max(s[0] for s in sizes),
        "max_edges": max(s[1] for s in sizes),
        "max_depth": max(s[2] for s in sizes),
        "max_kernel_entries": max_kernel,
        "checkpoints": kinds,
    }


def _largest_kernel(checkpoint: Checkpoint) -> tuple[int, int]:
    return max(
        graphs.kernel_shapes(checkpoint.architecture), key=lambda s: s[0] * s[1], default=(1, 1)
    )


def domain_issues(domain: dict[str, Any], checkpoint: Checkpoint, graph: Data | None) -> list[str]:
    """Why ``checkpoint`` is outside ``domain`` (empty when it is inside)."""
    s = checkpoint.architecture.summary()
    issues = []
    extra_ops = sorted(set(s["op_counts"]) - set(domain["ops"]))
    if extra_ops:
        issues.append(f"ops never seen in training: {', '.join(extra_ops)}")
    if not graphs.io_fits(s, domain["io"]):
        issues.append(
            f"input/output shapes {graphs.io_signature(s)} differ "
            f"from the training zoo's {', '.join(domain['io'])}"
        )
    if graph is None:
        issues.append("its parameter graph cannot be built for this metanetwork")
        return issues
    # Cards from before kernels were sized per layer saw at most their edge-feature width.
    width = int(graph.edge_attr.shape[1])
    seen = domain.get("max_kernel_entries", width)
    kh, kw = _largest_kernel(checkpoint)
    if kh * kw > seen:
        resampled = f" (read area-resampled to {width} features)" if kh * kw > width else ""
        issues.append(
            f"{kh}×{kw} kernels, training networks had at most {seen} kernel entries{resampled}"
        )
    if graph.num_nodes > SIZE_SLACK * domain["max_nodes"]:
        issues.append(
            f"{graph.num_nodes} neurons, training networks had at most {domain['max_nodes']}"
        )
    if graph.edge_index.shape[1] > SIZE_SLACK * domain["max_edges"]:
        issues.append(
            f"{graph.edge_index.shape[1]} weights (edges), training networks had "
            f"at most {domain['max_edges']}"
        )
    depth = int(graph.node_layer.max())
    if depth > domain["max_depth"]:
        issues.append(f"depth {depth}, training networks had at most {domain['max_depth']}")
    return issues


def as_checkpoint(source: CheckpointLike) -> Checkpoint:
    return source if isinstance(source, Checkpoint) else graphs.load(source)


class Metanetwork:
    """A trained :class:`GraphMetanet` with its card, ready for batched prediction."""

    def __init__(self, card: dict[str, Any], model: GraphMetanet) -> None:
        self.card, self.model = card, model
        self.name: str = card["name"]
        self.task: str = card["task"]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def graph(self, checkpoint: Checkpoint) -> Data | None:
        try:
            config = self.model.config
            return graph_of(checkpoint, config.max_kernel, config.scale_invariant)
        except graphs.GraphsError:
            return None

    def predict(
        self, checkpoints: Sequence[CheckpointLike], force: bool = False, batch_size: int = 4096
    ) -> list[Prediction]:
        """One forward per ``batch_size`` graphs; out-of-domain checkpoints raise
        :class:`OutOfDomainError` unless ``force`` (then ``in_domain`` is False)."""
        ckpts = [as_checkpoint(c) for c in checkpoints]
        outcomes = self.answer(ckpts, [self.graph(c) for c in ckpts], force, batch_size)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, OutOfDomainError):
                raise OutOfDomainError(f"checkpoint {i}: {outcome}")
        return outcomes  # type: ignore[return-value]

    @torch.inference_mode()  # cheaper than no_grad: no version counters, no view tracking
    def answer(
        self,
        checkpoints: Sequence[Checkpoint],
        graph_list: Sequence[Data | None],
        force: bool | Sequence[bool] = False,
        batch_size: int = 4096,
    ) -> list[Prediction | OutOfDomainError]:
        """Per-checkpoint outcomes from graphs the caller already built (a service keeps
        them cached by content hash): an answer, or the refusal, never raised here.
        ``graph_list[i]`` is None when the graph does not fit this metanetwork."""
        forces = [force] * len(checkpoints) if isinstance(force, bool) else list(force)
        outcomes: list[Prediction | OutOfDomainError | None] = []
        ready: list[tuple[int, Data, list[str]]] = []
        for i, (ckpt, g, forced) in enumerate(zip(checkpoints, graph_list, forces, strict=True)):
            issues = domain_issues(self.card["domain"], ckpt, g)
            if g is None or (issues and not forced):
                hint = "" if g is None else " (force it for an answer flagged in_domain=false)"
                outcomes.append(
                    OutOfDomainError(
                        f"outside the domain of metanetwork {self.name!r}: "
                        f"{'; '.join(issues)}{hint}"
                    )
                )
                continue
            outcomes.append(None)  # answered by the batched forward below
            ready.append((i, g, issues))
        self.model.eval()
        for start in range(0, len(ready), batch_size):
            chunk = ready[start : start + batch_size]
            batch = Batch.from_data_list([g for _, g, _ in chunk]).to(self.device)
            out = self.model(batch).float().cpu()
            answers = self._answers(out, [issues for _, _, issues in chunk])
            for (i, _, _), p in zip(chunk, answers, strict=True):
                provenance = checkpoints[i].provenance
                if provenance is not None and provenance.source == "inferred":
                    p.assumptions = dict(provenance.assumptions)
                outcomes[i] = p
        return [o for o in outcomes if o is not None]

    def _answers(self, out: torch.Tensor, issues: list[list[str]]) -> list[Prediction]:
        """One prediction per row of ``out`` (the whole batch through softmax or sigmoid at
        once, then plain floats: a dozen tensor ops per row were a tenth of a small batch)."""
        answers = [Prediction(self.name, self.task, not i, i) for i in issues]
        if self.task == "classification":
            labels = self.card["labels"]
            rows = zip(answers, out.argmax(-1).tolist(), out.softmax(-1).tolist(), strict=True)
            for p, best, probs in rows:
                p.label = labels[best]
                p.probabilities = dict(zip(labels, probs, strict=True))
        else:
            q = self.card["conformal"]["half_width"]
            for p, value in zip(answers, out[:, 0].sigmoid().tolist(), strict=True):
                p.value = value
                p.interval = (max(0.0, value - q), min(1.0, value + q))
                p.coverage = self.card["conformal"]["coverage"]
        return answers


def save_metanetwork(model: GraphMetanet, card: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` into ``out_dir``; returns the card."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = card["name"]
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / f"{name}.safetensors"), metadata={"card": name})
    card = {**card, "card_version": CARD_VERSION, "config": model.config.to_dict()}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path


def load_from(directory: str | Path, name: str, device: torch.device | None = None) -> Metanetwork:
    directory = Path(directory)
    card_file = directory / f"{name}.json"
    if not card_file.is_file():
        raise MetanetworkError(
            f"no metanetwork {name!r} in {directory}; available: "
            f"{', '.join(available(directory)) or 'none'}"
        )
    card = json.loads(card_file.read_text())
    model = GraphMetanet(MetanetConfig.from_dict(card["config"]))
    model.load_state_dict(load_file(str(directory / f"{name}.safetensors")))
    model.to(device or default_device()).eval()
    return Metanetwork(card, model)


def available(directory: str | Path = BUILTIN_DIR) -> list[str]:
    """Names of the metanetworks in ``directory`` (the built-ins by default)."""
    return sorted(
        p.stem for p in Path(directory).glob("*.json") if (p.with_suffix(".safetensors")).is_file()
    )


@lru_cache(maxsize=8)
def load_metanetwork(name: str) -> Metanetwork:
    """A built-in metanetwork, loaded once per process (on the GPU when there is one)."""
    return load_from(BUILTIN_DIR, name)


def predict(
    name: str, checkpoints: Sequence[CheckpointLike], force: bool = False
) -> list[Prediction]:
    """Answers of built-in metanetwork ``name`` for ``checkpoints`` (one batched forward)."""
    return load_metanetwork(name).predict(checkpoints, force=force)
