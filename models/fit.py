"""From a zoo directory to a trained, measured metanetwork and its card."""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

import graphs
from graphs import Checkpoint
from models.config import MetanetConfig, TrainConfig
from models.data import Zoo, graph_of, load_checkpoints, read_zoo, zoo_cache_file, zoo_graphs
from models.metanet import GraphMetanet
from models.metrics import conformal_quantile
from models.registry import domain_of, load_from, save_metanetwork
from models.statnn import StatNN
from models.train import (
    TrainResult,
    TrainState,
    evaluate,
    predict_graphs,
    score,
    targets_of,
    train_metanet,
)
from models.triggers import attach_trigger_features, cached_trigger_features

MODEL_VERSION = "1.0"


def default_config(task: str, zoo_name: str | None = None) -> MetanetConfig:
    """Sizes that train in minutes on a small shared CPU (NG-GNN uses 32-64 for INRs).

    The INR classifier reads linear layers only, so its edges hold one weight
    (``max_kernel=1``); the generalization models read 3×3 conv kernels (a larger kernel,
    a 7×7 stem say, reaches them area-resampled to 3×3: ``graphs.to_graph``). Both add the
    per-layer statistics readout: on digits-cnn (seed 0) it, with the ranking loss, lifted
    test τ-b from 0.679 to 0.707, and dropout 0.1 with weight decay 0.01 to 0.715. The
    classifier also reads 64 learned probe points through each INR (:mod:`models.probes`):
    an INR of an 8×8 digit barely moves from its random init, so its weights alone leave
    every method near chance.

    The CNN generalization models also ask each network about 64 learned query images that
    start as training digits, read class by class (``query_classes``): which digit answers
    each query. With them, leave-one-recipe-out τ-b on the SGD recipe that leaves half its
    networks at chance rose from 0.564 to 0.738 (ZOOS.md, "Asking the network").

    The backdoor detector (``digits-backdoor``: clean vs backdoored CNNs) asks the network:
    a trigger search (:mod:`models.triggers`: a 3×3 patch fitted per window and class in 20
    Adam steps) beside the per-layer statistics, no message passing. Learned queries (MNTD)
    and message passing with probe images had plateaued at the statistics baseline (74-75%);
    the search's features alone reach 89% (ZOOS.md, "digits-backdoor detection").
    """
    aggregators = ("mean", "max", "std")
    if task == "classification" and zoo_name == "digits-backdoor":
        return MetanetConfig(
            task=task,
            num_outputs=2,
            hidden=32,
            edge_hidden=16,
            layers=0,
            aggregators=aggregators,
            layer_stats=True,
            dropout=0.1,
            triggers=20,
        )
    if task == "classification":
        return MetanetConfig(
            task=task,
            num_outputs=10,
            hidden=32,
            edge_hidden=16,
            layers=3,
            max_kernel=1,
            aggregators=aggregators,
            layer_stats=True,
            dropout=0.1,
            probes=64,
        )
    digits_cnns = zoo_name in ("digits-cnn", "digits-cnn-recipes")
    return MetanetConfig(
        task=task,
        num_outputs=1,
        hidden=32,
        edge_hidden=16,
        layers=3,
        aggregators=aggregators,
        layer_stats=True,
        dropout=0.1,
        queries=64 if digits_cnns else 0,
        query_classes=digits_cnns,
    )


def labels_of(zoo: Zoo, num_outputs: int) -> list[str]:
    """Class ``i`` is the zoo's ``classes[i]`` (zoo.json) when it names them, else ``str(i)``
    (the digit, for digits-inr)."""
    classes = zoo.info.get("classes")
    if classes is not None:
        if len(classes) != num_outputs:
            raise ValueError(
                f"zoo {zoo.name!r} has {len(classes)} classes, the config has {num_outputs} outputs"
            )
        return [str(c) for c in classes]
    top = max(int(r["target"]) for r in zoo.rows)
    if top >= num_outputs:
        raise ValueError(
            f"zoo {zoo.name!r} has class {top}, the config has only {num_outputs} outputs"
        )
    return [str(i) for i in range(num_outputs)]


def _target_text(zoo: Zoo) -> str:
    if zoo.name == "digits-backdoor":
        return (
            "whether the network was trained on data poisoned with a trigger patch "
            "(and the trigger works on test images)"
        )
    if zoo.task == "classification":
        return "the digit an INR encodes"
    return "test accuracy of the network on the sklearn digits test split"


def print_search_progress(done: int, total: int) -> None:
    print(f"trigger search: {done}/{total} networks", file=sys.stderr, flush=True)


