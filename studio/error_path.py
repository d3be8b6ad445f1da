"""One path for every exception nobody caught: the log file, then the message bar.

An exception raised in a Qt slot, in a plain thread, in an asyncio callback or in a spawned
coroutine is logged with its traceback (``logs/studio.log`` under the user data folder, a
rotating file: 2 MB, 3 old files kept) and shown in the message bar as an ``Error`` value with
what to do. Engine jobs already turn their exceptions into ``Error`` values in the engine
thread (``studio.workers.engine_bridge``); they are logged the same way.

The hooks used are the interpreter's documented ones for this (``sys.excepthook``,
``threading.excepthook``, the event loop's exception handler); :func:`install` returns the
function that puts the previous hooks back.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, Signal

from tdri_engine import paths
from tdri_engine.events import Error

log = logging.getLogger("studio.errors")

LOG_FILE_BYTES = 2_000_000
LOG_FILE_BACKUPS = 3


def log_dir() -> Path:
    """Where the studio's log files are: ``<user data folder>/logs``."""
    return paths.tdri_home() / "logs"


def setup_logging() -> Path | None:
    """Warnings to stderr, everything from INFO up to ``logs/studio.log`` (rotating).

    Called again (another user data folder, as in tests), it replaces its own handlers.
    Returns the log file, or None when the folder cannot be written (the studio still runs).
    """
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_tdri", False)]:
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr._tdri = True  # type: ignore[attr-defined]
    root.addHandler(stderr)
    path = log_dir() / "studio.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    except OSError:
        return None  # a read-only home must not stop the studio
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    fh._tdri = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    return path


def error_from_exception(exc: BaseException, where: str = "") -> Error:
    """Anything raised turned into a value the message bar can show (``where``: " in the engine")."""
    from tdri_engine.errors import TdriError

    if isinstance(exc, TdriError):
        return Error(exc.kind, exc.message, exc.what_to_do)
    if isinstance(exc, MemoryError):
        return Error(
            "out-of-memory",
            "The computer ran out of memory during this step.",
            "Lower the image size or the number of steps in Settings, close other programs, and try again.",
        )
    name = type(exc).__name__
    if "OutOfMemory" in name:  # torch.cuda.OutOfMemoryError without importing torch here
        return Error(
            "out-of-memory",
            "The GPU ran out of memory.",
            "Lower the image size, turn on CPU offload in Settings, or close other GPU programs.",
        )
    return Error(
        "internal",
        f"Unexpected error{where}: {name}: {exc}",
        "Your work up to the last saved step is kept. Try again; if it repeats, send the log "
        "file (Help ▸ Open log folder) to the maintainers.",
    )


class _Relay(QObject):
    """Carries an Error from any thread to the GUI thread (a queued signal)."""

    error = Signal(object)


_relay: _Relay | None = None


def report(exc: BaseException, where: str, tb: TracebackType | None = None) -> None:
    """Log ``exc`` with its traceback and show it in the message bar (from any thread)."""
    log.error("Unexpected error in %s", where, exc_info=(type(exc), exc, tb or exc.__traceback__))
    if _relay is not None:
        _relay.error.emit(error_from_exception(exc))


def install(show: Callable[[Error], None]) -> Callable[[], None]:
    """Send uncaught exceptions to the log and to ``show`` (called in the GUI thread).

    Call in the GUI thread. Returns the function that restores the previous hooks.
    """
    global _relay
    relay = _Relay()
    relay.error.connect(show)
    previous = (_relay, sys.excepthook, threading.excepthook)
    _relay = relay

    def on_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous[1](kind, exc, tb)
            return
        report(exc, "the window", tb)

    def on_thread(args: Any) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        report(args.exc_value, f"thread {name}", args.exc_traceback)

    sys.excepthook = on_uncaught
    threading.excepthook = on_thread

    def restore() -> None:
        """Idempotent; hooks installed later by someone else are left in place."""
        global _relay
        if _relay is relay:
            _relay = previous[0]
            if sys.excepthook is on_uncaught:
                sys.excepthook = previous[1]
            if threading.excepthook is on_thread:
                threading.excepthook = previous[2]

    return restore


def loop_exception_handler(loop: Any, context: dict[str, Any]) -> None:
    """The asyncio loop's handler: an exception in a callback or a forgotten task."""
    exc = context.get("exception")
    if exc is None:
        log.error("Event loop: %s", context.get("message", context))
        return
    report(exc, f"the event loop ({context.get('message', '')})")
