"""A typed Python client for a Weightscope service (``weightscope.Client``).

Methods return the API's own models (``app.*.schemas``); lists are iterators that follow
``next_cursor`` to the end; a job is followed through its server-sent events (with a
progress callback) until it is terminal. Every error answer becomes an :class:`ApiError`
subclass built from its problem+json document; a job that failed or was canceled raises
:class:`JobFailed` carrying the job.

    with Client("http://127.0.0.1:8000") as client:
        for answer in client.predict("model.safetensors"):
            print(answer.metanetwork, answer.label or answer.value)
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel

from app.checkpoints.schemas import CheckpointOut, InspectResult
from app.datasets.schemas import DatasetOut
from app.jobs.schemas import JobOut
from app.merges.schemas import MergeOut
from app.metanetworks.schemas import MetanetworkDetail, MetanetworkOut, TrainResult
from app.models import JobStatus
from app.predictions.schemas import PredictionOut, PredictionResult
from app.zoos.schemas import ZooItemOut, ZooOut

Model = TypeVar("Model", bound=BaseModel)
Progress = Callable[[JobOut], None]
# a path, the file's bytes, or a file object opened in binary mode (open(p, "rb"), BytesIO)
FileLike = str | Path | bytes | IO[bytes]


class WeightscopeError(Exception):
    """Anything the client could not do (a subclass says what)."""


class ApiError(WeightscopeError):
    """The service answered with an error (its problem+json document)."""

    def __init__(self, status: int, title: str, detail: str, type: str, body: dict[str, Any]):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.body = body

    @property
    def slug(self) -> str:
        """The problem type's last part (``not-found``, ``out-of-domain`` ...)."""
        return self.type.rsplit(":", 1)[-1]


class Unauthorized(ApiError):
    """401: no API key, or one the service does not know."""


class Forbidden(ApiError):
    """403: the key may not do this."""


class NotFound(ApiError):
    """404: no such record (or another tenant's)."""


class Conflict(ApiError):
    """409: the record's state forbids it (e.g. a checkpoint still used by a merge)."""


class PayloadTooLarge(ApiError):
    """413: the upload is over the service's limit."""


class UnsupportedMediaType(ApiError):
    """415: the body's content type is not one the route takes."""


class InvalidRequest(ApiError):
    """422: the input is invalid, outside a metanetwork's domain, or incompatible."""


class RateLimited(ApiError):
    """429: too many requests; ``retry_after`` seconds, when the service said."""

    @property
    def retry_after(self) -> float | None:
        value = self.body.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class ServerError(ApiError):
    """5xx: the service failed (or is not ready)."""


class Unreachable(WeightscopeError):
    """The service could not be reached (connection refused, timeout, DNS)."""


class JobFailed(WeightscopeError):
    """A job ended failed (or canceled: :class:`JobCanceled`); ``job`` is the job."""

    def __init__(self, job: JobOut):
        super().__init__(f"job {job.id} ({job.kind}) {job.status.value}: {job.error}")
        self.job = job


class JobCanceled(JobFailed):
    """A job was canceled before it finished."""


class OutOfDomain(WeightscopeError):
    """No metanetwork's domain holds the checkpoint; ``reasons``: name -> why."""

    def __init__(self, reasons: dict[str, str]):
        listed = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        super().__init__(f"no metanetwork covers this checkpoint ({listed or 'none installed'})")
        self.reasons = reasons


ERRORS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
}


