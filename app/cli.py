"""The ``weightscope`` command. Add a command as a function on ``app`` (or a sub-app like
``db``); each one reads ``Settings`` from the environment."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import typer

from app.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="Weightscope: learning on neural-network weights, as a service.")
db = typer.Typer(help="Database schema (Alembic migrations).")
app.add_typer(db, name="db")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: str | None = typer.Option(None, help="default: WEIGHTSCOPE_HOST or 127.0.0.1"),
    port: int | None = typer.Option(None, help="default: WEIGHTSCOPE_PORT or 8000"),
) -> None:
    """Upgrade the database to head, then serve the API (with an embedded job worker)."""
    import uvicorn

    from app.main import create_app
    from app.migrate import upgrade

    _logging()
    settings = Settings()
    upgrade(settings.database_url)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # /readyz checks the revision often
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port)


@app.command()
def worker() -> None:
    """Run a job worker in this process (scale-out: one per GPU, CUDA_VISIBLE_DEVICES).

    With WEIGHTSCOPE_QUEUE=procrastinate it serves the procrastinate queues of its device
    class (cpu; cpu and gpu on a GPU); otherwise it polls the jobs table."""
    from app.db import create_db_engine, create_session_factory
    from app.device import configure_torch, worker_queues
    from app.jobs.worker import JobWorker
    from app.tasks import load_tasks, task_modules

    _logging()
    settings = Settings()
    configure_torch(settings, embedded=False)
    load_tasks(task_modules(settings))
    session_factory = create_session_factory(create_db_engine(settings.database_url))
    if settings.queue != "procrastinate":
        JobWorker(session_factory, settings).run_forever()
        return
    from app.jobs.procrastinate_queue import run_procrastinate_worker

    run_procrastinate_worker(session_factory, settings, worker_queues(settings))


@db.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {_safe_url(settings.database_url)}")


@db.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="target, e.g. base or -1")) -> None:
    """Revert migrations down to REVISION."""
    from app.migrate import downgrade

    settings = Settings()
    downgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {_safe_url(settings.database_url)}")


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the code's head revision."""
    from app.db import create_db_engine
    from app.migrate import current_revision, head_revision

    engine = create_db_engine(Settings().database_url)
    try:
        typer.echo(f"current: {current_revision(engine)}  head: {head_revision()}")
    finally:
        engine.dispose()


