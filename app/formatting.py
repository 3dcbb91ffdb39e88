"""How the CLI prints answers: one formatter for predictions and one for merges, whether
they were computed locally (library objects) or by a service (JSON), plus the history and
barrier tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.table import Table


def prediction_line(p: Mapping[str, Any]) -> str:
    """One line: the metanetwork (and version), the answer, and any domain flag."""
    version = p.get("metanetwork_version")
    head = f"{p['metanetwork']} ({version})" if version else str(p["metanetwork"])
    if p.get("label") is not None:
        top = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        answer = f"label {p['label']} ({', '.join(f'{k}: {v:.3f}' for k, v in top)})"
    else:
        low, high = p["interval"]
        coverage = f" at {p['coverage']:.0%} coverage" if p.get("coverage") else ""
        answer = f"predicted test accuracy {p['value']:.3f} [{low:.3f}, {high:.3f}]{coverage}"
    flag = "" if p["in_domain"] else f"  [OUT OF DOMAIN: {'; '.join(p['domain_issues'])}]"
    return f"{head}: {answer}{flag}"


def merge_lines(merge: Mapping[str, Any]) -> list[str]:
    """What a merge found: its matching, its barriers and the merged network's scores
    (the keys of a merge job's result; absent ones are skipped)."""
    lines = []
    for m in merge.get("matches") or []:
        lines.append(
            f"{m['method']} matching: objective {m['objective_before']:.4g} -> "
            f"{m['objective_after']:.4g}, {m['sweeps']} sweep(s), {m['seconds']:.2f} s"
        )
    if merge.get("barrier") is not None:
        lines.append(
            f"loss barrier: naive {merge['naive_barrier']:.4f}, aligned {merge['barrier']:.4f}"
        )
    if merge.get("merged"):
        scores = merge["merged"]
        lines.append(
            f"merged network: loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}"
        )
    if merge.get("bn_stats"):
        lines.append(f"BatchNorm statistics: {merge['bn_stats']}")
    return lines


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.4f}"


def barrier_table(curve: Any) -> Table:
    """Naive vs aligned (``merging.InterpolationResult``): loss/accuracy at A, the
    midpoint and B, and both barriers."""
    table = Table(title="interpolation A → B")
    for col in ("path", "loss A", "loss λ=.5", "loss B", "barrier", "acc A", "acc λ=.5",
                "acc B", "acc barrier", "‖θA−θB‖"):  # fmt: skip
        table.add_column(col, justify="left" if col == "path" else "right")
    for label, path in (("naive", curve.naive), ("aligned", curve.aligned)):
        if path is None:
            continue
        losses = path.losses or [None] * len(path.lambdas)
        accs = path.accuracies or [None] * len(path.lambdas)
        mid_loss, mid_acc = path.at(0.5)
        table.add_row(
            label, _fmt(losses[0]), _fmt(mid_loss), _fmt(losses[-1]), _fmt(path.barrier),
            _fmt(accs[0], True), _fmt(mid_acc, True), _fmt(accs[-1], True),
            _fmt(path.accuracy_barrier, True), f"{path.distance:.3f}",
        )  # fmt: skip
    return table


def card_summary(card: Mapping[str, Any], device: str) -> str:
    """A trained metanetwork's test metrics (and interval) as one JSON line."""
    keep = {
        "name": card["name"],
        "test": card["metrics"]["test"],
        "best_epoch": card["best_epoch"],
        "epochs_run": card["epochs_run"],
    }
    if "conformal" in card:
        keep["conformal"] = card["conformal"]
    keep["device"] = device
    return json.dumps(keep)


def history_tables(predictions: list[dict[str, Any]], merges: list[dict[str, Any]]) -> list[Table]:
    table = Table(title="predictions")
    for column in ("id", "checkpoint", "metanetwork", "answer", "in domain", "created"):
        table.add_column(column)
    for p in predictions:
        answer = p["label"] if p["label"] is not None else _fmt(p["value"])
        table.add_row(
            str(p["id"]), str(p["checkpoint_id"]), str(p["metanetwork"]), str(answer),
            "yes" if p["in_domain"] else "no", p["created_at"][:19],
        )  # fmt: skip
    merge_table = Table(title="merges")
    for column in ("id", "inputs", "method", "lam", "barrier", "result", "created"):
        merge_table.add_column(column)
    for m in merges:
        merge_table.add_row(
            str(m["id"]), ",".join(map(str, m["checkpoints"])), str(m["method"]), str(m["lam"]),
            _fmt(m["barrier"]), str(m["result_checkpoint_id"]), m["created_at"][:19],
        )  # fmt: skip
    return [table, merge_table]
