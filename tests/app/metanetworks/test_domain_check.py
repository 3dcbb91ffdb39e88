"""The API's request-time domain check (it may not import ``models``) gives the same issues
as the library's full check for everything a stored architecture summary can answer."""

from __future__ import annotations

import json

import pytest
import torch

import graphs
from app.checkpoints.architecture import architecture_summary
from app.metanetworks.service import summary_domain_issues
from graphs import io_signature
from models.data import graph_of
from models.registry import domain_issues

ANY_SIZE = {"max_nodes": 10**6, "max_edges": 10**9, "max_depth": 1000}


def mlp() -> graphs.Checkpoint:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return graphs.from_module(module, torch.zeros(1, 4))


@pytest.mark.parametrize("case", ["inside", "other ops", "other io", "both"])
def test_request_time_check_agrees_with_the_library(case: str) -> None:
    checkpoint = mlp()
    summary = architecture_summary(checkpoint.architecture)
    ops = sorted(summary["op_counts"])
    io = io_signature(summary)
    other_io = json.dumps({"inputs": [[5]], "outputs": [[3]]})
    domain = {
        "inside": {"ops": ops, "io": [io]},
        "other ops": {"ops": ops[:1], "io": [io]},
        "other io": {"ops": ops, "io": [other_io]},
        "both": {"ops": ops[:1], "io": [other_io]},
    }[case]
    library = domain_issues(domain | ANY_SIZE, checkpoint, graph_of(checkpoint))
    assert summary_domain_issues(domain, summary) == library
    assert bool(library) == (case != "inside")
