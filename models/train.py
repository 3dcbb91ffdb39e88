"""Training and evaluation of graph metanetworks on zoos.

AdamW with linear warm-up then cosine decay, gradient clipping, early stopping on the
validation split (accuracy, or Kendall τ-b for generalization), and augmentations applied
to each training batch's graphs (weight noise, weight dropout). Random hidden-neuron
permutations are not used as an augmentation: the metanetwork is exactly invariant to them
(tests/models checks this), so a permuted copy produces the same output and gradient.
Generalization models get a split-conformal interval calibrated on the validation split.
"""

from __future__ import annotations

import copy
import io
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from models.config import MetanetConfig, TrainConfig
from models.metanet import GraphMetanet, is_weight_edge
from models.metrics import (
    accuracy,
    conformal_quantile,
    interval_coverage,
    regression_metrics,
)
from models.runtime import keep_freed_memory
from models.triggers import attach_trigger_features


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast for a training forward on CUDA; nothing elsewhere.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed; the message
    reduction itself stays float32 (``models.layers._LayerMessages``). The CPU path stays
    float32: CPU bfloat16 kernels for layers this narrow are no faster, and CPU training
    is the reference the shipped metanetworks were fitted with.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(batch: Batch, model: GraphMetanet, cfg: TrainConfig,
            generator: torch.Generator | None = None) -> Batch:
    """Weight noise (relative to the model's feature scales) and weight dropout, in place.

    Only present entries are perturbed: zero biases of bias-free layers, kernel padding and
    identity edges keep their values, so the perturbed graph is still a valid network.
    """
    dev = batch.x.device
    if cfg.noise > 0:
        xs = model.node_enc.scale.to(dev)
        mask = batch.x != 0
        mask[:, -1] = False  # act_param is architecture, not a weight
        noise = torch.randn(batch.x.shape, generator=generator).to(dev)
        batch.x = batch.x + mask * noise * cfg.noise * xs
        es = model.edge_enc.scale.to(dev)
        w = is_weight_edge(batch.edge_type)[:, None] & (batch.edge_attr != 0)
        noise = torch.randn(batch.edge_attr.shape, generator=generator).to(dev)
        batch.edge_attr = batch.edge_attr + w * noise * cfg.noise * es
    if cfg.weight_dropout > 0:
        drop = torch.rand(batch.edge_attr.shape[0], generator=generator).to(dev)
        drop = (drop < cfg.weight_dropout) & is_weight_edge(batch.edge_type)
        batch.edge_attr = batch.edge_attr * (~drop)[:, None]
    return batch


def loss_fn(task: str, out: Tensor, y: Tensor, rank_weight: float = 0.0) -> Tensor:
    """Cross-entropy, or BCE on the accuracy plus (``rank_weight``) a pairwise logistic
    ranking loss over the batch: Kendall's τ only sees order, and the ranking term spends
    capacity on order among networks of close accuracy that the BCE term barely separates."""
    if task == "classification":
        return torch.nn.functional.cross_entropy(out, y)
    o, t = out[:, 0], y.float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(o, t)
    if rank_weight > 0:
        above = (t[:, None] - t[None, :]) > 0
        if above.any():
            margin = (o[:, None] - o[None, :])[above]
            loss = loss + rank_weight * torch.nn.functional.softplus(-margin).mean()
    return loss


@torch.no_grad()
def predict_graphs(model: GraphMetanet, graphs: Sequence[Data], batch_size: int = 256,
                   device: torch.device | None = None) -> np.ndarray:
    """Class probabilities ``(n, classes)`` or predicted accuracies ``(n,)``."""
    device = device or next(model.parameters()).device
    model.eval()
    outs = []
    for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
        out = model(batch.to(device))
        outs.append(out.softmax(-1) if model.config.task == "classification"
                    else out[:, 0].sigmoid())
    return torch.cat(outs).cpu().numpy() if outs else np.zeros(0)


