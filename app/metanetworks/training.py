"""Training a metanetwork as a job: the submit-time checks, the run on a worker, and the
one finishing transaction.

Resumable: after every epoch the whole training state (model, optimizer, schedule, best
epoch so far, curves, random generators) goes to the blob store and ``training_states``
names it, so an attempt that starts after a worker died resumes from the last saved
epoch. Leaves nothing behind: a state blob is named in its row before it is written (a
worker killed in between leaves a blob that can still be found); the row and its blobs are
removed when the job fails, is canceled or succeeds; the weights are staged as a temp
file and moved into place by ``persist`` in the transaction that adds the version row.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.blobs import BlobStore, TempBlob
from app.db import READ_ONLY, SessionFactory, read_session, session_scope
from app.jobs.kind import JobContext, JobLost
from app.metanetworks import repository
from app.metanetworks.schemas import TrainParams
from app.metanetworks.service import check_split
from app.models import MetanetworkVersion
from app.problems import ProblemError
from app.quotas import check_training_time
from app.settings import Settings
from app.zoos import repository as zoos

log = logging.getLogger(__name__)

CARD_FORMAT = 1


def check(session: Session, params: TrainParams, settings: Settings, tenant_id: int) -> None:
    """409 for a built-in's name or a name already being trained; 404 for an unknown zoo;
    422 for a zoo too small to train on (checked again when the job runs); 429 once the
    tenant's training time is used up."""
    if params.tenant_id != tenant_id:  # POST /v1/jobs: the params name the caller's tenant
        raise ProblemError(
            422, "tenant_id must be the caller's tenant (POST /v1/metanetworks sets it)",
            slug="invalid-params",
        )
    check_training_time(session, settings, tenant_id, ["train"])
    if repository.is_builtin_name(session, params.name):
        raise ProblemError(
            409,
            f"{params.name!r} is the name of a built-in metanetwork; choose another",
            slug="name-taken",
        )
    active = repository.active_trainings(session, params.tenant_id)
    if any(p.get("name") == params.name for p in active):
        raise ProblemError(
            409,
            f"metanetwork {params.name!r} is already being trained; wait for that job or cancel it",
            slug="already-training",
        )
    zoo = zoos.get_zoo(session, params.zoo_id, params.tenant_id)
    if zoo is None:
        raise ProblemError(404, f"zoo {params.zoo_id} does not exist", slug="not-found")
    items = zoos.items_by_split(session, params.zoo_id, params.tenant_id)
    check_split(zoo.task, _targets(zoo.task, items), list(zoo.classes or []))


