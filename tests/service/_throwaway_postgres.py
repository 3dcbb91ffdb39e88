"""A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temp folder, on a free
port) for fault tests that stop or restart the server: the shared cluster on 5432 is
never touched. Skipped, with the reason, where ``initdb`` is absent; as root the cluster
runs as the ``postgres`` user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    data: Path
    port: int
    pg_ctl: str
    user: str | None  # the OS user the server runs as (None: this one)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        command = [self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", *args]
        log = str(self.data.parent / "server.log")
        _run([*command[:3], "-l", log, *command[3:]], self.user)

    def start(self) -> None:
        self.ctl("-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent}"
                 " -c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """What the fault campaign did: a fast shutdown (every session is ended with
        AdminShutdown), then up again."""
        self.ctl("-m", "fast", "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 "
                 f"-k {self.data.parent} -c fsync=off -c max_connections=200", "restart")


def _run(command: list[str], user: str | None) -> None:
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture
def throwaway_postgres() -> Iterator[Cluster]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("initdb/pg_ctl not found: no throwaway PostgreSQL cluster")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run a cluster as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="ws-pg-"))
    if user is not None:
        shutil.chown(root, user)
    cluster = Cluster(root / "data", _free_port(), pg_ctl, user)
    try:
        _run([initdb, "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-N"], user)
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
