"""Creating zoos (from checkpoints already stored, or from one archive upload), reading,
listing and deleting them.

Everything a zoo needs is checked before a row is written: label kinds, targets, size,
the split (every class at least twice in every split), that every checkpoint is the
tenant's, used once and graphable. An archive is all-or-nothing: its members are unpacked
and read (the checkpoint upload's own reader) before the one transaction that stores the
new checkpoints, the zoo and its items; any failure removes the blobs it placed.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import graphs
from app.blobs import BlobStore, BlobTooLarge, TempBlob
from app.checkpoints import service as checkpoints
from app.db import SessionFactory, read_session
from app.models import Checkpoint, Zoo, ZooItem
from app.pagination import Page, PageRequest, paginate
from app.problems import ProblemError
from app.settings import Settings
from app.zoos import repository
from app.zoos.archive import Archive, ArchiveError, ArchiveLimits, safe_name
from app.zoos.schemas import ArchitecturePresent, ZooIn, ZooItemOut, ZooOut
from app.zoos.splits import SPLITS, assign_splits

MIN_ITEMS = 20
MIN_PER_CLASS_AND_SPLIT = 2
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
LABELS_CSV = "labels.csv"
CSV_COLUMNS = {"file", "label", "target", "group"}
MAX_LABELS_CSV_BYTES = 64 * 2**20


@dataclass(frozen=True)
class RawItem:
    """An item as given: ``source`` names it in errors (``items[3]``, ``member 'a.pt'``)."""

    source: str
    label: object
    target: object
    group: object


@dataclass(frozen=True)
class Item:
    source: str
    label: str | None
    target: float | None
    group: str | None


def _bad(detail: str, slug: str = "invalid-zoo", status: int = 422) -> ProblemError:
    return ProblemError(status, detail, slug=slug)


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def parse_items(task: str, raw_items: Sequence[RawItem]) -> list[Item]:
    """Labels or targets checked against the task; at least ``MIN_ITEMS`` items."""
    with_label = next((r for r in raw_items if _given(r.label)), None)
    with_target = next((r for r in raw_items if _given(r.target)), None)
    if with_label is not None and with_target is not None:
        raise _bad(
            f"mixed label kinds: {with_label.source} has a label, {with_target.source} a "
            "target; a zoo has labels (classification) or targets (regression), not both"
        )
    items: list[Item] = []
    for raw in raw_items:
        if task == "classification":
            if not _given(raw.label):
                kind = "a target, not a label" if _given(raw.target) else "no label"
                raise _bad(f"{raw.source} has {kind}; a classification zoo needs a label each")
            if isinstance(raw.label, bool) or not isinstance(raw.label, str | int):
                raise _bad(f"{raw.source}: a label is a string or an integer")
            label = str(raw.label).strip()
            if len(label) > 255:
                raise _bad(f"{raw.source}: a label is at most 255 characters")
            items.append(Item(raw.source, label, None, _group(raw)))
        else:
            if not _given(raw.target):
                kind = "a label, not a target" if _given(raw.label) else "no target"
                raise _bad(f"{raw.source} has {kind}; a regression zoo needs a target each")
            items.append(Item(raw.source, None, _number(raw), _group(raw)))
    if len(items) < MIN_ITEMS:
        raise _bad(f"a zoo needs at least {MIN_ITEMS} items, this one has {len(items)}")
    if task == "classification" and len({item.label for item in items}) < 2:
        raise _bad("a classification zoo needs at least 2 classes")
    return items


def _number(raw: RawItem) -> float:
    value = raw.target
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        number = float(value)
    except (ValueError, OverflowError):
        raise _bad(f"{raw.source}: target {value!r} is not a number") from None
    if not math.isfinite(number):
        raise _bad(f"{raw.source}: target {value!r} is not a finite number")
    return number


def _group(raw: RawItem) -> str | None:
    if not _given(raw.group):
        return None
    if isinstance(raw.group, bool) or not isinstance(raw.group, str | int):
        raise _bad(f"{raw.source}: a group is a string or an integer")
    group = str(raw.group).strip()
    if len(group) > 255:
        raise _bad(f"{raw.source}: a group is at most 255 characters")
    return group


def class_order(labels: set[str], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(set(given)) != len(given) or set(given) != labels:
            raise _bad(
                f"classes {given} must list each label of the items once: {sorted(labels)}"
            )
        return list(given)
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _split(items: list[Item], fractions: dict[str, float], seed: int) -> list[str]:
    splits = assign_splits([i.label for i in items], [i.group for i in items], fractions, seed)
    counts = Counter(splits)
    for split in SPLITS:
        if counts[split] < MIN_PER_CLASS_AND_SPLIT:
            raise _bad(
                f"the {split} split gets {counts[split]} items; every split needs at least "
                f"{MIN_PER_CLASS_AND_SPLIT} (more items, or more and smaller groups)"
            )
    if items[0].label is not None:
        per_class = Counter(zip((i.label for i in items), splits, strict=True))
        for label in sorted({i.label for i in items if i.label is not None}):
            for split in SPLITS:
                if per_class[label, split] < MIN_PER_CLASS_AND_SPLIT:
                    raise _bad(
                        f"class {label!r} gets {per_class[label, split]} items in the {split} "
                        f"split; every class needs at least {MIN_PER_CLASS_AND_SPLIT} in every "
                        "split (more items of that class, or smaller groups)"
                    )
    return splits


def _check_graphable(
    blobs: BlobStore, items: list[Item], rows: list[Checkpoint]
) -> list[ArchitecturePresent]:
    """Every checkpoint has an architecture the neuron map understands (checked once per
    architecture digest, on its first item); returns the architectures present."""
    first: dict[str, int] = {}
    for index, (item, row) in enumerate(zip(items, rows, strict=True)):
        if row.architecture_digest is None:
            raise _bad(
                f"{item.source}: checkpoint {row.id or '(new)'} has no architecture, so it "
                "cannot be graphed; upload it self-describing (graphs.save) or settle its "
                "activation and input_shape",
                slug="not-graphable",
            )
        first.setdefault(row.architecture_digest, index)
    for index in first.values():
        try:
            graphs.neuron_map(graphs.load(blobs.path(rows[index].blob_sha256)).architecture)
        except graphs.GraphsError as exc:
            raise _bad(
                f"{items[index].source}: checkpoint {rows[index].id or '(new)'} cannot be "
                f"graphed: {exc}",
                slug="not-graphable",
            ) from None
    counts = Counter(row.architecture_digest for row in rows)
    return [
        ArchitecturePresent(
            digest=digest, items=counts[digest], description=describe(rows[index].architecture)
        )
        for digest, index in sorted(first.items(), key=lambda kv: -counts[kv[0]])
    ]


def describe(summary: dict[str, Any] | None) -> str:
    """One line from a stored architecture summary: ops, parameters, inputs -> outputs."""
    if not summary:
        return "unknown"
    ops = ", ".join(f"{op}×{n}" for op, n in sorted((summary.get("op_counts") or {}).items()))
    shapes = [
        " ".join(f"{name}{list(shape)}" for name, shape in (summary.get(side) or {}).items())
        for side in ("inputs", "outputs")
    ]
    parameters = summary.get("num_parameters")
    counted = f"{parameters:,} parameters" if isinstance(parameters, int) else ""
    return " · ".join(part for part in (ops, counted, " -> ".join(shapes)) if part)


def _build(
    tenant_id: int,
    body: ZooIn,
    items: list[Item],
    rows: list[Checkpoint],
    blobs: BlobStore,
) -> tuple[Zoo, list[str]]:
    """The zoo row and each item's split, or the problem that refuses them."""
    fractions = body.split_fractions.model_dump()
    splits = _split(items, fractions, body.seed)
    architectures = _check_graphable(blobs, items, rows)
    classes = None
    summary: dict[str, Any] = {"size": len(items)}
    if body.task == "classification":
        classes = class_order({i.label for i in items if i.label is not None}, body.classes)
        counts = Counter(i.label for i in items)
        summary["label_counts"] = {c: counts[c] for c in classes}
    else:
        targets = np.asarray([i.target for i in items], dtype=np.float64)
        summary["target_quantiles"] = {
            f"q{round(p * 100):02d}": float(v)
            for p, v in zip(QUANTILES, np.quantile(targets, QUANTILES), strict=True)
        }
    summary["architectures"] = [a.model_dump() for a in architectures]
    summary["splits"] = {split: _split_summary(items, splits, split, classes) for split in SPLITS}
    zoo = Zoo(
        tenant_id=tenant_id,
        name=body.name,
        task=body.task,
        classes=classes,
        seed=body.seed,
        split_fractions=fractions,
        summary=summary,
    )
    return zoo, splits


