"""The annotation view, after the paper's interface (section 4.1).

Left: the task list (filters, progress n of N, tasks per hour). Centre: two images side by
side, a description box under each, the preference buttons, and the pair's HTML snippet
(copyable, folded by default so the images get the room). Right: the command area: task and
image details (folded by default), navigation, Load Image / Load Last / Save Task / Reopen /
Replace image, quick-tag chips and the tag list. Keyboard first: every action has a key (see
``studio.shortcuts`` and Help); the focus returns to the left image after each action, so the
next key (1-4, Alt+1, F2...) acts at once.

A pair is shown in the random order recorded in its task (``tdri_engine.store.positions``):
pane 0 (left) shows ``task.images[model.index_at(0)]``. The view speaks in positions, the model
in the task's own indices; every answer is mapped back before it is stored. Both panes zoom,
pan and show the loupe together (``ImageView.viewport``).

The view binds to :class:`~studio.models.annotation_model.AnnotationModel`; file work (imports,
image decoding) runs on the asyncio loop's executor so the window stays responsive.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QStringListModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QFont,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QCompleter,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio import shortcuts
from studio.models.annotation_model import FILTERS, AnnotationModel
from studio.models.tags import available_sets
from studio.prefs import StudioPrefs
from studio.ui.image_view import ImageView
from studio.ui.message_bar import ElidedLabel
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.ui.view_parts import bind_shortcut, side_scroll
from studio.workers import store_io
from studio.workers.images import read_image
from studio.workers.tasks import Tasks
from tdri_engine.errors import TdriError
from tdri_engine.events import Error
from tdri_engine.records import Choice, ImageRecord, Task

log = logging.getLogger(__name__)

CHOICE_BUTTONS = (
    (Choice.LEFT, "Left better", "annotate.left_better"),
    (Choice.RIGHT, "Right better", "annotate.right_better"),
    (Choice.TIE, "Tie", "annotate.tie"),
    (Choice.BOTH_BAD, "Both bad", "annotate.both_bad"),
)
FILTER_LABELS = {"all": "All tasks", "todo": "To do", "done": "Done", "tagged": "Tagged"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"
THROUGHPUT_REFRESH_MS = 30000


class TaskListModel(QAbstractListModel):
    """The filtered task list; rebuilt when tasks or the filter change (cheap even for 10k)."""

    def __init__(self, model: AnnotationModel) -> None:
        super().__init__()
        self._model = model
        self._rows: list[Task] = []
        self._numbers: dict[str, int] = {}

    def refresh(self) -> None:
        self.beginResetModel()
        self._rows = self._model.visible_tasks()
        self._numbers = {t.id: i + 1 for i, t in enumerate(self._model.tasks)}
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._rows)

    def task_at(self, row: int) -> Task | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, task_id: str) -> int:
        for i, t in enumerate(self._rows):
            if t.id == task_id:
                return i
        return -1

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        task = self.task_at(index.row())
        if task is None:
            return None
        row = self._model.row(task)
        if role == Qt.ItemDataRole.DisplayRole:
            mark = "✓" if row.done else "○"
            extra = []
            if row.choice:
                extra.append(row.choice.replace("_", " "))
            if row.tagged:
                extra.append("tagged")
            suffix = f"  · {', '.join(extra)}" if extra else ""
            return f"{mark} {self._numbers.get(task.id, 0)}. {task.name or task.id}{suffix}"
        if role == Qt.ItemDataRole.ToolTipRole:
            # the whole name (the row may be elided), as typed
            return plain_tooltip(f"{task.name}\n{task.source}\nstatus: {task.status}")
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"Task {self._numbers.get(task.id, 0)}, {task.name}, {'done' if row.done else 'to do'}"
        return None


class DescriptionEdit(QPlainTextEdit):
    """A description box: Tab moves on, Esc leaves, undo goes to the annotation's undo stack."""

    focused = Signal()
    escape = Signal()
    undo_requested = Signal()
    redo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        # One undo history for all annotation edits (typing, tags, choices), not one per box.
        self.setUndoRedoEnabled(False)

    def focusInEvent(self, event) -> None:  # noqa: N802
        self.focused.emit()
        super().focusInEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo_requested.emit()
            return
        if event.matches(QKeySequence.StandardKey.Redo) or (
            event.key() == Qt.Key.Key_Z
            and event.modifiers() == (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        ):
            self.redo_requested.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        super().keyPressEvent(event)

    def set_text_quietly(self, text: str) -> None:
        """Show the model's text without echoing it back as an edit."""
        if self.toPlainText() == text:
            return
        self.blockSignals(True)
        self.setPlainText(text)
        cursor = self.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.setTextCursor(cursor)
        self.blockSignals(False)


class EscapeLineEdit(QLineEdit):
    """A line edit that gives the focus back on Esc (so 1-4 choose again)."""

    escape = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        super().keyPressEvent(event)


class ImagePane(QFrame):
    """One side of the pair as shown (``index`` 0 left, 1 right): header, image, description, tags."""

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        side = "left" if index == 0 else "right"
        self.index = index
        self.setObjectName(f"{side}Pane")
        self.setProperty("active", False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        self.header = ElidedLabel(side.title())
        self.header.setObjectName(f"{side}ImageHeader")
        self.header.setProperty("role", "paneHeader")
        layout.addWidget(self.header)
        self.view = ImageView(self, name=f"{side}Image", accessible=f"{side.title()} image")
        layout.addWidget(self.view, 1)
        self.description = DescriptionEdit(self)
        self.description.setObjectName(f"{side}Description")
        self.description.setAccessibleName(f"Description of the {side} image")
        self.description.setPlaceholderText(
            f"Describe the {side} image: only what is visible, same terms as before, short and clear."
        )
        self.description.setFixedHeight(64)
        layout.addWidget(self.description)
        self.tags_label = PlainLabel("No tags")
        self.tags_label.setObjectName(f"{side}Tags")
        self.tags_label.setAccessibleName(f"Tags of the {side} image")
        self.tags_label.setProperty("role", "tagLine")
        self.tags_label.setWordWrap(True)
        layout.addWidget(self.tags_label)

    def set_active(self, on: bool) -> None:
        self.setProperty("active", on)
        self.style().unpolish(self)
        self.style().polish(self)


class AnnotationView(QWidget):
    """Binds an AnnotationModel to widgets. ``spawn`` runs a coroutine on the GUI's asyncio loop."""

    images_shown = Signal()  # both panels have their images (for tests and screenshots)
    import_finished = Signal(object)  # ImportResult

    def __init__(
        self,
        model: AnnotationModel,
        *,
        show_error: Callable[[Error], None],
        show_info: Callable[[str, str], None],
        show_help: Callable[[], None] | None = None,
        prefs: StudioPrefs | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.setObjectName("annotationView")
        self.setAccessibleName("Annotation view")
        self.model = model
        self._show_error = show_error
        self._show_info = show_info
        self._show_help = show_help or (lambda: None)
        self._load_generation = 0
        self.tasks = Tasks("the annotation view")
        self._chip_tags: list[str] = []
        self._build()
        self._bind()
        self._make_shortcuts()
        self._html_timer = QTimer(self)
        self._html_timer.setSingleShot(True)
        self._html_timer.setInterval(250)
        self._html_timer.timeout.connect(self._refresh_html)
        self._throughput_timer = QTimer(self)
        self._throughput_timer.setInterval(THROUGHPUT_REFRESH_MS)
        self._throughput_timer.timeout.connect(lambda: self._on_progress(self.model.progress))
        self._throughput_timer.start()
        self._set_tab_order()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("annotationSplitter")
        outer.addWidget(self.splitter)

        # --- task list (left)
        left = self._build_task_list()
        self.splitter.addWidget(left)

        # --- images (centre)
        centre = self._build_images()
        self.splitter.addWidget(centre)

        # --- command area (right)
        right_inner = QWidget()
        right_inner.setObjectName("commandArea")
        rv = QVBoxLayout(right_inner)
        rv.setContentsMargins(4, 8, 8, 8)
        rv.setSpacing(8)

        details = self._build_details()
        rv.addWidget(details)

        work = self._build_work()
        rv.addWidget(work)

        tags = self._build_tags()
        rv.addWidget(tags, 1)

        self.help_button = QPushButton(f"Guidelines && shortcuts  [{shortcuts.label('app.help')}]")
        self.help_button.setObjectName("helpButton")
        self.help_button.setAccessibleName("Guidelines and shortcuts")
        rv.addWidget(self.help_button)

        self.splitter.addWidget(side_scroll(right_inner, "commandScroll", 330))
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([230, 800, 340])

    def _build_task_list(self) -> QWidget:
        """Left: the filter, the progress and the task list."""
        left = QWidget()
        left.setObjectName("taskPanel")
        lv = QVBoxLayout(left)
        lv.setContentsMargins(8, 8, 4, 8)
        title = PlainLabel("Tasks")
        title.setProperty("role", "sectionTitle")
        lv.addWidget(title)
        self.filter_combo = QComboBox()
        self.filter_combo.setObjectName("taskFilter")
        self.filter_combo.setAccessibleName("Task filter")
        for f in FILTERS:
            self.filter_combo.addItem(FILTER_LABELS[f], f)
        lv.addWidget(self.filter_combo)
        self.progress_label = PlainLabel("0 of 0 done")
        self.progress_label.setObjectName("taskProgressLabel")
        self.progress_label.setAccessibleName("Progress")
        lv.addWidget(self.progress_label)
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("taskProgressBar")
        self.progress_bar.setAccessibleName("Tasks done")
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedHeight(6)
        lv.addWidget(self.progress_bar)
        self.task_list_model = TaskListModel(self.model)
        self.task_list = QListView()
        self.task_list.setObjectName("taskList")
        self.task_list.setAccessibleName("Task list")
        self.task_list.setModel(self.task_list_model)
        self.task_list.setUniformItemSizes(True)
        # Long names keep their number and their status: elided in the middle, whole in the tooltip.
        self.task_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.task_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.task_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        lv.addWidget(self.task_list, 1)
        return left

    def _build_images(self) -> QWidget:
        """Centre: the task's title, its one or two images, the choice, the task's HTML."""
        centre = QWidget()
        centre.setObjectName("imagePanel")
        cv = QVBoxLayout(centre)
        cv.setContentsMargins(4, 8, 4, 8)
        cv.setSpacing(6)
        self.task_title = ElidedLabel("No task")  # a long name is elided, whole in the tooltip
        self.task_title.setObjectName("taskTitle")
        self.task_title.setAccessibleName("Current task")
        self.task_title.setProperty("role", "taskTitle")
        cv.addWidget(self.task_title)
        panes = QHBoxLayout()
        self.panes = [ImagePane(0), ImagePane(1)]
        for p in self.panes:
            panes.addWidget(p, 1)
        cv.addLayout(panes, 1)

        prefs = QHBoxLayout()
        prefs.setSpacing(6)
        self.choice_buttons: dict[str, QPushButton] = {}
        for choice, text, sc in CHOICE_BUTTONS:
            b = QPushButton(f"{text}   [{shortcuts.label(sc)}]")
            b.setObjectName(f"choice_{choice.value}")
            b.setAccessibleName(text)
            b.setCheckable(True)
            b.setToolTip(f"{shortcuts.SHORTCUTS[sc].text} (key {shortcuts.label(sc)})")
            b.clicked.connect(lambda _=False, c=choice: self.choose(c))
            prefs.addWidget(b)
            self.choice_buttons[choice.value] = b
        self.sync_check = QCheckBox("Zoom both")
        self.sync_check.setObjectName("syncZoomCheck")
        self.sync_check.setAccessibleName("Zoom and pan both images together")
        self.sync_check.setToolTip("Zoom, pan and the loupe (L) act on both images together")
        self.sync_check.setChecked(True)
        prefs.addWidget(self.sync_check)
        cv.addLayout(prefs)

        html_box = QFrame()
        html_box.setObjectName("htmlBox")
        self.html_fold = self._fold(
            "HTML of this task (images with descriptions)", "htmlFold", html_box, "annotate.toggle_html"
        )
        cv.addWidget(self.html_fold)
        hv = QHBoxLayout(html_box)
        hv.setContentsMargins(6, 4, 6, 6)
        self.html_edit = QPlainTextEdit()
        self.html_edit.setObjectName("htmlSnippet")
        self.html_edit.setAccessibleName("HTML snippet of the pair")
        self.html_edit.setReadOnly(True)
        self.html_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSize(8)
        self.html_edit.setFont(mono)
        self.html_edit.setFixedHeight(84)
        hv.addWidget(self.html_edit, 1)
        self.copy_html_button = QPushButton("Copy")
        self.copy_html_button.setObjectName("copyHtmlButton")
        self.copy_html_button.setAccessibleName("Copy HTML snippet")
        self.copy_html_button.setToolTip(f"Copy to the clipboard ({shortcuts.label('annotate.copy_html')})")
        self.copy_html_button.clicked.connect(self.copy_html)
        hv.addWidget(self.copy_html_button, 0, Qt.AlignmentFlag.AlignTop)
        cv.addWidget(html_box)
        html_box.setVisible(False)  # folded: the images get the room
        return centre

    def _fold(self, title: str, name: str, content: QWidget, shortcut: str) -> QToolButton:
        """A button that shows or hides ``content`` (folded at first), with its key in the text."""
        button = QToolButton()
        button.setObjectName(name)
        button.setAccessibleName(f"Show or hide: {title}")
        button.setText(f"{title}  [{shortcuts.label(shortcut)}]")
        button.setToolTip(f"{shortcuts.SHORTCUTS[shortcut].text} ({shortcuts.label(shortcut)})")
        button.setCheckable(True)
        button.setChecked(False)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setArrowType(Qt.ArrowType.RightArrow)
        button.setAutoRaise(True)

        def toggled(on: bool) -> None:
            content.setVisible(on)
            button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

        button.toggled.connect(toggled)
        return button

    def _build_details(self) -> QWidget:
        """Right: the task's and the images' details, folded by default (Ctrl+I)."""
        outer = QWidget()
        ov = QVBoxLayout(outer)
        ov.setContentsMargins(0, 0, 0, 0)
        ov.setSpacing(2)
        details = QGroupBox()
        details.setObjectName("detailsBox")
        self.details_fold = self._fold(
            "Task and image details", "detailsFold", details, "annotate.toggle_details"
        )
        ov.addWidget(self.details_fold)
        ov.addWidget(details)
        details.setVisible(False)
        form = QFormLayout(details)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(3)
        self.detail_labels: dict[str, QLabel] = {}
        for key in (
            "task",
            "image",
            "name",
            "category",
            "source",
            "prompt",
            "seed",
            "round",
            "size",
        ):
            lab = PlainLabel("–")
            lab.setObjectName(f"detail_{key}")
            lab.setAccessibleName(key.title())
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setMinimumWidth(60)
            form.addRow(key.title() + ":", lab)
            self.detail_labels[key] = lab
        return outer

    def _build_work(self) -> QGroupBox:
        """Right: navigation, loading images, saving."""
        work = QGroupBox("Navigate and work")
        work.setObjectName("workBox")
        wv = QVBoxLayout(work)
        wv.setSpacing(6)
        row = QHBoxLayout()
        self.prev_button = self._button("◀ Previous", "previousButton", "Previous task", "annotate.previous")
        self.next_button = self._button("Next ▶", "nextButton", "Next task", "annotate.next")
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        self.jump_spin = QSpinBox()
        self.jump_spin.setObjectName("jumpSpin")
        self.jump_spin.setAccessibleName("Jump to task number")
        self.jump_spin.setToolTip(f"Jump to task number ({shortcuts.label('annotate.jump')})")
        self.jump_spin.setRange(1, 1)
        self.jump_spin.setKeyboardTracking(False)
        self.jump_spin.setMinimumWidth(56)
        row.addWidget(self.jump_spin)
        self.jump_button = QPushButton("Go")
        self.jump_button.setObjectName("jumpButton")
        self.jump_button.setAccessibleName("Go to task")
        row.addWidget(self.jump_button)
        wv.addLayout(row)
        row = QHBoxLayout()
        self.load_button = QToolButton()
        self.load_button.setObjectName("loadImageButton")
        self.load_button.setAccessibleName("Load Image")
        self.load_button.setText("Load Image…")
        self.load_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.load_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.load_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.load_button.setToolTip(
            f"Load images as tasks ({shortcuts.label('annotate.load_images')}); "
            f"the arrow: a folder ({shortcuts.label('annotate.load_folder')})"
        )
        menu = QMenu(self.load_button)
        self.load_files_action = QAction(f"Images…\t{shortcuts.label('annotate.load_images')}", menu)
        self.load_folder_action = QAction(f"A folder…\t{shortcuts.label('annotate.load_folder')}", menu)
        menu.addActions([self.load_files_action, self.load_folder_action])
        self.load_button.setMenu(menu)
        row.addWidget(self.load_button, 1)
        self.load_last_button = self._button("Load Last", "loadLastButton", "Load Last", "annotate.load_last")
        row.addWidget(self.load_last_button)
        wv.addLayout(row)
        self.pair_check = QCheckBox("Pair consecutive images into one task")
        self.pair_check.setObjectName("pairImportsCheck")
        self.pair_check.setAccessibleName("Pair consecutive images")
        self.pair_check.setChecked(True)
        wv.addWidget(self.pair_check)
        row = QHBoxLayout()
        self.save_button = self._button("Save Task", "saveTaskButton", "Save Task", "annotate.save")
        self.save_button.setProperty("role", "primary")
        row.addWidget(self.save_button, 1)
        self.save_next_button = self._button(
            "Save && Next", "saveNextButton", "Save task and go to next", "annotate.save_next"
        )
        row.addWidget(self.save_next_button, 1)
        wv.addLayout(row)
        row = QHBoxLayout()
        self.reopen_button = self._button(
            "Mark as to do", "reopenButton", "Mark the task as to do", "annotate.reopen"
        )
        self.reopen_button.setEnabled(False)
        row.addWidget(self.reopen_button, 1)
        self.replace_button = self._button(
            "Replace image…", "replaceImageButton", "Replace the selected image", "annotate.replace_image"
        )
        row.addWidget(self.replace_button, 1)
        wv.addLayout(row)
        self.saved_label = PlainLabel("All changes saved")
        self.saved_label.setObjectName("savedState")
        self.saved_label.setAccessibleName("Save state")
        self.saved_label.setProperty("state", "saved")
        wv.addWidget(self.saved_label)
        return work

    def _build_tags(self) -> QGroupBox:
        """Right: the tag entry, the project's tag list and the shipped sets."""
        tags = QGroupBox("Tags")
        tags.setObjectName("tagsBox")
        tv = QVBoxLayout(tags)
        self.tag_target_label = PlainLabel("For the left image")
        self.tag_target_label.setObjectName("tagTarget")
        self.tag_target_label.setAccessibleName("Tags apply to")
        tv.addWidget(self.tag_target_label)
        row = QHBoxLayout()
        self.tag_entry = EscapeLineEdit()
        self.tag_entry.setObjectName("tagEntry")
        self.tag_entry.setAccessibleName("Add a tag")
        self.tag_entry.setPlaceholderText(f"Type a tag, Enter  ({shortcuts.label('annotate.tag')})")
        self.tag_completer_model = QStringListModel([], self)
        self.tag_completer = QCompleter(self.tag_completer_model, self.tag_entry)
        self.tag_completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.tag_completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.tag_entry.setCompleter(self.tag_completer)
        row.addWidget(self.tag_entry, 1)
        self.add_tag_button = QPushButton("Add")
        self.add_tag_button.setObjectName("addTagButton")
        self.add_tag_button.setAccessibleName("Add tag")
        row.addWidget(self.add_tag_button)
        tv.addLayout(row)
        self.applied_label = PlainLabel("Applied: none")
        self.applied_label.setObjectName("appliedTags")
        self.applied_label.setAccessibleName("Tags applied to the selected image")
        self.applied_label.setProperty("role", "tagLine")
        self.applied_label.setWordWrap(True)
        tv.addWidget(self.applied_label)
        quick = PlainLabel("Quick tags (most used):")
        quick.setProperty("role", "hint")
        tv.addWidget(quick)
        chips = QGridLayout()
        chips.setSpacing(4)
        self.chip_buttons: list[QToolButton] = []
        for n in range(len(shortcuts.CHIP_KEYS)):
            chip = QToolButton()
            chip.setObjectName(f"tagChip{n + 1}")
            chip.setAccessibleName(f"Quick tag {n + 1} ({shortcuts.CHIP_KEYS[n]})")
            chip.setCheckable(True)
            chip.setProperty("role", "chip")
            chip.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            chip.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            chip.clicked.connect(lambda _=False, n=n: self.toggle_chip(n))
            chips.addWidget(chip, n // 2, n % 2)
            self.chip_buttons.append(chip)
        tv.addLayout(chips)
        all_tags = PlainLabel("All tags of the project:")
        all_tags.setProperty("role", "hint")
        tv.addWidget(all_tags)
        self.tag_list = QListWidget()
        self.tag_list.setObjectName("tagList")
        self.tag_list.setAccessibleName("Tag list")
        self.tag_list.setMinimumHeight(96)
        tv.addWidget(self.tag_list, 1)
        row = QHBoxLayout()
        self.tag_set_combo = QComboBox()
        self.tag_set_combo.setObjectName("tagSetCombo")
        self.tag_set_combo.setAccessibleName("Tag set")
        for key, name in available_sets().items():
            self.tag_set_combo.addItem(f"Add the {name} set", key)
        self.tag_set_combo.setToolTip("Merge a shipped tag set into this project's list")
        row.addWidget(self.tag_set_combo, 1)
        self.remove_tag_button = QPushButton("Remove")
        self.remove_tag_button.setObjectName("removeTagButton")
        self.remove_tag_button.setAccessibleName("Remove tag from the list")
        self.remove_tag_button.setToolTip(
            "Remove the selected tag from this project's list (tags on images stay)"
        )
        row.addWidget(self.remove_tag_button)
        tv.addLayout(row)
        return tags

    def _button(self, text: str, name: str, accessible: str, shortcut: str) -> QPushButton:
        b = QPushButton(text)
        b.setObjectName(name)
        b.setAccessibleName(accessible)
        b.setToolTip(f"{shortcuts.SHORTCUTS[shortcut].text} ({shortcuts.label(shortcut)})")
        return b

    # ------------------------------------------------------------------ bindings
    def _bind(self) -> None:
        m = self.model
        m.tasks_changed.connect(self._on_tasks_changed)
        m.current_changed.connect(self._on_current_changed)
        m.images_changed.connect(self._on_images_changed)
        m.annotation_changed.connect(self._on_annotation_changed)
        m.active_image_changed.connect(self._on_active_image_changed)
        m.saved_state_changed.connect(self._on_saved_state)
        m.saved_at_changed.connect(lambda _t: self._on_saved_state(m.saved_state))
        m.progress_changed.connect(self._on_progress)
        m.throughput_changed.connect(lambda _r: self._on_progress(m.progress))
        m.vocabulary_changed.connect(self._on_vocabulary)
        m.info.connect(lambda text: self._show_info(text, ""))
        # the snippet is rendered from the saved annotation: refresh it after each save
        m.saved_at_changed.connect(lambda _t: self._html_timer.start())

        self.filter_combo.currentIndexChanged.connect(
            lambda _i: m.set_filter(self.filter_combo.currentData())
        )
        self.task_list.clicked.connect(self._on_task_clicked)
        self.task_list.activated.connect(self._on_task_activated)
        self.prev_button.clicked.connect(self.previous)
        self.next_button.clicked.connect(self.next)
        self.jump_button.clicked.connect(self.jump)
        self.jump_spin.editingFinished.connect(self._on_jump_edited)
        self.load_button.clicked.connect(self.load_images_dialog)
        self.load_files_action.triggered.connect(self.load_images_dialog)
        self.load_folder_action.triggered.connect(self.load_folder_dialog)
        self.load_last_button.clicked.connect(self.load_last)
        self.save_button.clicked.connect(self.save_task)
        self.save_next_button.clicked.connect(self.save_and_next)
        self.reopen_button.clicked.connect(self.reopen_task)
        self.replace_button.clicked.connect(self.replace_image_dialog)
        self.add_tag_button.clicked.connect(self._on_tag_entered)
        self.tag_entry.returnPressed.connect(self._on_tag_entered)
        self.tag_entry.escape.connect(self.focus_active_image)
        self.tag_list.itemChanged.connect(self._on_tag_item_changed)
        self.remove_tag_button.clicked.connect(self._on_remove_tag)
        self.tag_set_combo.activated.connect(lambda i: m.use_tag_set(self.tag_set_combo.itemData(i)))
        self.help_button.clicked.connect(lambda: self._show_help())
        for pane in self.panes:
            i = pane.index  # the position on screen; the model gets the task's own index
            pane.description.textChanged.connect(lambda i=i: self._on_description_typed(i))
            pane.description.focused.connect(lambda i=i: m.set_active_image(m.index_at(i)))
            pane.description.escape.connect(lambda i=i: self.panes[i].view.setFocus())
            pane.description.undo_requested.connect(m.undo_stack.undo)
            pane.description.redo_requested.connect(m.undo_stack.redo)
            pane.view.clicked.connect(lambda i=i: m.set_active_image(m.index_at(i)))
            other = self.panes[1 - i].view
            pane.view.viewport_changed.connect(
                lambda v=pane.view, o=other: (
                    o.set_viewport(v.viewport()) if self.sync_check.isChecked() else None
                )
            )

    def _make_shortcuts(self) -> None:
        def bind(name: str, fn: Callable[[], Any]) -> None:
            bind_shortcut(self, name, fn)

        bind("annotate.left_better", lambda: self.choose(Choice.LEFT))
        bind("annotate.right_better", lambda: self.choose(Choice.RIGHT))
        bind("annotate.tie", lambda: self.choose(Choice.TIE))
        bind("annotate.both_bad", lambda: self.choose(Choice.BOTH_BAD))
        bind("annotate.focus_left", lambda: self.focus_description(0))
        bind("annotate.focus_right", lambda: self.focus_description(1))
        bind("annotate.save", self.save_task)
        bind("annotate.save_next", self.save_and_next)
        bind("annotate.next", self.next)
        bind("annotate.previous", self.previous)
        bind("annotate.jump", self.focus_jump)
        bind("annotate.tag", self.focus_tag_entry)
        bind("annotate.switch_image", self.switch_tag_target)
        bind("annotate.load_images", self.load_images_dialog)
        bind("annotate.load_folder", self.load_folder_dialog)
        bind("annotate.load_last", self.load_last)
        bind("annotate.copy_html", self.copy_html)
        bind("annotate.reopen", self.reopen_task)
        bind("annotate.replace_image", self.replace_image_dialog)
        bind("annotate.toggle_html", self.html_fold.toggle)
        bind("annotate.toggle_details", self.details_fold.toggle)
        bind("annotate.task_list", self.task_list.setFocus)
        bind("image.zoom_in", lambda: self._active_view().zoom_by(1.25))
        bind("image.zoom_out", lambda: self._active_view().zoom_by(0.8))
        bind("image.fit", self._fit_or_actual)
        bind("image.loupe", lambda: self._active_view().toggle_loupe())
        for n in range(len(shortcuts.CHIP_KEYS)):
            bind(f"annotate.chip{n + 1}", functools.partial(self.toggle_chip, n))

    # ------------------------------------------------------------------ focus
    def focus_work(self) -> None:
        """Where the work is: the left image (1-4 choose, Alt+1 describes, F2... tag, + zooms)."""
        self.panes[0].view.setFocus(Qt.FocusReason.OtherFocusReason)

    def focus_active_image(self) -> None:
        self.panes[self.model.position_of(self.model.active_image)].view.setFocus()

    def _set_tab_order(self) -> None:
        """As Help says: left image, right image, left description, right description, the
        choices, then the side panel from the top, the task list last. From one description
        Tab goes to the other (the images zoom together, so a description is the next stop)."""
        chain: list[QWidget] = [p.view for p in self.panes] + [p.description for p in self.panes]
        chain += list(self.choice_buttons.values())
        chain += [self.sync_check, self.html_fold, self.copy_html_button]
        chain += [self.details_fold, self.prev_button, self.next_button, self.jump_spin, self.jump_button]
        chain += [self.load_button, self.load_last_button, self.pair_check]
        chain += [self.save_button, self.save_next_button, self.reopen_button, self.replace_button]
        chain += [self.tag_entry, self.add_tag_button, *self.chip_buttons, self.tag_list]
        chain += [self.tag_set_combo, self.remove_tag_button, self.help_button]
        chain += [self.filter_combo, self.task_list]
        for a, b in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(a, b)

    def _active_view(self) -> ImageView:
        return self.panes[self.model.position_of(self.model.active_image)].view

    def _fit_or_actual(self) -> None:
        view = self._active_view()
        view.fit() if not view.fit_mode else view.actual_size()

    # ------------------------------------------------------------------ actions
    def choose(self, choice: Choice) -> None:
        """A choice about the images as shown (1: the left one), stored for those images."""
        self.model.choose_shown(choice)

    def save_task(self) -> None:
        self.model.save_task()
        self.focus_work()

    def save_and_next(self) -> None:
        self.model.save_task()
        if not self.model.next_todo():
            self._show_info("Every task is done.", "Use the filter to review, or load more images.")
        self.focus_work()

    def next(self) -> None:
        self.model.next()
        self.focus_work()

    def previous(self) -> None:
        self.model.previous()
        self.focus_work()

    def load_last(self) -> None:
        self.model.load_last()
        self.focus_work()

    def reopen_task(self) -> None:
        """Mark a finished task as to do again ("Mark as to do"), then back to the images."""
        if not self.model.reopen_task():
            self._show_info("This task is not done yet: there is nothing to reopen.", "")
        self.focus_work()

    def focus_description(self, position: int) -> None:
        if position < len(self.model.images):
            self.panes[position].description.setFocus()
            self.model.set_active_image(self.model.index_at(position))

    def focus_jump(self) -> None:
        self.jump_spin.setFocus()
        self.jump_spin.selectAll()

    def focus_tag_entry(self) -> None:
        self.tag_entry.setFocus()
        self.tag_entry.selectAll()

    def switch_tag_target(self) -> None:
        n = len(self.model.images)
        if n > 1:
            self.model.set_active_image((self.model.active_image + 1) % n)

    def jump(self) -> None:
        """Go to the typed task number; the focus leaves the number box for the images."""
        self.jump_spin.interpretText()
        if not self.model.go_to_position(self.jump_spin.value()):
            self._show_info(f"There is no task {self.jump_spin.value()} in this list.", "")
            return
        self.focus_work()

    def _on_jump_edited(self) -> None:
        if self.jump_spin.hasFocus():
            self.jump()

    def toggle_chip(self, n: int) -> None:
        """Quick tag ``n`` (F2 + n) on the selected image."""
        if n >= len(self._chip_tags):
            return
        if self.model.current is None:
            self._show_info("Load or pick a task first: tags belong to an image.", "")
            return
        self.model.toggle_tag(self._chip_tags[n])

    def copy_html(self) -> None:
        QGuiApplication.clipboard().setText(self.html_edit.toPlainText())
        self._show_info("HTML snippet copied to the clipboard.", "")

    # ------------------------------------------------------------------ loading images
    def _start_dir(self) -> str:
        """Where a file dialog opens: the folder the last one was in (kept in the prefs)."""
        last = self.prefs.last_image_dir if self.prefs is not None else ""
        return last if last and Path(last).is_dir() else str(Path.home())

    def _remember_dir(self, folder: str | Path) -> None:
        if self.prefs is None:
            return
        self.prefs.last_image_dir = str(folder)
        try:
            self.prefs.save()
        except OSError as exc:
            log.warning("could not save studio preferences: %s", exc)

    def load_images_dialog(self) -> None:
        if self.model.store is None:
            return
        files, _ = QFileDialog.getOpenFileNames(self, "Load images as tasks", self._start_dir(), IMAGE_FILTER)
        if files:
            self._remember_dir(Path(files[0]).parent)
            self.tasks.spawn(self.import_paths(files))
        else:
            self.focus_work()

    def load_folder_dialog(self) -> None:
        if self.model.store is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Load a folder of images as tasks", self._start_dir())
        if folder:
            self._remember_dir(Path(folder).parent if Path(folder).parent.is_dir() else folder)
            self.tasks.spawn(self.import_paths(folder))
        else:
            self.focus_work()

    def replace_image_dialog(self) -> None:
        """Replace the selected image of the current task with a file (Ctrl+R)."""
        task = self.model.current
        if self.model.store is None or task is None:
            self._show_info("Load or pick a task first: there is no image to replace.", "")
            return
        side = "left" if self.model.position_of(self.model.active_image) == 0 else "right"
        file, _ = QFileDialog.getOpenFileName(
            self, f"Replace the {side} image of this task", self._start_dir(), IMAGE_FILTER
        )
        if file:
            self._remember_dir(Path(file).parent)
            self.tasks.spawn(self.replace_image(file, self.model.active_image))
        else:
            self.focus_work()

    async def replace_image(self, path: str, index: int) -> ImageRecord | None:
        """Import ``path`` into the project (off the GUI thread) and put it in place of the
        current task's image ``index`` (undoable with Ctrl+Z)."""
        store, task = self.model.store, self.model.current
        if store is None or task is None:
            return None
        try:
            record, notes = await store_io.run(store.import_image, Path(path))
        except TdriError as exc:
            self._show_error(Error(exc.kind, f"The image was not replaced: {exc.message}", exc.what_to_do))
            return None
        if self.model.current is None or self.model.current.id != task.id:
            self._show_info(
                "The image was imported, but you moved to another task: nothing was replaced.", ""
            )
            return None
        self.model.replace_image(index, record)
        self._show_info(
            f"Image replaced by {Path(path).name}.",
            "\n".join(notes) + (" " if notes else "") + "Ctrl+Z undoes it.",
        )
        self.focus_work()
        return record

    async def import_paths(self, paths: str | list[str]) -> Any:
        """Import files or a folder as tasks (file work off the GUI thread), then show them."""
        store = self.model.store
        if store is None:
            return None
        pair = self.pair_check.isChecked()
        # Said on the button while it runs (not as a message that would outlive the import).
        self.load_button.setEnabled(False)
        self.load_button.setText("Importing…")
        try:
            result = await store_io.run(lambda: store.import_images(paths, pair=pair))
        except TdriError as exc:
            self._show_error(Error(exc.kind, f"Nothing was imported: {exc.message}", exc.what_to_do))
            return None
        finally:
            self.load_button.setEnabled(True)
            self.load_button.setText("Load Image…")
        if result.errors:
            lines = [f"{Path(p).name}: {e.message}" for p, e in result.errors.items()]
            todo = {e.what_to_do for e in result.errors.values() if e.what_to_do}
            self._show_error(
                Error(
                    "bad-input",
                    f"{len(result.errors)} file(s) were not imported:\n" + "\n".join(lines),
                    " ".join(sorted(todo)) or "Convert them to PNG or JPEG and load them again.",
                )
            )
        notes = [f"{Path(p).name}: {n}" for p, ns in result.notes.items() for n in ns]
        summary = f"Imported {len(result.images)} image(s) as {len(result.tasks)} task(s)."
        if result.skipped:
            summary += f" Skipped {len(result.skipped)} file(s) that are not images."
        self._show_info(summary, "\n".join(notes))
        first = result.tasks[0].id if result.tasks else None
        self.model.reload_tasks(select=first)
        self.focus_work()
        self.import_finished.emit(result)
        return result

    # ------------------------------------------------------------------ model -> widgets
    def _on_tasks_changed(self, _tasks: list[Task]) -> None:
        self.task_list_model.refresh()
        self._sync_list_selection()
        visible = len(self.task_list_model._rows)
        self.jump_spin.setRange(1, max(1, visible))
        self._update_title()

    def _on_current_changed(self, task: Task | None) -> None:
        self._sync_list_selection()
        self._update_title()
        self._update_details()
        single = task is None or len(task.images) < 2
        for b in self.choice_buttons.values():
            b.setEnabled(not single)
        self.panes[1].setVisible(task is None or len(task.images) > 1)
        self.reopen_button.setEnabled(task is not None and task.status == "done")
        self.replace_button.setEnabled(task is not None)
        self._refresh_chips()
        self._html_timer.start()

    def _on_images_changed(self, images: list[ImageRecord | None]) -> None:
        self._load_generation += 1
        gen = self._load_generation
        store = self.model.store
        task = self.model.current
        shown = [self.model.index_at(p) for p in range(len(images))]  # task index per position
        images = [images[i] for i in shown]
        for i, pane in enumerate(self.panes):
            rec = images[i] if i < len(images) else None
            if task is None:
                pane.view.set_image(None, "No task. Load images to start (Load Image…).")
                pane.header.set_full_text("Left" if i == 0 else "Right")
                continue
            if rec is None:
                if i < len(task.images):
                    missing = task.images[shown[i]]
                    pane.view.set_image(None, f"Image record {missing} is missing from the project.")
                continue
            pane.header.set_full_text(
                f"{'Left' if i == 0 else 'Right'} · {rec.name or rec.id}  ({rec.width}×{rec.height})"
            )
            pane.view.set_image(None, "Loading…")
        if task is None or store is None:
            self.images_shown.emit()
            return
        paths = []
        for rec in images:
            try:
                paths.append(str(store.image_path(rec)) if rec is not None else "")
            except TdriError as exc:
                paths.append("")
                self._show_error(Error(exc.kind, exc.message, exc.what_to_do))
        self.tasks.spawn(self._load_images(gen, paths))

    async def _load_images(self, gen: int, paths: list[str]) -> None:
        results = await asyncio.gather(*[store_io.run(read_image, p) if p else _none() for p in paths])
        if gen != self._load_generation:
            return  # the user moved on; a newer load will fill the panels
        for i, (image, message) in enumerate(results):
            if i < len(self.panes):
                self.panes[i].view.set_image(image, message)
                if image is None and message:
                    self._show_error(
                        Error("image-missing", message.split("\n")[0], message.split("\n", 1)[-1])
                    )
        self.images_shown.emit()

    def _on_annotation_changed(self, ann: Any) -> None:
        task = self.model.current
        if task is None:
            for p in self.panes:
                p.description.set_text_quietly("")
                p.tags_label.setText("No tags")
            self._sync_choice(None)
            return
        for i, pane in enumerate(self.panes):
            if i < len(task.images):
                iid = task.images[self.model.index_at(i)]
                pane.description.set_text_quietly(ann.descriptions.get(iid, ""))
                tags = ann.tags.get(iid, [])
                pane.tags_label.setText("  ".join(f"#{t}" for t in tags) if tags else "No tags")
        self._sync_choice(self.model.shown_choice())
        self._sync_tag_checks()
        self._html_timer.start()

    def _sync_choice(self, choice: str | None) -> None:
        for value, b in self.choice_buttons.items():
            b.setChecked(value == choice)

    def _on_active_image_changed(self, index: int) -> None:
        position = self.model.position_of(index)
        for p in self.panes:
            p.set_active(p.index == position)
        self.tag_target_label.setText(
            f"For the {'left' if position == 0 else 'right'} image  (Ctrl+Tab switches)"
        )
        self._sync_tag_checks()
        self._update_details()

    def _on_saved_state(self, state: str) -> None:
        text = {
            "saved": f"✓ All changes saved{(' at ' + self.model.saved_at) if self.model.saved_at else ''}",
            "pending": "● Saving…",
            "failed": "⚠ Not saved yet: retrying (see the message above)",
        }.get(state, state)
        self.saved_label.setText(text)
        self.saved_label.setProperty("state", state)
        self.saved_label.style().unpolish(self.saved_label)
        self.saved_label.style().polish(self.saved_label)

    def _on_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        rate = self.model.throughput()
        pace = f" · {rate:.0f} tasks/hour" if rate is not None else ""
        self.progress_label.setText(f"{done} of {total} done{pace}")
        self.progress_label.setToolTip(
            "Tasks marked done per hour in this session, over the last hour"
            if rate is not None
            else "The pace (tasks per hour) shows after the first minute of work"
        )
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        self._update_title()

    def _on_vocabulary(self, vocab: Any) -> None:
        self.tag_list.blockSignals(True)
        self.tag_list.clear()
        for group, tags in vocab.groups.items():
            header = QListWidgetItem(group.upper())
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            header.setData(Qt.ItemDataRole.UserRole, "")  # not a tag (never store None: PySide refcount bug)
            f = header.font()
            f.setBold(True)
            f.setPointSize(max(7, f.pointSize() - 1))
            header.setFont(f)
            self.tag_list.addItem(header)
            for t in tags:
                item = QListWidgetItem(t)
                item.setFlags(
                    Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable
                )
                item.setCheckState(Qt.CheckState.Unchecked)
                item.setData(Qt.ItemDataRole.UserRole, t)
                self.tag_list.addItem(item)
        self.tag_list.blockSignals(False)
        self.tag_completer_model.setStringList(vocab.all_tags())
        self._refresh_chips()
        self._sync_tag_checks()

    def _sync_tag_checks(self) -> None:
        task = self.model.current
        idx = self.model.active_image
        applied: set[str] = set()
        if task is not None and idx < len(task.images):
            applied = set(self.model.annotation().tags.get(task.images[idx], []))
        self.tag_list.blockSignals(True)
        for row in range(self.tag_list.count()):
            item = self.tag_list.item(row)
            tag = item.data(Qt.ItemDataRole.UserRole)
            if tag:
                item.setCheckState(Qt.CheckState.Checked if tag in applied else Qt.CheckState.Unchecked)
        self.tag_list.blockSignals(False)
        ordered = list(self.model.annotation().tags.get(task.images[idx], [])) if applied and task else []
        self.applied_label.setText("Applied: " + ("  ".join(f"#{t}" for t in ordered) if ordered else "none"))
        for chip, tag in zip(self.chip_buttons, self._chip_tags, strict=False):
            chip.setChecked(tag in applied)

    def _refresh_chips(self) -> None:
        """The quick-tag chips: the project's most used tags (vocabulary order breaks ties).

        Refreshed when the task or the vocabulary changes, not on every toggle: a chip does
        not move under the annotator's finger while they tag one image.
        """
        counts = self.model.tag_counts()
        vocab = self.model.vocabulary.all_tags()
        rank = {t: i for i, t in enumerate(vocab)}
        ordered = sorted(counts, key=lambda t: (-counts[t], rank.get(t, len(rank)), t))
        ordered += [t for t in vocab if t not in counts]
        self._chip_tags = ordered[: len(self.chip_buttons)]
        for n, chip in enumerate(self.chip_buttons):
            key = shortcuts.CHIP_KEYS[n]
            tag = self._chip_tags[n] if n < len(self._chip_tags) else ""
            chip.setVisible(bool(tag))
            chip.setText(f"{key}  {tag}")
            chip.setAccessibleName(f"Quick tag {tag} ({key})")
            chip.setToolTip(plain_tooltip(f"Toggle the tag “{tag}” on the selected image ({key})"))
        self._sync_tag_checks()

    def _on_tag_item_changed(self, item: QListWidgetItem) -> None:
        tag = item.data(Qt.ItemDataRole.UserRole)
        if tag:
            self.model.toggle_tag(tag)

    def _on_tag_entered(self) -> None:
        text = self.tag_entry.text()
        if not text.strip():
            return
        if self.model.current is None:
            self._show_info("Load or pick a task first: tags belong to an image.", "")
            return
        self.model.toggle_tag(text)
        self.tag_entry.clear()

    def _on_remove_tag(self) -> None:
        item = self.tag_list.currentItem()
        tag = item.data(Qt.ItemDataRole.UserRole) if item is not None else ""
        if not tag:
            self._show_info("Select a tag in the list to remove it.", "")
            return
        self.model.remove_from_vocabulary(tag)
        self._show_info(f"Removed “{tag}” from this project's tag list.", "Images that have it keep it.")

    def _on_description_typed(self, position: int) -> None:
        self.model.set_description(
            self.model.index_at(position), self.panes[position].description.toPlainText()
        )

    def _on_task_clicked(self, index: QModelIndex) -> None:
        task = self.task_list_model.task_at(index.row())
        if task is not None:
            self.model.go_to(task.id)

    def _on_task_activated(self, index: QModelIndex) -> None:
        """Enter (or a double-click) on a task: open it and go to its images."""
        self._on_task_clicked(index)
        self.focus_work()

    def _sync_list_selection(self) -> None:
        task = self.model.current
        if task is None:
            self.task_list.clearSelection()
            return
        row = self.task_list_model.row_of(task.id)
        if row >= 0:
            idx = self.task_list_model.index(row)
            self.task_list.setCurrentIndex(idx)
            self.task_list.scrollTo(idx)

    def _update_title(self) -> None:
        task = self.model.current
        if task is None:
            self.task_title.setText("No task — load images to start")
            return
        pos, n = self.model.position()
        where = (
            f"Task {pos} of {n}" if pos else f"Task (not in the “{FILTER_LABELS[self.model.filter]}” list)"
        )
        status = "done" if task.status == "done" else "to do"
        self.task_title.setText(f"{where} · {task.name or task.id} · {status}")

    def _update_details(self) -> None:
        task = self.model.current
        labels = self.detail_labels
        if task is None:
            for lab in labels.values():
                lab.setText("–")
            return
        idx = self.model.active_image
        images = self.model.images
        rec = images[idx] if idx < len(images) else None
        labels["task"].setText(f"{task.name or task.id} ({task.kind})")
        labels["image"].setText("left" if self.model.position_of(idx) == 0 else "right")
        labels["category"].setText(task.category or "–")
        labels["source"].setText(_short(task.source) or "–")
        if rec is None:
            for k in ("name", "prompt", "seed", "round", "size"):
                labels[k].setText("–")
            return
        labels["name"].setText(rec.name or rec.id)
        labels["prompt"].setText(rec.prompt or "–")
        labels["seed"].setText("–" if rec.seed is None else str(rec.seed))
        labels["round"].setText("–" if rec.round is None else str(rec.round))
        labels["size"].setText(f"{rec.width}×{rec.height}")

    def _refresh_html(self) -> None:
        store, task = self.model.store, self.model.current
        if store is None or task is None:
            self.html_edit.setPlainText("")
            return
        from tdri_engine.store.export import pair_html

        try:
            text = pair_html(store, task)
        except TdriError as exc:
            text = f"<!-- {exc.message} -->"
        if self.html_edit.toPlainText() != text:
            self.html_edit.setPlainText(text)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(1360, 820)


async def _none() -> tuple[None, str]:
    return None, ""


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]
