"""The main window's two dialogs: a new project, and the help window (guidelines, shortcuts)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio.models.tags import available_sets
from studio.ui.plain_label import PlainLabel
from tdri_engine import paths


class NewProjectDialog(QDialog):
    def __init__(self, root: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("newProjectDialog")
        self.setWindowTitle("New project")
        form = QFormLayout(self)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("newProjectName")
        self.name_edit.setAccessibleName("Project name")
        self.name_edit.setPlaceholderText("e.g. Summer dresses 2025")
        form.addRow("Name:", self.name_edit)
        self.tags_combo = QComboBox()
        self.tags_combo.setObjectName("newProjectTagSet")
        self.tags_combo.setAccessibleName("Tag vocabulary")
        for key, name in available_sets().items():
            self.tags_combo.addItem(name, key)
        form.addRow("Tags:", self.tags_combo)
        self.profile_combo = QComboBox()
        self.profile_combo.setObjectName("newProjectProfile")
        self.profile_combo.setAccessibleName("Model profile")
        from tdri_engine import models

        notes = {"demo": "  (tiny random models)", models.ATELIER: "  (trained on the Atelier, shipped)"}
        for n in models.list_profiles():
            self.profile_combo.addItem(n + notes.get(n, ""), n)
        # a new project starts on the shipped Atelier models; real weights are a choice away here
        self.profile_combo.setCurrentIndex(max(0, self.profile_combo.findData(models.LOCAL_DEFAULT_PROFILE)))
        form.addRow("Models:", self.profile_combo)
        where = PlainLabel(f"Saved in {root}")
        where.setWordWrap(True)
        form.addRow("", where)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


class HelpWindow(QDialog):
    """Guidelines (from the paper) and every shortcut; non-modal, stays open beside the work."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("helpWindow")
        self.setAccessibleName("Help")
        self.setWindowTitle("TDRI Studio — guidelines and shortcuts")
        self.resize(720, 640)
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)
        self.pages: dict[str, QTextBrowser] = {}
        for key, title in (
            ("guidelines", "Guidelines"),
            ("shortcuts", "Shortcuts"),
            ("refinement", "Refinement"),
        ):
            browser = QTextBrowser()
            browser.setObjectName(f"help_{key}")
            browser.setAccessibleName(title)
            browser.setOpenExternalLinks(False)
            browser.setHtml(load_help(key))
            self.tabs.addTab(browser, title)
            self.pages[key] = browser


def load_help(name: str) -> str:
    p = paths.resource_path("help", f"{name}.html")
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        return f"<p>Help page {p} could not be read: {exc}</p>"
