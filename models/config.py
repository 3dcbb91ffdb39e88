"""Hyperparameters of the graph metanetwork and of its training, as plain dataclasses.

One :class:`MetanetConfig` describes every model this package builds; it is stored in each
shipped metanetwork's JSON card so the weights can be rebuilt without code changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

TASKS = ("classification", "generalization")


@dataclass
class MetanetConfig:
    """The architecture of a :class:`models.metanet.GraphMetanet`.

    ``num_outputs`` is the number of classes (classification) or 1 (generalization: the
    predicted test accuracy in [0, 1] through a sigmoid). ``max_layer`` and ``max_pos``
    bound the depth and fixed-position embeddings (larger ids share the last row, which
    keeps any input valid); ``readout_outputs`` is how many output neurons are read in
    their fixed order. ``layer_stats`` adds per-layer weight statistics (computed from the
    graph, invariant) to the readout. ``probes`` > 0 adds probe features
    (:mod:`models.probes`): each neuron's values on that many learned input points of
    ``probe_dims`` coordinates, for graphs of linear layers (INRs); zero for the rest.
    ``scale_invariant`` builds every input graph from the checkpoint's canonical form under
    ReLU positive scaling and odd-activation sign flips (:func:`graphs.scale_invariant_input`),
    so the prediction is invariant to those symmetries as well as to permutations; cards
    written before the option existed lack the key and load with it off.
    ``queries`` > 0 adds an MNTD-style readout (:mod:`models.queries`): that many learned
    ``query_side``² images run through each network, its class log-probabilities on them
    read by a class-symmetric MLP (cards without the key load with it off);
    ``query_classes`` reads them class by class instead (class ``c`` is the same class in
    every network of the domain) and starts the queries from training-split digits only.
    ``triggers`` > 0 adds a trigger search (:mod:`models.triggers`): for every
    ``trigger_window``² window of a ``query_side``² image and every class, that many Adam
    steps fit a patch that sends fixed digits to the class; the best attack rates per class
    are read by an MLP (cards without the key load with it off).
    ``max_kernel`` is the width of the edge features the edge encoder reads
    (``graphs.to_graph(..., max_kernel)``): a kernel of at most that many entries arrives
    zero-padded (the layout every shipped card was trained on), a larger one area-resampled
    to the largest square that fits, sum kept (a model configured for 3×3 reads a 7×7
    stem as the 3×3 kernel with the same response to smooth inputs); the domain check flags
    kernels larger than any seen in training.
    """

    task: str = "generalization"
    num_outputs: int = 1
    hidden: int = 64
    edge_hidden: int = 32
    layers: int = 4
    max_kernel: int = 9
    fourier: int = 16
    fourier_sigma: float = 2.0
    aggregators: tuple[str, ...] = ("mean", "max", "min", "std")
    max_layer: int = 16
    max_pos: int = 256
    readout_outputs: int = 10
    dropout: float = 0.0
    layer_stats: bool = False
    probes: int = 0
    probe_dims: int = 2
    scale_invariant: bool = False
    queries: int = 0
    query_side: int = 8
    query_classes: bool = False
    triggers: int = 0
    trigger_window: int = 3

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.task == "generalization" and self.num_outputs != 1:
            raise ValueError("a generalization metanetwork has exactly one output")
        self.aggregators = tuple(self.aggregators)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aggregators"] = list(self.aggregators)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetanetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown metanetwork config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class TrainConfig:
    """Optimisation, augmentation and early stopping (AdamW, warm-up then cosine decay).

    Augmentations act on the parameter graph of each training batch: ``noise`` adds
    Gaussian noise of that many per-feature scales to weights and biases, ``weight_dropout``
    zeroes that fraction of weight edges. ``rank_loss`` weighs a pairwise ranking term
    added to the generalization loss.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 3
    grad_clip: float = 10.0
    patience: int = 20
    noise: float = 0.02
    weight_dropout: float = 0.05
    seed: int = 0
    coverage: float = 0.9
    rank_loss: float = 1.0
    num_threads: int = 0  # 0: leave torch's setting