def score(task: str, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """accuracy (classification) or τ-b, R², MAE and tie shares (generalization)."""
    if task == "classification":
        return {"accuracy": accuracy(pred.argmax(-1), target)}
    return regression_metrics(pred, target)


def main_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "tau_b"


def targets_of(graphs: Sequence[Data]) -> np.ndarray:
    return torch.cat([g.y for g in graphs]).numpy()


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: the run cannot produce a usable model."""


@dataclass
class TrainResult:
    model: GraphMetanet
    best_epoch: int
    val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_epoch: float = 0.0
    start_epoch: int = 0  # the first epoch this call ran (> 0 when resumed from a state)
    stopped: str = "epochs"  # why it stopped: epochs, early_stop or time_budget


@dataclass
class TrainState:
    """Everything needed to continue training after a finished epoch and get the same
    model as an uninterrupted run: weights, optimizer and schedule, the best epoch so far,
    the curves and every random generator the loop draws from."""

    epoch: int  # the next epoch to run
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_metric: float
    best_epoch: int
    best_model: dict[str, Tensor]
    best_val: dict[str, float]
    history: list[dict[str, float]]
    rng: dict[str, Tensor]
    seconds: float  # training time spent so far, over every run that led here

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(asdict(self), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainState:
        """Plain tensors and containers only (``weights_only``): no code runs on load."""
        return cls(**torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"))


def _rng_state(loader_gen: torch.Generator, aug_gen: torch.Generator) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "loader": loader_gen.get_state(),
             "augment": aug_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, Tensor], loader_gen: torch.Generator,
                 aug_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    loader_gen.set_state(state["loader"])
    aug_gen.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() if isinstance(v, Tensor) else copy.deepcopy(v)
            for k, v in state.items()}


def _optimizer_cpu(state: dict[str, Any]) -> dict[str, Any]:
    return {"state": {k: _cpu(v) for k, v in state["state"].items()},
            "param_groups": copy.deepcopy(state["param_groups"])}


def train_metanet(train: Sequence[Data], val: Sequence[Data], mcfg: MetanetConfig,
                  tcfg: TrainConfig, device: torch.device | None = None,
                  progress: bool = True,
                  on_epoch: Callable[[dict[str, Any]], None] | None = None,
                  resume: TrainState | None = None,
                  on_state: Callable[[TrainState], None] | None = None,
                  on_batch: Callable[[float], None] | None = None,
                  time_budget_s: float | None = None) -> TrainResult:
    """Train (from scratch, or from ``resume``); returns the weights of the best validation
    epoch.

    ``on_state`` gets the :class:`TrainState` after every epoch (a caller saves it to
    resume a run cut short); ``on_batch`` gets the fraction of all epochs done after each
    batch (a caller reports progress or stops the run by raising there). Training stops
    after ``tcfg.epochs``, after ``tcfg.patience`` epochs without a better validation
    score, or once ``time_budget_s`` seconds of training (over every resumed run) are spent.
    A NaN or infinite loss raises :class:`TrainingDiverged`.
    """
    device = device or default_device()
    keep_freed_memory()
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    seed_everything(tcfg.seed)
    model = GraphMetanet(mcfg)
    model.fit_normalization(train)
    model.to(device)
    if mcfg.triggers:  # a deterministic function of each checkpoint: searched once, not per epoch
        attach_trigger_features(model.trigger_readout, [*train, *val])
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    loader_gen = torch.Generator().manual_seed(tcfg.seed)
    aug_gen = torch.Generator().manual_seed(tcfg.seed + 1)
    loader = DataLoader(list(train), batch_size=tcfg.batch_size, shuffle=True,
                        generator=loader_gen, drop_last=len(train) > tcfg.batch_size)
    steps = tcfg.epochs * len(loader)
    warm = tcfg.warmup_epochs * len(loader)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    y_val = targets_of(val)
    key = main_metric(mcfg.task)
    best: tuple[float, int, dict[str, Any], dict[str, float]] | None = None
    history: list[dict[str, float]] = []
    start_epoch, spent = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume.model)
        opt.load_state_dict(resume.optimizer)
        sched.load_state_dict(resume.scheduler)
        best = (resume.best_metric, resume.best_epoch, resume.best_model, resume.best_val)
        history = list(resume.history)
        start_epoch, spent = resume.epoch, resume.seconds
        _restore_rng(resume.rng, loader_gen, aug_gen)
    stopped = "epochs"
    run_started = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task_id = bar.add_task(f"train {mcfg.task}", total=tcfg.epochs, info="",
                               completed=start_epoch)
        for epoch in range(start_epoch, tcfg.epochs):
            if best is not None and epoch - best[1] > tcfg.patience:
                stopped = "early_stop"  # a resumed run that had already run out of patience
                break
            if time_budget_s is not None and spent >= time_budget_s:
                stopped = "time_budget"
                break
            epoch_started = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for step, batch in enumerate(loader):
                batch = augment(batch.to(device), model, tcfg, aug_gen)
                with autocast(device):
                    out = model(batch)
                loss = loss_fn(mcfg.task, out.float(), batch.y, tcfg.rank_loss)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"the training loss diverged ({loss.item()}) in epoch {epoch}; "
                        "try a lower learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                opt.step()
                sched.step()
                total += loss.item() * batch.num_graphs
                count += batch.num_graphs
                if on_batch is not None:
                    on_batch((epoch + (step + 1) / len(loader)) / tcfg.epochs)
            val_metrics = score(mcfg.task, predict_graphs(model, val, device=device), y_val)
            seconds = time.perf_counter() - epoch_started
            spent += seconds
            row = {"epoch": epoch, "train_loss": total / max(count, 1), **val_metrics,
                   "seconds": seconds}
            history.append(row)
            if best is None or val_metrics[key] > best[0]:
                best = (val_metrics[key], epoch, _cpu(model.state_dict()), val_metrics)
            if on_epoch is not None:
                on_epoch(row)
            if on_state is not None:
                on_state(TrainState(
                    epoch=epoch + 1, model=_cpu(model.state_dict()),
                    optimizer=_optimizer_cpu(opt.state_dict()), scheduler=sched.state_dict(),
                    best_metric=best[0], best_epoch=best[1], best_model=best[2],
                    best_val=best[3], history=list(history),
                    rng=_rng_state(loader_gen, aug_gen), seconds=spent))
            bar.update(task_id, advance=1, info=f"loss {row['train_loss']:.4f} "
                       f"val {key} {val_metrics[key]:.4f} (best {best[0]:.4f} @ {best[1]})")
            if epoch - best[1] >= tcfg.patience:
                stopped = "early_stop"
                break
    if best is None:
        raise ValueError("no epoch was run: epochs, or the time budget, is zero")
    model.load_state_dict(best[2])
    ran = len(history) - start_epoch
    per_epoch = (time.perf_counter() - run_started) / max(1, ran)
    return TrainResult(model, best[1], best[3], history, per_epoch, start_epoch, stopped)


def evaluate(model: GraphMetanet, val: Sequence[Data], test: Sequence[Data],
             coverage: float = 0.9) -> dict[str, Any]:
    """Test metrics; for generalization also the conformal half-width (from ``val``) and
    its measured coverage on ``test``."""
    task = model.config.task
    pred_test = predict_graphs(model, test)
    out: dict[str, Any] = {"test": score(task, pred_test, targets_of(test)),
                           "n_test": len(test), "n_val": len(val)}
    if task == "generalization":
        q = conformal_quantile(predict_graphs(model, val), targets_of(val), coverage)
        out["conformal"] = {"coverage": coverage, "half_width": q,
                            "test_coverage": interval_coverage(pred_test, targets_of(test), q)}
    return out
