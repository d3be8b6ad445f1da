"""The annotation view, after the paper's interface (section 4.1).

Left: the task list (filters, progress n of N). Centre: two images side by side, a description
box under each, the preference buttons, and the pair's HTML snippet (copyable). Right: the
command area: task and image details, navigation, Load Image / Load Last / Save Task, the tag
list. Keyboard first: every action has a key (see ``studio.shortcuts`` and Help).

The view binds to :class:`~studio.models.annotation_model.AnnotationModel`; file work (imports,
image decoding) runs on the asyncio loop's executor so the window stays responsive.
"""

from __future__ import annotations

import asyncio
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
from studio.ui.image_view import ImageView
from studio.ui.plain_label import PlainLabel
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
            return f"{task.name}\n{task.source}\nstatus: {task.status}"
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
    """One side of the pair: header, image, description, its tags."""

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        side = "left" if index == 0 else "right"
        self.index = index
        self.setObjectName(f"{side}Pane")
        self.setProperty("active", False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        self.header = PlainLabel(side.title())
        self.header.setObjectName(f"{side}ImageHeader")
        self.header.setProperty("role", "paneHeader")
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.header)
        self.view = ImageView(self, name=f"{side}Image", accessible=f"{side.title()} image")
        layout.addWidget(self.view, 1)
        self.description = DescriptionEdit(self)
        self.description.setObjectName(f"{side}Description")
        self.description.setAccessibleName(f"Description of the {side} image")
        self.description.setPlaceholderText(
            f"Describe the {side} image: only what is visible, same terms as before, short and clear."
        )
        self.description.setFixedHeight(78)
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
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("annotationView")
        self.setAccessibleName("Annotation view")
        self.model = model
        self._show_error = show_error
        self._show_info = show_info
        self._show_help = show_help or (lambda: None)
        self._load_generation = 0
        self.tasks = Tasks("the annotation view")
        self._build()
        self._bind()
        self._make_shortcuts()
        self._html_timer = QTimer(self)
        self._html_timer.setSingleShot(True)
        self._html_timer.setInterval(250)
        self._html_timer.timeout.connect(self._refresh_html)

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
        self.task_title = PlainLabel("No task")
        self.task_title.setObjectName("taskTitle")
        self.task_title.setAccessibleName("Current task")
        self.task_title.setProperty("role", "taskTitle")
        self.task_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
        cv.addLayout(prefs)

        html_box = QGroupBox("HTML of this task (images with descriptions)")
        html_box.setObjectName("htmlBox")
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
        return centre

    def _build_details(self) -> QGroupBox:
        """Right: the task's and the images' details."""
        details = QGroupBox("Task and image details")
        details.setObjectName("detailsBox")
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
        return details

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
        m.vocabulary_changed.connect(self._on_vocabulary)
        m.info.connect(lambda text: self._show_info(text, ""))
        # the snippet is rendered from the saved annotation: refresh it after each save
        m.saved_at_changed.connect(lambda _t: self._html_timer.start())

        self.filter_combo.currentIndexChanged.connect(
            lambda _i: m.set_filter(self.filter_combo.currentData())
        )
        self.task_list.clicked.connect(self._on_task_clicked)
        self.task_list.activated.connect(self._on_task_clicked)
        self.prev_button.clicked.connect(m.previous)
        self.next_button.clicked.connect(m.next)
        self.jump_button.clicked.connect(self.jump)
        self.jump_spin.editingFinished.connect(self._on_jump_edited)
        self.load_button.clicked.connect(self.load_images_dialog)
        self.load_files_action.triggered.connect(self.load_images_dialog)
        self.load_folder_action.triggered.connect(self.load_folder_dialog)
        self.load_last_button.clicked.connect(m.load_last)
        self.save_button.clicked.connect(m.save_task)
        self.save_next_button.clicked.connect(self.save_and_next)
        self.add_tag_button.clicked.connect(self._on_tag_entered)
        self.tag_entry.returnPressed.connect(self._on_tag_entered)
        self.tag_entry.escape.connect(lambda: self.panes[self.model.active_image].view.setFocus())
        self.tag_list.itemChanged.connect(self._on_tag_item_changed)
        self.remove_tag_button.clicked.connect(self._on_remove_tag)
        self.tag_set_combo.activated.connect(lambda i: m.use_tag_set(self.tag_set_combo.itemData(i)))
        self.help_button.clicked.connect(lambda: self._show_help())
        for pane in self.panes:
            i = pane.index
            pane.description.textChanged.connect(lambda i=i: self._on_description_typed(i))
            pane.description.focused.connect(lambda i=i: m.set_active_image(i))
            pane.description.escape.connect(lambda i=i: self.panes[i].view.setFocus())
            pane.description.undo_requested.connect(m.undo_stack.undo)
            pane.description.redo_requested.connect(m.undo_stack.redo)
            pane.view.clicked.connect(lambda i=i: m.set_active_image(i))

    def _make_shortcuts(self) -> None:
        def bind(name: str, fn: Callable[[], Any]) -> None:
            bind_shortcut(self, name, fn)

        bind("annotate.left_better", lambda: self.choose(Choice.LEFT))
        bind("annotate.right_better", lambda: self.choose(Choice.RIGHT))
        bind("annotate.tie", lambda: self.choose(Choice.TIE))
        bind("annotate.both_bad", lambda: self.choose(Choice.BOTH_BAD))
        bind("annotate.focus_left", lambda: self.focus_description(0))
        bind("annotate.focus_right", lambda: self.focus_description(1))
        bind("annotate.save", self.model.save_task)
        bind("annotate.save_next", self.save_and_next)
        bind("annotate.next", self.model.next)
        bind("annotate.previous", self.model.previous)
        bind("annotate.jump", self.focus_jump)
        bind("annotate.tag", self.focus_tag_entry)
        bind("annotate.switch_image", self.switch_tag_target)
        bind("annotate.load_images", self.load_images_dialog)
        bind("annotate.load_folder", self.load_folder_dialog)
        bind("annotate.load_last", self.model.load_last)
        bind("annotate.copy_html", self.copy_html)

    # ------------------------------------------------------------------ actions
    def choose(self, choice: Choice) -> None:
        self.model.set_choice(choice)

    def save_and_next(self) -> None:
        self.model.save_task()
        if not self.model.next_todo():
            self._show_info("Every task is done.", "Use the filter to review, or load more images.")

    def focus_description(self, index: int) -> None:
        if index < len(self.model.images):
            self.panes[index].description.setFocus()
            self.model.set_active_image(index)

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
        self.jump_spin.interpretText()
        if not self.model.go_to_position(self.jump_spin.value()):
            self._show_info(f"There is no task {self.jump_spin.value()} in this list.", "")

    def _on_jump_edited(self) -> None:
        if self.jump_spin.hasFocus():
            self.jump()

    def copy_html(self) -> None:
        QGuiApplication.clipboard().setText(self.html_edit.toPlainText())
        self._show_info("HTML snippet copied to the clipboard.", "")

    # ------------------------------------------------------------------ loading images
    def load_images_dialog(self) -> None:
        if self.model.store is None:
            return
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Load images as tasks",
            str(Path.home()),
            "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)",
        )
        if files:
            self.tasks.spawn(self.import_paths(files))

    def load_folder_dialog(self) -> None:
        if self.model.store is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Load a folder of images as tasks", str(Path.home()))
        if folder:
            self.tasks.spawn(self.import_paths(folder))

    async def import_paths(self, paths: str | list[str]) -> Any:
        """Import files or a folder as tasks (file work off the GUI thread), then show them."""
        store = self.model.store
        if store is None:
            return None
        pair = self.pair_check.isChecked()
        self.load_button.setEnabled(False)
        self._show_info("Importing images…", "")
        try:
            result = await store_io.run(lambda: store.import_images(paths, pair=pair))
        except TdriError as exc:
            self._show_error(Error(exc.kind, f"Nothing was imported: {exc.message}", exc.what_to_do))
            return None
        finally:
            self.load_button.setEnabled(True)
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
        self._html_timer.start()

    def _on_images_changed(self, images: list[ImageRecord | None]) -> None:
        self._load_generation += 1
        gen = self._load_generation
        store = self.model.store
        task = self.model.current
        for i, pane in enumerate(self.panes):
            rec = images[i] if i < len(images) else None
            if task is None:
                pane.view.set_image(None, "No task. Load images to start (Load Image…).")
                pane.header.setText("Left" if i == 0 else "Right")
                continue
            if rec is None:
                if i < len(task.images):
                    pane.view.set_image(None, f"Image record {task.images[i]} is missing from the project.")
                continue
            pane.header.setText(
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
                iid = task.images[i]
                pane.description.set_text_quietly(ann.descriptions.get(iid, ""))
                tags = ann.tags.get(iid, [])
                pane.tags_label.setText("  ".join(f"#{t}" for t in tags) if tags else "No tags")
        self._sync_choice(ann.choice)
        self._sync_tag_checks()
        self._html_timer.start()

    def _sync_choice(self, choice: str | None) -> None:
        for value, b in self.choice_buttons.items():
            b.setChecked(value == choice)

    def _on_active_image_changed(self, index: int) -> None:
        for p in self.panes:
            p.set_active(p.index == index)
        self.tag_target_label.setText(
            f"For the {'left' if index == 0 else 'right'} image  (Ctrl+Tab switches)"
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
        self.progress_label.setText(f"{done} of {total} done")
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

    def _on_description_typed(self, index: int) -> None:
        self.model.set_description(index, self.panes[index].description.toPlainText())

    def _on_task_clicked(self, index: QModelIndex) -> None:
        task = self.task_list_model.task_at(index.row())
        if task is not None:
            self.model.go_to(task.id)

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
        labels["image"].setText("left" if idx == 0 else "right")
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