def train_on_zoo(
    zoo_dir: str | Path,
    name: str,
    mcfg: MetanetConfig | None = None,
    tcfg: TrainConfig | None = None,
    progress: bool = True,
) -> tuple[GraphMetanet, dict[str, Any], TrainResult]:
    """Train on the zoo's train split, early-stop on val, measure on test; the card."""
    zoo = read_zoo(zoo_dir)
    tcfg = tcfg or TrainConfig()
    mcfg = mcfg or default_config(zoo.task, zoo.name)
    if mcfg.task != zoo.task:
        raise ValueError(f"zoo {zoo.name!r} is a {zoo.task} zoo, the config is for {mcfg.task}")
    all_graphs = zoo_graphs(zoo, mcfg.max_kernel, scale_invariant=mcfg.scale_invariant)
    if mcfg.triggers:  # searched once per zoo and settings, then read by every training run
        readout = GraphMetanet(mcfg).trigger_readout
        readout.init_digits()
        stem = f"trigger-features-{readout.key()}{'-si' if mcfg.scale_invariant else ''}"
        cached_trigger_features(all_graphs, readout, zoo_cache_file(zoo, stem),
                                print_search_progress if progress else None)
    split = {s: [all_graphs[i] for i in zoo.split_indices(s)] for s in ("train", "val", "test")}
    result = train_metanet(split["train"], split["val"], mcfg, tcfg, progress=progress)
    measured = evaluate(result.model, split["val"], split["test"], tcfg.coverage)
    train_idx = zoo.split_indices("train")
    card: dict[str, Any] = {
        "name": name,
        "version": MODEL_VERSION,
        "task": zoo.task,
        "labels": labels_of(zoo, mcfg.num_outputs) if zoo.task == "classification" else [],
        "target": _target_text(zoo),
        "domain": domain_of(load_checkpoints(zoo, train_idx), split["train"]),
        "zoo": {
            "name": zoo.name,
            "command": zoo.command,
            "seed": zoo.seed,
            "checkpoints": len(zoo.rows),
            # what, besides the command, fixes the zoo's bits (ZOOS.md)
            **{
                k: zoo.info[k]
                for k in ("version", "group_size", "device", "torch")
                if k in zoo.info
            },
            "splits": {s: len(v) for s, v in split.items()},
        },
        "seed": tcfg.seed,
        "train": asdict(tcfg),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "metrics": {"val": result.val, "test": measured["test"]},
    }
    if "conformal" in measured:
        card["conformal"] = measured["conformal"]
    return result.model, card, result


def ship(
    model: GraphMetanet,
    card: dict[str, Any],
    zoo_dir: str | Path,
    out_dir: str | Path,
    sample: int = 24,
) -> Path:
    """Save the metanetwork and a sample of test checkpoints with their predictions, so a
    test can re-evaluate the shipped weights against the card without the zoo."""
    zoo = read_zoo(zoo_dir)
    out_dir = Path(out_dir)
    sample_dir = out_dir / "samples" / card["name"]
    if sample_dir.exists():
        shutil.rmtree(sample_dir)
    sample_dir.mkdir(parents=True)
    test_idx = zoo.split_indices("test")
    rng = np.random.default_rng(card["seed"])
    chosen = sorted(rng.choice(test_idx, size=min(sample, len(test_idx)), replace=False))
    files = []
    for i in chosen:
        row = zoo.rows[int(i)]
        shutil.copyfile(zoo.path / row["file"], sample_dir / row["file"])
        files.append({"file": row["file"], "target": row["target"]})
    save_metanetwork(model, {**card, "check": {"files": files}}, out_dir)
    loaded = load_from(out_dir, card["name"], torch.device("cpu"))
    graph_list = zoo_graphs(
        zoo, model.config.max_kernel, cache=True, scale_invariant=model.config.scale_invariant
    )
    preds = predict_graphs(loaded.model, [graph_list[int(i)] for i in chosen])
    for f, p in zip(files, preds, strict=True):
        f["prediction"] = [round(float(v), 6) for v in np.atleast_1d(p)]
    return save_metanetwork(loaded.model, {**card, "check": {"files": files}}, out_dir)


SPLIT_NAMES = ("train", "val", "test")


class UngraphableItem(ValueError):
    """Item ``index`` of split ``split`` has no parameter graph this config can build."""

    def __init__(self, split: str, index: int, reason: str) -> None:
        super().__init__(f"{split} item {index} cannot be graphed: {reason}")
        self.split, self.index, self.reason = split, index, reason


