"""How the CLI reports what it cannot do: one line on stderr and exit status 2, never a
traceback. Invalid settings name the setting (and its ``WEIGHTSCOPE_*`` variable); database
failures name the database (its password hidden)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from app.settings import Settings

ENV_PREFIX = "WEIGHTSCOPE_"


def fail(message: str) -> typer.Exit:
    """Print ``error: MESSAGE`` (its first line) on stderr; the exit to raise."""
    typer.echo(f"error: {first_line(message)}", err=True)
    return typer.Exit(2)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def settings_problem(exc: Exception) -> str | None:
    """What is wrong with the settings, in one line; None when ``exc`` is not about
    :class:`Settings` (a pydantic ``ValidationError`` of another model, say)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, ValidationError):
        if exc.title != Settings.__name__:
            return None
        parts = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            where = ".".join(map(str, error["loc"][1:]))
            message = str(error["msg"]).removeprefix("Value error, ")
            parts.append(f"{_named(field)}{f' ({where})' if where else ''}: {message}")
        return "invalid setting " + "; ".join(parts)
    if isinstance(exc, SettingsError):
        found = re.search(r'field "([^"]+)"', str(exc))
        if found is None:
            return f"invalid settings: {first_line(str(exc))}"
        return f"invalid setting {_named(found.group(1))}: not valid JSON"
    return None


def _named(field: str) -> str:
    return f"{field} ({ENV_PREFIX}{field.upper()})" if field else "(the settings)"


def load_settings(**values: object) -> Settings:
    """``Settings`` from the environment (and ``values``), or one line naming the invalid
    setting and exit 2."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        problem = settings_problem(exc)
        if problem is None:
            raise
        raise fail(problem) from None


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Failures of the database at ``url`` (unreachable, refused, a revision alembic does
    not know, a folder it cannot create) become one line and exit 2."""
    import psycopg
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise fail(f"database {safe_url(url)}: {first_line(str(cause))}") from None
    except psycopg.Error as exc:  # psycopg used directly (procrastinate's schema)
        raise fail(f"database {safe_url(url)}: {first_line(str(exc))}") from None
    except CommandError as exc:
        raise fail(f"database {safe_url(url)}: {exc}") from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise fail(f"database {safe_url(url)}: {exc.strerror or exc}{where}") from None


def safe_url(url: str) -> str:
    """The URL with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an invalid URL)"
