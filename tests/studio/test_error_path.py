"""Exceptions nobody caught, wherever they happen, reach the message bar and the log file."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QTimer

from studio import error_path


def _texts(window) -> str:
    return "\n".join(window.message_bar.texts())


@pytest.mark.qt_no_exception_capture
def test_exceptions_in_a_slot_a_thread_and_a_task_reach_the_message_bar_and_the_log(studio, qtbot):
    log_file = error_path.setup_logging()
    assert log_file is not None and log_file.parent == error_path.log_dir()
    window = studio(None)

    def slot() -> None:
        raise ZeroDivisionError("slot went wrong")

    QTimer.singleShot(0, slot)
    qtbot.waitUntil(lambda: "ZeroDivisionError: slot went wrong" in _texts(window))

    def work() -> None:
        raise KeyError("thread went wrong")

    t = threading.Thread(target=work, name="tdri-test-thread")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: "thread went wrong" in _texts(window))

    async def task() -> None:
        raise ValueError("task went wrong")

    window.spawn(task())
    qtbot.waitUntil(lambda: "task went wrong" in _texts(window))
    assert "Help ▸ Open log folder" in _texts(window)

    logged = log_file.read_text(encoding="utf-8")
    for said in ("slot went wrong", "thread went wrong", "task went wrong"):
        assert said in logged
    assert "Traceback" in logged and "thread tdri-test-thread" in logged

    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert "Open &log folder" in [a.text() for a in help_menu.actions()]


def test_closing_the_window_puts_the_previous_hooks_back(studio):
    import sys

    before = (sys.excepthook, threading.excepthook)
    window = studio(None)
    assert sys.excepthook is not before[0]
    window.close()
    assert (sys.excepthook, threading.excepthook) == before
