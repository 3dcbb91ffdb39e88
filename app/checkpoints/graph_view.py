"""The picture of a checkpoint's parameter graph that the web page draws (``graphs.picture``
does the work; this reads the stored file and turns library errors into problems)."""

from __future__ import annotations

from typing import Any

import graphs
from app.blobs import BlobStore
from app.models import Checkpoint
from app.problems import ProblemError
from graphs import GraphsError
from graphs.picture import Detail, picture


def graph_view(checkpoint: Checkpoint, blobs: BlobStore, detail: Detail) -> dict[str, Any]:
    """The picture of ``checkpoint`` (already checked to be the caller's); 422 when it has
    no architecture or is too large for the detail asked."""
    if checkpoint.architecture is None:
        raise ProblemError(
            422,
            f"checkpoint {checkpoint.id} has no known architecture, so its tensors cannot be "
            "wired into a graph; upload it with its architecture (graphs.save writes it)",
            slug="no-architecture",
        )
    try:
        loaded = graphs.load(blobs.path(checkpoint.blob_sha256))
        return {"checkpoint_id": checkpoint.id, **picture(loaded, detail)}
    except GraphsError as exc:  # past the full-detail limit, or a file graphs cannot wire
        raise ProblemError(422, str(exc), slug="no-graph") from None
