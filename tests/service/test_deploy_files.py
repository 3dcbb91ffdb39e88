"""Static checks of the Dockerfile and compose.yaml (no Docker engine runs these tests):
the image runs as a non-root user, builds for CPU by default with a CUDA build argument,
and compose wires api, worker and postgres to one database with the procrastinate queue."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.settings import Settings

ROOT = Path(__file__).parents[2]


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
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "api", "worker"}
    env = compose["x-weightscope-env"]
    assert env["WEIGHTSCOPE_QUEUE"] == "procrastinate"
    assert env["WEIGHTSCOPE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["WEIGHTSCOPE_DATABASE_URL"]
    Settings(_env_file=None, **{k.removeprefix("WEIGHTSCOPE_").lower(): v for k, v in env.items()})
    for name in ("api", "worker"):
        # the YAML merge key (<<: *weightscope-env) put the shared variables in place
        assert env.items() <= services[name]["environment"].items()
        assert "data:/data" in services[name]["volumes"]
    assert services["api"]["environment"]["WEIGHTSCOPE_EMBEDDED_WORKER"] == "off"
    assert services["worker"]["command"] == ["weightscope", "worker"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "weightscope"
