"""The ``weightscope`` command. Add a command as a function on ``app`` (or a sub-app like
``db``); each one reads ``Settings`` from the environment."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from app.cli_errors import database_errors, fail, load_settings, safe_url, settings_problem
from app.keys_cli import keys_cli

if TYPE_CHECKING:
    from app.client import Client
    from app.settings import Settings

T = TypeVar("T")

JSON_OPTION = typer.Option(False, "--json", help="print the answer as JSON")
# commands whose answer is JSON anyway take --json too, so every command does
ALWAYS_JSON = typer.Option(True, "--json", help="print JSON (this command always does)")
API_KEY_OPTION = typer.Option(
    None, envvar="WEIGHTSCOPE_API_KEY", help="API key for --server (sent as a Bearer token)"
)

app = typer.Typer(help="Weightscope: learning on neural-network weights, as a service.")
db = typer.Typer(help="Database schema (Alembic migrations).")
app.add_typer(db, name="db")
app.add_typer(keys_cli, name="keys")


def _logging() -> None:
    from app.logs import configure_logging

    configure_logging(load_settings().log_format)


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
    bind = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(**bind)
    with database_errors(settings.database_url):
        upgrade(settings.database_url)
        _refuse_unauthenticated_bind(settings)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # /readyz checks the revision often
    # access_log off: app.logs.RequestIds writes one line per request, with its id
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False)


def _refuse_unauthenticated_bind(settings: Settings) -> None:
    """Say why and exit 2 before serving a network address without authentication."""
    from app.auth import AuthNotConfigured, startup_mode
    from app.db import create_db_engine, create_session_factory

    engine = create_db_engine(settings.database_url)
    try:
        startup_mode(settings, create_session_factory(engine))
    except AuthNotConfigured as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


#: how long ``weightscope worker`` waits for an unreachable database before it gives up
WORKER_START_WAIT_S = 15.0


@app.command()
def worker() -> None:
    """Run a job worker in this process (scale-out: one per GPU, CUDA_VISIBLE_DEVICES).

    With WEIGHTSCOPE_QUEUE=procrastinate it serves the procrastinate queues of its device
    class (cpu; cpu and gpu on a GPU); otherwise it polls the jobs table."""
    from app.db import create_db_engine, create_session_factory, when_reachable
    from app.device import configure_torch, worker_queues
    from app.jobs.worker import JobWorker
    from app.migrate import current_revision, head_revision
    from app.tasks import load_tasks, task_modules

    settings = load_settings()
    engine = create_db_engine(settings.database_url)
    # a worker polls tables that only a migrated database has: say so now, not per poll;
    # a database that is restarting gets WORKER_START_WAIT_S to come back
    with database_errors(settings.database_url):
        revision = when_reachable(lambda: current_revision(engine), WORKER_START_WAIT_S)
    if revision != head_revision():
        raise fail(f"database {safe_url(settings.database_url)} is at revision {revision}, "
                   "not head: run `weightscope db upgrade` (or `weightscope serve`) first")
    _logging()
    configure_torch(settings, embedded=False)
    load_tasks(task_modules(settings))
    session_factory = create_session_factory(engine)
    if settings.queue != "procrastinate":
        JobWorker(session_factory, settings).run_forever(start_wait_s=WORKER_START_WAIT_S)
        return
    from app.jobs.procrastinate_queue import ensure_schema, run_procrastinate_worker

    with database_errors(settings.database_url):
        when_reachable(lambda: ensure_schema(settings.database_url), WORKER_START_WAIT_S)
    run_procrastinate_worker(session_factory, settings, worker_queues(settings))


@db.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), as_json: bool = JSON_OPTION) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.migrate import upgrade

    settings = load_settings()
    with database_errors(settings.database_url):
        upgrade(settings.database_url, revision)
    _echo_revision(revision, settings.database_url, as_json)


@db.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help="target, e.g. base or -1"), as_json: bool = JSON_OPTION
) -> None:
    """Revert migrations down to REVISION."""
    from app.migrate import downgrade

    settings = load_settings()
    with database_errors(settings.database_url):
        downgrade(settings.database_url, revision)
    _echo_revision(revision, settings.database_url, as_json)


@db.command("current")
def db_current(as_json: bool = JSON_OPTION) -> None:
    """Print the database's revision and the code's head revision."""
    from app.db import create_db_engine
    from app.formatting import print_json
    from app.migrate import current_revision, head_revision

    url = load_settings().database_url
    with database_errors(url):
        engine = create_db_engine(url)
        try:
            current, head = current_revision(engine), head_revision()
        finally:
            engine.dispose()
    if as_json:
        print_json({"current": current, "head": head})
    else:
        typer.echo(f"current: {current}  head: {head}")


@app.command()
def graph(
    file: str = typer.Argument(..., help="checkpoint file (.safetensors or .pt)"),
    arch: str | None = typer.Option(None, help="op-graph JSON file, if FILE carries none"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a checkpoint's architecture, neuron groups and parameter-graph size."""
    import graphs
    from app.formatting import print_json

    try:
        architecture = Path(arch).read_text() if arch else None
        ckpt = graphs.load(file, arch=architecture)
        if as_json:
            print_json({"architecture": ckpt.architecture.summary(), "metadata": ckpt.metadata})
        else:
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
        "weight",
        help="weight | activation | ste | ot | clafusion | none (ste needs --data; "
        "ot fuses different widths, clafusion MLPs of different depths)",
    ),
    canonical: bool = typer.Option(
        False, help="weight matching of canonical forms (ReLU scales, odd-activation signs)"
    ),
    lam: float = typer.Option(0.5, help="interpolation weight of B"),
    bn: str | None = typer.Option(None, help="stale | reset | repair (default: reset on data)"),
    server: str | None = typer.Option(
        None, help="run it on this Weightscope service (URL) instead of locally"
    ),
    api_key: str | None = API_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Align B to A (Git Re-Basin), write the merge, print naive vs aligned barriers."""
    from app.formatting import StepProgress, console, local_merge_result, merge_report, print_json

    if out is not None:
        _check_out(out)  # before any work, here or on the server
    if server is not None:
        with _client(server, api_key) as client, StepProgress("merge") as progress:
            row = client.merge([Path(a), Path(b)], method=method, lam=lam,
                               dataset=Path(data) if data else None, canonical=canonical,
                               progress=progress.job)  # fmt: skip
            if out is not None and row.result_checkpoint_id is not None:
                client.download(row.result_checkpoint_id, out)
        found = (row.result.model_dump(mode="json") if row.result else {}) | {
            "id": row.id, "checkpoints": row.checkpoints,
            "result_checkpoint_id": row.result_checkpoint_id,
        }  # fmt: skip
        head = f"merge {row.id}: checkpoints {row.checkpoints} -> checkpoint " \
            f"{row.result_checkpoint_id}"  # fmt: skip
    else:
        if out is None:
            typer.echo("error: --out is required for a local merge", err=True)
            raise typer.Exit(2)
        import graphs
        from merging.report import merge_files

        try:
            with StepProgress("merge") as progress:
                progress.update(0, 1, "aligning and evaluating")
                result, curve = merge_files(
                    a, b, out, data, method, lam, bn, canonical=canonical  # type: ignore[arg-type]
                )  # fmt: skip
                progress.update(1, 1, "done")
        except (graphs.GraphsError, ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        found = local_merge_result(result, curve, lam)
        head = f"merged {a} and {b} (λ={lam})"
    if out is not None:
        found["out"] = out
    if as_json:
        print_json(found)
        return
    printer = console()
    printer.print(head)
    for part in merge_report(found):
        printer.print(part)
    if out is not None:
        printer.print(f"wrote {out}")


@app.command()
def train(
    task: str | None = typer.Argument(
        None, help="classification or generalization (local training only)"
    ),
    zoo: str = typer.Option(
        ...,
        help="zoo directory (manifest.jsonl + zoo.json), or with "
        "--server the id of a zoo on the service",
    ),
    name: str | None = typer.Option(None, help="metanetwork name (default from the zoo)"),
    seed: int = typer.Option(0),
    epochs: int | None = typer.Option(None, help="epochs (default 100; the server's 50)"),
    hidden: int | None = typer.Option(None, help="node width (default per task)"),
    layers: int | None = typer.Option(None, help="message-passing layers"),
    out: str | None = typer.Option(None, help="ship weights + card + test sample here"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)"),
    scale_invariant: bool = typer.Option(
        False,
        "--scale-invariant",
        help="read each network's canonical form under ReLU scaling and sign flips",
    ),
    server: str | None = typer.Option(
        None, help="train on this Weightscope service (URL) as a job; --zoo is a zoo id"
    ),
    triggers: int | None = typer.Option(
        None, help="with --server: trigger-search steps (backdoor screening; 0 turns it off)"
    ),
    follow: bool = typer.Option(False, "--follow", help="with --server: show the progress"),
    api_key: str | None = typer.Option(
        None, envvar="WEIGHTSCOPE_API_KEY", help="with --server: the API key"
    ),
    as_json: bool = ALWAYS_JSON,
) -> None:
    """Train a graph metanetwork on a zoo: locally (print its test metrics as JSON), or
    on a service with --server (a train job; --follow shows epochs, loss, ETA)."""
    if server is not None:
        _train_remote(server, zoo, name, epochs, seed, hidden, layers, triggers, follow, api_key)
        return
    if task is None:
        typer.echo("error: local training needs TASK (classification or generalization)", err=True)
        raise typer.Exit(2)
    epochs = 100 if epochs is None else epochs
    import torch

    from app.formatting import card_summary
    from models import commands

    try:
        card = commands.train(
            task,
            zoo,
            name,
            seed,
            epochs,
            hidden,
            layers,
            out,
            threads=threads,
            scale_invariant=scale_invariant,
        )
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(card_summary(card, "cuda" if torch.cuda.is_available() else "cpu"))


def _train_remote(
    server: str,
    zoo: str,
    name: str | None,
    epochs: int | None,
    seed: int,
    hidden: int | None,
    layers: int | None,
    triggers: int | None,
    follow: bool,
    api_key: str | None,
) -> None:
    import httpx

    from app.metanetworks.remote import RemoteError
    from app.metanetworks.remote import train as train_remote

    if not zoo.isdigit() or name is None:
        typer.echo("error: with --server, --zoo is a zoo id and --name is required", err=True)
        raise typer.Exit(2)
    config = (
        {"seed": seed}
        | ({"hidden": hidden} if hidden else {})
        | ({"layers": layers} if layers is not None else {})
        | ({"triggers": triggers} if triggers is not None else {})
    )
    try:
        train_remote(
            server, int(zoo), name, epochs, config, follow=follow, api_key=api_key, echo=typer.echo
        )
    except RemoteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the server: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def predict(
    file: str = typer.Argument(..., help="checkpoint file (.safetensors or .pt)"),
    metanetwork: str | None = typer.Option(
        None, help="metanetwork name (default: every one whose domain holds FILE)"
    ),
    force: bool = typer.Option(False, help="answer out-of-domain checkpoints, flagged"),
    activation: str | None = typer.Option(
        None,
        help="an inferred architecture's activation: relu, gelu, gelu(tanh), silu, tanh, "
        "sigmoid, leaky_relu(0.2), sine(30)",
    ),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help="an inferred architecture's per-sample input shape, e.g. 1,8,8"
    ),
    server: str | None = typer.Option(
        None, help="ask this Weightscope service (URL) instead of answering locally"
    ),
    api_key: str | None = API_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Answer for a checkpoint with the metanetworks, locally (built-ins) or on a server.

    --activation and --input-shape settle what an inferred architecture (a plain state
    dict) cannot say, like an upload's ?activation= and ?input_shape=."""
    from app.formatting import StepProgress, prediction_line, print_json

    shape = _input_shape(input_shape)
    if server is not None:
        with _client(server, api_key) as client, StepProgress("predict") as progress:
            answers = [
                a.model_dump(mode="json")
                for a in client.predict(Path(file), metanetwork, force=force,
                                        activation=activation, input_shape=shape,
                                        progress=progress.job)
            ]  # fmt: skip
    else:
        from dataclasses import asdict

        from models import commands

        try:
            found = commands.predict(file, metanetwork, force, activation=activation,
                                     input_shape=shape)  # fmt: skip
            # the version a service records for the same built-in: both print alike
            answers = [
                asdict(a) | {"metanetwork_version": commands.builtin_version(a.metanetwork)}
                for a in found
            ]
        except (ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if as_json:
        print_json(answers)
        return
    for answer in answers:
        typer.echo(prediction_line(answer))


INPUT_SHAPE = re.compile(r"\d{1,6}(,\d{1,6}){0,3}")  # as the upload's ?input_shape=


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 1,8,8`` as sizes (one line and exit 2 when it is not one)."""
    if text is None:
        return None
    compact = text.replace(" ", "")
    shape = tuple(int(n) for n in compact.split(",")) if INPUT_SHAPE.fullmatch(compact) else ()
    if not shape or 0 in shape:
        raise fail(f"--input-shape {text!r}: 1 to 4 positive sizes joined by commas, e.g. 1,8,8")
    return shape


def _check_out(out: str) -> None:
    """Refuse an ``--out`` that cannot be written (a folder that is not there, not
    writable, or a directory in its place): one line and exit 2, nothing created."""
    import tempfile

    path = Path(out)
    folder = path.parent
    if path.is_dir():
        raise fail(f"--out {out} is a directory")
    if not folder.is_dir():
        raise fail(f"--out {out}: no such directory {folder}")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise fail(f"--out {out}: cannot write in {folder}: {exc.strerror or exc}") from None


@app.command()
def history(
    server: str = typer.Option(..., help="the Weightscope service (URL)"),
    limit: int = typer.Option(20, min=1, max=200, help="rows per table"),
    api_key: str | None = API_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Recent predictions and merges on a server."""
    from itertools import islice

    from app.formatting import console, history_tables, print_json

    with _client(server, api_key) as client:
        predictions = [p.model_dump(mode="json") for p in islice(client.predictions(), limit)]
        merges = [m.model_dump(mode="json") for m in islice(client.merges(), limit)]
    if as_json:
        print_json({"predictions": predictions, "merges": merges})
        return
    printer = console()
    for table in history_tables(predictions, merges):
        printer.print(table)


@contextmanager
def _client(server: str, api_key: str | None) -> Iterator[Client]:
    """A client of ``server``; its failures are one line on stderr and exit status 2."""
    import httpx

    from app.client import Client, WeightscopeError

    try:
        with Client(server, api_key, page_size=200) as client:
            yield client
    except WeightscopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the server: {exc}", err=True)
        raise typer.Exit(2) from None


def _echo_revision(revision: str, url: str, as_json: bool) -> None:
    from app.formatting import print_json

    if as_json:
        print_json({"revision": revision, "database": safe_url(url)})
    else:
        typer.echo(f"database at {revision}: {safe_url(url)}")


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
    as_json: bool = ALWAYS_JSON,
) -> None:
    """Build a zoo (or finish an interrupted build) and print its statistics as JSON.

    Progress goes to stderr: a bar on a terminal, plain lines otherwise."""
    import json

    import zoo
    from app.formatting import StepProgress

    try:
        family = zoo.get_family(name)
        with StepProgress(f"zoo build {name}") as progress:

            def step(done: int, total: int) -> None:
                progress.update(done, total, "models trained")

            directory = zoo.build(
                name, size or family.default_size, seed, out, device, step, group_size
            )
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(zoo.stats(directory), indent=2))


