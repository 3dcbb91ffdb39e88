"""What the ``weightscope train`` and ``weightscope predict`` commands do; the CLI (``app``)
prints the results."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import graphs
from models.config import TrainConfig
from models.data import read_zoo
from models.fit import default_config, ship, train_on_zoo
from models.registry import (
    BUILTIN_DIR,
    Metanetwork,
    OutOfDomainError,
    Prediction,
    available,
    domain_issues,
    load_metanetwork,
)


def train(
    task: str,
    zoo_dir: str | Path,
    name: str | None = None,
    seed: int = 0,
    epochs: int = 100,
    hidden: int | None = None,
    layers: int | None = None,
    out: str | Path | None = None,
    sample: int = 24,
    threads: int = 0,
    progress: bool = True,
    scale_invariant: bool = False,
) -> dict[str, Any]:
    """Train a metanetwork for ``task`` on a zoo; ship it into ``out`` if given. The card.

    ``scale_invariant`` turns on :attr:`MetanetConfig.scale_invariant` over the task's
    default config (the card records it, so prediction reads the same canonical form).
    """
    zoo = read_zoo(zoo_dir)
    if task != zoo.task:
        raise ValueError(f"{zoo_dir} is a {zoo.task} zoo, not a {task} zoo")
    mcfg = default_config(task, zoo.name)
    if hidden is not None:
        mcfg = replace(mcfg, hidden=hidden, edge_hidden=max(8, hidden // 2))
    if layers is not None:
        mcfg = replace(mcfg, layers=layers)
    if scale_invariant:
        mcfg = replace(mcfg, scale_invariant=True)
    tcfg = TrainConfig(epochs=epochs, seed=seed, num_threads=threads)
    name = name or f"{zoo.name}-{'classifier' if task == 'classification' else task}"
    model, card, _ = train_on_zoo(zoo_dir, name, mcfg, tcfg, progress=progress)
    if out is not None:
        ship(model, card, zoo_dir, out, sample=sample)
    return card


def predict(
    file: str | Path,
    metanetwork: str | None = None,
    force: bool = False,
    *,
    activation: str | None = None,
    input_shape: Sequence[int] | None = None,
) -> list[Prediction]:
    """Answers for one checkpoint: the named built-in, or every built-in whose domain holds
    it (an error listing why none does). ``activation`` / ``input_shape`` settle an
    inferred architecture, as an upload's ``?activation=`` / ``?input_shape=`` do."""
    ckpt = graphs.load(file, activation=activation, input_shape=input_shape)
    names = [metanetwork] if metanetwork else available()
    nets: list[Metanetwork] = [load_metanetwork(n) for n in names]
    if metanetwork is None:
        reasons = {}
        inside = []
        for net in nets:
            iss = domain_issues(net.card["domain"], ckpt, net.graph(ckpt))
            if iss:
                reasons[net.name] = iss
            else:
                inside.append(net)
        if not inside and not force:
            detail = "; ".join(f"{k}: {' / '.join(v)}" for k, v in reasons.items())
            raise OutOfDomainError(f"no built-in metanetwork covers this checkpoint ({detail})")
        nets = inside or nets
    return [net.predict([ckpt], force=force)[0] for net in nets]


def builtin_version(name: str) -> str | None:
    """The version a service records for built-in ``name`` (``metanetwork_version`` of its
    predictions): the card's version and the sha256 prefix of its weights; None without a
    version in the card (the service then numbers it)."""
    card = load_metanetwork(name).card
    if "version" not in card:
        return None
    weights = (BUILTIN_DIR / f"{name}.safetensors").read_bytes()
    return f"{card['version']}+{hashlib.sha256(weights).hexdigest()[:12]}"