def error_from(response: httpx.Response) -> WeightscopeError:
    """The exception for an error answer: :class:`JobFailed` when the problem carries the
    job it is about, else the status's :class:`ApiError` subclass."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text or response.reason_phrase}
    if isinstance(body.get("job"), dict):
        job = JobOut.model_validate(body["job"])
        return (JobCanceled if job.status == JobStatus.canceled else JobFailed)(job)
    status = response.status_code
    kind = ERRORS.get(status, ServerError if status >= 500 else ApiError)
    return kind(
        status,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or ""),
        str(body.get("type") or "about:blank"),
        body,
    )


class Client:
    """A Weightscope service at ``url``; ``api_key`` is sent as ``Authorization: Bearer``.

    Lists are fetched ``page_size`` records a request; ``transport`` (an
    ``httpx.BaseTransport``) is for tests and proxies."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        page_size: int = 50,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.page_size = page_size
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- checkpoints -------------------------------------------------------------------

    def upload(
        self,
        file: FileLike,
        *,
        filename: str | None = None,
        activation: str | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> CheckpointOut:
        """Store a checkpoint (a path, the file's bytes, or a binary file object); the same
        bytes again give the same record. ``activation`` / ``input_shape`` (e.g.
        ``(1, 8, 8)``) settle an inferred architecture (``?activation=`` /
        ``?input_shape=``)."""
        name, content = _read(file, filename)
        params = _reading(activation, input_shape)
        response = self._request(
            "POST", "/v1/checkpoints", params=params, files={"file": (name, content)}
        )
        return CheckpointOut.model_validate(response.json())

    def get_checkpoint(self, checkpoint_id: int) -> CheckpointOut:
        return self._get(f"/v1/checkpoints/{checkpoint_id}", CheckpointOut)

    def checkpoints(
        self, *, format: str | None = None, sha256_prefix: str | None = None, **filters: Any
    ) -> Iterator[CheckpointOut]:
        """Every checkpoint, newest first (``created_after`` / ``created_before`` too)."""
        filters |= {"format": format, "sha256_prefix": sha256_prefix}
        return self._pages("/v1/checkpoints", CheckpointOut, filters)

    def download(self, checkpoint_id: int, to: str | Path | None = None) -> bytes:
        """The stored safetensors file's bytes (also written to ``to`` when given: whole,
        or not at all; :class:`WeightscopeError` when it cannot be written)."""
        content = self._request("GET", f"/v1/checkpoints/{checkpoint_id}/file").content
        if to is not None:
            _write_whole(Path(to), content)
        return content

    def delete_checkpoint(self, checkpoint_id: int) -> None:
        self._request("DELETE", f"/v1/checkpoints/{checkpoint_id}")

    def inspect(self, checkpoint_id: int, progress: Progress | None = None) -> InspectResult:
        """Per-tensor statistics (an ``inspect`` job, waited for)."""
        job = self._job("POST", f"/v1/checkpoints/{checkpoint_id}/inspect")
        return InspectResult.model_validate(self.wait(job, progress).result)

    # --- datasets ----------------------------------------------------------------------

    def upload_dataset(self, file: FileLike, *, filename: str | None = None) -> DatasetOut:
        """Store an evaluation set: safetensors with ``x`` and ``y`` (class indices)."""
        name, content = _read(file, filename)
        response = self._request("POST", "/v1/datasets", files={"file": (name, content)})
        return DatasetOut.model_validate(response.json())

    def get_dataset(self, dataset_id: int) -> DatasetOut:
        return self._get(f"/v1/datasets/{dataset_id}", DatasetOut)

    def datasets(self) -> Iterator[DatasetOut]:
        return self._pages("/v1/datasets", DatasetOut, {})

    # --- metanetworks and predictions ----------------------------------------------------

    def metanetworks(self) -> list[MetanetworkOut]:
        response = self._request("GET", "/v1/metanetworks")
        return [MetanetworkOut.model_validate(item) for item in response.json()]

    def get_metanetwork(self, name: str) -> MetanetworkDetail:
        return self._get(f"/v1/metanetworks/{name}", MetanetworkDetail)

    def predict(
        self,
        checkpoint: FileLike | int,
        metanetwork: str | None = None,
        *,
        force: bool = False,
        activation: str | None = None,
        input_shape: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> list[PredictionResult]:
        """Answers for a checkpoint (a file to upload, or a stored checkpoint's id): the
        named metanetwork's, or every one whose domain holds it (:class:`OutOfDomain` when
        none does; ``force`` then asks them all, answers flagged ``in_domain=false``).
        ``activation`` / ``input_shape`` settle a file's inferred architecture, as in
        :meth:`upload` (a stored checkpoint was settled when it was uploaded)."""
        settled = activation is not None or input_shape is not None
        if settled and isinstance(checkpoint, int):
            raise TypeError(
                "activation= and input_shape= apply to a file being uploaded; checkpoint "
                f"{checkpoint} is stored already, with the reading it was uploaded with"
            )
        if settled:  # the multipart prediction route takes no reading: upload, then ask
            checkpoint = self.upload(checkpoint, activation=activation, input_shape=input_shape).id
        if metanetwork is not None and not isinstance(checkpoint, int):
            name, content = _read(checkpoint, None)
            job = self._job(
                "POST",
                "/v1/predictions",
                params={"metanetwork": metanetwork, "force": str(force).lower()},
                files={"file": (name, content)},
            )
            return [self._prediction(job, progress)]
        checkpoint_id = checkpoint if isinstance(checkpoint, int) else self.upload(checkpoint).id
        names = [metanetwork] if metanetwork else [m.name for m in self.metanetworks()]
        jobs, reasons = [], {}
        for name in names:
            try:
                jobs.append(self._ask(checkpoint_id, name, force and metanetwork is not None))
            except InvalidRequest as error:
                if metanetwork is not None or error.slug != "out-of-domain":
                    raise
                reasons[name] = error.detail
        if not jobs and force and reasons:
            jobs = [self._ask(checkpoint_id, name, True) for name in names]
        answers = []
        for job in jobs:
            try:
                answers.append(self._prediction(job, progress))
            except JobFailed as failed:  # sizes are checked by the worker
                if metanetwork is not None or "outside the domain" not in str(failed.job.error):
                    raise
                reasons[failed.job.params["metanetwork"]] = str(failed.job.error)
        if not answers:
            raise OutOfDomain(reasons)
        return answers

    def _ask(self, checkpoint_id: int, metanetwork: str, force: bool) -> JobOut:
        body = {"checkpoint_id": checkpoint_id, "metanetwork": metanetwork, "force": force}
        return self._job("POST", "/v1/predictions", json=body)

    def _prediction(self, job: JobOut, progress: Progress | None) -> PredictionResult:
        return PredictionResult.model_validate(self.wait(job, progress).result)

    def get_prediction(self, prediction_id: int) -> PredictionOut:
        return self._get(f"/v1/predictions/{prediction_id}", PredictionOut)

    def predictions(
        self, *, checkpoint_id: int | None = None, metanetwork: str | None = None, **filters: Any
    ) -> Iterator[PredictionOut]:
        """Every prediction, newest first (``created_after`` / ``created_before`` too)."""
        filters |= {"checkpoint_id": checkpoint_id, "metanetwork": metanetwork}
        return self._pages("/v1/predictions", PredictionOut, filters)

    # --- merges ------------------------------------------------------------------------

    def merge(
        self,
        checkpoints: list[FileLike | int],
        *,
        method: str = "weight",
        lam: float = 0.5,
        dataset: FileLike | int | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> MergeOut:
        """Align and merge checkpoints (ids, or files uploaded first), reference first;
        ``dataset`` (an id or a file) gives curves, barriers and scores. ``options``:
        ``curve_points``, ``canonical``, ``solver``, ``target``. The stored merge."""
        ids = [c if isinstance(c, int) else self.upload(c).id for c in checkpoints]
        dataset_id = (
            dataset
            if dataset is None or isinstance(dataset, int)
            else self.upload_dataset(dataset).id
        )
        body = {"checkpoints": ids, "method": method, "lam": lam, "dataset_id": dataset_id}
        job = self.wait(self._job("POST", "/v1/merges", json=body | options), progress)
        (merge,) = self._page("/v1/merges", MergeOut, {"job_id": job.id})[0]
        return merge

    def get_merge(self, merge_id: int) -> MergeOut:
        return self._get(f"/v1/merges/{merge_id}", MergeOut)

    def merges(self, *, checkpoint_id: int | None = None) -> Iterator[MergeOut]:
        """Every merge, newest first; ``checkpoint_id`` matches an input or the result."""
        return self._pages("/v1/merges", MergeOut, {"checkpoint_id": checkpoint_id})

    # --- zoos and training ---------------------------------------------------------------

    def create_zoo(
        self,
        name: str,
        task: str,
        items: list[dict[str, Any]],
        *,
        seed: int = 0,
        split_fractions: dict[str, float] | None = None,
        classes: list[str] | None = None,
    ) -> ZooOut:
        """A zoo over stored checkpoints: ``items`` are ``{"checkpoint_id", "label"}`` (task
        ``classification``) or ``{"checkpoint_id", "target"}`` (``regression``), each with
        an optional ``group``; the split is made once, from ``seed``."""
        body: dict[str, Any] = {"name": name, "task": task, "items": items, "seed": seed}
        if split_fractions is not None:
            body["split_fractions"] = split_fractions
        if classes is not None:
            body["classes"] = classes
        return ZooOut.model_validate(self._request("POST", "/v1/zoos", json=body).json())

    def upload_zoo(self, archive: FileLike, *, name: str, task: str, seed: int = 0) -> ZooOut:
        """A zoo from one .zip or .tar of checkpoint files and ``labels.csv`` (all or
        nothing)."""
        _, content = _read(archive, None)
        response = self._request(
            "POST", "/v1/zoos/archive", params={"name": name, "task": task, "seed": seed},
            content=content, headers={"content-type": "application/octet-stream"},
        )  # fmt: skip
        return ZooOut.model_validate(response.json())

    def push_zoo(self, directory: str | Path, *, name: str | None = None, seed: int = 0) -> ZooOut:
        """Upload a folder made by ``weightscope zoo build`` (its manifest's labels or
        targets) as one archive; ``name`` defaults to the zoo's."""
        import io

        from app.zoos.push import write_archive

        buffer = io.BytesIO()
        info, task = write_archive(Path(directory), buffer)
        return self.upload_zoo(
            buffer.getvalue(), name=name or str(info.get("name") or Path(directory).name),
            task=task, seed=seed,
        )  # fmt: skip

    def get_zoo(self, zoo_id: int) -> ZooOut:
        return self._get(f"/v1/zoos/{zoo_id}", ZooOut)

    def zoos(self) -> Iterator[ZooOut]:
        return self._pages("/v1/zoos", ZooOut, {})

    def zoo_items(self, zoo_id: int, *, split: str | None = None) -> Iterator[ZooItemOut]:
        """The zoo's items in order, with the split each was given."""
        return self._pages(f"/v1/zoos/{zoo_id}/items", ZooItemOut, {"split": split})

    def delete_zoo(self, zoo_id: int) -> None:
        self._request("DELETE", f"/v1/zoos/{zoo_id}")

    def train(
        self,
        name: str,
        zoo_id: int,
        *,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        config: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> TrainResult:
        """Train metanetwork ``name`` on the zoo (a ``train`` job, waited for; ``progress``
        sees each epoch in ``job.progress_detail``); ask it afterwards as ``name`` or
        ``name@version``."""
        body: dict[str, Any] = {"name": name, "zoo_id": zoo_id}
        for key, value in (("epochs", epochs), ("time_budget_s", time_budget_s),
                           ("config", config)):  # fmt: skip
            if value is not None:
                body[key] = value
        job = self.wait(self._job("POST", "/v1/metanetworks", json=body), progress)
        return TrainResult.model_validate(job.result)

    def metanetwork_versions(self, name: str) -> list[MetanetworkOut]:
        response = self._request("GET", f"/v1/metanetworks/{name}/versions")
        return [MetanetworkOut.model_validate(item) for item in response.json()]

    def delete_metanetwork(self, ref: str) -> list[int]:
        """Delete a trained metanetwork (``name``: every version, ``name@N``: one);
        returns the version numbers deleted."""
        return list(self._request("DELETE", f"/v1/metanetworks/{ref}").json()["versions"])

    # --- jobs --------------------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any]) -> JobOut:
        """Queue a job of any kind (not waited for)."""
        return self._job("POST", "/v1/jobs", json={"kind": kind, "params": params})

    def get_job(self, job_id: int) -> JobOut:
        return self._get(f"/v1/jobs/{job_id}", JobOut)

    def jobs(self, *, kind: str | None = None, status: str | None = None) -> Iterator[JobOut]:
        return self._pages("/v1/jobs", JobOut, {"kind": kind, "status": status})

    def cancel(self, job_id: int) -> JobOut:
        return JobOut.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def wait(
        self, job: JobOut | int, progress: Progress | None = None, timeout: float | None = None
    ) -> JobOut:
        """Follow the job's event stream until it is terminal, calling ``progress`` with
        each change; the succeeded job, or :class:`JobFailed` / :class:`JobCanceled`
        (``TimeoutError`` after ``timeout`` seconds)."""
        current = job if isinstance(job, JobOut) else self.get_job(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        if progress is not None:
            progress(current)
        while not current.status.terminal:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {current.id} not finished after {timeout} s")
            for event in self._events(current.id, deadline):
                current = event
                if progress is not None:
                    progress(current)
        if current.status == JobStatus.canceled:
            raise JobCanceled(current)
        if current.status == JobStatus.failed:
            raise JobFailed(current)
        return current

    def _events(self, job_id: int, deadline: float | None) -> Iterator[JobOut]:
        """The job's ``job`` events until the stream ends (a dropped stream just ends:
        :meth:`wait` reconnects)."""
        read = None if deadline is None else max(deadline - time.monotonic(), 0.1)
        timeout = httpx.Timeout(self._http.timeout.connect, read=read)
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as stream:
                if not stream.is_success:
                    stream.read()
                    raise error_from(stream)
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        yield JobOut.model_validate(json.loads(line.removeprefix("data: ")))
        except httpx.ReadTimeout:
            return  # the deadline check in wait() decides
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the server at {self.url}: {exc}") from exc

    # --- plumbing ----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the server at {self.url}: {exc}") from exc
        if not response.is_success:
            raise error_from(response)
        return response

    def _get(self, path: str, model: type[Model]) -> Model:
        return model.model_validate(self._request("GET", path).json())

    def _job(self, method: str, path: str, **kwargs: Any) -> JobOut:
        return JobOut.model_validate(self._request(method, path, **kwargs).json())

    def _page(
        self, path: str, model: type[Model], filters: dict[str, Any], cursor: str | None = None
    ) -> tuple[list[Model], str | None]:
        params = {k: v for k, v in filters.items() if v is not None} | {"limit": self.page_size}
        if cursor is not None:
            params["cursor"] = cursor
        body = self._request("GET", path, params=params).json()
        return [model.model_validate(item) for item in body["items"]], body["next_cursor"]

    def _pages(self, path: str, model: type[Model], filters: dict[str, Any]) -> Iterator[Model]:
        cursor = None
        while True:
            items, cursor = self._page(path, model, filters, cursor)
            yield from items
            if cursor is None:
                return


def _reading(activation: str | None, input_shape: Sequence[int] | None) -> dict[str, str]:
    """The upload's query parameters that settle an inferred architecture."""
    params: dict[str, str] = {}
    if activation:
        params["activation"] = activation
    if input_shape:
        params["input_shape"] = ",".join(str(int(n)) for n in input_shape)
    return params


def _read(file: FileLike, filename: str | None) -> tuple[str, bytes]:
    """The upload's name and bytes: of a path, of bytes, or read from a binary file
    object (from its position; its ``name`` when it has one)."""
    if isinstance(file, bytes | bytearray | memoryview):
        return filename or "upload.safetensors", bytes(file)
    if not isinstance(file, str | os.PathLike):
        return _read_object(file, filename)
    path = Path(file)
    try:
        return filename or path.name, path.read_bytes()
    except OSError as exc:
        raise WeightscopeError(f"cannot read {path}: {exc.strerror}") from None


def _read_object(file: Any, filename: str | None) -> tuple[str, bytes]:
    mode = getattr(file, "mode", None)
    if isinstance(file, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode):
        raise TypeError("a checkpoint file object must be opened in binary mode: open(path, 'rb')")
    if not callable(getattr(file, "read", None)):
        raise TypeError(
            f"a checkpoint is a path, bytes or a binary file object, not {type(file).__name__}"
        )
    content = file.read()
    if isinstance(content, str):
        raise TypeError("a checkpoint file object must be opened in binary mode: open(path, 'rb')")
    name = getattr(file, "name", None)
    default = Path(name).name if isinstance(name, str) and name else "upload.safetensors"
    return filename or default, bytes(content)


def _write_whole(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file beside it, so that a failed
    write leaves neither a partial file nor the temporary one."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temp, "xb") as out:  # the usual permissions, unlike mkstemp's 0600
            out.write(content)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WeightscopeError(f"cannot write {path}: {exc.strerror or exc}") from None