def _split_summary(
    items: list[Item], splits: list[str], split: str, classes: list[str] | None
) -> dict[str, Any]:
    chosen = [item for item, s in zip(items, splits, strict=True) if s == split]
    out: dict[str, Any] = {
        "items": len(chosen),
        "groups": len({i.group for i in chosen if i.group is not None}),
    }
    if classes is not None:
        counts = Counter(i.label for i in chosen)
        out["label_counts"] = {c: counts[c] for c in classes}
    return out


def _name_free(session: Session, tenant_id: int, name: str) -> None:
    if repository.zoo_named(session, tenant_id, name) is not None:
        raise _bad(f"a zoo named {name!r} exists already", slug="conflict", status=409)


def _save(
    session: Session, zoo: Zoo, items: list[Item], rows: list[Checkpoint], splits: list[str]
) -> Zoo:
    """Insert the zoo and its items, after the new checkpoints pending in the session, in
    one transaction."""
    try:
        session.add(zoo)
        session.flush()  # new checkpoints and the zoo get their ids
        session.add_all(
            ZooItem(
                zoo_id=zoo.id,
                position=position,
                checkpoint_id=row.id,
                label=item.label,
                target=item.target,
                group_name=item.group,
                split=split,
            )
            for position, (item, row, split) in enumerate(zip(items, rows, splits, strict=True))
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        if repository.zoo_named(session, zoo.tenant_id, zoo.name) is not None:
            raise _bad(
                f"a zoo named {zoo.name!r} exists already", slug="conflict", status=409
            ) from None
        raise _bad(
            "a checkpoint of this zoo was stored or deleted by another request meanwhile; "
            "send it again",
            slug="conflict",
            status=409,
        ) from None
    return zoo


def create_zoo(session: Session, blobs: BlobStore, tenant_id: int, body: ZooIn) -> Zoo:
    """A zoo over checkpoints the tenant has stored already."""
    _name_free(session, tenant_id, body.name)
    raw = [
        RawItem(f"items[{i}] (checkpoint {item.checkpoint_id})", item.label, item.target,
                item.group)
        for i, item in enumerate(body.items)
    ]
    items = parse_items(body.task, raw)
    ids = [item.checkpoint_id for item in body.items]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise _bad(f"checkpoints used more than once: {repeated[:20]}")
    found = repository.tenant_checkpoints(session, tenant_id, ids)
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise _bad(f"unknown checkpoints: {unknown[:20]}", slug="unknown-checkpoints")
    rows = [found[i] for i in ids]
    zoo, splits = _build(tenant_id, body, items, rows, blobs)
    return _save(session, zoo, items, rows, splits)


@dataclass(frozen=True)
class Unpacked:
    item: RawItem
    member: str
    temp: TempBlob
    sha256: str


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_members=settings.zoo_archive_max_members,
        max_unpacked_bytes=settings.zoo_archive_max_unpacked_bytes,
        max_ratio=settings.zoo_archive_max_ratio,
        max_member_bytes=settings.max_upload_bytes,
    )


