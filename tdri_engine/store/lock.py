"""The cross-process lock of a project: one process writes a project at a time.

``<project>/.lock`` is held with ``flock`` (``msvcrt.locking`` on Windows) for as long as the
project is open for writing; the operating system drops it when the process ends, even by
SIGKILL, so no stale lock survives a crash. The holder writes its pid into the file, for the
message another window shows.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import ProjectError
from .fsutil import read_only_project_error, storage_error

LOCK_FILE = ".lock"


class ProjectLock:
    """Exclusive lock on ``<project>/.lock``; released when the process ends, even by SIGKILL."""

    def __init__(self, folder: Path):
        self.fd = -1
        path = folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise read_only_project_error(folder, exc) from exc
        try:
            lock_fd(fd)
        except OSError as exc:
            holder = ""
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, getattr(errno, "EWOULDBLOCK", errno.EAGAIN)):
                who = f" (process {holder})" if holder.isdigit() else ""
                raise ProjectError(
                    f"The project {folder.name} is open in another window{who}.",
                    "Switch to that window, or close the project there first. "
                    "You can also open it read-only here.",
                    kind="project-locked",
                ) from exc
            raise storage_error(exc, "lock the project", folder) from exc
        self.fd = fd
        try:  # the holder's pid, for the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = -1


def lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows-only names
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
