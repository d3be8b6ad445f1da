"""What the studio promises around the views: names for screen readers and tests, every
shortcut in Help, the demo notice, projects (new, recent, locked), and a window before torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

from studio import shortcuts
from studio.ui.dialogs import load_help
from tdri_engine.store import open_project

INTERACTIVE = (
    QAbstractButton,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QComboBox,
    QAbstractSpinBox,
    QAbstractItemView,
)


def test_every_interactive_widget_has_an_object_name_and_an_accessible_name(studio, new_project, qtbot):
    window = studio(new_project())
    dlg = window.show_settings()
    qtbot.waitUntil(lambda: dlg._check_task.done(), timeout=10000)
    missing = []
    for root in (window, dlg):
        for w in root.findChildren(QWidget):
            if not isinstance(w, INTERACTIVE):
                continue
            name = w.objectName()
            if name.startswith("qt_") or not w.isVisibleTo(root) and not name:
                continue  # Qt's own parts (a spin box's line edit, a scroll bar's buttons ...)
            parent = w.parent()
            if isinstance(parent, (QAbstractSpinBox, QComboBox, QAbstractItemView)) or isinstance(
                w, QHeaderView
            ):
                continue  # parts of a composite widget
            if not name or not w.accessibleName():
                missing.append(f"{type(w).__name__}({name!r}, {getattr(w, 'text', lambda: '')()!r})")
    dlg.reject()
    assert not missing, "\n".join(missing)


def test_help_lists_every_shortcut_and_the_papers_guidelines():
    listed = load_help("shortcuts")
    for name, sc in shortcuts.SHORTCUTS.items():
        for key in sc.keys:
            assert f"<code>{key}</code>" in listed, (name, key)
    guidelines = load_help("guidelines")
    for word in ("Accuracy", "Consistency", "Clarity", "Load Image", "Save Task", "Load Last"):
        assert word in guidelines


def test_the_demo_profile_is_said_plainly(studio, new_project):
    window = studio(new_project())
    assert window.demo_banner.isVisible()
    assert "random weights" in window.demo_banner.text() and "noise" in window.demo_banner.text()


def test_new_recent_and_a_project_open_elsewhere(studio, new_project, qtbot, run, projects_dir):
    first = new_project("First")
    window = studio(first)
    store = run(window.create_project("Second try", tag_set="general"))
    assert store.path == projects_dir / "second-try"
    assert window.windowTitle() == "TDRI Studio — Second try"
    assert window.prefs.recent_projects[:2] == [str(store.path.resolve()), str(first.resolve())]
    assert "person" in window.annotation_model.vocabulary.all_tags()  # the general set

    # the first project is open in another process: a clear message, the current one stays
    other = open_project(first)
    try:
        assert run(window.open_project(first)) is None
    finally:
        other.close()
    assert any("open in another window" in t for t in window.message_bar.texts())
    assert window.store.path == store.path


def test_a_new_atelier_project_starts_at_its_generators_own_size_steps_and_guidance(studio, new_project, run):
    """The Atelier generator was trained at 64 px and samples at guidance 7.5: a project made on
    that profile starts there; another profile keeps the defaults."""
    from tdri_engine.models import ATELIER_GUIDANCE, ATELIER_LIMITS
    from tdri_engine.settings import EngineSettings

    window = studio(new_project("First"))
    atelier = run(window.create_project("On the Atelier", tag_set="fashion", profile="atelier"))
    s = atelier.settings
    assert (s.width, s.height, s.steps, s.guidance) == (
        ATELIER_LIMITS["width"],
        ATELIER_LIMITS["height"],
        ATELIER_LIMITS["steps"],
        ATELIER_GUIDANCE,
    )
    plain = run(window.create_project("On the demo", tag_set="fashion", profile="demo"))
    assert plain.settings.guidance == EngineSettings().guidance


def test_the_window_shows_before_torch_is_imported(tmp_path):
    env = {
        **os.environ,
        "TDRI_HOME": str(tmp_path / "home"),
        "TDRI_PROJECTS": str(tmp_path / "projects"),
        "QT_QPA_PLATFORM": "offscreen",
    }
    out = subprocess.run(
        [sys.executable, "-m", "studio", "--exit-when-shown"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch_imported_at_show"] is False