@zoo_cli.command("info")
def zoo_info(
    directory: str = typer.Argument(..., help="zoo directory"), as_json: bool = ALWAYS_JSON
) -> None:
    """Print a zoo's counts, splits and metric quantiles as JSON."""
    import json

    import zoo

    try:
        typer.echo(json.dumps(zoo.stats(directory), indent=2))
    except (ValueError, OSError, KeyError) as exc:
        typer.echo(f"error: not a complete zoo directory: {exc}", err=True)
        raise typer.Exit(2) from None


@zoo_cli.command("push")
def zoo_push(
    directory: str = typer.Argument(..., help="zoo directory built by 'weightscope zoo build'"),
    server: str = typer.Option(..., help="service URL, e.g. http://127.0.0.1:8000"),
    name: str | None = typer.Option(None, help="zoo name on the server (default: the zoo's)"),
    api_key: str | None = typer.Option(None, envvar="WEIGHTSCOPE_API_KEY", help="API key"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Upload a zoo (checkpoints with the manifest's labels or targets) as one archive;
    print the new zoo's id (with --json: the zoo)."""
    from app.zoos.push import PushError, push_zoo, rich_or_plain_progress

    try:
        with rich_or_plain_progress() as progress:
            created = push_zoo(directory, server, name, api_key, progress)
    except PushError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(created))
        return
    splits = " / ".join(f"{s} {v['items']}" for s, v in created["splits"].items())
    typer.echo(f"zoo {created['name']!r}: {created['size']} items ({splits})", err=True)
    typer.echo(created["id"])


def main() -> None:
    """The ``weightscope`` command (and ``python -m app.cli``). Settings a command reads
    that are invalid are one line naming the setting, and exit status 2."""
    try:
        app()
    except ValueError as exc:
        problem = settings_problem(exc)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
