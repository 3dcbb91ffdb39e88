"""The ``weightscope`` command. Add a command as a function on ``app`` (or a sub-app like
``db``); each one reads ``Settings`` from the environment."""

from __future__ import annotations

import logging

import typer

from app.settings import Settings

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
    """Run a job worker in this process (for when `serve` runs with no embedded worker)."""
    from app.db import create_db_engine, create_session_factory
    from app.jobs.worker import JobWorker

    _logging()
    settings = Settings()
    engine = create_db_engine(settings.database_url)
    JobWorker(create_session_factory(engine), settings).run_forever()


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


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()
