"""Content-addressed file store: ``<root>/ab/cdef…`` named by the sha256 of the bytes.

Files are written to a temporary name in the store's own folder (same filesystem) while
hashing, then renamed into place atomically, so a reader never sees a partial blob and
identical bytes are kept once. When a file may be placed or removed is decided in the
database (``app.blob_refs``); this module only moves bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"


class BlobTooLarge(Exception):
    """More bytes arrived than the caller allowed."""


class TempBlob:
    """A file being written: counts and hashes bytes, refuses to grow past ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.path = root / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._file = open(self.path, "xb")  # noqa: SIM115 - closed in finish/discard
        # held until the file is renamed or removed: the start-up sweep skips locked files
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise BlobTooLarge(f"more than {self.max_bytes} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def close(self) -> str:
        """Flush to disk and return the sha256 hex digest (the file stays open, and
        locked, until ``discard``)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def temp(self, max_bytes: int | None = None) -> TempBlob:
        return TempBlob(self.root, max_bytes)

    def commit(self, temp: TempBlob) -> str:
        """Put a finished temp file's bytes in place under their hash; returns the hash.
        The temp file stays (a hard link is moved in), so a caller may place it again."""
        sha256 = temp.close()
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        staged = self.root / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.link(temp.path, staged)
        except OSError:  # a file system without hard links
            shutil.copyfile(temp.path, staged)
        os.replace(staged, target)  # same bytes already there: replacing is harmless
        return sha256

    def put_bytes(self, data: bytes) -> str:
        temp = self.temp()
        try:
            temp.write(data)
            return self.commit(temp)
        finally:
            temp.discard()

    def delete(self, sha256: str) -> None:
        """Remove the file (its folder stays: another blob may be moving into it now)."""
        self.path(sha256).unlink(missing_ok=True)

    def hashes(self) -> list[str]:
        """The sha256 of every placed file (temp files are not blobs)."""
        return sorted(
            p.parent.name + p.name
            for p in self.root.glob("??/*")
            if p.is_file() and len(p.parent.name + p.name) == 64
        )

    def sweep_temp_files(self) -> int:
        """Remove the temp files of writes cut short by a killed process; returns how many.
        A live writer holds its file's lock (``TempBlob``), so another process still
        writing on the same store keeps its files."""
        removed = 0
        for path in self.root.glob(f"{TEMP_PREFIX}*"):
            try:
                with open(path, "rb") as file:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink()
                    removed += 1
            except (BlockingIOError, FileNotFoundError):  # in use, or finished meanwhile
                continue
            except OSError as exc:
                log.warning("could not remove the partial write %s: %s", path, exc)
        return removed

    def files(self) -> list[Path]:
        """Every file under the root, temp files included (for checks and tests)."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())