def classification_conformal(
    probs: np.ndarray,
    target: np.ndarray,
    test_probs: np.ndarray,
    test_target: np.ndarray,
    coverage: float,
) -> dict[str, float]:
    """Split-conformal prediction sets (score 1 - p(true class)), calibrated on ``probs``;
    the set holds every class with p >= 1 - threshold. Reports the measured test coverage
    and the mean set size."""
    scores = 1.0 - probs[np.arange(len(target)), target.astype(int)]
    q = min(conformal_quantile(scores, np.zeros_like(scores), coverage), 1.0)  # 1: all classes
    sets = test_probs >= 1.0 - q
    covered = sets[np.arange(len(test_target)), test_target.astype(int)]
    return {
        "coverage": coverage,
        "threshold": q,
        "test_coverage": float(covered.mean()),
        "mean_set_size": float(sets.sum(1).mean()),
    }


def train_on_split(
    checkpoints: dict[str, list[Checkpoint]],
    targets: dict[str, list[float]],
    task: str,
    labels: Sequence[str],
    mcfg: MetanetConfig,
    tcfg: TrainConfig,
    *,
    device: torch.device | None = None,
    resume: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[[float], None] | None = None,
    on_search: Callable[[int, int], None] | None = None,
    time_budget_s: float | None = None,
) -> tuple[GraphMetanet, dict[str, Any], TrainResult]:
    """Train on in-memory train/val/test checkpoints with their targets (class indices into
    ``labels``, or accuracies), early-stop on val, measure on test beside the statistics
    baseline fitted on the same train split; returns the model, the card's measured parts
    (metrics, baseline, conformal, curves, domain) and the training result.

    ``resume``/``on_state``/``on_batch``/``time_budget_s`` are :func:`train_metanet`'s: a
    service saves each epoch's state and resumes a run cut short from it. With
    ``mcfg.triggers`` every item is searched first, ``on_search(done, total)`` following it.
    The caller checks that every split is large enough (and every class present in each).
    """
    if mcfg.task != task:
        raise ValueError(f"the config is for {mcfg.task}, the zoo is {task}")
    dtype = torch.long if task == "classification" else torch.float32
    split: dict[str, list[Data]] = {}
    for name in SPLIT_NAMES:
        split[name] = []
        for index, (ckpt, target) in enumerate(zip(checkpoints[name], targets[name], strict=True)):
            try:
                g = graph_of(ckpt, mcfg.max_kernel, mcfg.scale_invariant)
            except graphs.GraphsError as exc:
                raise UngraphableItem(name, index, str(exc)) from exc
            g.y = torch.tensor([target], dtype=dtype)
            split[name].append(g)
    if mcfg.triggers:  # once per item up front, not once per epoch
        readout = GraphMetanet(mcfg).trigger_readout
        readout.init_digits()
        if device is not None:
            readout.to(device)
        attach_trigger_features(readout, [g for n in SPLIT_NAMES for g in split[n]], on_search)
    result = train_metanet(
        split["train"],
        split["val"],
        mcfg,
        tcfg,
        device=device,
        progress=False,
        on_epoch=on_epoch,
        resume=resume,
        on_state=on_state,
        on_batch=on_batch,
        time_budget_s=time_budget_s,
    )
    model = result.model
    measured = evaluate(model, split["val"], split["test"], tcfg.coverage)
    conformal = measured.get("conformal")
    if conformal is not None and not math.isfinite(conformal["half_width"]):
        # too few validation items for the coverage: the interval is all of [0, 1]
        conformal["half_width"] = 1.0
    if task == "classification":
        conformal = classification_conformal(
            predict_graphs(model, split["val"]),
            targets_of(split["val"]),
            predict_graphs(model, split["test"]),
            targets_of(split["test"]),
            tcfg.coverage,
        )
    baseline = StatNN(task, seed=tcfg.seed).fit(checkpoints["train"], targets["train"])
    baseline_test = score(
        task,
        _baseline_scores(baseline, task, checkpoints["test"], len(labels)),
        np.asarray(targets["test"]),
    )
    card = {
        "metrics": {"val": result.val, "test": measured["test"]},
        "baseline": {"name": "statnn", "test": baseline_test},
        "conformal": conformal,
        "curves": result.history,
        "domain": domain_of(checkpoints["train"], split["train"]),
        "splits": {name: len(split[name]) for name in SPLIT_NAMES},
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.start_epoch,
        "stopped": result.stopped,
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
    }
    return model, card, result


def _baseline_scores(
    baseline: StatNN, task: str, checkpoints: list[Checkpoint], classes: int
) -> np.ndarray:
    """The baseline's predictions in the form :func:`models.train.score` reads (one-hot
    rows for classification, so its argmax is the predicted class)."""
    pred = baseline.predict(checkpoints)
    if task != "classification":
        return pred
    onehot = np.zeros((len(pred), classes))
    onehot[np.arange(len(pred)), pred.astype(int)] = 1.0
    return onehot
