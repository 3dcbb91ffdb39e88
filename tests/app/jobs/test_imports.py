"""The job machine knows no domain: nothing in ``app/jobs`` imports a domain package."""

from __future__ import annotations

import ast
from pathlib import Path

import app.tasks

JOBS = Path(__file__).parents[3] / "app" / "jobs"
DOMAINS = {module.split(".")[1] for module in app.tasks.DOMAIN_TASKS} | {
    "datasets",
    "metanetworks",
    "tasks",
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_app_jobs_imports_no_domain_module() -> None:
    files = sorted(JOBS.glob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            parts = module.split(".")
            assert not (parts[0] == "app" and len(parts) > 1 and parts[1] in DOMAINS), (
                f"{path.name} imports {module}"
            )
