"""User text is shown as typed: a task, a file or a project named like HTML is not rendered.

The effect is measured, not the setting: a label that rendered ``"><img src=x>`` as HTML would
be a few pixels wide (a broken image), while the literal text is as wide as its characters.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel

from tdri_engine.records import Task
from tdri_engine.store import open_project

HOSTILE = '"><img src=x><b>bold</b>'  # a task name
FILE = '"><img src=x>'  # a file name (no "/" in a file name)


def _literal_width(label: QLabel, text: str) -> int:
    return QFontMetrics(label.font()).horizontalAdvance(text)


def test_a_task_and_a_file_named_like_html_are_shown_as_typed(studio, new_project, tmp_path: Path, qtbot):
    project = new_project("Plain")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (200, 40 * i, 40)).save(folder / f"{FILE}{i}.png")
    with open_project(project) as store:
        result = store.import_images(sorted(folder.iterdir()), pair=True)
        (task,) = result.tasks
        store.put(store.get(Task, task.id).replace(name=HOSTILE))

    window = studio(project)
    view = window.annotation_view
    qtbot.waitUntil(lambda: window.annotation_model.current is not None)
    qtbot.waitUntil(lambda: HOSTILE in view.task_title.text())

    showing = [lab for lab in window.findChildren(QLabel) if FILE in lab.text()]
    assert view.task_title in showing and len(showing) >= 2, [lab.objectName() for lab in showing]
    for lab in showing:
        lab.setWordWrap(False)  # a wrapped label's size hint guesses a width: measure on one line
        wide = _literal_width(lab, FILE)
        assert lab.sizeHint().width() >= 0.9 * wide, (lab.objectName(), lab.sizeHint().width(), wide)

    # the measurement tells the two apart: the same text in Qt's default mode renders as HTML
    auto = QLabel(HOSTILE)
    assert auto.sizeHint().width() < 0.6 * _literal_width(auto, HOSTILE)
