"""The refinement view: a designer's dialogue with the studio, round by round.

Left: the dialogue (what the user said, what the studio answered, its clarification questions
with one-click answers and Skip) and the input box with Generate / Refine. Centre: any two
rounds side by side (choosing one records a preference), the pose overlay toggle, the live
preview while a round runs, and the rounds as a strip of thumbnails. Right: the prompt the
studio made (D2P, editable: an edit becomes the next round's prompt), the per-aspect
ambiguity chart, and personalisation (k of N choices until the next update, adapter versions,
switch, roll back, base versus adapted).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
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
from studio.ui.ambiguity_chart import AmbiguityChart
from studio.ui.image_view import ImageView
from studio.ui.job_widget import JobProgress
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.ui.view_parts import bind_shortcut, side_scroll
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


class PromptInput(QPlainTextEdit):
    """The input box: Enter sends (Shift+Enter for a new line), like a chat."""

    send = Signal()

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
        self._build()
        self._bind()
        self._make_shortcuts()
        self._render_dialogue()
        self._on_personalisation(model.personalisation)
        self._on_question(None)

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
        self.options_row = QGridLayout()  # three answers a row: long option lists wrap
        self.options_row.setSpacing(4)
        qv.addLayout(self.options_row)
        self.options_hint = PlainLabel("…or type your answer below and press Refine.")
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
            "Later: answer the question or give feedback (“longer sleeves”). Enter sends."
        )
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
        row.addWidget(self.seed_spin, 1)
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
        self.strip.setToolTip("Click: show on the right · Ctrl+click: show on the left")
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
        self.prompt_edit.setObjectName("d2pPrompt")
        self.prompt_edit.setAccessibleName("Prompt used for the next round")
        self.prompt_edit.setPlaceholderText(
            "After the first round, the prompt the summarizer wrote appears here."
        )
        self.prompt_edit.setFixedHeight(80)
        pv.addWidget(self.prompt_edit)
        self.use_prompt_button = QPushButton("Refine with this prompt")
        self.use_prompt_button.setObjectName("usePromptButton")
        self.use_prompt_button.setAccessibleName("Refine with the edited prompt")
        self.use_prompt_button.setEnabled(False)
        pv.addWidget(self.use_prompt_button)
        rv.addWidget(prompt_box)

        chart_box = QGroupBox("Ambiguity per aspect (1 − sᵢ)")
        chart_box.setObjectName("ambiguityBox")
        chv = QVBoxLayout(chart_box)
        self.chart = AmbiguityChart()
        chv.addWidget(self.chart)
        rv.addWidget(chart_box)

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
        m.message.connect(self._show_message)
        m.error.connect(self._show_error)

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
        bind("refine.edit_prompt", lambda: self.prompt_edit.setFocus())
        bind("refine.pose", lambda: self.pose_check.toggle())
        for choice, _text, sc in CHOICES:
            bind(sc, functools.partial(self.choose, choice))

    # ------------------------------------------------------------------ actions
    def seed(self) -> int | None:
        v = self.seed_spin.value()
        return None if v < 0 else v

    def generate(self) -> asyncio.Future:
        text = self.input.toPlainText()
        return self._sent(text, self.tasks.spawn(self.model.generate(text, seed=self.seed())))

    def send(self) -> asyncio.Future | None:
        """Generate when there is no round yet; otherwise Refine with an answer or feedback."""
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

    def skip(self) -> asyncio.Future | None:
        if self.model.pending_question is None or not self.model.rounds:
            return None
        return self.tasks.spawn(self.model.refine(api.Skip()))

    def use_edited_prompt(self) -> asyncio.Future | None:
        text = self.prompt_edit.toPlainText().strip()
        if not text:
            return None
        return self.tasks.spawn(self.model.refine(api.PromptEdit(text)))

    def choose(self, choice: Choice) -> asyncio.Future:
        return self.tasks.spawn(self.model.choose(choice))

    def _sent(self, text: str, fut: asyncio.Future) -> asyncio.Future:
        """The typed text moves into the dialogue now; it comes back if the round fails."""
        if not text.strip():
            return fut
        self.input.clear()

        def restore(f: asyncio.Future) -> None:
            ok = not f.cancelled() and f.exception() is None and f.result() is not None
            if not ok and not self.input.toPlainText():
                self.input.setPlainText(text)

        fut.add_done_callback(restore)
        return fut

    # ------------------------------------------------------------------ model -> widgets
    def _on_rounds(self, rounds: list[RoundView]) -> None:
        self.strip.clear()
        for r in rounds:
            item = QListWidgetItem(f"Round {r.round}")
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
        self._render_dialogue()

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
            caption.setText(f"{side.title()}: {r.title}{seed}{adapter}")
            i = combo.findData(r.round)
            if r.round >= 0 and i >= 0:
                combo.setCurrentIndex(i)
        self._apply_pose()
        has_two = comp.left is not None and comp.right is not None
        for b in self.choice_buttons.values():
            b.setEnabled(has_two)

    def _on_question(self, q: Question | None) -> None:
        for b in self._option_buttons:
            self.options_row.removeWidget(b)
            b.deleteLater()
        self._option_buttons = []
        self.question_card.setVisible(q is not None)
        if q is None:
            self.refine_button.setText("Refine")
            return
        self.question_label.setText(f"<b>{html.escape(q.aspect)}</b> — {html.escape(q.text)}")
        for i, opt in enumerate(q.options[:6]):
            b = QPushButton(opt)
            b.setObjectName(f"optionButton_{i}")
            b.setAccessibleName(f"Answer: {opt}")
            b.setToolTip(f"Answer “{opt}” and refine")
            b.clicked.connect(lambda _=False, o=opt: self.answer(o))
            self.options_row.addWidget(b, i // 3, i % 3)
            self._option_buttons.append(b)
        self.options_hint.setText(
            "…or type your own answer below and press Refine."
            if q.options
            else "Type your answer below and press Refine."
        )
        self.refine_button.setText("Answer && refine")

    def _on_reflection(self, r: RoundView | None) -> None:
        if r is None or not r.scores:
            self.chart.clear()
            return
        weights = self.model.store.settings.aspect_weights if self.model.store is not None else None
        self.chart.set_data(r.scores, r.ambiguity, r.threshold, r.question_aspect, r.captions, weights)

    def _on_prompt(self, text: str) -> None:
        self.prompt_edit.blockSignals(True)
        self.prompt_edit.setPlainText(text or "")
        self.prompt_edit.blockSignals(False)
        self.use_prompt_button.setEnabled(False)

    def _on_prompt_edited(self) -> None:
        edited = self.prompt_edit.toPlainText().strip()
        self.use_prompt_button.setEnabled(
            bool(self.model.rounds) and bool(edited) and edited != self.model.prompt.strip()
        )

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
            said = r.system_response or f"Round {r.round} is ready."
            if said != r.question:  # the engine often answers with its question: say it once
                parts.append(
                    f"<table width='100%'><tr><td bgcolor='#34373d' style='padding:6px'><b>Studio</b> · "
                    f"round {r.round}<br>{html.escape(said)}</td><td></td></tr></table>"
                )
            if r.question:
                parts.append(
                    f"<table width='100%'><tr><td bgcolor='#4a3b17' style='padding:6px'><b>Studio asks</b> · "
                    f"round {r.round} · {html.escape(r.question_aspect or '')}<br>{html.escape(r.question)}"
                    "</td><td></td></tr></table>"
                )
        self.dialogue_log.setHtml("".join(parts))
        bar = self.dialogue_log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(1360, 820)
