"""Listing and reading predictions (they are written only by ``predict`` jobs)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.models import Prediction
from app.pagination import created_within, newest_first
from app.problems import ProblemError


def get_prediction(session: Session, prediction_id: int) -> Prediction:
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        raise ProblemError(404, f"prediction {prediction_id} does not exist", slug="not-found")
    return prediction


def list_predictions(
    session: Session,
    *,
    limit: int,
    cursor: str | None,
    checkpoint_id: int | None = None,
    metanetwork: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> list[Prediction]:
    """Newest first; returns up to ``limit + 1`` rows (the extra one signals a next page)."""
    query = newest_first(Prediction, limit, cursor)
    if checkpoint_id is not None:
        query = query.where(Prediction.checkpoint_id == checkpoint_id)
    if metanetwork is not None:
        query = query.where(Prediction.metanetwork == metanetwork)
    query = created_within(query, Prediction.created_at, created_after, created_before)
    return list(session.scalars(query))
