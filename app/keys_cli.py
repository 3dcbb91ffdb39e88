"""``weightscope keys``: API keys, managed on the database directly (like ``weightscope db``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from app.cli_errors import database_errors, fail, load_settings

if TYPE_CHECKING:
    from app.db import SessionFactory

keys_cli = typer.Typer(help="API keys and tenants (on the database, not through the API).")


@contextmanager
def _database() -> Iterator[SessionFactory]:
    """The configured database, upgraded to head first (like ``serve``); its failures are
    one line and exit 2."""
    from app.db import create_db_engine, create_session_factory
    from app.migrate import upgrade

    settings = load_settings()
    with database_errors(settings.database_url):
        upgrade(settings.database_url)
        engine = create_db_engine(settings.database_url)
        try:
            yield create_session_factory(engine)
        finally:
            engine.dispose()


@keys_cli.command("create")
def keys_create(
    name: str = typer.Argument(..., help="what the key is for, e.g. ci or alice-laptop"),
    tenant: str | None = typer.Option(
        None, help="the tenant it acts for, created when new (default: a tenant named NAME)"
    ),
    admin: bool = typer.Option(False, help="may also read /metrics"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as JSON"),
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from app.keys import create_key

    tenant = tenant or name
    if not name.strip() or len(name) > 128 or len(tenant) > 128:
        typer.echo("error: NAME and --tenant are 1 to 128 characters", err=True)
        raise typer.Exit(2)
    with _database() as session_factory:
        created = create_key(session_factory, name, tenant, admin)
    if as_json:
        typer.echo(json.dumps({
            "id": created.key_id, "tenant": created.tenant_name, "tenant_id": created.tenant_id,
            "admin": admin, "key": created.token,
        }))  # fmt: skip
        return
    typer.echo(
        f"key {created.key_id} for tenant {created.tenant_name!r} (id {created.tenant_id})"
        f"{', admin' if admin else ''}; store it now, it is not shown again:",
        err=True,
    )
    typer.echo(created.token)


@keys_cli.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Every key (never its secret): id, name, tenant, prefix, admin, created, last used,
    revoked."""
    from app.keys import list_keys

    with _database() as session_factory:
        found = list_keys(session_factory)
    if as_json:
        typer.echo(json.dumps([{
            "id": key.id, "name": key.name, "tenant": key.tenant, "prefix": key.prefix,
            "admin": key.admin, "created_at": _iso(key.created_at),
            "last_used_at": _iso(key.last_used_at), "revoked_at": _iso(key.revoked_at),
        } for key in found]))  # fmt: skip
        return
    typer.echo("id\tname\ttenant\tprefix\tadmin\tcreated\tlast_used\trevoked")
    for key in found:
        cells = (
            key.id,
            key.name,
            key.tenant,
            key.prefix + "…",
            "yes" if key.admin else "no",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
        typer.echo("\t".join(str(cell) for cell in cells))


@keys_cli.command("revoke")
def keys_revoke(
    key_id: int = typer.Argument(..., help="the key's id (keys list)"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as JSON"),
) -> None:
    """Revoke a key: requests with it are answered 401 from then on."""
    from app.keys import revoke_key

    with _database() as session_factory:
        revoked = revoke_key(session_factory, key_id)
    if not revoked:
        raise fail(f"no active key {key_id}")
    typer.echo(json.dumps({"id": key_id, "revoked": True}) if as_json else f"key {key_id} revoked")


def _iso(moment: object) -> str | None:
    return None if moment is None else moment.isoformat()  # type: ignore[attr-defined]


def _when(moment: object) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"
