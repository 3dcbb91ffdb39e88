"""A job-kind plugin for the fault tests (``WEIGHTSCOPE_EXTRA_JOB_MODULES=["_slow_jobs"]``).

``slow_predict`` is the real ``predict`` kind (same params check, same run, same
``persist`` of one prediction row) preceded by ``seconds`` of progress reports, so a test
can kill the worker while the job is certainly running. It lives in the tests, so the
production kinds carry no test hooks.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from app.jobs.kind import JobContext, JobKind, register
from app.predictions.schemas import PredictionCreate
from app.predictions.tasks import PREDICT, run_predict


class SlowPredictParams(PredictionCreate):
    seconds: float = Field(default=3.0, ge=0, le=60)


def run_slow_predict(ctx: JobContext) -> dict[str, Any]:
    seconds = float(ctx.params["seconds"])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.progress(0.5 * (1 - (deadline - time.monotonic()) / max(seconds, 1e-9)))
        time.sleep(0.05)
    return run_predict(ctx)


register(
    JobKind(
        name="slow_predict",
        params_model=SlowPredictParams,
        run=run_slow_predict,
        check=PREDICT.check,
        persist=PREDICT.persist,
        description="predict, after a delay (fault tests)",
        queue="compute",
    )
)
