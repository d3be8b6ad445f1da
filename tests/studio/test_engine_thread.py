"""The engine thread: jobs move through explicit states, errors become values, the thread lives on."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage

from studio.ui.image_view import ImageView
from studio.workers.engine_bridge import EngineBridge, JobFailed
from studio.workers.jobs import JobState
from tdri_engine.errors import OutOfMemory
from tdri_engine.events import Progress


def test_jobs_run_in_order_off_the_gui_thread_and_every_failure_becomes_an_error_value(qtbot, run):
    made_in: list[int] = []

    def factory(spec):
        made_in.append(threading.get_ident())
        return "the engine"

    bridge = EngineBridge(factory)
    bridge.start()
    try:
        states: list[tuple[str, str]] = []
        bridge.queue.job_changed.connect(lambda j: states.append((j.label, j.state.value)))

        def slow(ctx):
            for i in range(1, 6):
                ctx.check_cancelled()
                ctx.emit(Progress("generate", i, 5))
                time.sleep(0.01)
            return (ctx.engine, threading.get_ident())

        def oom(ctx):
            raise OutOfMemory("The GPU ran out of memory at 1024×1024.", "Lower the size in Settings.")

        def exits(ctx):
            raise SystemExit(3)  # even this must not take the thread down

        first = bridge.submit("round", "first", slow)
        second = bridge.submit("round", "second", oom)
        third = bridge.submit("round", "third", exits)
        queued = bridge.submit("round", "never runs", slow)
        bridge.queue.cancel(queued)
        last = bridge.run("round", "last", slow)
        engine, tid = run(last)

        assert engine == "the engine" and tid != threading.get_ident() and made_in == [tid]
        assert first.state is JobState.FINISHED and first.step == 5 and first.total == 5
        assert second.state is JobState.FAILED
        assert (second.error.kind, second.error.what_to_do) == (
            "out-of-memory",
            "Lower the size in Settings.",
        )
        assert third.state is JobState.FAILED and third.error.kind == "internal"
        assert queued.state is JobState.CANCELLED and queued.started_at is None
        order = list(dict.fromkeys(label for label, state in states if state == "running"))
        assert order == ["first", "second", "third", "last"]

        try:
            run(bridge.run("round", "boom", lambda ctx: 1 / 0))
        except JobFailed as exc:
            assert "ZeroDivisionError" in exc.error.message and exc.error.what_to_do
        else:
            raise AssertionError("the failure did not reach the awaiting coroutine")
    finally:
        assert bridge.shutdown(5000)


def test_image_view_fits_zooms_under_the_cursor_pans_and_explains_an_empty_panel(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    assert not view.fit_mode or view.image is None
    view.set_image(None, "Image missing: a.png")
    assert view.message == "Image missing: a.png" and "Image missing: a.png" in view.toolTip()

    img = QImage(200, 100, QImage.Format.Format_RGB32)
    img.fill(QColor("red"))
    view.set_image(img)
    assert view.fit_mode and abs(view.current_zoom() - 2.0) < 1e-6  # 200×100 into 400×300
    rect = view.image_rect()
    assert (rect.width(), rect.height()) == (400, 200)

    anchor = QPointF(100, 150)
    before = (anchor.x() - rect.x()) / view.current_zoom()
    view.zoom_by(2.0, anchor)
    assert not view.fit_mode and abs(view.current_zoom() - 4.0) < 1e-6
    after = view.image_rect()
    assert abs((anchor.x() - after.x()) / view.current_zoom() - before) < 1e-6  # same pixel under the cursor

    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=anchor.toPoint())
    qtbot.mouseMove(view, (anchor + QPointF(30, 10)).toPoint())
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=(anchor + QPointF(30, 10)).toPoint())
    moved = view.image_rect()
    assert (round(moved.x() - after.x()), round(moved.y() - after.y())) == (30, 10)

    qtbot.keyClick(view, Qt.Key.Key_0)
    assert view.fit_mode
    view.set_overlay(img)
    view.set_overlay_visible(True)
    assert view.overlay_shown
