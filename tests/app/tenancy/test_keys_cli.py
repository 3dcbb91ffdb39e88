"""``weightscope keys``: create prints the key once, list never shows a secret, revoke makes
the key a 401; on the configured database (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.keys import secret_hash
from app.settings import Settings
from tests.app.tenancy.conftest import Files, serving, upload

pytestmark = pytest.mark.anyio


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WEIGHTSCOPE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("WEIGHTSCOPE_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args))

    return invoke


async def test_create_list_revoke(run, settings: Settings, files: Files) -> None:
    created = run("keys", "create", "ci", "--tenant", "acme")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("ws_") and len(token) > 40 and "\n" not in token
    assert "not shown again" in created.stderr and "acme" in created.stderr
    admin = run("keys", "create", "ops", "--admin")
    assert admin.exit_code == 0

    listed = run("keys", "list")
    assert listed.exit_code == 0, listed.output
    assert token not in listed.output and secret_hash(token) not in listed.output
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()[1:]]
    assert [(r[1], r[2], r[4], r[7]) for r in rows] == [
        ("ci", "acme", "no", "-"), ("ops", "ops", "yes", "-"),
    ]  # fmt: skip
    assert token.startswith(rows[0][3].rstrip("…"))

    headers = {"Authorization": f"Bearer {token}"}
    async with serving(settings) as (_, client):
        client.headers.update(headers)
        stored = await upload(client, files.net_a)
        assert (await client.get(f"/v1/checkpoints/{stored['id']}")).status_code == 200

        revoked = run("keys", "revoke", rows[0][0])
        assert revoked.exit_code == 0 and "revoked" in revoked.stdout
        assert (await client.get(f"/v1/checkpoints/{stored['id']}")).status_code == 401
    again = run("keys", "revoke", rows[0][0])  # already revoked: one line, exit 2
    assert again.exit_code == 2 and again.stderr.strip() == f"error: no active key {rows[0][0]}"
    assert run("keys", "list").stdout.splitlines()[1].split("\t")[7] != "-"


def test_a_key_of_the_local_tenant_reaches_what_open_mode_made(run) -> None:
    created = run("keys", "create", "me", "--tenant", "local")
    assert created.exit_code == 0 and "(id 1)" in created.stderr


def test_create_refuses_an_empty_name(run) -> None:
    assert run("keys", "create", " ").exit_code == 2


def test_serve_refuses_a_network_address_without_keys(run) -> None:
    refused = run("serve", "--host", "0.0.0.0")
    assert refused.exit_code == 2
    assert "refusing to serve 0.0.0.0" in refused.stderr
