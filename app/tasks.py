"""The job kinds this service runs. Each domain's ``tasks`` module registers its kinds with
``app.jobs.kind`` when imported; the API process and every worker import the same list,
plus ``Settings.extra_job_modules`` (plugins: a deployment adds a kind without editing the
service, and the scale-out tests add a slow kind that runs the real prediction path)."""

from __future__ import annotations

import importlib

from app.settings import Settings

DOMAIN_TASKS = (
    "app.checkpoints.tasks",
    "app.predictions.tasks",
    "app.merges.tasks",
    "app.metanetworks.tasks",
)


def task_modules(settings: Settings) -> list[str]:
    return [*DOMAIN_TASKS, *settings.extra_job_modules]


def load_tasks(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)
