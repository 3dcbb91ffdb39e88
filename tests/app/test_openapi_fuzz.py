"""Schemathesis over the whole API (the ASGI app on SQLite, no worker: jobs stay queued and
waits end at once): generated requests, valid and invalid, must never get a server error,
and every answer must match the OpenAPI document (status documented, content type, body
schema). Examples are bounded so the run stays around a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings

EXAMPLES = 15  # per operation and mode: about a minute in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=root,
        database_url=f"sqlite:///{root / 'db.sqlite'}",
        embedded_worker="off",
        max_wait_seconds=0,
        trusted_hosts=["*"],  # schemathesis's own Host header
    )
    upgrade(app_settings.database_url)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings))


def test_the_api_keeps_its_openapi_promises(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Every operation, with valid and with invalid inputs; all failures are listed."""
    failures: list[str] = []
    operations = 0
    for found in api_schema.get_all_operations():
        operation = found.ok()
        operations += 1
        # no worker runs here, so /readyz answers its documented 503 (a problem, by design)
        checks = CHECKS[1:] if operation.path == "/readyz" else CHECKS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, checks)
            if failure:
                failures.append(f"{operation.label} ({mode.value}): {failure}")
    assert operations >= 20
    assert failures == [], "\n\n".join(failures)


def _fuzz(operation: Any, mode: GenerationMode, checks: list[Any]) -> str | None:
    """Why ``operation`` broke a promise with inputs of ``mode``, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks)

    try:
        check()
    except Unsatisfiable:  # no invalid input exists (no parameters, or a free string)
        return None if mode is GenerationMode.NEGATIVE else "no valid input generated"
    except (Exception, BaseExceptionGroup) as error:
        return str(error)
    return None
