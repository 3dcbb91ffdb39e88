"""Reading an uploaded zoo archive (.zip, .tar, .tar.gz/.bz2/.xz) without trusting it.

Every entry is checked before anything is unpacked: at most ``max_members`` entries, plain
files and folders only (no links, devices or FIFOs), relative names without ``..``,
declared sizes within ``max_unpacked_bytes`` and ``max_ratio`` times the archive's size.
Declared sizes can lie (zip), so the bytes actually unpacked are counted against the same
caps while copying. Members are copied in chunks, never held whole in memory.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 1024 * 1024
SMALL = 1024 * 1024  # members below this are not held to the ratio (a CSV compresses well)


class ArchiveError(Exception):
    """The archive, or one member (``member``), breaks a rule; ``status`` is the HTTP one."""

    def __init__(self, detail: str, member: str | None = None, status: int = 422) -> None:
        super().__init__(detail)
        self.detail = f"member {member!r}: {detail}" if member is not None else detail
        self.member = member
        self.status = status


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_unpacked_bytes: int
    max_ratio: float
    max_member_bytes: int


class Archive:
    """An opened, checked archive: ``files`` maps each regular file's normalised name to
    its declared size; ``copy`` streams one out."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.archive_bytes = max(path.stat().st_size, 1)
        self.files: dict[str, int] = {}
        self.unpacked = 0
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._entries: dict[str, object] = {}
        self._count = 0
        try:
            if zipfile.is_zipfile(path):
                self._zip = zipfile.ZipFile(path)
                self._check_zip(self._zip)
            elif tarfile.is_tarfile(path):
                self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed in close()
                self._check_tar(self._tar)
            else:
                raise ArchiveError("the body is not a .zip or .tar (.gz, .bz2, .xz) archive")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            self.close()
            raise ArchiveError(f"the archive cannot be read: {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()

    def _add(self, raw_name: str, size: int, kind: str) -> None:
        self._count += 1
        if self._count > self.limits.max_members:
            raise ArchiveError(
                f"the archive has more than {self.limits.max_members} entries", status=413
            )
        name = safe_name(raw_name)
        if kind == "dir":
            self._entries.setdefault(name + "/", None)
            return
        if kind != "file":
            raise ArchiveError(f"is a {kind}; only plain files and folders are accepted", raw_name)
        if name in self.files:
            raise ArchiveError("appears twice in the archive", raw_name)
        if size > self.limits.max_member_bytes:
            raise ArchiveError(
                f"unpacks to {size} bytes, over the limit of {self.limits.max_member_bytes}",
                raw_name, status=413,
            )
        self._entries[name] = None
        self.files[name] = size
        declared = sum(self.files.values())
        if declared > self.limits.max_unpacked_bytes:
            raise ArchiveError(
                f"the archive unpacks to more than {self.limits.max_unpacked_bytes} bytes",
                status=413,
            )
        if declared > SMALL and declared > self.limits.max_ratio * self.archive_bytes:
            raise ArchiveError(
                f"the archive unpacks to more than {self.limits.max_ratio:g} times its size "
                "(a compression bomb?)",
                status=413,
            )

    def _check_zip(self, archive: zipfile.ZipFile) -> None:
        for info in archive.infolist():
            file_type = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix mode recorded
            if file_type == stat.S_IFLNK:
                kind = "symbolic link"
            elif info.is_dir():
                kind = "dir"
            elif file_type not in (0, stat.S_IFREG):
                kind = "special file"
            else:
                kind = "file"
            if info.flag_bits & 0x1:
                raise ArchiveError("is encrypted", info.filename)
            self._add(info.filename, info.file_size, kind)
            self._entries[safe_name(info.filename) + ("/" if kind == "dir" else "")] = info
            if (
                kind == "file"
                and info.file_size > SMALL
                and info.file_size > self.limits.max_ratio * max(info.compress_size, 1)
            ):
                raise ArchiveError(
                    f"unpacks to more than {self.limits.max_ratio:g} times its compressed "
                    "size (a compression bomb?)",
                    info.filename, status=413,
                )

    def _check_tar(self, archive: tarfile.TarFile) -> None:
        for info in archive:  # one header at a time: a bomb is refused before it unpacks
            if info.issym() or info.islnk():
                kind = "link"
            elif info.isdir():
                kind = "dir"
            elif info.isfile():
                kind = "file"
            else:
                kind = "special file"
            self._add(info.name, info.size, kind)
            if kind == "file":
                self._entries[safe_name(info.name)] = info

    @contextmanager
    def _open(self, name: str) -> Iterator[IO[bytes]]:
        entry = self._entries[name]
        if self._zip is not None:
            assert isinstance(entry, zipfile.ZipInfo)
            with self._zip.open(entry) as stream:
                yield stream
        else:
            assert self._tar is not None and isinstance(entry, tarfile.TarInfo)
            stream = self._tar.extractfile(entry)
            if stream is None:
                raise ArchiveError("cannot be read as a file", name)
            with stream:
                yield stream

    def copy(self, name: str, write: Callable[[bytes], None]) -> int:
        """Stream member ``name`` to ``write``; the bytes really unpacked count against the
        caps (a member longer than it declared is refused)."""
        declared = self.files[name]
        copied = 0
        try:
            with self._open(name) as stream:
                while chunk := stream.read(CHUNK):
                    copied += len(chunk)
                    self.unpacked += len(chunk)
                    if copied > declared or self.unpacked > self.limits.max_unpacked_bytes:
                        raise ArchiveError(
                            "unpacks to more bytes than the archive declares", name, status=413
                        )
                    if self.unpacked > max(SMALL, self.limits.max_ratio * self.archive_bytes):
                        raise ArchiveError(
                            f"unpacks past {self.limits.max_ratio:g} times the archive's size "
                            "(a compression bomb?)",
                            name, status=413,
                        )
                    write(chunk)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"cannot be unpacked: {exc}", name) from None
        return copied

    def read_text(self, name: str, max_bytes: int) -> str:
        if self.files[name] > max_bytes:
            raise ArchiveError(f"is larger than {max_bytes} bytes", name, status=413)
        parts: list[bytes] = []
        self.copy(name, parts.append)
        try:
            return b"".join(parts).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ArchiveError("is not UTF-8 text", name) from None


def safe_name(raw: str) -> str:
    """The member's name as a relative POSIX path; traversal and absolute names refused."""
    if not raw or any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise ArchiveError("has an empty name or control characters in its name", raw)
    if "\\" in raw:
        raise ArchiveError("has a backslash in its name", raw)
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ArchiveError("has an absolute name", raw)
    parts = [part for part in PurePosixPath(raw).parts if part != "."]
    if not parts:
        raise ArchiveError("has an empty name", raw)
    if ".." in parts:
        raise ArchiveError("has '..' in its name (path traversal)", raw)
    return "/".join(parts)
