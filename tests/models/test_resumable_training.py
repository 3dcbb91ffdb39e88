"""Training resumed from a saved epoch state ends exactly where an uninterrupted run ends:
the state carries weights, optimizer, schedule, best epoch, curves and every generator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphs
from models.config import MetanetConfig, TrainConfig
from models.data import graph_of
from models.train import TrainingDiverged, TrainState, train_metanet

CONFIG = MetanetConfig(task="classification", num_outputs=2, hidden=8, edge_hidden=4,
                       layers=1, fourier=4, dropout=0.1)


def graph_set(n: int, seed: int) -> list:
    """Small MLPs whose class is their init scale."""
    out = []
    for i in range(n):
        torch.manual_seed(seed * 1000 + i)
        net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        label = i % 2
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0 if label else 0.3)
        g = graph_of(graphs.from_module(net, torch.zeros(1, 4)), CONFIG.max_kernel)
        g.y = torch.tensor([label])
        out.append(g)
    return out


def test_resumed_run_matches_an_uninterrupted_one() -> None:
    train, val = graph_set(16, 0), graph_set(6, 1)
    tcfg = TrainConfig(epochs=5, batch_size=4, warmup_epochs=1, patience=100, seed=3)
    states: list[TrainState] = []
    full = train_metanet(train, val, CONFIG, tcfg, torch.device("cpu"), progress=False,
                         on_state=states.append)
    assert [s.epoch for s in states] == [1, 2, 3, 4, 5]
    saved = TrainState.from_bytes(states[1].to_bytes())  # through bytes, as a service stores it
    resumed = train_metanet(train, val, CONFIG, tcfg, torch.device("cpu"), progress=False,
                            resume=saved)
    assert resumed.start_epoch == 2 and full.start_epoch == 0
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2, 3, 4]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=1e-7)
    assert resumed.best_epoch == full.best_epoch
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_time_budget_and_divergence_stop_training() -> None:
    train, val = graph_set(8, 0), graph_set(4, 1)
    tcfg = TrainConfig(epochs=50, batch_size=4, warmup_epochs=0, patience=100)
    budget = train_metanet(train, val, CONFIG, tcfg, torch.device("cpu"), progress=False,
                           time_budget_s=1e-9)
    assert budget.stopped == "time_budget" and len(budget.history) == 1
    with pytest.raises(TrainingDiverged, match="diverged"):
        train_metanet(train, val, CONFIG, TrainConfig(epochs=3, batch_size=4, lr=1e30,
                                                      warmup_epochs=0, grad_clip=1e30),
                      torch.device("cpu"), progress=False)
