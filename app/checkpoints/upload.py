"""Receiving an upload body into a temp blob, with the size limit enforced while streaming.

Accepts ``multipart/form-data`` (field ``file``) or a raw body
(``application/octet-stream``). Nothing is ever held whole in memory, and the temp file is
removed on every failure path.

A ``Content-Encoding`` other than ``identity`` is refused (415) before a byte is read:
decoding would let a small compressed body grow past the size limit (a zip bomb), and
checkpoints barely compress anyway. File names are limited to ``MAX_FILENAME`` characters
(422 past that, never silently cut).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import Query
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.blobs import BlobStore, BlobTooLarge, TempBlob
from app.problems import ProblemError

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
COPY_CHUNK = 1024 * 1024
MAX_FILENAME = 255  # characters of a file name, as most file systems allow
#: the ``?filename=`` of a raw upload (checkpoints and datasets alike)
FilenameQuery = Annotated[
    str | None, Query(max_length=MAX_FILENAME, description="name to record (raw uploads)")
]
CONTENT_ENCODING_REFUSED = (
    "uploads are not decoded: send the file's bytes as they are, without Content-Encoding "
    "(a compressed body could expand past the size limit, and checkpoints barely compress)"
)


async def receive_upload(
    request: Request, blobs: BlobStore, max_bytes: int
) -> tuple[TempBlob, str | None]:
    """Stream the body into a temp blob; returns it with the multipart filename, if any."""
    check_content_encoding(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = media_type == "multipart/form-data"
    if not multipart and media_type not in ("", "application/octet-stream"):
        raise ProblemError(
            415,
            f"unsupported content type {media_type!r}; send multipart/form-data with a 'file' "
            "field or an application/octet-stream body",
            slug="unsupported-media-type",
        )
    declared = request.headers.get("content-length", "")
    allowed = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    if declared.isdigit() and int(declared) > allowed:
        raise _too_large(max_bytes)
    temp = blobs.temp(max_bytes)
    try:
        if multipart:
            filename = await _receive_multipart(request, temp, allowed)
        else:
            filename = None
            async for chunk in request.stream():
                temp.write(chunk)
    except BlobTooLarge:
        temp.discard()
        raise _too_large(max_bytes) from None
    except BaseException:
        temp.discard()
        raise
    return temp, filename


def check_content_encoding(request: Request) -> None:
    """415 for a body with any ``Content-Encoding`` but ``identity``."""
    encodings = [
        e.strip().lower()
        for value in request.headers.getlist("content-encoding")
        for e in value.split(",")
        if e.strip()
    ]
    refused = [e for e in encodings if e != "identity"]
    if refused:
        raise ProblemError(
            415,
            f"Content-Encoding {', '.join(refused)} is not accepted; {CONTENT_ENCODING_REFUSED}",
            slug="unsupported-content-encoding",
        )


def check_filename_length(name: str | None, where: str = "filename") -> None:
    if name is not None and len(name) > MAX_FILENAME:
        raise ProblemError(
            422,
            f"{where} is too long: {len(name)} characters, the limit is {MAX_FILENAME}",
            slug="validation",
        )


async def _receive_multipart(request: Request, temp: TempBlob, allowed: int) -> str | None:
    parser = MultiPartParser(
        request.headers, _capped(request.stream(), allowed), max_files=1, max_fields=16
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "header size" in str(exc.__cause__ or ""):  # python-multipart's cap on one line
            raise ProblemError(
                422,
                "a multipart part header is too long: the file name is too long (the limit "
                f"is {MAX_FILENAME} characters)",
                slug="validation",
            ) from None
        raise ProblemError(
            400, f"malformed multipart body: {exc.message}", slug="bad-multipart"
        ) from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ProblemError(
                422, "multipart body has no file field named 'file'", slug="missing-file"
            )
        check_filename_length(part.filename, "the file part's filename")
        while chunk := await part.read(COPY_CHUNK):
            temp.write(chunk)
        return part.filename
    finally:
        await form.close()


async def _capped(stream: AsyncIterator[bytes], allowed: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > allowed:
            raise BlobTooLarge(f"more than {allowed} bytes")
        yield chunk


def clean_filename(name: str | None) -> str | None:
    """Keep only a base name (no folders, no control characters), at most 255 characters."""
    if not name:
        return None
    printable = "".join(ch for ch in name if ord(ch) >= 32 and ord(ch) != 127)
    base = PurePosixPath(printable.replace("\\", "/")).name.strip()
    return base[:MAX_FILENAME] or None


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413, f"upload exceeds the limit of {max_bytes} bytes", slug="payload-too-large"
    )

