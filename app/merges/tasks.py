"""The ``merge`` job kind: align checkpoints modulo permutations (Git Re-Basin) and average
them into a new checkpoint with lineage, through ``merging``."""

from __future__ import annotations

from app.jobs.kind import JobKind, register
from app.merges import repository, service
from app.merges.schemas import MergeCreate

MERGE = register(
    JobKind(
        name="merge",
        params_model=MergeCreate,
        run=service.run,
        check=service.check,
        persist=service.persist,
        description="align checkpoints (weight or activation matching) and merge them",
        queue="compute",
        forget=repository.delete_of_jobs,
    )
)
