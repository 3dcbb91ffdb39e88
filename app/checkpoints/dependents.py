"""What depends on a checkpoint: the records that name it, which a delete refuses to orphan
(409) or, with ``?cascade=true``, deletes with it.

One list, one entry per kind of record. A table that refers to checkpoints adds its entry
here (a zoo goes whole: a zoo without one of its items is not the zoo it was).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.merges import repository as merges
from app.predictions import repository as predictions
from app.zoos import repository as zoos


@dataclass(frozen=True)
class Dependent:
    noun: str  # singular, as a 409's detail names it
    find: Callable[[Session, int, int], list[int]]  # (session, tenant id, checkpoint id) -> ids
    # deletes those ids with whatever goes with them; returns the ids of jobs it deleted
    delete: Callable[[Session, list[int]], list[int]]


DEPENDENTS: tuple[Dependent, ...] = (
    Dependent("prediction", predictions.of_checkpoint, predictions.delete_with_jobs),
    Dependent("merge", merges.of_checkpoint, merges.delete_with_jobs),
    Dependent("zoo", zoos.of_checkpoint, zoos.delete_zoos),
)