def create_zoo_from_archive(
    session_factory: SessionFactory,
    blobs: BlobStore,
    settings: Settings,
    tenant_id: int,
    body: ZooIn,
    path: Path,
) -> Zoo:
    """A zoo from an archive of checkpoint files and ``labels.csv``; all or nothing."""
    with read_session(session_factory) as session:
        _name_free(session, tenant_id, body.name)
    unpacked: list[Unpacked] = []
    try:
        archive = _open(path, settings)
        try:
            raw = _labels(archive)
            parse_items(body.task, [r for r, _ in raw])  # cheap checks before unpacking
            unpacked = _unpack(archive, raw, blobs, settings.max_upload_bytes)
        finally:
            archive.close()
        with read_session(session_factory) as session:
            known = repository.tenant_checkpoints_by_sha256(
                session, tenant_id, [u.sha256 for u in unpacked]
            )
        return _store(session_factory, blobs, tenant_id, body, unpacked, known)
    finally:
        for u in unpacked:
            u.temp.discard()


def _open(path: Path, settings: Settings) -> Archive:
    try:
        return Archive(path, archive_limits(settings))
    except ArchiveError as exc:
        raise _bad(exc.detail, slug="invalid-archive", status=exc.status) from None


def _labels(archive: Archive) -> list[tuple[RawItem, str]]:
    """``labels.csv`` (at the root, or in the one top folder) as items with their member."""
    found = sorted(
        (n for n in archive.files if n == LABELS_CSV or n.endswith("/" + LABELS_CSV)),
        key=lambda n: n.count("/"),
    )
    if not found:
        raise _bad("the archive has no labels.csv (columns file and label, or file and target)")
    if len(found) > 1 and found[0].count("/") == found[1].count("/"):
        raise _bad(f"the archive has more than one labels.csv: {found[:2]}")
    base = str(PurePosixPath(found[0]).parent)
    try:
        text = archive.read_text(found[0], MAX_LABELS_CSV_BYTES)
    except ArchiveError as exc:
        raise _bad(exc.detail, slug="invalid-archive", status=exc.status) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "file" not in columns or not ({"label", "target"} & set(columns)):
        raise _bad(f"labels.csv has columns {columns}; it needs file and label (or target)")
    extra = set(columns) - CSV_COLUMNS
    if extra or len(set(columns)) != len(columns):
        raise _bad(
            f"labels.csv has columns {columns}; allowed: file, label or target, group (once each)"
        )
    reader.fieldnames = columns
    out: list[tuple[RawItem, str]] = []
    seen: dict[str, int] = {}
    try:
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise _bad(f"labels.csv line {line} has more fields than the header")
            file = (row.get("file") or "").strip()
            source = f"labels.csv line {line} ({file!r})"
            if not file:
                raise _bad(f"labels.csv line {line} names no file")
            try:
                name = safe_name(file if base == "." else f"{base}/{file}")
            except ArchiveError:
                raise _bad(f"{source}: not a relative path inside the archive") from None
            if name not in archive.files:
                raise _bad(f"{source}: no such file in the archive")
            if name in seen:
                raise _bad(f"{source}: the file is listed twice (line {seen[name]} too)")
            seen[name] = line
            if len(out) >= archive.limits.max_members:
                raise _bad("labels.csv has more rows than the archive may have members", status=413)
            out.append(
                (RawItem(f"member {name!r}", row.get("label"), row.get("target"), row.get("group")),
                 name)
            )
    except csv.Error as exc:
        raise _bad(f"labels.csv is not valid CSV: {exc}") from None
    return out


