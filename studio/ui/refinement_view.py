"""The refinement view: a designer's dialogue with the studio, round by round.

Left: the dialogue (what the user said, what the studio answered, its clarification questions
with one-click answers, the reason in plain words, and Skip), the input box, the seed and the
edit strength, Generate / Refine. Centre: any two rounds side by side (choosing one records a
preference), the pose overlay toggle, the live preview while a round runs, the actions on the
round shown on the right (save as, copy, star, use as the next round's reference, open its
folder, all rounds in a gallery) and the rounds as a strip of thumbnails. Right: the prompt
the studio made (D2P, editable: an edit becomes the next round's prompt), how unclear each
part of the image is (the formula behind a toggle), and personalisation.

Keyboard: every control is reached with Tab (the text boxes let Tab move on); the keys of
``studio.shortcuts`` ("Refine") act while the focus is in the view, and the window gives the
focus to the prompt box (:meth:`RefinementView.focus_work`) when the view is shown.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio import shortcuts
from studio.models.refinement_model import RefinementModel
from studio.models.rounds import Comparison, Personalisation, RoundView
from studio.ui.ambiguity_chart import AmbiguityChart, aspect_label, formula, plain_reason
from studio.ui.image_view import ImageView
from studio.ui.job_widget import JobProgress
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.ui.round_metrics import RoundMetricsPanel
from studio.ui.view_parts import bind_shortcut, open_for_keys, side_scroll
from studio.workers.tasks import Tasks
from tdri_engine import api
from tdri_engine.events import Error, Question
from tdri_engine.records import Choice

log = logging.getLogger(__name__)

CHOICES = (
    (Choice.LEFT, "Left better", "refine.left_better"),
    (Choice.RIGHT, "Right better", "refine.right_better"),
    (Choice.TIE, "Tie", "refine.tie"),
    (Choice.BOTH_BAD, "Both bad", "refine.both_bad"),
)


def is_alive(widget: QWidget) -> bool:
    """Whether the Qt side of ``widget`` still exists (a round may end after its window closed)."""
    return shiboken6.isValid(widget)


QUIT_AGAIN_S = 8.0  # a second Ctrl+Q within this time stops the running round and quits


class PromptInput(QPlainTextEdit):
    """The input box: Enter sends (Shift+Enter for a new line), like a chat; Tab moves on."""

    send = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.send.emit()
            return
        super().keyPressEvent(event)


class RefinementView(QWidget):
    def __init__(
        self,
        model: RefinementModel,
        *,
        show_error: Callable[[Error], None],
        show_message: Callable[[str, str], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("refinementView")
        self.setAccessibleName("Refinement view")
        self.model = model
        self._show_error = show_error
        self._show_message = show_message
        self.tasks = Tasks("the refinement view")
        self._option_buttons: list[QPushButton] = []
        self._in_flight_text = ""  # sent, its round not finished yet
        self._quit_asked_at = -1e9
        self.gallery: RoundGallery | None = None
        self.save_dialog: QFileDialog | None = None
        self._strength_timer = QTimer(self)
        self._strength_timer.setSingleShot(True)
        self._strength_timer.setInterval(400)
        self._build()
        self._bind()
        self._make_shortcuts()
        self._render_dialogue()
        self._on_personalisation(model.personalisation)
        self._on_question(None)
        self._on_comparison(model.comparison)
        self._update_primary()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("refinementSplitter")
        outer.addWidget(self.splitter)

        # --- dialogue (left)
        left = QWidget()
        left.setObjectName("dialoguePanel")
        lv = QVBoxLayout(left)
        lv.setContentsMargins(8, 8, 4, 8)
        row = QHBoxLayout()
        title = PlainLabel("Dialogue")
        title.setProperty("role", "sectionTitle")
        row.addWidget(title, 1)
        self.new_button = QPushButton("New dialogue")
        self.new_button.setObjectName("newDialogueButton")
        self.new_button.setAccessibleName("New dialogue")
        self.new_button.setToolTip("Start a new dialogue; this one stays in the project")
        row.addWidget(self.new_button)
        lv.addLayout(row)
        self.dialogue_log = QTextBrowser()
        self.dialogue_log.setObjectName("dialogueLog")
        self.dialogue_log.setAccessibleName("Dialogue history")
        self.dialogue_log.setOpenLinks(False)
        lv.addWidget(self.dialogue_log, 1)

        self.question_card = QFrame()
        self.question_card.setObjectName("questionCard")
        self.question_card.setAccessibleName("Clarification question")
        qv = QVBoxLayout(self.question_card)
        qv.setContentsMargins(10, 8, 10, 8)
        self.question_label = QLabel("")
        self.question_label.setTextFormat(Qt.TextFormat.RichText)  # formats on purpose; escapes what it shows
        self.question_label.setObjectName("questionText")
        self.question_label.setAccessibleName("Question")
        self.question_label.setWordWrap(True)
        qv.addWidget(self.question_label)
        self.question_reason = PlainLabel("")
        self.question_reason.setObjectName("questionReason")
        self.question_reason.setAccessibleName("Why the studio asks")
        self.question_reason.setWordWrap(True)
        self.question_reason.setProperty("role", "muted")
        qv.addWidget(self.question_reason)
        self.options_row = QGridLayout()  # two answers a row: long option lists wrap
        self.options_row.setSpacing(4)
        qv.addLayout(self.options_row)
        self.options_hint = PlainLabel("…or type your answer below and press Enter.")
        self.options_hint.setObjectName("questionHint")
        self.options_hint.setWordWrap(True)
        qv.addWidget(self.options_hint)
        self.skip_button = QPushButton(f"Skip question  [{shortcuts.label('refine.skip')}]")
        self.skip_button.setObjectName("skipButton")
        self.skip_button.setAccessibleName("Skip the question")
        qv.addWidget(self.skip_button, 0, Qt.AlignmentFlag.AlignLeft)
        lv.addWidget(self.question_card)

        self.input = PromptInput()
        self.input.setObjectName("promptInput")
        self.input.setAccessibleName("Your prompt, answer or feedback")
        self.input.setPlaceholderText(
            "Describe what you want, e.g. “a red silk evening dress on a model”. "
            "Later: answer the question or give feedback (“longer sleeves”). "
            f"Enter sends, Shift+Enter: new line, Tab: next control, {shortcuts.label('refine.focus_prompt')}: back here."
        )
        self.input.setToolTip(f"Your prompt, answer or feedback ({shortcuts.label('refine.focus_prompt')})")
        self.input.setFixedHeight(72)
        lv.addWidget(self.input)
        row = QHBoxLayout()
        row.addWidget(PlainLabel("Seed"))
        self.seed_spin = QSpinBox()
        self.seed_spin.setObjectName("seedSpin")
        self.seed_spin.setAccessibleName("Seed")
        self.seed_spin.setRange(-1, 2**31 - 1)
        self.seed_spin.setSpecialValueText("random")
        self.seed_spin.setValue(-1)
        self.seed_spin.setToolTip(
            "The seed of round 0 (later rounds use it plus the round number): the same seed and "
            "prompt give the same image. Lowest value: a new random seed each time."
        )
        row.addWidget(self.seed_spin, 1)
        row.addWidget(PlainLabel("Change"))
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setObjectName("editStrengthSpin")
        self.strength_spin.setAccessibleName("Edit strength: how much the next round may change the image")
        self.strength_spin.setRange(0.05, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setValue(0.6)
        self.strength_spin.setToolTip(
            "Edit strength, 0.05 to 1.00: how much the next round may change the image it edits. "
            "Low keeps the picture and changes details; 1.00 draws it again (same pose)."
        )
        row.addWidget(self.strength_spin)
        lv.addLayout(row)
        row = QHBoxLayout()
        row.addStretch(1)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setAccessibleName("Generate")
        self.generate_button.setToolTip("Round 0: a new dialogue from what you typed")
        row.addWidget(self.generate_button)
        self.refine_button = QPushButton("Refine")
        self.refine_button.setObjectName("refineButton")
        self.refine_button.setAccessibleName("Refine")
        self.refine_button.setProperty("role", "primary")
        self.refine_button.setToolTip(
            f"Next round from your answer or feedback ({shortcuts.label('refine.send')})"
        )
        row.addWidget(self.refine_button)
        lv.addLayout(row)
        self.reference_label = PlainLabel("")
        self.reference_label.setObjectName("referenceLabel")
        self.reference_label.setAccessibleName("The round the next round edits")
        self.reference_label.setWordWrap(True)
        self.reference_label.setVisible(False)
        lv.addWidget(self.reference_label)
        self.splitter.addWidget(left)

        # --- compare (centre)
        centre = QWidget()
        centre.setObjectName("comparePanel")
        cv = QVBoxLayout(centre)
        cv.setContentsMargins(4, 8, 4, 8)
        cv.setSpacing(6)
        head = QHBoxLayout()
        self.left_combo = QComboBox()
        self.left_combo.setObjectName("leftRoundCombo")
        self.left_combo.setAccessibleName("Round on the left")
        self.right_combo = QComboBox()
        self.right_combo.setObjectName("rightRoundCombo")
        self.right_combo.setAccessibleName("Round on the right")
        head.addWidget(PlainLabel("Left:"))
        head.addWidget(self.left_combo, 1)
        head.addWidget(PlainLabel("Right:"))
        head.addWidget(self.right_combo, 1)
        self.pose_check = QCheckBox(f"Pose overlay  [{shortcuts.label('refine.pose')}]")
        self.pose_check.setObjectName("poseOverlayToggle")
        self.pose_check.setAccessibleName("Show the pose overlay")
        head.addWidget(self.pose_check)
        cv.addLayout(head)
        views = QHBoxLayout()
        self.left_view = ImageView(name="compareLeftImage", accessible="Left image")
        self.right_view = ImageView(name="compareRightImage", accessible="Right image")
        for side, v in (("left", self.left_view), ("right", self.right_view)):
            box = QVBoxLayout()
            cap = PlainLabel("")
            cap.setObjectName(f"{side}CompareCaption")
            cap.setProperty("role", "paneHeader")
            cap.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            setattr(self, f"{side}_caption", cap)
            box.addWidget(cap)
            box.addWidget(v, 1)
            views.addLayout(box, 1)
        cv.addLayout(views, 1)
        self.round_progress = JobProgress(
            self.model.bridge.queue,
            kinds=("round", "compare"),
            idle_text="No round running.",
            name="roundProgress",
        )
        cv.addWidget(self.round_progress)
        choices = QHBoxLayout()
        self.choice_buttons: dict[str, QPushButton] = {}
        for choice, text, sc in CHOICES:
            b = QPushButton(f"{text}   [{shortcuts.label(sc)}]")
            b.setObjectName(f"refineChoice_{choice.value}")
            b.setAccessibleName(text)
            b.setToolTip(shortcuts.SHORTCUTS[sc].text + " — recorded as a preference")
            b.clicked.connect(lambda _=False, c=choice: self.choose(c))
            choices.addWidget(b)
            self.choice_buttons[choice.value] = b
        cv.addLayout(choices)
        self.choice_label = PlainLabel(
            "Pick two rounds, then say which is better: each choice teaches your adapter."
        )
        self.choice_label.setObjectName("lastChoiceLabel")
        self.choice_label.setAccessibleName("Last recorded choice")
        self.choice_label.setWordWrap(True)
        cv.addWidget(self.choice_label)
        actions = QHBoxLayout()
        actions.setSpacing(4)
        self.actions_label = PlainLabel("Right image:")
        self.actions_label.setObjectName("roundActionsLabel")
        actions.addWidget(self.actions_label)
        self.action_buttons: dict[str, QPushButton] = {}
        for key, text, name, accessible in (
            ("save_as", "Save as…", "refine.save_as", "Save the right round's image as a file"),
            ("copy", "Copy", "refine.copy", "Copy the right round's image"),
            ("star", "☆ Star", "refine.star", "Star the right round"),
            ("reference", "Use as reference", "refine.reference", "Next round edits the right round"),
            (
                "open_folder",
                "Open folder",
                "refine.open_folder",
                "Open the folder of the right round's image",
            ),
            ("gallery", "All rounds", "refine.gallery", "All rounds of the dialogue"),
        ):
            b = QPushButton(text)  # the key is in the tooltip and in Help: the row stays narrow
            b.setObjectName(f"roundAction_{key}")
            b.setAccessibleName(accessible)
            b.setToolTip(f"{shortcuts.SHORTCUTS[name].text} ({shortcuts.label(name)})")
            actions.addWidget(b)
            self.action_buttons[key] = b
        actions.addStretch(1)
        cv.addLayout(actions)
        self.strip = QListWidget()
        self.strip.setObjectName("roundStrip")
        self.strip.setAccessibleName("Rounds")
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setMovement(QListView.Movement.Static)
        self.strip.setIconSize(QSize(88, 88))
        self.strip.setGridSize(QSize(104, 118))
        self.strip.setFixedHeight(134)
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.strip.setToolTip(
            "Click or Enter: show on the right · Ctrl+click or Ctrl+Enter: show on the left · "
            f"{shortcuts.label('refine.previous_round')} / {shortcuts.label('refine.next_round')}: "
            "previous / next round on the right"
        )
        cv.addWidget(self.strip)
        self.splitter.addWidget(centre)

        # --- prompt, ambiguity, personalisation (right)
        right_inner = QWidget()
        right_inner.setObjectName("refineSidePanel")
        rv = QVBoxLayout(right_inner)
        rv.setContentsMargins(4, 8, 8, 8)
        prompt_box = QGroupBox("Prompt the studio made (D2P) — editable")
        prompt_box.setObjectName("d2pBox")
        pv = QVBoxLayout(prompt_box)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setObjectName("d2pPrompt")
        self.prompt_edit.setAccessibleName("Prompt used for the next round")
        self.prompt_edit.setToolTip(
            f"Edit, then {shortcuts.label('refine.send')} runs the next round with your edit, word for "
            f"word ({shortcuts.label('refine.edit_prompt')} comes here; Tab moves on)"
        )
        self.prompt_edit.setPlaceholderText(
            "After the first round, the prompt the summarizer wrote appears here."
        )
        self.prompt_edit.setFixedHeight(80)
        pv.addWidget(self.prompt_edit)
        self.use_prompt_button = QPushButton(f"Refine with this prompt  [{shortcuts.label('refine.send')}]")
        self.use_prompt_button.setObjectName("usePromptButton")
        self.use_prompt_button.setAccessibleName("Refine with the edited prompt")
        self.use_prompt_button.setEnabled(False)
        pv.addWidget(self.use_prompt_button)
        rv.addWidget(prompt_box)

        chart_box = QGroupBox("How unclear each part of the image is")
        chart_box.setObjectName("ambiguityBox")
        chv = QVBoxLayout(chart_box)
        self.reason_label = PlainLabel("The studio says here why it asks, after the first round.")
        self.reason_label.setObjectName("ambiguityReason")
        self.reason_label.setAccessibleName("Why the studio asks or not")
        self.reason_label.setWordWrap(True)
        chv.addWidget(self.reason_label)
        self.chart = AmbiguityChart()
        chv.addWidget(self.chart)
        self.formula_check = QCheckBox(f"Show the formula  [{shortcuts.label('refine.formula')}]")
        self.formula_check.setObjectName("formulaToggle")
        self.formula_check.setAccessibleName("Show the formula behind the question")
        chv.addWidget(self.formula_check)
        self.formula_label = PlainLabel("")
        self.formula_label.setObjectName("formulaText")
        self.formula_label.setAccessibleName("The formula behind the question")
        self.formula_label.setWordWrap(True)
        self.formula_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula_label.setVisible(False)
        chv.addWidget(self.formula_label)
        rv.addWidget(chart_box)
        self.metrics_panel = RoundMetricsPanel(self.model)  # scores of each round, with their scales
        self.metrics_panel.table.setTabKeyNavigation(False)  # Tab moves on; arrows move in the table
        rv.addWidget(self.metrics_panel)

        pers = QGroupBox("Personalisation")
        pers.setObjectName("personalisationBox")
        psv = QVBoxLayout(pers)
        self.update_label = PlainLabel("")
        self.update_label.setObjectName("choicesUntilUpdate")
        self.update_label.setAccessibleName("Choices until the next update")
        self.update_label.setWordWrap(True)
        psv.addWidget(self.update_label)
        self.update_bar = QProgressBar()
        self.update_bar.setObjectName("choicesUntilUpdateBar")
        self.update_bar.setAccessibleName("Choices collected toward the next update")
        self.update_bar.setTextVisible(False)
        self.update_bar.setFixedHeight(6)
        psv.addWidget(self.update_bar)
        row = QHBoxLayout()
        row.addWidget(PlainLabel("Adapter:"))
        self.scope_combo = QComboBox()
        self.scope_combo.setObjectName("adapterScopeCombo")
        self.scope_combo.setAccessibleName("Which adapter this project uses")
        self.scope_combo.addItem("this project's", "project")
        self.scope_combo.addItem("mine, across projects", "user")
        self.scope_combo.setToolTip(
            "This project's adapter learns from this project's choices only (sample-specific); "
            "yours learns from all your projects (generalised)."
        )
        row.addWidget(self.scope_combo, 1)
        psv.addLayout(row)
        self.adapter_label = PlainLabel("")
        self.adapter_label.setObjectName("activeAdapter")
        self.adapter_label.setAccessibleName("Active adapter")
        self.adapter_label.setWordWrap(True)
        psv.addWidget(self.adapter_label)
        row = QHBoxLayout()
        self.version_combo = QComboBox()
        self.version_combo.setObjectName("adapterVersionCombo")
        self.version_combo.setAccessibleName("Adapter version")
        row.addWidget(self.version_combo, 1)
        self.switch_button = QPushButton("Switch")
        self.switch_button.setObjectName("switchAdapterButton")
        self.switch_button.setAccessibleName("Switch to the selected adapter version")
        row.addWidget(self.switch_button)
        psv.addLayout(row)
        row = QHBoxLayout()
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.setObjectName("rollbackButton")
        self.rollback_button.setAccessibleName("Roll back to the previous adapter")
        row.addWidget(self.rollback_button)
        self.train_button = QPushButton("Update now")
        self.train_button.setObjectName("trainButton")
        self.train_button.setAccessibleName("Update the adapter now")
        row.addWidget(self.train_button)
        psv.addLayout(row)
        self.compare_button = QPushButton("Base vs adapted (same seed)")
        self.compare_button.setObjectName("compareAdapterButton")
        self.compare_button.setAccessibleName("Compare base and adapted on the same seed")
        psv.addWidget(self.compare_button)
        self.train_progress = JobProgress(
            self.model.bridge.queue, kinds=("train",), idle_text="", name="trainProgress"
        )
        psv.addWidget(self.train_progress)
        rv.addWidget(pers)
        rv.addStretch(1)
        self.splitter.addWidget(side_scroll(right_inner, "refineSideScroll", 320))
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([330, 760, 330])

    # ------------------------------------------------------------------ bindings
    def _bind(self) -> None:
        m = self.model
        m.rounds_changed.connect(self._on_rounds)
        m.comparison_changed.connect(self._on_comparison)
        m.pending_question_changed.connect(self._on_question)
        m.reflection_changed.connect(self._on_reflection)
        m.prompt_changed.connect(self._on_prompt)
        m.busy_changed.connect(self._on_busy)
        m.preview_changed.connect(self._on_preview)
        m.pose_map_changed.connect(self._on_pose_map)
        m.personalisation_changed.connect(self._on_personalisation)
        m.last_choice_changed.connect(lambda text: self.choice_label.setText(text))
        m.reference_changed.connect(self._on_reference)
        m.starred_changed.connect(lambda _s: self._on_starred())
        m.draft_restored.connect(self._on_draft)
        m.message.connect(self._show_message)
        m.error.connect(self._show_error)
        self.input.textChanged.connect(lambda: setattr(m, "draft_input", self.input.toPlainText()))
        self.prompt_edit.textChanged.connect(lambda: setattr(m, "draft_d2p", self.prompt_edit.toPlainText()))
        self._strength_timer.timeout.connect(
            lambda: self.tasks.spawn(m.set_edit_strength(self.strength_spin.value()))
        )
        self.strength_spin.valueChanged.connect(lambda _v: self._strength_timer.start())
        self.formula_check.toggled.connect(self._on_formula_toggled)
        acts = self.action_buttons
        acts["save_as"].clicked.connect(self.save_as)
        acts["copy"].clicked.connect(self.copy_image)
        acts["star"].clicked.connect(self.toggle_star)
        acts["reference"].clicked.connect(self.use_as_reference)
        acts["open_folder"].clicked.connect(self.open_folder)
        acts["gallery"].clicked.connect(self.show_gallery)
        self.strip.itemActivated.connect(self._on_strip_clicked)

        self.new_button.clicked.connect(m.new_dialogue)
        self.generate_button.clicked.connect(self.generate)
        self.refine_button.clicked.connect(self.send)
        self.input.send.connect(self.send)
        self.skip_button.clicked.connect(self.skip)
        self.use_prompt_button.clicked.connect(self.use_edited_prompt)
        self.prompt_edit.textChanged.connect(self._on_prompt_edited)
        self.pose_check.toggled.connect(self._on_pose_toggled)
        self.left_combo.activated.connect(lambda i: self._pick_from_combo())
        self.right_combo.activated.connect(lambda i: self._pick_from_combo())
        self.strip.itemClicked.connect(self._on_strip_clicked)
        self.switch_button.clicked.connect(self._on_switch)
        self.scope_combo.activated.connect(
            lambda i: self.tasks.spawn(m.set_scope(self.scope_combo.itemData(i)))
        )
        self.rollback_button.clicked.connect(lambda: self.tasks.spawn(m.rollback()))
        self.train_button.clicked.connect(lambda: self.tasks.spawn(m.train()))
        self.compare_button.clicked.connect(lambda: self.tasks.spawn(m.compare_base_adapted()))

    def _make_shortcuts(self) -> None:
        def bind(name: str, fn: Callable[[], Any]) -> None:
            bind_shortcut(self, name, fn)

        bind("refine.send", self.send)
        bind("refine.skip", self.skip)
        bind("refine.cancel", self.model.cancel)
        bind("refine.edit_prompt", lambda: self.prompt_edit.setFocus(Qt.FocusReason.ShortcutFocusReason))
        bind("refine.focus_prompt", self.focus_work)
        bind("refine.pose", lambda: self.pose_check.toggle())
        bind("refine.previous_round", lambda: self.step_right(-1))
        bind("refine.next_round", lambda: self.step_right(1))
        bind("refine.gallery", self.show_gallery)
        bind("refine.save_as", self.save_as)
        bind("refine.copy", self.copy_image)
        bind("refine.star", self.toggle_star)
        bind("refine.reference", self.use_as_reference)
        bind("refine.open_folder", self.open_folder)
        bind("refine.formula", lambda: self.formula_check.toggle())
        for choice, _text, sc in CHOICES:
            bind(sc, functools.partial(self.choose, choice))
        for i, key in enumerate(shortcuts.keys("refine.answer")):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(functools.partial(self.answer_nth, i))

    def _back_to_work(self) -> None:
        """After a dialog of the view closes: the window is active again, the keys go to the work."""
        self.window().activateWindow()
        self.focus_work()

    def focus_work(self) -> None:
        """Where the work is: the prompt box (prompt, answer, feedback); the window calls this
        when the view is shown, on a tab switch and after a project opens."""
        self.input.setFocus(Qt.FocusReason.ShortcutFocusReason)

    # ------------------------------------------------------------------ actions
    def seed(self) -> int | None:
        v = self.seed_spin.value()
        return None if v < 0 else v

    def generate(self) -> asyncio.Future:
        text = self.input.toPlainText()
        return self._sent(text, self.tasks.spawn(self.model.generate(text, seed=self.seed())))

    def _d2p_edited(self) -> bool:
        edited = self.prompt_edit.toPlainText().strip()
        return bool(self.model.rounds) and bool(edited) and edited != self.model.prompt.strip()

    def send(self) -> asyncio.Future | None:
        """Generate when there is no round yet; otherwise Refine with an answer or feedback, or
        with the edited D2P prompt when the edit is where the focus is (or nothing is typed)."""
        if self._d2p_edited() and (self.prompt_edit.hasFocus() or not self.input.toPlainText().strip()):
            return self.use_edited_prompt()
        if not self.model.rounds:
            return self.generate()
        text = self.input.toPlainText().strip()
        q = self.model.pending_question
        if text:
            reply: api.Reply = api.Answer(q.aspect, text) if q is not None else api.Feedback(text)
        elif q is not None:
            reply = api.Skip()
        else:
            self._show_message("info", "Type feedback or an answer first (or edit the prompt on the right).")
            return None
        return self._sent(self.input.toPlainText(), self.tasks.spawn(self.model.refine(reply)))

    def answer(self, option: str) -> asyncio.Future | None:
        q = self.model.pending_question
        if q is None:
            return None
        return self.tasks.spawn(self.model.refine(api.Answer(q.aspect, option)))

    def answer_nth(self, i: int) -> asyncio.Future | None:
        """The i-th one-click answer (Alt+1 …), when the question has one and no round runs."""
        if i >= len(self._option_buttons) or not self._option_buttons[i].isEnabled():
            return None
        return self.answer(self._option_buttons[i].property("option"))

    def skip(self) -> asyncio.Future | None:
        if self.model.pending_question is None or not self.model.rounds:
            return None
        return self.tasks.spawn(self.model.refine(api.Skip()))

    def use_edited_prompt(self) -> asyncio.Future | None:
        """The next round with the edited D2P prompt, word for word; the edit comes back in
        the box when the round is cancelled or fails."""
        text = self.prompt_edit.toPlainText().strip()
        if not text:
            return None
        fut = self.tasks.spawn(self.model.refine(api.PromptEdit(text)))

        def restore(f: asyncio.Future) -> None:
            ok = not f.cancelled() and f.exception() is None and f.result() is not None
            if not ok and is_alive(self.prompt_edit):
                self.prompt_edit.setPlainText(text)

        fut.add_done_callback(restore)
        return fut

    def choose(self, choice: Choice) -> asyncio.Future:
        return self.tasks.spawn(self.model.choose(choice))

    def _sent(self, text: str, fut: asyncio.Future) -> asyncio.Future:
        """The typed text moves into the dialogue now; it comes back if the round fails."""
        if not text.strip():
            return fut
        self.input.clear()
        self._in_flight_text = text

        def restore(f: asyncio.Future) -> None:
            if self._in_flight_text == text:  # not a later round's text (callbacks run late)
                self._in_flight_text = ""
            ok = not f.cancelled() and f.exception() is None and f.result() is not None
            if not ok and is_alive(self.input) and not self.input.toPlainText():
                self.input.setPlainText(text)

        fut.add_done_callback(restore)
        return fut

    # ------------------------------------------------------------------ round actions
    def target(self) -> RoundView | None:
        """The round the round actions act on: the one shown on the right."""
        r = self.model.comparison.right
        if r is None:
            self._show_message("info", "Show a round on the right first (Alt+Right, or the strip).")
        return r

    def step_right(self, step: int) -> None:
        """Show the previous (-1) or next (+1) round of the dialogue on the right."""
        rounds = self.model.rounds
        if not rounds:
            return
        comp = self.model.comparison
        numbers = [r.round for r in rounds]
        current = comp.right.round if comp.right is not None and comp.right.round in numbers else numbers[-1]
        i = max(0, min(len(rounds) - 1, numbers.index(current) + step))
        self.model.compare(comp.left, rounds[i])

    def save_as(self, path: str | None = None) -> QFileDialog | asyncio.Future | None:
        """Save the right round's PNG (with its provenance) where the designer says; a file
        dialog (not modal: the studio keeps running) asks when no path is given."""
        r = self.target()
        if r is None:
            return None
        if path:
            return self.tasks.spawn(self.model.save_image_as(r, path))
        folder = Path(self.model.store.path / "exports") if self.model.store is not None else Path.home()
        dlg = QFileDialog(
            self, f"Save {r.title} as", str(folder / f"round-{r.round}.png"), "PNG images (*.png)"
        )
        dlg.setObjectName("saveRoundDialog")
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dlg.setOption(QFileDialog.Option.DontUseNativeDialog, True)  # keys work the same everywhere
        dlg.setDefaultSuffix("png")
        dlg.fileSelected.connect(lambda p: self.tasks.spawn(self.model.save_image_as(r, p)))
        dlg.finished.connect(lambda _r: self._back_to_work())
        self.save_dialog = dlg
        name_box = open_for_keys(dlg)  # the keys go to the file name at once
        if name_box is not None:
            name_box.selectAll()
        return dlg

    def copy_image(self) -> bool:
        r = self.target()
        if r is None or r.image is None:
            return False
        QGuiApplication.clipboard().setImage(r.image)
        self._show_message("info", f"{r.title} copied: paste it into any image program.")
        return True

    def toggle_star(self) -> asyncio.Future | None:
        r = self.target()
        if r is None or not r.image_id:
            return None
        return self.tasks.spawn(self.model.toggle_star(r.image_id))

    def use_as_reference(self) -> None:
        """The next round edits the right round instead of the latest; again: back to the latest."""
        r = self.target()
        if r is None or r.round < 0:
            return
        self.model.set_reference(None if self.model.reference_round == r.round else r.round)

    def open_folder(self) -> Path | None:
        r = self.target()
        if r is None or not r.image_path:
            return None
        folder = Path(r.image_path).parent
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self._show_message("info", f"{r.title} is {Path(r.image_path).name} in {folder}")
        return folder

    def show_gallery(self) -> RoundGallery | None:
        if not self.model.rounds:
            self._show_message("info", "No rounds yet: type a prompt and press Enter.")
            return None
        if self.gallery is None:
            self.gallery = RoundGallery(self)
            self.gallery.picked.connect(self._on_gallery_pick)
            self.gallery.finished.connect(lambda _r: self._back_to_work())
        self.gallery.fill(self.model.rounds, self.model.starred, self.model.comparison.right)
        self.gallery.open()
        self.gallery.activateWindow()
        self.gallery.list.setFocus(Qt.FocusReason.ActiveWindowFocusReason)
        return self.gallery

    def _on_gallery_pick(self, number: int, left: bool) -> None:
        r = self._round(number)
        comp = self.model.comparison
        if left:
            self.model.compare(r, comp.right)
        else:
            self.model.compare(comp.left, r)

    def confirm_quit(self) -> bool:
        """Ctrl+Q while a round runs: the first press says so, a second one stops the round and
        quits; what was typed (sent with the round or not) is kept as the project's draft."""
        if not self.model.busy:
            return True
        now = time.monotonic()
        if now - self._quit_asked_at <= QUIT_AGAIN_S:
            if not self.input.toPlainText().strip() and self._in_flight_text:
                self.model.draft_input = self._in_flight_text
            self.model.cancel()
            return True
        self._quit_asked_at = now
        self._show_message(
            "warning",
            f"A round is running. Press {shortcuts.label('app.quit')} again to stop it and quit (what you "
            "typed is kept for next time), or wait for it to finish.",
        )
        return False

    # ------------------------------------------------------------------ model -> widgets
    def _on_rounds(self, rounds: list[RoundView]) -> None:
        self.strip.clear()
        starred = self.model.starred
        for r in rounds:
            item = QListWidgetItem(f"{'★ ' if r.image_id in starred else ''}Round {r.round}")
            if r.thumb is not None:
                item.setIcon(QIcon(QPixmap.fromImage(r.thumb)))
            item.setData(Qt.ItemDataRole.UserRole, r.round)
            item.setToolTip(plain_tooltip(r.prompt))
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"Round {r.round}: {r.prompt}")
            self.strip.addItem(item)
        if rounds:
            self.strip.scrollToItem(self.strip.item(self.strip.count() - 1))
        for combo in (self.left_combo, self.right_combo):
            combo.blockSignals(True)
            combo.clear()
            for r in rounds:
                combo.addItem(f"Round {r.round}", r.round)
            combo.blockSignals(False)
        self.refine_button.setEnabled(bool(rounds) and not self.model.busy)
        self._update_primary()
        self._sync_strength()
        self._render_dialogue()

    def _sync_strength(self) -> None:
        """The edit strength box shows the project's value (saved from here or from Settings)."""
        store = self.model.store
        if store is None or self.strength_spin.hasFocus():
            return
        self.strength_spin.blockSignals(True)
        self.strength_spin.setValue(store.settings.edit_strength)
        self.strength_spin.blockSignals(False)

    def _update_primary(self) -> None:
        """The highlighted button is the one to press next, and it is enabled: Generate before
        the first round, Refine after it."""
        first = not self.model.rounds
        for b, on in ((self.generate_button, first), (self.refine_button, not first)):
            if (b.property("role") == "primary") != on:
                b.setProperty("role", "primary" if on else None)
                b.style().unpolish(b)
                b.style().polish(b)
        self.refine_button.setDefault(not first)
        self.generate_button.setDefault(first)

    def _on_starred(self) -> None:
        self._on_rounds(self.model.rounds)
        self._on_comparison(self.model.comparison)

    def _on_reference(self, number: int | None) -> None:
        self.reference_label.setVisible(number is not None)
        if number is not None:
            self.reference_label.setText(
                f"The next round edits round {number} (not the latest). "
                f"{shortcuts.label('refine.reference')} on round {number} again: back to the latest."
            )
        self._on_comparison(self.model.comparison)

    def _on_draft(self, draft: dict) -> None:
        if draft.get("input") and not self.input.toPlainText():
            self.input.setPlainText(draft["input"])
        if draft.get("d2p"):
            self.prompt_edit.setPlainText(draft["d2p"])
        self._show_message("info", "What you typed before the studio closed is back in its box.")

    def _on_formula_toggled(self, on: bool) -> None:
        self.chart.set_show_formula(on)
        self.formula_label.setVisible(on and bool(self.formula_label.text()))

    def _round(self, number: int) -> RoundView | None:
        return next((r for r in self.model.rounds if r.round == number), None)

    def _on_comparison(self, comp: Comparison) -> None:
        for side, view, caption, combo in (
            ("left", self.left_view, self.left_caption, self.left_combo),
            ("right", self.right_view, self.right_caption, self.right_combo),
        ):
            r: RoundView | None = getattr(comp, side)
            if r is None:
                view.set_image(
                    None,
                    "Pick a round from the strip below."
                    if self.model.rounds
                    else "Type a prompt on the left and press Generate.",
                )
                caption.setText(side.title())
                continue
            message = "" if r.image is not None else f"Image missing: {r.image_path or r.image_id}"
            view.set_image(r.image, message)
            seed = f" · seed {r.seed}" if r.seed is not None else ""
            adapter = f" · adapter {r.adapter_version}" if r.adapter_version else ""
            star = "★ " if r.image_id in self.model.starred else ""
            ref = " · reference" if r.round >= 0 and r.round == self.model.reference_round else ""
            caption.setText(f"{side.title()}: {star}{r.title}{seed}{adapter}{ref}")
            i = combo.findData(r.round)
            if r.round >= 0 and i >= 0:
                combo.setCurrentIndex(i)
        self._apply_pose()
        has_two = comp.left is not None and comp.right is not None
        for b in self.choice_buttons.values():
            b.setEnabled(has_two)
        right = comp.right
        for key, b in self.action_buttons.items():
            b.setEnabled(key == "gallery" and bool(self.model.rounds) or right is not None)
        starred = right is not None and right.image_id in self.model.starred
        self.action_buttons["star"].setText("★ Starred" if starred else "☆ Star")
        self.action_buttons["reference"].setEnabled(right is not None and right.round >= 0)
        if right is not None:
            self.actions_label.setText(f"{right.title}:")

    def _on_question(self, q: Question | None) -> None:
        for b in self._option_buttons:
            self.options_row.removeWidget(b)
            b.deleteLater()
        self._option_buttons = []
        self.question_card.setVisible(q is not None)
        if q is None:
            self.refine_button.setText("Refine")
            self.question_reason.setText("")
            return
        self.question_label.setText(f"<b>{html.escape(aspect_label(q.aspect))}</b> — {html.escape(q.text)}")
        r = self.model.reflection
        self.question_reason.setText(
            plain_reason(r.scores, r.ambiguity, r.threshold, q.aspect) if r is not None and r.scores else ""
        )
        self.question_reason.setVisible(bool(self.question_reason.text()))
        keys = shortcuts.keys("refine.answer")
        for i, opt in enumerate(q.options[: len(keys)]):
            b = QPushButton(f"{opt}  [{keys[i]}]")
            b.setProperty("option", opt)
            b.setObjectName(f"optionButton_{i}")
            b.setAccessibleName(f"Answer: {opt}")
            b.setToolTip(plain_tooltip(f"Answer “{opt}” and refine ({keys[i]})"))
            b.setEnabled(not self.model.busy)
            b.clicked.connect(lambda _=False, o=opt: self.answer(o))
            self.options_row.addWidget(b, i // 2, i % 2)
            b.setVisible(True)  # now, not on the next event loop pass: a Tab pressed at once finds it
            self._option_buttons.append(b)
        self.options_hint.setText(
            "…or type your own answer below and press Enter."
            if q.options
            else "Type your answer below and press Enter."
        )
        self.refine_button.setText("Answer && refine")
        # Tab order: the prompt box, the answers, Skip, the seed (buttons made now go last otherwise)
        chain: list[QWidget] = [self.input, *self._option_buttons, self.skip_button, self.seed_spin]
        for first, then in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, then)

    def _on_reflection(self, r: RoundView | None) -> None:
        if r is None or not r.scores:
            self.chart.clear()
            self.reason_label.setText(
                "The studio says here why it asks, after the first round." if r is None else ""
            )
            self.formula_label.setText("")
            self.formula_label.setVisible(False)
            return
        weights = self.model.store.settings.aspect_weights if self.model.store is not None else None
        self.chart.set_data(r.scores, r.ambiguity, r.threshold, r.question_aspect, r.captions, weights)
        self.reason_label.setText(plain_reason(r.scores, r.ambiguity, r.threshold, r.question_aspect))
        self.formula_label.setText(formula(r.scores, r.ambiguity, r.threshold, r.question_aspect))
        self.formula_label.setVisible(self.formula_check.isChecked())

    def _on_prompt(self, text: str) -> None:
        self.prompt_edit.blockSignals(True)
        self.prompt_edit.setPlainText(text or "")
        self.prompt_edit.blockSignals(False)
        self.use_prompt_button.setEnabled(False)

    def _on_prompt_edited(self) -> None:
        self.use_prompt_button.setEnabled(self._d2p_edited() and not self.model.busy)

    def _on_busy(self, busy: bool) -> None:
        for w in (
            self.generate_button,
            self.refine_button,
            self.skip_button,
            self.use_prompt_button,
            self.compare_button,
        ):
            w.setEnabled(not busy)
        for b in self._option_buttons:
            b.setEnabled(not busy)
        if not busy:
            self.refine_button.setEnabled(bool(self.model.rounds))
            self.compare_button.setEnabled(self.model.personalisation.can_compare)
            self._on_prompt_edited()
            self._on_comparison(self.model.comparison)
        else:
            self.right_caption.setText("Right: generating…")

    def _on_preview(self, image: Any) -> None:
        if image is not None:
            self.right_view.set_image(image)
            self.right_view.set_overlay_visible(False)

    def _on_pose_map(self, image: Any) -> None:
        self.pose_check.setEnabled(image is not None)
        if image is None:
            self.pose_check.setToolTip("No pose was found in round 0 (or no round yet).")
        else:
            self.pose_check.setToolTip("Show the smoothed pose map from round 0 over the images")
        self._apply_pose()

    def _on_pose_toggled(self, _on: bool) -> None:
        self._apply_pose()

    def _apply_pose(self) -> None:
        pose = self.model.pose_map
        on = self.pose_check.isChecked() and pose is not None
        for v in (self.left_view, self.right_view):
            v.set_overlay(pose)
            v.set_overlay_visible(on)

    def _on_personalisation(self, p: Personalisation) -> None:
        self._sync_strength()
        self.update_bar.setVisible(p.available and p.remaining is not None)
        if not p.available:
            self.update_label.setText(p.note or "Personalisation is not available in this build.")
            for w in (
                self.switch_button,
                self.rollback_button,
                self.train_button,
                self.compare_button,
                self.version_combo,
            ):
                w.setEnabled(False)
            return
        if p.remaining is None:
            self.update_label.setText("Open a project to see your personalisation.")
        else:
            self.update_label.setText(f"{p.remaining} of {p.every} choices until the next update")
            self.update_bar.setRange(0, max(1, p.every))
            self.update_bar.setValue(max(0, p.every - p.remaining))
        active = p.active or "base model (no adapter)"
        self.adapter_label.setText(f"Active: {active}")
        self.version_combo.clear()
        self.version_combo.addItem("Base model (no adapter)", "")  # "" not None: PySide refcount bug
        for v in p.versions:
            vid = getattr(v, "id", str(v))
            status = getattr(v, "status", "ok")
            acc = getattr(v, "implicit_accuracy", None)
            extra = f" · acc {acc:.2f}" if isinstance(acc, (int, float)) else ""
            extra += f" · {status}" if status and status != "ok" else ""
            self.version_combo.addItem(f"{vid}{extra}", vid)
        i = self.version_combo.findData(p.active or "")
        self.version_combo.setCurrentIndex(max(0, i))
        self.version_combo.setEnabled(bool(p.versions))
        self.switch_button.setEnabled(bool(p.versions))
        self.rollback_button.setEnabled(p.active is not None)
        self.train_button.setEnabled(True)
        self.compare_button.setEnabled(p.can_compare and not self.model.busy)
        self.compare_button.setToolTip(
            "Generate the latest prompt with and without your adapter, on the same seed"
            if p.can_compare
            else "No active adapter with weights on disk yet: make choices until the first update."
        )

    def _on_switch(self) -> None:
        self.tasks.spawn(self.model.activate(self.version_combo.currentData() or None))

    def _pick_from_combo(self) -> None:
        left = self._round(self.left_combo.currentData()) if self.left_combo.count() else None
        right = self._round(self.right_combo.currentData()) if self.right_combo.count() else None
        self.model.compare(left, right)

    def _on_strip_clicked(self, item: QListWidgetItem) -> None:
        from PySide6.QtWidgets import QApplication

        r = self._round(item.data(Qt.ItemDataRole.UserRole))
        comp = self.model.comparison
        if QApplication.keyboardModifiers() & Qt.KeyboardModifier.ControlModifier:
            self.model.compare(r, comp.right)
        else:
            self.model.compare(comp.left, r)

    def _render_dialogue(self) -> None:
        rounds = self.model.rounds
        if not rounds:
            self.dialogue_log.setHtml(
                "<p style='color:#9aa0a8'>Start with a prompt below. The studio generates an image, keeps the "
                "model's pose, and asks about what is still unclear. Answer with one click, type your own "
                "answer, skip, or give free feedback. Each round is saved in the project.</p>"
            )
            return
        parts = []
        for r in rounds:
            you = r.user_input or (r.prompt if r.round == 0 else "")
            if r.kind == "skip":
                you = "(skipped the question)"
            if you:
                parts.append(
                    f"<table width='100%'><tr><td></td><td align='right' bgcolor='#2b4a7a' "
                    f"style='padding:6px'><b>You</b> · round {r.round}<br>{html.escape(you)}</td></tr></table>"
                )
            # plain words first: why the studio asks (or not); the numbers stay behind the toggle
            reason = plain_reason(
                r.scores, r.ambiguity, r.threshold, r.question_aspect if r.question else None
            )
            said = r.system_response or f"Round {r.round} is ready."
            if reason and not r.question:
                said = reason
            if said != r.question:  # the engine often answers with its question: say it once
                parts.append(
                    f"<table width='100%'><tr><td bgcolor='#34373d' style='padding:6px'><b>Studio</b> · "
                    f"round {r.round}<br>{html.escape(said)}</td><td></td></tr></table>"
                )
            if r.question:
                why = f"<br><i>{html.escape(reason)}</i>" if reason else ""
                parts.append(
                    f"<table width='100%'><tr><td bgcolor='#4a3b17' style='padding:6px'><b>Studio asks</b> · "
                    f"round {r.round} · {html.escape(aspect_label(r.question_aspect) if r.question_aspect else '')}<br>{html.escape(r.question)}"
                    f"{why}</td><td></td></tr></table>"
                )
        self.dialogue_log.setHtml("".join(parts))
        bar = self.dialogue_log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(1360, 820)