@app.command()
def graph(
    file: str = typer.Argument(..., help="checkpoint file (.safetensors or .pt)"),
    arch: str | None = typer.Option(None, help="op-graph JSON file, if FILE carries none"),
) -> None:
    """Print a checkpoint's architecture, neuron groups and parameter-graph size."""
    from pathlib import Path

    import graphs

    try:
        architecture = Path(arch).read_text() if arch else None
        ckpt = graphs.load(file, arch=architecture)
        typer.echo(graphs.summary_text(ckpt))
    except (graphs.GraphsError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def merge(
    a: str = typer.Argument(..., help="checkpoint A (the reference)"),
    b: str = typer.Argument(..., help="checkpoint B (aligned to A)"),
    out: str | None = typer.Option(None, "--out", help="where to write the merged checkpoint"),
    data: str | None = typer.Option(None, help="safetensors file with x, y for the curves"),
    method: str = typer.Option(
        "weight", help="weight | activation | ste | ot | clafusion | none (ste needs --data; "
        "ot fuses different widths, clafusion MLPs of different depths)"
    ),
    canonical: bool = typer.Option(
        False, help="weight matching of canonical forms (ReLU scales, odd-activation signs)"
    ),
    lam: float = typer.Option(0.5, help="interpolation weight of B"),
    bn: str | None = typer.Option(None, help="stale | reset | repair (default: reset on data)"),
    server: str | None = typer.Option(
        None, help="run it on this Weightscope service (URL) instead of locally"
    ),
) -> None:
    """Align B to A (Git Re-Basin), write the merge, print naive vs aligned barriers."""
    if server is not None:
        _client_call(lambda: _client().merge(server, a, b, data, method, lam, out, canonical))
        return
    if out is None:
        typer.echo("error: --out is required for a local merge", err=True)
        raise typer.Exit(2)
    from rich.console import Console

    import graphs
    from app.formatting import barrier_table, merge_lines
    from merging.report import merge_files

    try:
        result, curve = merge_files(
            a, b, out, data, method, lam, bn, canonical=canonical  # type: ignore[arg-type]
        )
    except (graphs.GraphsError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console = Console()
    if curve is not None:
        console.print(barrier_table(curve))
    matches = [] if result.match is None else [vars(result.match)]
    for line in merge_lines({"matches": matches, "bn_stats": result.bn_stats}):
        console.print(line)
    console.print(f"wrote {out} (λ={lam})")


@app.command()
def train(
    task: str = typer.Argument(..., help="classification or generalization"),
    zoo: str = typer.Option(..., help="zoo directory (manifest.jsonl + zoo.json)"),
    name: str | None = typer.Option(None, help="metanetwork name (default from the zoo)"),
    seed: int = typer.Option(0),
    epochs: int = typer.Option(100),
    hidden: int | None = typer.Option(None, help="node width (default per task)"),
    layers: int | None = typer.Option(None, help="message-passing layers"),
    out: str | None = typer.Option(None, help="ship weights + card + test sample here"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)"),
    scale_invariant: bool = typer.Option(
        False, "--scale-invariant",
        help="read each network's canonical form under ReLU scaling and sign flips"),
) -> None:
    """Train a graph metanetwork on a zoo; print its test metrics as JSON."""
    import torch

    from app.formatting import card_summary
    from models import commands

    try:
        card = commands.train(task, zoo, name, seed, epochs, hidden, layers, out, threads=threads,
                              scale_invariant=scale_invariant)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(card_summary(card, "cuda" if torch.cuda.is_available() else "cpu"))


@app.command()
def predict(
    file: str = typer.Argument(..., help="checkpoint file (.safetensors or .pt)"),
    metanetwork: str | None = typer.Option(
        None, help="built-in name (default: every one whose domain holds FILE)"
    ),
    force: bool = typer.Option(False, help="answer out-of-domain checkpoints, flagged"),
    server: str | None = typer.Option(
        None, help="ask this Weightscope service (URL) instead of answering locally"
    ),
) -> None:
    """Answer for a checkpoint with the built-in metanetworks, locally or on a server."""
    if server is not None:
        _client_call(lambda: [_client().predict(server, file, metanetwork, force)])
        return
    from dataclasses import asdict

    from app.formatting import prediction_line
    from models import commands

    try:
        for answer in commands.predict(file, metanetwork, force):
            typer.echo(prediction_line(asdict(answer)))
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def history(
    server: str = typer.Option(..., help="the Weightscope service (URL)"),
    limit: int = typer.Option(20, min=1, max=200, help="rows per table"),
) -> None:
    """Recent predictions and merges on a server."""
    from rich.console import Console

    tables = _client_call(lambda: _client().history(server, limit), echo=False)
    console = Console()
    for table in tables:
        console.print(table)


def _client() -> ModuleType:
    from app import client

    return client


def _client_call(call: Callable[[], T], echo: bool = True) -> T:
    """Run a client call; its lines are printed, its failure is one line and exit 2."""
    import httpx

    from app.client import ClientError

    try:
        result = call()
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the server: {exc}", err=True)
        raise typer.Exit(2) from None
    if echo:
        for line in result:  # type: ignore[attr-defined]
            typer.echo(line)
    return result


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


zoo_cli = typer.Typer(help="Model zoos: reproducible zoos of small networks on sklearn digits.")
app.add_typer(zoo_cli, name="zoo")


@zoo_cli.command("build")
def zoo_build(
    name: str = typer.Argument(
        ..., help="digits-cnn, digits-inr, digits-mixed, digits-backdoor or digits-cnn-recipes"
    ),
    size: int | None = typer.Option(None, help="number of models (default: the family's)"),
    seed: int = typer.Option(0, help="every model, split and hyperparameter follows from it"),
    out: str | None = typer.Option(None, help="zoo directory (default: zoos/NAME)"),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    group_size: int | None = typer.Option(
        None, help="models per vmapped group (default: device's)"
    ),
) -> None:
    """Build a zoo (or finish an interrupted build) and print its statistics as JSON."""
    import json

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    import zoo

    try:
        family = zoo.get_family(name)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task(name, total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            directory = zoo.build(
                name, size or family.default_size, seed, out, device, progress, group_size
            )
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(zoo.stats(directory), indent=2))


@zoo_cli.command("info")
def zoo_info(directory: str = typer.Argument(..., help="zoo directory")) -> None:
    """Print a zoo's counts, splits and metric quantiles as JSON."""
    import json

    import zoo

    try:
        typer.echo(json.dumps(zoo.stats(directory), indent=2))
    except (ValueError, OSError, KeyError) as exc:
        typer.echo(f"error: not a complete zoo directory: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()
