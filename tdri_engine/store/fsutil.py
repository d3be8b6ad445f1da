"""Small filesystem primitives the store is built on: atomic writes, directory fsync, errors.

Every write goes through ``os.open``/``os.write`` so that a disk-full or read-only failure
surfaces as an ``OSError`` we can turn into a :class:`StorageError` that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ProjectError, StorageError

_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: OSError, action: str, path: Path | str | None = None) -> StorageError:
    """Turn an ``OSError`` into a StorageError with a plain message and what to do.

    ``action`` completes "Could not ..." (e.g. "save the annotation").
    """
    where = f" ({path})" if path else ""
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return StorageError(
            f"Could not {action}: the disk is full{where}.",
            "Free some disk space, then save again. Nothing already saved was lost.",
            kind="disk-full",
        )
    if exc.errno in _READ_ONLY_ERRNOS:
        return StorageError(
            f"Could not {action}: the project folder is read-only{where}.",
            "Check the folder's permissions or copy the project to a writable folder; "
            "you can still open it read-only. Nothing already saved was lost.",
            kind="read-only",
        )
    return StorageError(
        f"Could not {action}: {exc.strerror or exc}{where}.",
        "Check that the disk is connected and working, then try again. Nothing already saved was lost.",
    )


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be partial near a full disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - a zero-length write means the device refuses more
            raise OSError(errno.ENOSPC, "No space left on device")
        view = view[n:]


def fsync_fd(fd: int) -> None:
    # fdatasync skips the inode timestamps we do not need; the size change is still flushed.
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS / Windows
        os.fsync(fd)


def fsync_dir(folder: Path) -> None:
    """Make renames and new files in ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` and fsync it (no rename)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        fsync_fd(fd)
    finally:
        os.close(fd)


def read_or_why(path: Path) -> tuple[bytes | None, str]:
    """A file's bytes and "", or None and why not, in words that complete "<file> ..." in a
    message ("is missing", "cannot be read (Permission denied)")."""
    try:
        return path.read_bytes(), ""
    except FileNotFoundError:
        return None, "is missing"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"


@contextlib.contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temporary name in ``path``'s folder, ``.<name>.<8 hex>.tmp`` (the pattern
    ``open_project`` sweeps after a crash); the file is removed when the block fails."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: Path, data: bytes, *, keep_backup: bool = False) -> None:
    """Replace ``path`` with ``data`` so that it is never seen half-written.

    Temporary file in the same folder, fsync, optional hard link of the old file to
    ``<name>.bak``, ``os.replace``, fsync of the folder. Raises ``OSError``; on failure the
    old file is untouched and the temporary file is removed.
    """
    with temp_beside(path) as tmp:
        write_file_synced(tmp, data)
        if keep_backup and path.exists():
            link_or_copy(path, path.with_name(path.name + ".bak"))
        os.replace(tmp, path)
    fsync_dir(path.parent)


def staging_dir(folder: Path) -> Path:
    """``<folder>.tmp``, emptied and made: where a whole folder is written before
    :func:`replace_dir` puts it in ``folder``'s place."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def previous_dir(folder: Path) -> Path:
    """``<folder>.old``: where :func:`replace_dir` keeps the old folder between its two renames
    (a process killed there leaves it, and a reader looks there when ``folder`` is missing)."""
    return folder.with_name(folder.name + ".old")


def replace_dir(staged: Path, folder: Path) -> None:
    """Put the folder ``staged`` in ``folder``'s place: the old one is renamed aside to
    :func:`previous_dir` first and removed after, so at every moment one whole folder exists."""
    old = previous_dir(folder)
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    os.replace(staged, folder)
    if old.exists():
        shutil.rmtree(old)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a durable copy of ``src``, replacing ``dst`` atomically.

    A hard link costs nothing whatever the size; filesystems without links get a copy.
    """
    with temp_beside(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EROFS):
                raise
            write_file_synced(tmp, src.read_bytes())
        os.replace(tmp, dst)


def probe_writable(folder: Path) -> OSError | None:
    """Try to create (and remove) a file in ``folder``; return the error if that fails.

    Permission bits do not tell the truth for root, network shares or read-only mounts:
    only an actual create does.
    """
    probe = folder / f".tdri-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        return exc
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def timestamp() -> str:
    """File-name-safe local time, e.g. ``20250114-093012``."""
    return time.strftime("%Y%m%d-%H%M%S")


def unique_path(path: Path) -> Path:
    """``path`` itself when free, else ``path-2``, ``path-3`` ... (never overwrite evidence)."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.name}-{n}")
        if not candidate.exists():
            return candidate
        n += 1


def read_only_project_error(path: Path, exc: OSError) -> ProjectError:
    return ProjectError(
        f"The project folder {path} is read-only ({exc.strerror or exc}).",
        "Open it read-only to look at it, copy it to a writable folder, or fix the folder's permissions.",
        kind="project-read-only",
    )
