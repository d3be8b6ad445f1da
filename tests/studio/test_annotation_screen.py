"""The annotation screen for all-day work: messages that do not move the images, every control
on the Tab path, the pace in tasks per hour, the last folder remembered, long names whole."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFileDialog,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)

from studio.ui.message_bar import LEVEL_COLOURS, NOTE_TIMEOUT_MS
from tdri_engine.events import Error


def folder_of(tmp_path: Path, n: int, name: str = "imgs") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (48, 48), (i * 40 % 255, 90, 140)).save(folder / f"img_{i:02d}.png")
    return folder


def test_messages_keep_the_images_where_they_are_errors_stay_notes_fade_and_the_history_keeps_all(
    studio, new_project, tmp_path, qtbot, run
):
    window = studio(new_project())
    view, bar = window.annotation_view, window.message_bar
    run(view.import_paths(str(folder_of(tmp_path, 2))))
    qtbot.waitUntil(lambda: view.panes[0].view.image is not None, timeout=5000)
    bar.clear()
    qtbot.wait(50)
    before = (view.panes[0].view.geometry(), bar.height())

    for i in range(3):  # a bad import used to stack three banners and shrink the images
        window.show_error(Error("bad-input", f"File {i} was not imported.", "Convert it to PNG."))
    note = bar.show_info("Saved.", timeout_ms=80)
    QApplication.processEvents()
    qtbot.wait(50)
    assert (view.panes[0].view.geometry(), bar.height()) == before
    assert bar.current().title == "File 2 was not imported."  # the newest error is shown
    # the icon is painted, not a font glyph (with the default fonts "⛔" was an empty box)
    icon = bar.icon.grab().toImage()
    colours = {icon.pixelColor(x, y).name() for x in range(icon.width()) for y in range(icon.height())}
    assert LEVEL_COLOURS["error"] in colours and "#ffffff" in colours
    assert "+2 more" in bar.more_button.text()

    qtbot.waitUntil(lambda: note not in bar.messages, timeout=3000)  # the note faded...
    assert sum(m.level == "error" for m in bar.messages) == 3  # ...the errors did not
    assert NOTE_TIMEOUT_MS >= 5000

    dialog = bar.show_history()  # reading them takes them off the strip
    assert [m.title for m in bar.history][:4] == [
        "Saved.",
        "File 2 was not imported.",
        "File 1 was not imported.",
        "File 0 was not imported.",
    ]
    assert bar.current() is None and bar.label.full_text() == "No new messages"
    dialog.reject()
    window.show_error(Error("bad-input", "Another one.", ""))
    bar.dismiss_current()
    assert "Another one." not in bar.texts() and bar.history[0].title == "Another one."


def test_tab_reaches_every_control_of_the_annotation_view_from_the_left_image(
    studio, new_project, tmp_path, qtbot, run
):
    window = studio(new_project())
    window.activateWindow()
    qtbot.waitActive(window)
    view = window.annotation_view
    run(view.import_paths(str(folder_of(tmp_path, 4))))
    view.details_fold.setChecked(True)
    view.html_fold.setChecked(True)
    view.model.save_task()  # "Mark as to do" is enabled on a finished task
    view.focus_work()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.panes[0].view, timeout=3000)

    kinds = (QAbstractButton, QLineEdit, QPlainTextEdit, QComboBox, QAbstractSpinBox, QAbstractItemView)
    wanted = {
        w
        for w in view.findChildren(QWidget)
        if (isinstance(w, kinds) or w in [p.view for p in view.panes])
        and w.isVisibleTo(view)
        and w.isEnabled()
        and not isinstance(w.parent(), (QAbstractSpinBox, QComboBox, QAbstractItemView))
        and not w.objectName().startswith("qt_")
        and not (isinstance(w, QPlainTextEdit) and w.isReadOnly() and w is not view.html_edit)
    }
    visited: list[QWidget] = []
    for _ in range(3 * len(wanted)):
        w = QApplication.focusWidget()
        owner = w.parent() if isinstance(w.parent(), (QAbstractSpinBox, QComboBox)) else w
        visited.append(owner)
        qtbot.keyClick(w, Qt.Key.Key_Tab)
    missing = sorted(f"{type(w).__name__}({w.objectName()})" for w in wanted - set(visited))
    assert not missing, missing
    # the reading order the help promises
    order = [view.panes[0].view, view.panes[1].view, view.panes[0].description, view.panes[1].description]
    order.append(view.choice_buttons["left"])
    firsts = [visited.index(w) for w in order]
    assert firsts == sorted(firsts)


def test_the_pace_in_tasks_per_hour_counts_this_sessions_done_marks(studio, new_project, tmp_path, run):
    window = studio(new_project())
    view, model = window.annotation_view, window.annotation_model
    run(view.import_paths(str(folder_of(tmp_path, 8))))
    now = [1000.0]
    model.clock = lambda: now[0]
    model._session_start = 1000.0
    assert model.throughput() is None and "tasks/hour" not in view.progress_label.text()
    for _ in range(3):  # three tasks, two minutes each
        now[0] += 120
        view.save_and_next()
    assert model.throughput() == 3 * 3600 / 360  # 30 an hour
    assert view.progress_label.text() == "3 of 4 done · 30 tasks/hour"
    model.undo_stack.undo()  # an undone mark is taken back
    assert model.throughput() == 2 * 3600 / 360
    now[0] += 2 * 3600  # an idle afternoon: the last hour has no marks
    assert model.throughput() is None


def test_file_dialogs_open_in_the_folder_used_last_and_long_names_are_whole_in_the_tooltip(
    studio, new_project, tmp_path, qtbot, monkeypatch
):
    window = studio(new_project())
    view = window.annotation_view
    folder = folder_of(tmp_path, 2, name="a very long folder name " * 4)
    asked: list[str] = []

    def files(parent, title, start, filters):
        asked.append(start)
        return [str(p) for p in sorted(folder.iterdir())], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(files))
    with qtbot.waitSignal(view.import_finished, timeout=10000):
        view.load_images_dialog()
    with qtbot.waitSignal(view.import_finished, timeout=10000):
        view.load_images_dialog()
    assert asked[0] == str(Path.home()) and asked[1] == str(folder)
    assert window.prefs.__class__.load().last_image_dir == str(folder)  # kept for the next start

    name = view.model.current.name
    assert len(name) > 10 and view.task_title.toolTip().count(name) == 1
    assert name in view.task_title.text()
    row = view.task_list_model.index(view.task_list_model.row_of(view.model.current.id))
    assert name in view.task_list_model.data(row, Qt.ItemDataRole.ToolTipRole)  # the list elides


def test_no_key_of_the_annotation_view_is_taken_twice():
    """Two shortcuts on one key in one window are ambiguous to Qt: neither fires."""
    from studio import shortcuts

    def keys(where: set[str]) -> list[str]:
        return [k for s in shortcuts.SHORTCUTS.values() if s.where in where for k in s.keys]

    bound = keys({"Annotate", "Image", "Everywhere"})
    assert len(bound) == len(set(bound)), sorted(k for k in bound if bound.count(k) > 1)