def _unpack(
    archive: Archive, raw: list[tuple[RawItem, str]], blobs: BlobStore, max_bytes: int
) -> list[Unpacked]:
    """Each listed member into a temp file in the blob store's folder, hashed on the way;
    the same bytes twice is refused (one checkpoint, one item). Members are read in archive
    order (a compressed tar seeks backwards only by decompressing from its start again);
    the result is in ``raw``'s order."""
    position = {name: index for index, name in enumerate(archive.files)}
    done: dict[int, Unpacked] = {}
    by_sha: dict[str, str] = {}
    try:
        for k in sorted(range(len(raw)), key=lambda k: position[raw[k][1]]):
            item, member = raw[k]
            temp = blobs.temp(max_bytes)
            done[k] = Unpacked(item, member, temp, "")
            try:
                archive.copy(member, temp.write)
            except BlobTooLarge:
                raise _bad(f"member {member!r} is over {max_bytes} bytes", status=413) from None
            except ArchiveError as exc:
                raise _bad(exc.detail, slug="invalid-archive", status=exc.status) from None
            sha256 = temp.close()
            if sha256 in by_sha:
                raise _bad(
                    f"member {member!r} has the same bytes as member {by_sha[sha256]!r}; a "
                    "checkpoint is in a zoo once"
                )
            by_sha[sha256] = member
            done[k] = Unpacked(item, member, temp, sha256)
    except BaseException:
        for u in done.values():
            u.temp.discard()
        raise
    return [done[k] for k in range(len(raw))]


