"""``weightscope zoo push``: a zoo folder built by ``weightscope zoo build`` sent as one
archive upload (``POST /v1/zoos/archive``).

``labels.csv`` is written from the manifest: the class name (``zoo.json``'s ``classes``,
else the class index) of a classification zoo, the target of any other; INR views of one
image share a group, so they never straddle splits. The archive is an uncompressed tar
(weights barely compress) written to a temp file, then streamed with its progress.
"""

from __future__ import annotations

import csv
import io
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from zoo.manifest import read_manifest, read_zoo_json

CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes sent, bytes in all)


class PushError(Exception):
    """The zoo folder cannot be pushed, or the server refused it (its problem detail)."""


def labels_csv(zoo_dir: Path) -> tuple[dict[str, Any], str, str, list[str]]:
    """``zoo.json``, the task ("classification" or "regression"), ``labels.csv`` and the
    checkpoint files it lists."""
    try:
        info = read_zoo_json(zoo_dir)
        rows = read_manifest(zoo_dir)
    except (OSError, ValueError) as exc:
        raise PushError(f"{zoo_dir} is not a zoo built by 'weightscope zoo build': {exc}") from None
    task = "classification" if info.get("task") == "classification" else "regression"
    classes = info.get("classes")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    grouped = any("image" in (row.get("labels") or {}) for row in rows)
    writer.writerow(
        ["file", "label" if task == "classification" else "target"] + (["group"] if grouped else [])
    )
    files = []
    for number, row in enumerate(rows, 1):
        try:
            target = row["target"]
            value = (
                (classes[int(target)] if classes else str(int(target)))
                if task == "classification"
                else repr(float(target))
            )
            group = [f"image-{row['labels']['image']}"] if grouped else []
            writer.writerow([row["file"], value, *group])
            files.append(str(row["file"]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise PushError(
                f"{zoo_dir / 'manifest.jsonl'} row {number} is not a zoo manifest row: {what}"
            ) from None
    return info, task, out.getvalue(), files


def write_archive(zoo_dir: Path, target: IO[bytes]) -> tuple[dict[str, Any], str]:
    """The tar of ``labels.csv`` and every checkpoint the manifest lists; returns
    ``zoo.json`` and the task."""
    info, task, text, files = labels_csv(zoo_dir)
    with tarfile.open(fileobj=target, mode="w") as tar:
        data = text.encode()
        member = tarfile.TarInfo("labels.csv")
        member.size, member.mtime = len(data), int(time.time())
        tar.addfile(member, io.BytesIO(data))
        for name in files:
            path = zoo_dir / name
            if not path.is_file():
                raise PushError(f"{path} is listed in the manifest but missing")
            tar.add(path, arcname=name, recursive=False)
    return info, task


def push_zoo(
    zoo_dir: str | Path,
    server: str,
    name: str | None = None,
    api_key: str | None = None,
    progress: Progress | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Upload the zoo folder; returns the created zoo (the server's JSON)."""
    zoo_dir = Path(zoo_dir)
    with tempfile.TemporaryFile() as archive:
        info, task = write_archive(zoo_dir, archive)
        name = name or str(info.get("name") or zoo_dir.name)
        total = archive.tell()
        archive.seek(0)
        headers = {"content-type": "application/octet-stream", "content-length": str(total)}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        try:
            response = httpx.post(
                server.rstrip("/") + "/v1/zoos/archive",
                params={"name": name, "task": task},
                content=_chunks(archive, total, progress),
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=30.0),
            )
        except httpx.HTTPError as exc:
            raise PushError(f"cannot reach {server}: {exc}") from None
    if response.status_code != 201:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise PushError(f"the server refused the zoo ({response.status_code}): {detail}")
    created: dict[str, Any] = response.json()
    return created


def _chunks(file: IO[bytes], total: int, progress: Progress | None) -> Iterator[bytes]:
    sent = 0
    while chunk := file.read(CHUNK):
        sent += len(chunk)
        yield chunk
        if progress is not None:
            progress(sent, total)


def plain_progress(stream: IO[str] | None = None, every: float = 0.1) -> Progress:
    """Progress as a line per tenth of the bytes (for logs: no terminal, no bar)."""
    stream = stream or sys.stderr  # the one current now, not at import
    shown = [-1.0]

    def report(sent: int, total: int) -> None:
        fraction = sent / total if total else 1.0
        if fraction >= 1.0 or fraction - shown[0] >= every:
            shown[0] = fraction
            print(f"uploaded {sent:,} of {total:,} bytes ({fraction:.0%})", file=stream, flush=True)

    return report


@contextmanager
def rich_or_plain_progress() -> Iterator[Progress]:
    """A progress bar on a terminal, plain periodic lines otherwise."""
    if not sys.stderr.isatty():
        yield plain_progress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,  # stdout is for the zoo id
    ) as bar:
        task = bar.add_task("upload", total=None)
        yield lambda sent, total: bar.update(task, completed=sent, total=total)
