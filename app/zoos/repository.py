"""Queries on zoos and their items. ``items_by_split`` is what training reads: keep its
shape stable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Zoo, ZooItem
from app.pagination import PageRequest, decode_cursor, encode_cursor

SPLITS = ("train", "val", "test")
IN_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class ZooItemRow:
    """One zoo item with what is needed to load its weights (the checkpoint's blob)."""

    position: int
    checkpoint_id: int
    blob_sha256: str
    architecture_digest: str | None
    label: str | None  # classification
    target: float | None  # regression
    group: str | None
    split: str  # "train" | "val" | "test"


def get_zoo(session: Session, zoo_id: int, tenant_id: int) -> Zoo | None:
    """The tenant's zoo, or None (another tenant's zoo does not exist for this caller)."""
    return session.scalar(select(Zoo).where(Zoo.id == zoo_id, Zoo.tenant_id == tenant_id))


def items_by_split(session: Session, zoo_id: int, tenant_id: int) -> dict[str, list[ZooItemRow]]:
    """The zoo's items by split ("train", "val", "test": all three keys always present), in
    item order; empty lists when the tenant has no such zoo."""
    rows = session.execute(
        select(ZooItem, Checkpoint.blob_sha256, Checkpoint.architecture_digest)
        .join(Zoo, Zoo.id == ZooItem.zoo_id)
        .join(Checkpoint, Checkpoint.id == ZooItem.checkpoint_id)
        .where(ZooItem.zoo_id == zoo_id, Zoo.tenant_id == tenant_id)
        .order_by(ZooItem.position)
    )
    splits: dict[str, list[ZooItemRow]] = {split: [] for split in SPLITS}
    for item, blob_sha256, digest in rows:
        splits[item.split].append(
            ZooItemRow(
                position=item.position,
                checkpoint_id=item.checkpoint_id,
                blob_sha256=blob_sha256,
                architecture_digest=digest,
                label=item.label,
                target=item.target,
                group=item.group_name,
                split=item.split,
            )
        )
    return splits


def zoo_named(session: Session, tenant_id: int, name: str) -> Zoo | None:
    return session.scalar(select(Zoo).where(Zoo.tenant_id == tenant_id, Zoo.name == name))


def _chunks(values: list[object]) -> Iterable[list[object]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def tenant_checkpoints(session: Session, tenant_id: int, ids: list[int]) -> dict[int, Checkpoint]:
    """id -> the tenant's checkpoint, for those of ``ids`` the tenant has."""
    found: dict[int, Checkpoint] = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(Checkpoint).where(
            Checkpoint.tenant_id == tenant_id, Checkpoint.id.in_(chunk)
        )
        found.update((row.id, row) for row in session.scalars(query))
    return found


def tenant_checkpoints_by_sha256(
    session: Session, tenant_id: int, sha256s: list[str]
) -> dict[str, Checkpoint]:
    """sha256 of the uploaded bytes -> the tenant's checkpoint of those bytes."""
    found: dict[str, Checkpoint] = {}
    for chunk in _chunks(sorted(set(sha256s))):
        query = select(Checkpoint).where(
            Checkpoint.tenant_id == tenant_id, Checkpoint.sha256.in_(chunk)
        )
        found.update((row.sha256, row) for row in session.scalars(query))
    return found


def items_page(
    session: Session, zoo_id: int, page: PageRequest, split: str | None
) -> tuple[list[ZooItem], str | None]:
    """Items in position order; the (opaque) cursor holds the last position shown."""
    after = decode_cursor(page.cursor)
    query = select(ZooItem).where(ZooItem.zoo_id == zoo_id)
    if split is not None:
        query = query.where(ZooItem.split == split)
    if after is not None:
        query = query.where(ZooItem.position > after)
    rows = list(session.scalars(query.order_by(ZooItem.position).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_cursor(rows[-1].position) if more else None


def of_checkpoint(session: Session, tenant_id: int, checkpoint_id: int) -> list[int]:
    """The tenant's zoos that hold the checkpoint (what a checkpoint delete names)."""
    return list(
        session.scalars(
            select(Zoo.id)
            .join(ZooItem, ZooItem.zoo_id == Zoo.id)
            .where(ZooItem.checkpoint_id == checkpoint_id, Zoo.tenant_id == tenant_id)
            .distinct()
            .order_by(Zoo.id)
        )
    )


def delete_zoos(session: Session, zoo_ids: list[int]) -> list[int]:
    """Delete whole zoos (a zoo missing one of its items would no longer be the zoo whose
    split and summary were recorded); their items go by the foreign key. No jobs go."""
    if zoo_ids:
        session.execute(sql_delete(ZooItem).where(ZooItem.zoo_id.in_(zoo_ids)))
        session.execute(sql_delete(Zoo).where(Zoo.id.in_(zoo_ids)))
    return []
