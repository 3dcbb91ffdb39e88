"""How the CLI prints answers, whether computed locally (library objects, turned into the
API's JSON shapes here) or by a service: one formatter for predictions, one for merges, the
history tables, and progress for long work (a bar on a terminal, plain lines otherwise)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

PLAIN_EVERY_SECONDS = 10.0  # a line at least this often when the output is not a terminal
PIPED_WIDTH = 10_000  # tables are never cut or wrapped when the output is not a terminal


def console(stderr: bool = False) -> Console:
    """A console that never truncates: a piped one is wide enough for any table."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


def print_json(value: Any) -> None:
    """``--json`` output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def prediction_line(p: Mapping[str, Any]) -> str:
    """One line: the metanetwork (and version), the answer, and any domain flag. ``p`` has
    the keys of a ``predict`` job's result (``PredictionResult``)."""
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
    (the keys of a merge job's result, ``MergeResult``; absent ones are skipped)."""
    lines = []
    for m in merge.get("matches") or []:
        lines.append(
            f"{m['method']} matching: objective {m['objective_before']:.4g} -> "
            f"{m['objective_after']:.4g}, {m['sweeps']} sweep(s), {m['seconds']:.2f} s"
        )
    if merge.get("barrier") is not None:
        naive = merge.get("naive_barrier")
        naive_text = "-" if naive is None else f"{naive:.4f}"
        lines.append(f"loss barrier: naive {naive_text}, aligned {merge['barrier']:.4f}")
    if merge.get("merged"):
        scores = merge["merged"]
        lines.append(
            f"merged network: loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}"
        )
    if merge.get("bn_stats"):
        lines.append(f"BatchNorm statistics: {merge['bn_stats']}")
    return lines


def merge_report(merge: Mapping[str, Any]) -> list[Table | str]:
    """A merge as printed: the barrier table (when there are curves), then its lines."""
    curves = merge.get("curves") or {}
    table: list[Table | str] = [barrier_table(curves)] if any(curves.values()) else []
    return table + merge_lines(merge)


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.4f}"


def _at(path: Mapping[str, Any], key: str, lam: float) -> float | None:
    """The curve ``key`` at ``lam``, linear between the sampled λ."""
    values, lambdas = path.get(key), path["lambdas"]
    if not values:
        return None
    for i in range(len(lambdas) - 1):
        lo, hi = lambdas[i], lambdas[i + 1]
        if lo <= lam <= hi:
            t = 0.0 if hi == lo else (lam - lo) / (hi - lo)
            return float(values[i] * (1 - t) + values[i + 1] * t)
    return None


def barrier_table(curves: Mapping[str, Any]) -> Table:
    """Naive vs aligned (``curves`` of a merge result): loss/accuracy at A, the midpoint
    and B, and both barriers."""
    table = Table(title="interpolation A → B")
    for col in ("path", "loss A", "loss λ=.5", "loss B", "barrier", "acc A", "acc λ=.5",
                "acc B", "acc barrier", "‖θA−θB‖"):  # fmt: skip
        table.add_column(col, justify="left" if col == "path" else "right")
    for label in ("naive", "aligned"):
        path = curves.get(label)
        if not path:
            continue
        losses = path.get("losses") or [None] * len(path["lambdas"])
        accs = path.get("accuracies") or [None] * len(path["lambdas"])
        mid_loss, mid_acc = _at(path, "losses", 0.5), _at(path, "accuracies", 0.5)
        table.add_row(
            label, _fmt(losses[0]), _fmt(mid_loss), _fmt(losses[-1]), _fmt(path.get("barrier")),
            _fmt(accs[0], True), _fmt(mid_acc, True), _fmt(accs[-1], True),
            _fmt(path.get("accuracy_barrier"), True), f"{path['distance']:.3f}",
        )  # fmt: skip
    return table


def curve_path(path: Any) -> dict[str, Any] | None:
    """A library ``merging.interpolation.Path`` in the API's shape (``CurvePath``)."""
    if path is None:
        return None
    names = ("lambdas", "losses", "accuracies", "bn", "distance", "barrier", "accuracy_barrier")
    return {name: getattr(path, name) for name in names}


