"""The ``train`` job kind: train a metanetwork on a zoo, leaving one new version."""

from __future__ import annotations

from app.jobs.kind import JobKind, register
from app.metanetworks import training
from app.metanetworks.schemas import TrainParams

TRAIN = register(
    JobKind(
        name="train",
        params_model=TrainParams,
        run=training.run,
        check=training.check,
        persist=training.persist,
        description="train a metanetwork on a zoo; resumes from its last epoch when retried",
        queue="compute",
    )
)
