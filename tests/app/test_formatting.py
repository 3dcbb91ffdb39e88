"""The CLI's one formatter and its progress: local answers carry the fields of a service's,
the barrier table comes from a merge result's curves, and progress off a terminal is plain
lines, with a heartbeat while no step is reported."""

from __future__ import annotations

import io
import time
from dataclasses import asdict, fields

from rich.console import Console

from app.formatting import StepProgress, merge_report, prediction_line
from app.predictions.schemas import PredictionResult
from models.registry import Prediction


def test_a_local_answer_has_the_fields_of_a_service_answer() -> None:
    assert {f.name for f in fields(Prediction)} <= set(PredictionResult.model_fields)
    local = Prediction("m", "generalization", True, value=0.91, interval=(0.88, 0.94),
                       coverage=0.9)  # fmt: skip
    remote = PredictionResult(checkpoint_id=1, metanetwork="m", metanetwork_version="1+ab",
                              task="generalization", in_domain=True, value=0.91,
                              interval=[0.88, 0.94], coverage=0.9)  # fmt: skip
    line = "predicted test accuracy 0.910 [0.880, 0.940] at 90% coverage"
    assert prediction_line(asdict(local)) == f"m: {line}"
    assert prediction_line(remote.model_dump()) == f"m (1+ab): {line}"


def test_the_barrier_table_reads_the_curves_of_a_merge_result() -> None:
    path = {"lambdas": [0.0, 0.5, 1.0], "losses": [0.25, 0.75, 0.5], "accuracies": [0.9, 0.5, 0.8],
            "bn": "reset", "distance": 12.345678, "barrier": 0.375, "accuracy_barrier": 0.35}
    report = merge_report({"curves": {"naive": path, "aligned": None}, "barrier": None,
                           "matches": [], "bn_stats": "reset"})  # fmt: skip
    out = io.StringIO()
    narrow = Console(file=out, width=10_000)
    for part in report:
        narrow.print(part)
    text = out.getvalue()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["naive"]  # no aligned path
    for number in ("0.2500", "0.7500", "0.3750", "90.0%", "50.0%", "35.0%", "12.346"):
        assert number in text
    assert "BatchNorm statistics: reset" in text


def test_progress_off_a_terminal_is_plain_lines_at_changes() -> None:
    stream = io.StringIO()
    with StepProgress("zoo build", stream=stream, terminal=False, every=3600) as progress:
        progress.update(0, 4, "models trained")
        progress.update(1, 4, "models trained")  # same status: no line of its own
        progress.update(4, 4, "models trained")  # done: a line
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "zoo build: models trained 0/4 (0%)",
        "zoo build: models trained 4/4 (100%)",
    ]
    assert "\x1b[" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_progress_off_a_terminal_has_a_heartbeat_between_steps() -> None:
    stream = io.StringIO()
    with StepProgress("zoo build", stream=stream, terminal=False, every=0.05) as progress:
        progress.update(0, 4, "models trained")
        progress.update(1, 4, "models trained")
        deadline = time.monotonic() + 30
        while "1/4" not in stream.getvalue():  # no further update: the heartbeat speaks
            assert time.monotonic() < deadline, "no heartbeat line"
            time.sleep(0.01)


def test_failed_work_prints_no_final_progress_line() -> None:
    stream = io.StringIO()
    try:
        with StepProgress("merge", stream=stream, terminal=False):
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    assert stream.getvalue() == ""


def test_every_command_that_answers_takes_json() -> None:
    """``--json`` everywhere but the two long-running processes (serve, worker)."""
    import typer.main

    from app.cli import app

    def commands(group, prefix=""):  # type: ignore[no-untyped-def]
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    found = dict(commands(typer.main.get_command(app)))
    without = [
        name for name, command in found.items()
        if not any("--json" in option.opts for option in command.params)
    ]  # fmt: skip
    assert sorted(without) == ["serve", "worker"] and len(found) >= 10