class RoundGallery(QDialog):
    """All rounds of the dialogue as large thumbnails; Enter shows the selected round on the
    right, Ctrl+Enter on the left (a double-click too); Esc closes."""

    picked = Signal(int, bool)  # round number, on the left

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("roundGallery")
        self.setWindowTitle("All rounds of this dialogue")
        self.setAccessibleName("All rounds of this dialogue")
        v = QVBoxLayout(self)
        hint = PlainLabel("Enter: show on the right · Ctrl+Enter: on the left · Esc: close. ★ = starred.")
        hint.setWordWrap(True)
        v.addWidget(hint)
        self.list = QListWidget()
        self.list.setObjectName("roundGalleryList")
        self.list.setAccessibleName("Rounds")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setWrapping(True)
        self.list.setIconSize(QSize(200, 200))
        self.list.setGridSize(QSize(220, 250))
        self.list.setWordWrap(True)
        self.list.itemActivated.connect(self._activated)
        v.addWidget(self.list, 1)
        self.resize(960, 640)

    def fill(self, rounds: list[RoundView], starred: frozenset[str], current: RoundView | None) -> None:
        self.list.clear()
        for r in rounds:
            item = QListWidgetItem(f"{'★ ' if r.image_id in starred else ''}Round {r.round}")
            if r.image is not None:
                item.setIcon(QIcon(QPixmap.fromImage(r.image)))
            item.setData(Qt.ItemDataRole.UserRole, r.round)
            said = r.user_input or ("(skipped)" if r.kind == "skip" else "")
            item.setToolTip(plain_tooltip(f"{r.prompt}" + (f"\nYou said: {said}" if said else "")))
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"Round {r.round}: {r.prompt}")
            self.list.addItem(item)
        row = next((i for i, r in enumerate(rounds) if current is not None and r.round == current.round), -1)
        self.list.setCurrentRow(row if row >= 0 else self.list.count() - 1)

    def _activated(self, item: QListWidgetItem) -> None:
        left = bool(QApplication.keyboardModifiers() & Qt.KeyboardModifier.ControlModifier)
        self.picked.emit(int(item.data(Qt.ItemDataRole.UserRole)), left)
        self.accept()