def local_merge_result(result: Any, curve: Any, lam: float) -> dict[str, Any]:
    """A local merge (``merging.report.merge_files``) in the shape of a merge job's result,
    so it prints (and ``--json`` serializes) like a service's."""
    match = result.match
    matches = [] if match is None else [{
        "method": match.method, "objective_before": match.objective_before,
        "objective_after": match.objective_after, "sweeps": match.sweeps,
        "seconds": match.seconds,
    }]  # fmt: skip
    found: dict[str, Any] = {"lam": lam, "matches": matches, "bn_stats": result.bn_stats}
    if curve is not None:
        naive, aligned = curve_path(curve.naive), curve_path(curve.aligned)
        found["curves"] = {"naive": naive, "aligned": aligned}
        found["barrier"] = aligned["barrier"] if aligned else None
        found["naive_barrier"] = naive["barrier"] if naive else None
    return found


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


def history_tables(
    predictions: Sequence[Mapping[str, Any]], merges: Sequence[Mapping[str, Any]]
) -> list[Table]:
    """Predictions and merges (``PredictionOut`` / ``MergeOut`` as JSON)."""
    table = Table(title="predictions")
    for column in ("id", "checkpoint", "metanetwork", "answer", "in domain", "created"):
        table.add_column(column)
    for p in predictions:
        answer = p["label"] if p["label"] is not None else _fmt(p["value"])
        table.add_row(
            str(p["id"]), str(p["checkpoint_id"]), str(p["metanetwork"]), str(answer),
            "yes" if p["in_domain"] else "no", str(p["created_at"])[:19],
        )  # fmt: skip
    merge_table = Table(title="merges")
    for column in ("id", "inputs", "method", "lam", "barrier", "result", "created"):
        merge_table.add_column(column)
    for m in merges:
        merge_table.add_row(
            str(m["id"]), ",".join(map(str, m["checkpoints"])), str(m["method"]), str(m["lam"]),
            _fmt(m["barrier"]), str(m["result_checkpoint_id"]), str(m["created_at"])[:19],
        )  # fmt: skip
    return [table, merge_table]


class StepProgress:
    """Progress of long work on stderr: a live bar on a terminal; otherwise a plain line
    whenever the status changes or the work completes, and every ``every`` seconds even when
    no step is reported (a heartbeat thread), so a log shows the work is alive."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        every: float = PLAIN_EVERY_SECONDS,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.every = every
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._started = self._last_line = time.monotonic()
        self._last: tuple[str, float, float | None] = ("", 0, None)
        self._printed: tuple[str, float, float | None] | None = None
        self._bar: Progress | None = None
        self._task: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> StepProgress:
        if self.terminal:
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        else:
            self._heartbeat = threading.Thread(target=self._beat, daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, failed: object, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:  # the final state, unless the work failed (its error says why)
            if failed is None and self._printed not in (None, self._last):
                self._line(*self._last)

    def _beat(self) -> None:
        while not self._stop.wait(self.every / 4):
            with self._lock:
                due = time.monotonic() - self._last_line >= self.every
                if self._printed is not None and due:
                    self._line(*self._last)

    def update(self, done: float, total: float | None = None, status: str = "") -> None:
        """``done`` of ``total`` steps (None: unknown) and a status word."""
        if self._bar is not None:
            description = f"{self.label}: {status}" if status else self.label
            self._bar.update(self._task, completed=done, total=total, description=description)
            return
        with self._lock:
            finished = total is not None and done >= total
            changed = self._printed is None or self._printed[0] != status
            self._last = (status, done, total)
            due = time.monotonic() - self._last_line >= self.every
            if ((changed or finished) and self._printed != self._last) or due:
                self._line(status, done, total)

    def _line(self, status: str, done: float, total: float | None) -> None:
        self._printed = (status, done, total)
        self._last_line = time.monotonic()
        elapsed = self._last_line - self._started
        amount = f"{done:g}/{total:g} ({done / total:.0%})" if total else f"{done:g}"
        words = f" {status}" if status else ""
        self.stream.write(f"{self.label}:{words} {amount}, {elapsed:.0f} s elapsed\n")
        self.stream.flush()

    def job(self, job: Any) -> None:
        """A client progress callback: a job's progress in percent and its status."""
        self.update(round(job.progress * 100), 100, job.status.value)
