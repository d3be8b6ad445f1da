"""The annotator's day, keys only: the real window opens as ``tdri-studio`` opens it, and from
the first key press on nothing gets the focus by hand and nothing is clicked.

Import a folder, choose, describe, tag (typed and quick chips), move between tasks, jump to a
task, zoom both images and use the loupe, reopen a finished task, replace an image, read the
message history, quit with Ctrl+Q; then the window opens again on the project and every
annotation is there. The only answers not given by keys are the system file dialogs', which
the test fills in (the platform's own dialog is not the studio's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from keys_only import ALT, CTRL, SHIFT, Keys
from PIL import Image, ImageDraw
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget

from studio.app import load_style
from studio.prefs import StudioPrefs
from studio.ui.main_window import MainWindow
from tdri_engine.records import Annotation, ImageRecord, PreferencePair, Task
from tdri_engine.store import open_project
from tdri_engine.store.positions import map_choice, shown_order


def folder_of_garments(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    colours = ["red", "navy", "green", "gold", "black", "pink", "white"]
    for i in range(n):
        im = Image.new("RGB", (96, 128), (240, 238, 232))
        ImageDraw.Draw(im).rectangle([30, 20, 66, 110], fill=colours[i % len(colours)])
        im.save(folder / f"garment_{i:02d}.png")
    return folder


def start_window(qtbot: Any, project: Path) -> MainWindow:
    """What ``tdri-studio --project DIR`` does (the engine is the scripted one: no models)."""
    from fake_engine import FakeEngine

    load_style(QApplication.instance())
    engine = FakeEngine()
    window = MainWindow(StudioPrefs.load(), engine_factory=lambda profile, settings: engine)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.project_opened, timeout=10000):
        window.spawn(window.open_initial(str(project)))
    return window


def test_an_annotator_works_through_a_folder_with_keys_only_and_finds_it_all_after_reopening(
    new_project, tmp_path, qtbot, monkeypatch
):
    project = new_project("Garments")
    folder = folder_of_garments(tmp_path / "incoming")
    replacement = tmp_path / "better.png"
    Image.new("RGB", (96, 128), (20, 200, 220)).save(replacement)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(replacement), "")))

    window = start_window(qtbot, project)
    windows = [window]
    try:
        view, model = window.annotation_view, window.annotation_model
        keys = Keys(qtbot, window)
        # the work has the focus from the start: not the tab bar
        qtbot.waitUntil(lambda: keys.focused() is view.panes[0].view, timeout=10000)

        # Load a folder (Ctrl+Shift+O): three pairs, shown at once, focus back on the images
        with qtbot.waitSignal(view.import_finished, timeout=10000) as imported:
            keys.press(Qt.Key.Key_O, CTRL | SHIFT)
        tasks = [t.id for t in imported.args[0].tasks]
        assert len(tasks) == 3 and model.current.id == tasks[0]
        assert keys.focused() is view.panes[0].view
        assert not any("Importing" in t for t in window.message_bar.texts())  # said on the button only

        # Task 1: choose, describe both images (Tab goes from one description to the other),
        # tag one by typing and one with a quick chip, save and go on
        qtbot.waitUntil(lambda: all(p.view.image is not None for p in view.panes), timeout=5000)
        keys.press(Qt.Key.Key_1)
        assert view.choice_buttons["left"].isChecked()
        keys.press(Qt.Key.Key_1, ALT)
        assert keys.focused() is view.panes[0].description
        keys.type("Red dress, knee length.")
        keys.press(Qt.Key.Key_Tab)
        assert keys.focused() is view.panes[1].description
        keys.type("Navy dress.")
        keys.press(Qt.Key.Key_T, CTRL)
        assert keys.focused() is view.tag_entry
        keys.type("navy")
        keys.press(Qt.Key.Key_Return)
        keys.press(Qt.Key.Key_Escape)  # back to the images
        assert keys.focused() is view.panes[1].view
        chip_tag = view._chip_tags[1]
        keys.press(Qt.Key.Key_F3)  # the second quick chip, on the selected (right) image
        assert view.chip_buttons[1].isChecked()
        keys.press(Qt.Key.Key_Return, CTRL)  # Save Task and next
        assert model.current.id == tasks[1]
        assert keys.focused() is view.panes[0].view

        # Task 2: zoom (both images follow), loupe, back to fit; choose right; save
        qtbot.waitUntil(lambda: all(p.view.image is not None for p in view.panes), timeout=5000)
        keys.press(Qt.Key.Key_Plus)
        assert not view.panes[0].view.fit_mode and not view.panes[1].view.fit_mode
        z0, z1 = (p.view.viewport().zoom for p in view.panes)
        assert abs(z0 - 1.25) < 1e-6 and abs(z1 - 1.25) < 1e-6
        keys.press(Qt.Key.Key_Right)  # pans both
        centres = [p.view.viewport().centre for p in view.panes]
        assert centres[0][0] > 0.55 and centres[0] == pytest.approx(centres[1])
        keys.press(Qt.Key.Key_L)
        assert view.panes[0].view.loupe_shown and view.panes[1].view.loupe_shown
        keys.press(Qt.Key.Key_L)
        keys.press(Qt.Key.Key_0)
        assert view.panes[0].view.fit_mode and view.panes[1].view.fit_mode
        keys.press(Qt.Key.Key_2)
        keys.press(Qt.Key.Key_S, CTRL)
        assert model.store.get(Task, tasks[1]).status == "done"

        # ... replace the left image of task 2 (Ctrl+R), then reopen it (Ctrl+Shift+S)
        left_index = model.index_at(0)
        old_image = model.current.images[left_index]
        with qtbot.waitSignal(model.images_changed, timeout=10000):
            keys.press(Qt.Key.Key_R, CTRL)
        new_image = model.current.images[left_index]
        assert new_image != old_image
        qtbot.waitUntil(lambda: view.panes[0].view.image is not None, timeout=5000)
        assert view.panes[0].view.image.pixelColor(10, 10).getRgb()[:3] == (20, 200, 220)
        keys.press(Qt.Key.Key_S, CTRL | SHIFT)
        assert model.store.get(Task, tasks[1]).status == "todo"
        keys.press(Qt.Key.Key_S, CTRL)  # and done again
        keys.press(Qt.Key.Key_Right, ALT)  # next task

        # Task 3: both bad, save; then jump back to task 1 (the number box lets go after)
        assert model.current.id == tasks[2]
        keys.press(Qt.Key.Key_4)
        keys.press(Qt.Key.Key_S, CTRL)
        keys.press(Qt.Key.Key_J, CTRL)
        assert keys.focused() is view.jump_spin.findChild(QWidget) or keys.focused() is view.jump_spin
        keys.type("1")
        keys.press(Qt.Key.Key_Return)
        assert model.current.id == tasks[0]
        assert keys.focused() is view.panes[0].view
        keys.press(Qt.Key.Key_S, CTRL | SHIFT)  # reopen the finished task 1
        assert model.store.get(Task, tasks[0]).status == "todo"
        assert view.progress_label.text().startswith("2 of 3 done")

        # the message history opens by key, and Esc gives the focus back to the work
        keys.press(Qt.Key.Key_M, CTRL | SHIFT)
        dialog = window.message_bar.history_dialog
        assert dialog is not None and dialog.isVisible()
        assert any("Imported 6 image(s)" in m.text for m in window.message_bar.history)
        qtbot.waitUntil(lambda: keys.focused().window() is dialog, timeout=10000)  # it took the keys
        keys.press(Qt.Key.Key_Escape)
        assert not dialog.isVisible()
        qtbot.waitUntil(lambda: keys.focused() is view.panes[0].view, timeout=10000)

        # Ctrl+Q quits; everything is on disk
        keys.press(Qt.Key.Key_Q, CTRL)
        assert not window.isVisible()
        store = open_project(project, read_only=True)
        try:
            saved = {t.id: t for t in store.all(Task)}
            anns = {a.task_id: a for a in store.all(Annotation)}
            prefs = {p.task_id: p for p in store.all(PreferencePair)}
            t1, t2, t3 = (saved[t] for t in tasks)
            assert [t1.status, t2.status, t3.status] == ["todo", "done", "done"]
            shown1 = [t1.images[i] for i in shown_order(t1)]
            assert [anns[t1.id].descriptions[i] for i in shown1] == ["Red dress, knee length.", "Navy dress."]
            assert anns[t1.id].tags[shown1[1]] == ["navy", chip_tag]
            assert prefs[t1.id].winner == shown1[0]  # "1": the image shown on the left
            assert anns[t2.id].choice == map_choice("right", shown_order(t2))
            assert prefs[t2.id].winner == t2.images[shown_order(t2)[1]]
            assert new_image in t2.images and old_image not in t2.images
            assert store.get(ImageRecord, new_image).width == 96
            assert anns[t3.id].choice == "both_bad"
        finally:
            store.close()

        # reopen: the window shows the work where it was, focus on the images again
        again = start_window(qtbot, project)
        windows.append(again)
        view2, model2 = again.annotation_view, again.annotation_model
        keys2 = Keys(qtbot, again)
        qtbot.waitUntil(lambda: keys2.focused() is view2.panes[0].view, timeout=10000)
        assert view2.progress_label.text().startswith("2 of 3 done")
        keys2.press(Qt.Key.Key_L, CTRL)  # Load Last: task 1, edited last
        assert model2.current.id == tasks[0]
        qtbot.waitUntil(lambda: view2.panes[1].description.toPlainText() == "Navy dress.", timeout=10000)
        assert view2.choice_buttons["left"].isChecked()
        assert view2.panes[1].tags_label.text() == f"#navy  #{chip_tag}"
        keys2.press(Qt.Key.Key_Right, ALT)
        assert model2.current.id == tasks[1] and view2.choice_buttons["right"].isChecked()
        keys2.press(Qt.Key.Key_2, CTRL)  # the other view, and back: the focus follows
        keys2.press(Qt.Key.Key_1, CTRL)
        assert keys2.focused() is view2.panes[0].view
        keys2.press(Qt.Key.Key_Q, CTRL)
        assert not again.isVisible()
    finally:
        for w in windows:
            w.close()
            w.deleteLater()
