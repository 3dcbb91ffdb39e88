"""Job kinds from other modules (``WEIGHTSCOPE_EXTRA_JOB_MODULES``).

A module listed there is imported at startup of the API and of every worker, and registers
its kinds with ``app.jobs.registry.register``. It is how a deployment adds a kind without
editing the service, and how the scale-out tests add a deliberately slow kind that runs
the real prediction path, so production code carries no test hooks.
"""

from __future__ import annotations

import importlib

from app.settings import Settings


def load_job_modules(settings: Settings) -> None:
    for name in settings.extra_job_modules:
        importlib.import_module(name)
