"""Static checks of the Dockerfile and compose.yaml (no Docker engine runs these tests):
the image runs as a non-root user, builds for CPU by default with a CUDA build argument,
and compose wires api, worker and postgres to one database with the procrastinate queue."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).parents[2]


def top_level_blocks(text: str, section: str) -> dict[str, str]:
    """The two-space-indented entries of a top-level YAML section, with their bodies."""
    body = re.search(rf"^{section}:\n((?:[ #].*\n|\n)*)", text, re.MULTILINE)
    assert body, f"no top-level {section!r}"
    blocks: dict[str, str] = {}
    name = None
    for line in body.group(1).splitlines():
        match = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if match:
            name = match.group(1)
            blocks[name] = ""
        elif name:
            blocks[name] += line + "\n"
    return blocks


def test_dockerfile_is_non_root_cpu_by_default_with_a_cuda_argument() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_CUDA=cpu$", text, re.MULTILINE)
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for folder in ("app", "graphs", "models", "merging", "zoo", "migrations"):
        assert re.search(rf"^COPY {folder} ", text, re.MULTILINE), folder
    assert re.search(r'^CMD \["weightscope", "serve"\]$', text, re.MULTILINE)


def test_compose_runs_api_worker_and_postgres_on_one_queue() -> None:
    text = (ROOT / "compose.yaml").read_text()
    services = top_level_blocks(text, "services")
    assert set(services) == {"postgres", "api", "worker"}
    shared = re.search(r"^x-weightscope-env: &weightscope-env\n((?:  .*\n)+)", text, re.MULTILINE)
    assert shared
    env = dict(re.findall(r"^  (WEIGHTSCOPE_\w+): (\S+)$", shared.group(1), re.MULTILINE))
    assert env["WEIGHTSCOPE_QUEUE"] == "procrastinate"
    assert env["WEIGHTSCOPE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["WEIGHTSCOPE_DATABASE_URL"]
    Settings(_env_file=None, **{k.removeprefix("WEIGHTSCOPE_").lower(): v for k, v in env.items()})
    for name in ("api", "worker"):
        assert "<<: *weightscope-env" in services[name]
        assert "- data:/data" in services[name]
    assert 'WEIGHTSCOPE_EMBEDDED_WORKER: "off"' in services["api"]
    assert '["weightscope", "worker"]' in services["worker"]
    assert "condition: service_healthy" in services["api"]
    assert "POSTGRES_DB: weightscope" in services["postgres"]