def _store(
    session_factory: SessionFactory,
    blobs: BlobStore,
    tenant_id: int,
    body: ZooIn,
    unpacked: list[Unpacked],
    known: dict[str, Checkpoint],
) -> Zoo:
    items = parse_items(body.task, [u.item for u in unpacked])
    placed: list[str] = []
    with session_factory() as session:
        try:
            rows: list[Checkpoint] = []
            for u in unpacked:
                if u.sha256 in known:
                    rows.append(known[u.sha256])
                    continue
                try:
                    row = checkpoints.store(
                        session, blobs, u.temp, u.sha256, PurePosixPath(u.member).name[:255]
                    )
                except ProblemError as exc:
                    raise ProblemError(
                        exc.status, f"member {u.member!r}: {exc.detail}", slug=exc.slug
                    ) from None
                placed.append(row.blob_sha256)
                row.tenant_id = tenant_id
                rows.append(row)
            zoo, splits = _build(tenant_id, body, items, rows, blobs)
            return _save(session, zoo, items, rows, splits)
        except BaseException:
            session.rollback()
            for blob_sha256 in placed:
                checkpoints.forget_blob_if_unused(session, blobs, blob_sha256)
            raise


def get_zoo(session: Session, tenant_id: int, zoo_id: int) -> Zoo:
    zoo = repository.get_zoo(session, zoo_id, tenant_id)
    if zoo is None:
        raise ProblemError(404, f"zoo {zoo_id} does not exist", slug="not-found")
    return zoo


def zoo_out(zoo: Zoo) -> ZooOut:
    summary = zoo.summary
    return ZooOut(
        id=zoo.id,
        name=zoo.name,
        task=zoo.task,  # type: ignore[arg-type]
        size=summary["size"],
        classes=zoo.classes,
        seed=zoo.seed,
        split_fractions=zoo.split_fractions,
        label_counts=summary.get("label_counts"),
        target_quantiles=summary.get("target_quantiles"),
        architectures=[ArchitecturePresent(**a) for a in summary["architectures"]],
        splits=summary["splits"],
        created_at=zoo.created_at,
    )


def list_zoos(session: Session, tenant_id: int, page: PageRequest) -> Page[ZooOut]:
    query = select(Zoo).where(Zoo.tenant_id == tenant_id)
    return paginate(session, query, page, lambda rows: [zoo_out(z) for z in rows])


def list_items(
    session: Session, tenant_id: int, zoo_id: int, page: PageRequest, split: str | None
) -> Page[ZooItemOut]:
    get_zoo(session, tenant_id, zoo_id)
    rows, next_cursor = repository.items_page(session, zoo_id, page, split)
    items = [
        ZooItemOut(
            position=r.position,
            checkpoint_id=r.checkpoint_id,
            label=r.label,
            target=r.target,
            group=r.group_name,
            split=r.split,  # type: ignore[arg-type]
        )
        for r in rows
    ]
    return Page[ZooItemOut](items=items, next_cursor=next_cursor)


def delete_zoo(session: Session, tenant_id: int, zoo_id: int) -> None:
    """The zoo and its items; the checkpoints stay."""
    session.delete(get_zoo(session, tenant_id, zoo_id))
    session.commit()
