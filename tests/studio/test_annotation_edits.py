"""Annotation edits: undo and redo of every kind of edit, filters and progress, jump, copy."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tdri_engine.records import Annotation, PreferencePair, Task


def folder_of(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (32, 32), (i * 30 % 255, 80, 120)).save(folder / f"img_{i:02d}.png")
    return folder


def test_undo_and_redo_cover_typing_tags_choices_and_done_even_across_tasks(
    studio, new_project, tmp_path, qtbot, run
):
    window = studio(new_project())
    view, model = window.annotation_view, window.annotation_model
    run(view.import_paths(str(folder_of(tmp_path, 4))))
    t1, t2 = [t.id for t in model.tasks]
    left = model.current.images[model.index_at(0)]  # the image shown on the left

    view.focus_description(0)
    qtbot.keyClicks(view.panes[0].description, "blue top")
    model.toggle_tag("blue")
    model.set_choice("left")
    model.save_task()
    assert model.next_todo() and model.current.id == t2
    store = model.store
    assert store.get(Task, t1).status == "done"
    assert store.get(PreferencePair, f"ann-{t1}").choice == "left"

    # Ctrl+Z from the other task: each undo goes back to task 1 and reverts one edit
    view.panes[0].view.setFocus()

    def undo() -> None:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)

    window.activateWindow()
    qtbot.waitActive(window)
    undo()  # done -> to do
    assert model.current.id == t1 and store.get(Task, t1).status == "todo"
    undo()  # choice
    assert store.get(Annotation, t1).choice is None
    assert store.get(PreferencePair, f"ann-{t1}") is None  # the preference went with it
    assert not any(b.isChecked() for b in view.choice_buttons.values())
    undo()  # tag
    assert store.get(Annotation, t1).tags[left] == []
    view.panes[0].view.setFocus()
    undo()  # the typing, as one step
    qtbot.waitUntil(lambda: view.panes[0].description.toPlainText() == "")
    model.flush()
    assert store.get(Annotation, t1).descriptions[left] == ""

    # redo everything (Ctrl+Shift+Z works inside the description box too)
    view.panes[0].description.setFocus()
    for _ in range(4):
        qtbot.keyClick(
            view.panes[0].description,
            Qt.Key.Key_Z,
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
        )
    model.flush()
    ann = store.get(Annotation, t1)
    assert (ann.descriptions[left], ann.tags[left], ann.choice) == ("blue top", ["blue"], "left")
    assert store.get(Task, t1).status == "done"
    assert "saved" in view.saved_label.text().lower()


def test_filters_progress_jump_and_the_html_snippet(studio, new_project, tmp_path, qtbot, run):
    window = studio(new_project())
    view, model = window.annotation_view, window.annotation_model
    run(view.import_paths(str(folder_of(tmp_path, 6))))
    t1, t2, t3 = [t.id for t in model.tasks]
    model.go_to(t2)
    model.toggle_tag("denim")
    model.save_task()
    assert view.progress_label.text() == "1 of 3 done"

    view.filter_combo.setCurrentIndex(view.filter_combo.findData("done"))
    assert [t.id for t in model.visible_tasks()] == [t2]
    assert view.task_list_model.rowCount() == 1
    view.filter_combo.setCurrentIndex(view.filter_combo.findData("todo"))
    assert [t.id for t in model.visible_tasks()] == [t1, t3]
    assert model.current.id in (t1, t3)  # the shown task follows the filter
    view.filter_combo.setCurrentIndex(view.filter_combo.findData("tagged"))
    assert [t.id for t in model.visible_tasks()] == [t2]
    view.filter_combo.setCurrentIndex(view.filter_combo.findData("all"))

    view.jump_spin.setValue(3)
    view.jump()
    assert model.current.id == t3
    assert view.task_title.text().startswith("Task 3 of 3")

    model.go_to(t2)
    model.set_description(0, 'a "denim" jacket <b>bold</b>')
    model.flush()
    qtbot.waitUntil(lambda: "&lt;b&gt;bold&lt;/b&gt;" in view.html_edit.toPlainText(), timeout=3000)
    assert "<b>bold</b>" not in view.html_edit.toPlainText()
    view.copy_html()
    assert QApplication.clipboard().text() == view.html_edit.toPlainText()


def test_tag_vocabulary_is_per_project_and_removing_a_tag_keeps_it_on_images(
    studio, new_project, tmp_path, run
):
    window = studio(new_project(tag_set="fashion"))
    view, model = window.annotation_view, window.annotation_model
    assert "v-neck" in model.vocabulary.all_tags() and "dress" in model.vocabulary.all_tags()
    run(view.import_paths(str(folder_of(tmp_path, 2))))
    view.tag_entry.setText("  Ruched   Waist ")
    view._on_tag_entered()
    image = model.current.images[model.active_image]  # tags go to the selected image
    assert model.annotation().tags[image] == ["ruched waist"]
    assert "ruched waist" in model.vocabulary.all_tags()
    model.remove_from_vocabulary("ruched waist")
    assert "ruched waist" not in model.vocabulary.all_tags()
    assert model.annotation().tags[image] == ["ruched waist"]
    assert "ruched waist" not in model.store.get_meta("tag_vocabulary")["groups"].get("custom", [])
