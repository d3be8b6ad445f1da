"""The annotator: imports a folder, labels three pairs by keyboard, quits, reopens, finds it all."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from tdri_engine.records import Annotation, PreferencePair, Task
from tdri_engine.store import open_project
from tdri_engine.store.positions import map_choice, shown_order


def make_folder(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    colours = ["red", "navy", "green", "gold", "black", "pink"]
    for i in range(n):
        im = Image.new("RGB", (96, 128), (240, 238, 232))
        ImageDraw.Draw(im).rectangle([30, 20, 66, 110], fill=colours[i % len(colours)])
        im.save(folder / f"garment_{i:02d}.png")
    return folder


def key(qtbot, k, mod=Qt.KeyboardModifier.NoModifier):
    target = QApplication.focusWidget()
    assert target is not None, "nothing has the keyboard focus"
    qtbot.keyClick(target, k, mod)


def type_text(qtbot, text: str) -> None:
    qtbot.keyClicks(QApplication.focusWidget(), text)


ALT = Qt.KeyboardModifier.AltModifier
CTRL = Qt.KeyboardModifier.ControlModifier

LABELS = [
    # left description, left tag, right description, right tag, choice key, choice value
    ("A red dress, knee length.", "red", "A navy dress with short sleeves.", "navy", Qt.Key.Key_1, "left"),
    ("Green skirt, pleated.", "pleated", "Gold skirt, straight cut.", "gold & shiny", Qt.Key.Key_2, "right"),
    ("Black coat <belted>.", "black", "Pink coat, oversized.", "oversized", Qt.Key.Key_3, "tie"),
]


def test_annotator_imports_a_folder_labels_three_pairs_by_keyboard_and_finds_them_after_reopening(
    studio, new_project, tmp_path, qtbot, monkeypatch
):
    project = new_project("Garments")
    folder = make_folder(tmp_path / "incoming")
    window = studio(project)
    window.activateWindow()
    qtbot.waitActive(window)
    view = window.annotation_view
    model = window.annotation_model

    # Load Image ▸ folder, by keyboard (the folder dialog answers with our folder)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    view.panes[0].view.setFocus()
    with qtbot.waitSignal(view.import_finished, timeout=10000) as imported:
        key(qtbot, Qt.Key.Key_O, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert len(imported.args[0].tasks) == 3
    assert view.progress_label.text() == "0 of 3 done"
    assert model.current.id == imported.args[0].tasks[0].id

    for left, ltag, right, rtag, choice_key, choice in LABELS:
        task_id = model.current.id
        qtbot.waitUntil(lambda: view.panes[0].view.image is not None and view.panes[1].view.image is not None)
        key(qtbot, Qt.Key.Key_1, ALT)  # describe the left image
        assert QApplication.focusWidget() is view.panes[0].description
        type_text(qtbot, left)
        key(qtbot, Qt.Key.Key_T, CTRL)  # tag it
        assert QApplication.focusWidget() is view.tag_entry
        type_text(qtbot, ltag)
        key(qtbot, Qt.Key.Key_Return)
        key(qtbot, Qt.Key.Key_2, ALT)  # the right image
        type_text(qtbot, right)
        key(qtbot, Qt.Key.Key_T, CTRL)
        type_text(qtbot, rtag)
        key(qtbot, Qt.Key.Key_Return)
        key(qtbot, Qt.Key.Key_Escape)  # leave the text box: number keys choose
        key(qtbot, choice_key)
        assert view.choice_buttons[choice].isChecked()
        key(qtbot, Qt.Key.Key_Return, CTRL)  # Save Task and go to the next one
        assert model.store.get(Task, task_id).status == "done"

    assert view.progress_label.text() == "3 of 3 done"
    assert "saved" in view.saved_label.text().lower()
    # the new tag "gold & shiny" joined the project's vocabulary, and the snippet escapes text
    assert "gold & shiny" in model.vocabulary.all_tags()
    model.go_to(imported.args[0].tasks[2].id)
    qtbot.waitUntil(lambda: "&lt;belted&gt;" in view.html_edit.toPlainText(), timeout=3000)

    # quit, reopen: everything is there, on disk and on screen
    window.close()
    store = open_project(project, read_only=True)
    anns = {a.task_id: a for a in store.all(Annotation)}
    tasks = store.all(Task)
    prefs = {p.task_id: p for p in store.all(PreferencePair)}
    store.close()
    assert [t.status for t in tasks] == ["done", "done", "done"]
    for task, (left, ltag, right, rtag, _k, choice) in zip(tasks, LABELS, strict=True):
        ann = anns[task.id]
        # pairs are shown in a random order per task: what was typed on the left belongs to
        # the image shown on the left, and the choice is stored in the task's own order
        shown = [task.images[i] for i in shown_order(task)]
        assert [ann.descriptions[i] for i in shown] == [left, right]
        assert [ann.tags[i] for i in shown] == [[ltag], [rtag]]
        assert ann.choice == map_choice(choice, shown_order(task))
        assert prefs[task.id].choice == ann.choice and prefs[task.id].source == "annotation"

    again = studio(project)
    again.activateWindow()
    qtbot.waitActive(again)
    view2 = again.annotation_view
    assert view2.progress_label.text() == "3 of 3 done"
    again.annotation_model.go_to(tasks[1].id)
    qtbot.waitUntil(
        lambda: view2.panes[1].description.toPlainText() == "Gold skirt, straight cut.", timeout=3000
    )
    assert view2.choice_buttons["right"].isChecked()
    assert view2.panes[1].tags_label.text() == "#gold & shiny"
    # Load Last goes to the last task worked on
    again.annotation_model.go_to(tasks[0].id)
    view2.panes[0].view.setFocus()
    key(qtbot, Qt.Key.Key_L, CTRL)
    assert again.annotation_model.current.id == tasks[2].id