def _targets(task: str, items: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if task == "classification":
        return {s: [i.label for i in rows] for s, rows in items.items()}
    return {s: [i.target for i in rows] for s, rows in items.items()}


# --- the worker side ---------------------------------------------------------------------


class StateStore:
    """This job's saved training state: the row in ``training_states`` and its blob."""

    def __init__(self, ctx: JobContext, blobs: BlobStore) -> None:
        self.job_id, self.session_factory, self.blobs = ctx.job_id, ctx.session_factory, blobs

    def load(self) -> tuple[int, bytes | None]:
        """(epoch, state bytes) to resume from; (0, None) when there is none. A blob left
        pending by a killed attempt is removed."""
        with session_scope(self.session_factory) as session:
            row = repository.training_state(session, self.job_id)
            if row is None:
                return 0, None
            pending, state, epoch = row.pending_sha256, row.state_sha256, row.epoch
            row.pending_sha256 = None
        if pending and pending != state:
            self.blobs.delete(pending)
        if state and self.blobs.exists(state):
            return epoch, self.blobs.path(state).read_bytes()
        return 0, None

    def save(self, epoch: int, data: bytes) -> None:
        sha256 = hashlib.sha256(data).hexdigest()
        with session_scope(self.session_factory) as session:
            row = repository.training_state(session, self.job_id)
            previous = row.state_sha256 if row is not None else None
            repository.set_pending(session, self.job_id, sha256)
        self.blobs.put_bytes(data)
        with session_scope(self.session_factory) as session:
            repository.set_state(session, self.job_id, epoch, sha256)
        if previous and previous != sha256:
            self.blobs.delete(previous)

    def drop(self) -> None:
        drop_states(self.session_factory, self.blobs, [self.job_id])


def drop_states(session_factory: SessionFactory, blobs: BlobStore, job_ids: list[int]) -> None:
    """Remove these jobs' state rows, then their blobs."""
    shas: set[str] = set()
    with session_scope(session_factory) as session:
        for job_id in job_ids:
            row = repository.training_state(session, job_id)
            if row is not None:
                shas |= {s for s in (row.state_sha256, row.pending_sha256) if s}
                repository.drop_state(session, job_id)
    for sha in shas:
        blobs.delete(sha)


def sweep_finished(session_factory: SessionFactory, blobs: BlobStore) -> None:
    """States of jobs that ended without removing them (their last attempt was cut short)."""
    with read_session(session_factory) as session:
        job_ids = [row.job_id for row in repository.states_of_finished_jobs(session)]
    if job_ids:
        drop_states(session_factory, blobs, job_ids)


def run(ctx: JobContext) -> dict[str, Any]:
    params = TrainParams.model_validate(ctx.params)
    blobs = BlobStore(ctx.settings.blob_dir)
    sweep_finished(ctx.session_factory, blobs)
    states = StateStore(ctx, blobs)
    try:
        return _train(ctx, params, blobs, states)
    except JobLost:
        raise  # another attempt owns the job and its state now
    except BaseException:
        states.drop()
        raise


def _train(
    ctx: JobContext, params: TrainParams, blobs: BlobStore, states: StateStore
) -> dict[str, Any]:
    from app.device import worker_device
    from models.config import MetanetConfig, TrainConfig
    from models.fit import UngraphableItem, train_on_split
    from models.train import TrainState

    started = time.perf_counter()
    with read_session(ctx.session_factory) as session:
        zoo = zoos.get_zoo(session, params.zoo_id, params.tenant_id)
        if zoo is None:
            raise ValueError(f"zoo {params.zoo_id} no longer exists")
        task, classes = zoo.task, list(zoo.classes or [])
        items = zoos.items_by_split(session, params.zoo_id, params.tenant_id)
    raw = _targets(task, items)
    check_split(task, raw, classes)
    model_task = "classification" if task == "classification" else "generalization"
    targets = (
        {s: [float(classes.index(label)) for label in labels] for s, labels in raw.items()}
        if task == "classification"
        else {s: [float(t) for t in values] for s, values in raw.items()}
    )
    checkpoints = {split: [_load(blobs, item) for item in rows] for split, rows in items.items()}
    c = params.config
    mcfg = MetanetConfig(
        task=model_task,
        num_outputs=len(classes) if task == "classification" else 1,
        hidden=c.hidden,
        edge_hidden=c.edge_hidden,
        layers=c.layers,
        max_kernel=c.max_kernel,
        fourier=c.fourier,
        aggregators=("mean", "max", "std"),
        dropout=c.dropout,
        layer_stats=c.layer_stats,
        scale_invariant=c.scale_invariant,
        triggers=c.triggers,
        trigger_window=c.trigger_window,
        queries=c.queries,
        query_side=c.query_side,
        query_classes=c.query_classes,
    )
    tcfg = TrainConfig(
        epochs=params.epochs,
        batch_size=c.batch_size,
        lr=c.lr,
        weight_decay=c.weight_decay,
        warmup_epochs=c.warmup_epochs,
        patience=c.patience,
        noise=c.noise,
        weight_dropout=c.weight_dropout,
        seed=c.seed,
        coverage=c.coverage,
        rank_loss=c.rank_loss,
    )
    resumed_epoch, state_bytes = states.load()
    resume = TrainState.from_bytes(state_bytes) if state_bytes is not None else None
    ctx.progress(
        resumed_epoch / params.epochs,
        {
            "phase": "training",
            "epoch": resumed_epoch,
            "epochs": params.epochs,
            "resumed_from_epoch": resumed_epoch,
        },
    )
    key = "accuracy" if task == "classification" else "tau_b"
    seen: list[float] = []

    def on_epoch(row: dict[str, Any]) -> None:
        seen.append(row["seconds"])
        done = row["epoch"] + 1
        eta = (params.epochs - done) * sum(seen) / len(seen)
        ctx.progress(
            done / params.epochs,
            {
                "phase": "training",
                "epoch": done,
                "epochs": params.epochs,
                "train_loss": row["train_loss"],
                "val_metric": key,
                "val": row[key],
                "eta_s": round(eta, 1),
                "resumed_from_epoch": resumed_epoch,
            },
        )

    def on_state(state: Any) -> None:
        states.save(state.epoch, state.to_bytes())

    try:
        trained = train_on_split(
            checkpoints,
            targets,
            model_task,
            classes,
            mcfg,
            tcfg,
            device=worker_device(ctx.settings),
            resume=resume,
            on_state=on_state,
            on_epoch=on_epoch,
            on_batch=lambda fraction: ctx.progress(fraction),
            on_search=lambda done, total: ctx.progress(
                resumed_epoch / params.epochs,
                {"phase": "trigger search", "searched": done, "items": total},
            ),
            time_budget_s=params.time_budget_s,
        )
    except UngraphableItem as exc:
        item = items[exc.split][exc.index]
        raise ValueError(
            f"zoo item {item.position} (checkpoint {item.checkpoint_id}) cannot be graphed: "
            f"{exc.reason}"
        ) from None
    model, measured, result = trained
    with read_session(ctx.session_factory) as session:
        number = repository.latest_version_number(session, params.name, params.tenant_id) + 1
    card = {
        "name": params.name,
        "version": str(number),
        "card_format": CARD_FORMAT,
        "task": model_task,
        "labels": classes,
        "target": "the zoo's label" if task == "classification" else "the zoo's target",
        "zoo": {"id": params.zoo_id, "task": task, "splits": measured.pop("splits")},
        "train": {
            "epochs": params.epochs,
            "time_budget_s": params.time_budget_s,
            **params.config.model_dump(),
        },
        "config": mcfg.to_dict(),
        "device": worker_device(ctx.settings).type,
        **measured,
    }
    weights = _stage(ctx.job_id, blobs, model, card)
    return {
        "metanetwork": params.name,
        "version": number,
        "zoo_id": params.zoo_id,
        "weights": weights,
        "metrics": card["metrics"],
        "baseline": card["baseline"],
        "conformal": card["conformal"],
        "epochs_run": card["epochs_run"],
        "best_epoch": card["best_epoch"],
        "stopped": card["stopped"],
        "resumed_from_epoch": result.start_epoch,
        "attempt": ctx.attempt,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _load(blobs: BlobStore, item: Any) -> Any:
    import graphs

    try:
        return graphs.load(blobs.path(item.blob_sha256))
    except graphs.GraphsError as exc:
        raise ValueError(
            f"zoo item {item.position} (checkpoint {item.checkpoint_id}) cannot be read "
            f"as a network: {exc}"
        ) from None


# Weights staged by ``run`` for ``persist``, which the runner calls next in this process; a
# staged file that never gets there is a temp file, not a blob.
_staged: dict[int, tuple[TempBlob, dict[str, Any]]] = {}
_staged_lock = threading.Lock()


def _stage(job_id: int, blobs: BlobStore, model: Any, card: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    temp = blobs.temp()
    try:
        temp.write(save(state, metadata={"card": card["name"]}))
        sha256 = temp.close()
    except BaseException:
        temp.discard()
        raise
    with _staged_lock:
        previous = _staged.pop(job_id, None)
        _staged[job_id] = (temp, card)
    if previous is not None:
        previous[0].discard()
    return {"sha256": sha256, "size": temp.size}


def persist(session: Session, finished: list[tuple[int, dict[str, Any]]]) -> None:
    for job_id, result in finished:
        _persist_one(session, job_id, result)


def _persist_one(session: Session, job_id: int, result: dict[str, Any]) -> None:
    with _staged_lock:
        temp, card = _staged.pop(job_id)
    blobs = BlobStore(temp.path.parent)
    sha256 = result["weights"]["sha256"]
    try:
        state = repository.training_state(session, job_id)
        state_blobs = (
            {s for s in (state.state_sha256, state.pending_sha256) if s} if state else set()
        )
        if not blobs.exists(sha256):
            _forget_blob_on_rollback(session, blobs, sha256)
            blobs.commit(temp)
        tenant_id = _tenant_of(session, job_id, result)
        session.add(
            MetanetworkVersion(
                tenant_id=tenant_id,
                name=result["metanetwork"],
                version=result["version"],
                task=card["task"],
                card=card,
                config=card["config"],
                weights_sha256=sha256,
                weights_size=result["weights"]["size"],
                zoo_id=result["zoo_id"],
                job_id=job_id,
            )
        )
        repository.drop_state(session, job_id)
        session.flush()

        def remove_states(_: Session) -> None:
            for sha in state_blobs:
                blobs.delete(sha)

        event.listen(session, "after_commit", remove_states, once=True)
    finally:
        temp.discard()  # moved into place, or not needed


def _tenant_of(session: Session, job_id: int, result: dict[str, Any]) -> int:
    from app.models import Job

    params = session.get_one(Job, job_id).params
    return int(params["tenant_id"])


def _forget_blob_on_rollback(session: Session, blobs: BlobStore, sha256: str) -> None:
    """The weights are moved into place before the transaction commits: should it roll
    back instead, remove them again unless a committed row uses them."""
    engine = session.get_bind()

    def forget(_: Session) -> None:
        with Session(engine) as fresh:
            fresh.connection(execution_options=READ_ONLY)
            if not repository.weights_in_use(fresh, sha256):
                blobs.delete(sha256)

    event.listen(session, "after_rollback", forget, once=True)
