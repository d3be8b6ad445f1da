"""Settings: model roles and paths (with the models check), generation, dialogue, updates, projects.

Engine settings belong to the project and are saved with ``store.save_settings`` (into its
``project.json``); the model profile's folders are saved as a user profile
(``tdri_engine.models.save_profile``); studio preferences (projects folder, automatic updates)
in ``studio.json`` under ``tdri_home()``. Nothing is saved until Save, and an invalid value
is shown in the dialog instead of closing it.

Every setting reads in words, with its unit and range in the label and one line under it
saying what it changes in the images or the dialogue; the paper's symbols follow in
parentheses. The method's own parameters (τ, the aspect weights wᵢ, α, β) sit apart in an
"Advanced" group: a designer seldom needs them, and they are the ones a wrong value quietly
spoils (a question every round, or never).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.prefs import StudioPrefs
from studio.ui.ambiguity_chart import aspect_words
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.workers import store_io
from tdri_engine.errors import TdriError
from tdri_engine.settings import ASPECTS, EngineSettings

if TYPE_CHECKING:
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)

MODEL_COLUMNS = ("Role", "Kind", "Found", "Path or source", "What to do")


def check_models(profile_name: str) -> tuple[Any, list[Any]]:
    """(profile, one status per role) — file checks only, no model is loaded. Any thread."""
    from tdri_engine import models

    profile = models.load_profile(profile_name)
    return profile, models.check_profile(profile)


def project_profile(store: ProjectStore) -> str:
    """The model profile a project runs on: chosen in Settings, else the one it was made with."""
    return str(store.get_meta("model_profile") or store.profile or "demo")


class SettingsDialog(QDialog):
    saved = Signal(object)  # dict of what changed: {"settings", "profile", "prefs"}
    models_checked = Signal(object)  # list of role statuses

    def __init__(
        self,
        store: ProjectStore,
        prefs: StudioPrefs,
        *,
        show_error: Callable[[Any], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setAccessibleName("Settings")
        self.setWindowTitle("Settings")
        self.store = store
        self.prefs = prefs
        self._show_error = show_error
        self.statuses: list[Any] = []
        self._profile: Any = None
        self._check_task: asyncio.Future | None = None
        self.resize(900, 600)
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("settingsTabs")
        layout.addWidget(self.tabs, 1)
        self._build_models_tab()
        self._build_generation_tab()
        self._build_dialogue_tab()
        self._build_updates_tab()
        self._build_projects_tab()
        self.error_label = PlainLabel("")
        self.error_label.setObjectName("settingsError")
        self.error_label.setAccessibleName("Settings problem")
        self.error_label.setWordWrap(True)
        self.error_label.setProperty("level", "error")
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.setObjectName("settingsButtons")
        for std, name in (
            (QDialogButtonBox.StandardButton.Save, "Save settings"),
            (QDialogButtonBox.StandardButton.Cancel, "Cancel"),
        ):
            b = self.buttons.button(std)
            b.setObjectName(f"settings{name.split()[0]}Button")
            b.setAccessibleName(name)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._load_values()

    # ------------------------------------------------------------------ tabs
    def _build_models_tab(self) -> None:
        tab = QWidget()
        tab.setObjectName("modelsTab")
        v = QVBoxLayout(tab)
        row = QHBoxLayout()
        row.addWidget(PlainLabel("Model profile for this project:"))
        self.profile_combo = QComboBox()
        self.profile_combo.setObjectName("profileCombo")
        self.profile_combo.setAccessibleName("Model profile")
        row.addWidget(self.profile_combo, 1)
        self.check_button = QPushButton("Check models")
        self.check_button.setObjectName("checkModelsButton")
        self.check_button.setAccessibleName("Check models")
        row.addWidget(self.check_button)
        v.addLayout(row)
        self.models_summary = PlainLabel("Checking models…")
        self.models_summary.setObjectName("modelsSummary")
        self.models_summary.setAccessibleName("Models check result")
        self.models_summary.setWordWrap(True)
        v.addWidget(self.models_summary)
        self.models_table = QTableWidget(0, len(MODEL_COLUMNS))
        self.models_table.setObjectName("modelsTable")
        self.models_table.setAccessibleName("Model roles")
        self.models_table.setHorizontalHeaderLabels(MODEL_COLUMNS)
        self.models_table.verticalHeader().setVisible(False)
        self.models_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.models_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.models_table.setWordWrap(True)
        header = self.models_table.horizontalHeader()
        for i, mode in enumerate(
            (
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.Interactive,
                QHeaderView.ResizeMode.Stretch,
            )
        ):
            header.setSectionResizeMode(i, mode)
        self.models_table.setColumnWidth(3, 300)
        v.addWidget(self.models_table, 1)
        row = QHBoxLayout()
        self.role_folder_button = QPushButton("Set folder for the selected role…")
        self.role_folder_button.setObjectName("roleFolderButton")
        self.role_folder_button.setAccessibleName("Set the model folder for the selected role")
        row.addWidget(self.role_folder_button)
        self.role_hint = PlainLabel("")
        self.role_hint.setObjectName("roleHint")
        self.role_hint.setWordWrap(True)
        row.addWidget(self.role_hint, 1)
        v.addLayout(row)
        self.tabs.addTab(tab, "Models")
        self.check_button.clicked.connect(self.start_check)
        self.profile_combo.currentIndexChanged.connect(lambda _i: self.start_check())
        self.role_folder_button.clicked.connect(self._choose_role_folder)

    def _form_tab(self, name: str, title: str) -> QFormLayout:
        """A tab holding one form, in a scroll area (the "what it changes" lines make it long)."""
        tab = QWidget()
        tab.setObjectName(name)
        form = QFormLayout(tab)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        scroll = QScrollArea()
        scroll.setObjectName(f"{name}Scroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(tab)
        self.tabs.addTab(scroll, title)
        return form

    def _spin(self, name: str, lo: int, hi: int, step: int = 1) -> QSpinBox:
        s = QSpinBox()
        s.setObjectName(name)
        s.setAccessibleName(name)
        s.setRange(lo, hi)
        s.setSingleStep(step)
        return s

    def _dspin(
        self, name: str, lo: float, hi: float, step: float = 0.05, decimals: int = 2
    ) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setObjectName(name)
        s.setAccessibleName(name)
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(decimals)
        return s

    def _optional_dspin(self, name: str, lo: float, hi: float, step: float = 0.01) -> QDoubleSpinBox:
        """A spin box whose lowest position means "empty": the model profile's calibrated value."""
        s = self._dspin(name, lo - step, hi, step)
        s.setSpecialValueText("profile's calibrated value")
        return s

    @staticmethod
    def _set_optional(spin: QDoubleSpinBox, value: float | None) -> None:
        spin.setValue(spin.minimum() if value is None else value)

    @staticmethod
    def _optional(spin: QDoubleSpinBox) -> float | None:
        return None if spin.value() <= spin.minimum() else spin.value()

    def _combo(self, name: str, items: tuple[str | tuple[str, str], ...]) -> QComboBox:
        """Items are values, or (words shown, value) pairs."""
        c = QComboBox()
        c.setObjectName(name)
        c.setAccessibleName(name)
        for it in items:
            text, value = it if isinstance(it, tuple) else (it, it)
            c.addItem(text, value)
        return c

    def _row(
        self, form: QFormLayout, label: str, widget: QWidget, field: str | None = None, what: str = ""
    ) -> None:
        """``label`` in words with unit and range; ``what``: one line on what the value changes."""
        widget.setAccessibleName(label.rstrip(":"))
        if field:
            widget.setToolTip(plain_tooltip(f"{what}\n\n{field}: {EngineSettings.help(field)}".strip()))
        form.addRow(label, widget)
        if what:
            line = PlainLabel(what)
            line.setObjectName(f"{widget.objectName() or field}What")
            line.setProperty("role", "hint")
            line.setWordWrap(True)
            form.addRow("", line)

    def _build_generation_tab(self) -> None:
        f = self._form_tab("generationTab", "Generation")
        self.device_combo = self._combo("device", ("auto", "cpu", "cuda", "mps"))
        self.device_combo.setEditable(True)  # cuda:1 ...
        self._row(
            f,
            "Where the models run:",
            self.device_combo,
            "device",
            "auto takes the GPU when there is one; cpu always works, many times slower.",
        )
        self.dtype_combo = self._combo("dtype", ("auto", "fp16", "bf16", "fp32"))
        self._row(
            f,
            "Number precision:",
            self.dtype_combo,
            "dtype",
            "fp16 and bf16 halve the GPU memory a model needs; auto uses fp32 on the CPU.",
        )
        self.steps_spin = self._spin("steps", 1, 500)
        self.steps_spin.setSuffix(" steps")
        self._row(
            f,
            "Denoising steps (1–500):",
            self.steps_spin,
            "steps",
            "More steps give finer images; a round takes about as much longer.",
        )
        self.guidance_spin = self._dspin("guidance", 0.0, 30.0, 0.5, 1)
        self._row(
            f,
            "Follow the prompt (guidance, 0–30):",
            self.guidance_spin,
            "guidance",
            "Higher follows the words more literally; far above 10 colours turn harsh. 7.5 is usual.",
        )
        size = QHBoxLayout()
        self.width_spin = self._spin("width", 64, 4096, 8)
        self.height_spin = self._spin("height", 64, 4096, 8)
        for spin, name in ((self.width_spin, "Image width"), (self.height_spin, "Image height")):
            spin.setSuffix(" px")
            spin.setAccessibleName(name)
        size.addWidget(self.width_spin)
        size.addWidget(PlainLabel("×"))
        size.addWidget(self.height_spin)
        size_w = QWidget()
        size_w.setObjectName("imageSize")
        size_w.setLayout(size)
        size.setContentsMargins(0, 0, 0, 0)
        self._row(
            f,
            "Image size (64–4096 px, multiples of 8):",
            size_w,
            "width",
            "Bigger takes longer and more memory; the models draw best near the size they learnt "
            "(512 px for SD 1.5, 1024 px for SDXL).",
        )
        self.negative_edit = QLineEdit()
        self.negative_edit.setObjectName("negative_prompt")
        self._row(
            f,
            "Never show (negative prompt):",
            self.negative_edit,
            "negative_prompt",
            "Words every image should avoid, e.g. “blurry, extra fingers”.",
        )
        self.refine_mode_combo = self._combo(
            "refine_mode", (("edit the previous image", "edit"), ("draw anew, same pose", "scratch"))
        )
        self._row(
            f,
            "Later rounds:",
            self.refine_mode_combo,
            "refine_mode",
            "Editing keeps the picture and changes what you asked for; drawing anew may change "
            "everything but the pose.",
        )
        self.edit_strength_spin = self._dspin("edit_strength", 0.05, 1.0)
        self._row(
            f,
            "Edit strength (0.05–1.00):",
            self.edit_strength_spin,
            "edit_strength",
            "How much an edit may change the image: low keeps it and changes details, 1.00 redraws "
            "it. Also beside the seed on the Refine tab.",
        )
        self.use_pose_check = QCheckBox("Keep round 0's pose in later rounds")
        self.use_pose_check.setObjectName("use_pose")
        self._row(
            f,
            "Pose:",
            self.use_pose_check,
            "use_pose",
            "The model keeps the same stance round after round (a pose ControlNet).",
        )
        self.pose_strength_spin = self._dspin("pose_strength", 0.0, 2.0)
        self._row(
            f,
            "How strictly the pose is kept (0–2):",
            self.pose_strength_spin,
            "pose_strength",
            "0 ignores the pose, 1 follows it, above 1 forces it even against the prompt.",
        )
        self.pose_sigma_spin = self._dspin("pose_sigma", 0.0, 50.0, 0.5, 1)
        self.pose_sigma_spin.setSuffix(" px")
        self._row(
            f,
            "Pose smoothing (σ, 0–50 px):",
            self.pose_sigma_spin,
            "pose_sigma",
            "Blurs the pose map so it guides loosely; 0 keeps its sharp lines.",
        )
        self.offload_check = QCheckBox("Offload idle models to the CPU (small GPUs)")
        self.offload_check.setObjectName("cpu_offload")
        self._row(
            f,
            "Memory:",
            self.offload_check,
            "cpu_offload",
            "Fits the models on a small GPU; each round gets slower.",
        )

    def _build_dialogue_tab(self) -> None:
        f = self._form_tab("dialogueTab", "Dialogue")
        self.summarizer_combo = self._combo(
            "summarizer", (("rules (fast, predictable)", "structured"), ("the language model", "llm"))
        )
        self._row(
            f,
            "Next prompt written by:",
            self.summarizer_combo,
            "summarizer",
            "Who turns the dialogue into the next round's prompt (shown, editable, on the Refine tab).",
        )
        self.questioner_combo = self._combo(
            "questioner", (("templates, with one-click answers", "template"), ("the language model", "llm"))
        )
        self._row(
            f,
            "Questions written by:",
            self.questioner_combo,
            "questioner",
            "The language model words questions more freely; the templates are quicker.",
        )

        advanced = QGroupBox("Advanced: the method's parameters (the paper's τ, wᵢ, α, β)")
        advanced.setObjectName("advancedMethodGroup")
        a = QFormLayout(advanced)
        a.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        note = PlainLabel(
            "These tune when the studio asks and how the dialogue becomes a prompt. The defaults are "
            "calibrated for the model profile; change them to study the method."
        )
        note.setObjectName("advancedNote")
        note.setWordWrap(True)
        a.addRow(note)
        self.tau_spin = self._optional_dspin("tau", 0.0, 1.0, 0.01)
        self._row(
            a,
            "Ask when the image is this unclear (τ, 0–1):",
            self.tau_spin,
            "tau",
            "Lower asks more often, higher less. The lowest position uses the value calibrated "
            "for this profile's models.",
        )
        self.tau_rate_label = PlainLabel("")  # the tau in force and the question rate it implies
        self.tau_rate_label.setObjectName("tauRateLabel")
        a.addRow("", self.tau_rate_label)
        self.tau_spin.valueChanged.connect(lambda _v: self._show_tau_rate())
        self.weight_spins: dict[str, QDoubleSpinBox] = {}
        for i, asp in enumerate(ASPECTS):
            spin = self._dspin(f"weight_{asp}", 0.0, 1.0, 0.01, 3)
            self.weight_spins[asp] = spin
            words = aspect_words(asp)
            what = (
                "How much each part of the image counts in “how unclear”: a part at 0 is never asked "
                "about; together they should add up to about 1."
                if i == len(ASPECTS) - 1
                else ""
            )
            self._row(a, f"Weight of the {words} (w, {asp}, 0–1):", spin, "aspect_weights", what)
            spin.setAccessibleName(f"Weight of {asp}")
        self.alpha_spin = self._dspin("alpha", 0.0, 1.0)
        self._row(
            a,
            "Weight of the dialogue so far (α, 0–1):",
            self.alpha_spin,
            "alpha",
            "Higher keeps more of the earlier rounds' words in the next image (eq. 2).",
        )
        self.beta_spin = self._dspin("beta", 0.0, 1.0)
        self._row(
            a,
            "Weight of your latest words (β, 0–1):",
            self.beta_spin,
            "beta",
            "Higher makes your latest answer or feedback count more in the next image.",
        )
        f.addRow(advanced)

    def _build_updates_tab(self) -> None:
        f = self._form_tab("updatesTab", "Personalisation")
        self.update_every_spin = self._spin("update_every", 2, 10000)
        self.update_every_spin.setSuffix(" choices")
        self._row(
            f,
            "Update your adapter after (2–10000):",
            self.update_every_spin,
            "update_every",
            "Fewer: it learns sooner from less; more: each update is steadier and takes longer.",
        )
        self.auto_update_check = QCheckBox("Start the update by itself when N choices are collected")
        self.auto_update_check.setObjectName("auto_update")
        self.auto_update_check.setAccessibleName("Update automatically")
        f.addRow("Automatic:", self.auto_update_check)
        self.ae_check = QCheckBox("Attend-and-Excite rescues forgotten subjects")
        self.ae_check.setObjectName("use_attend_excite")
        self._row(
            f,
            "Redraw a round that leaves out a subject:",
            self.ae_check,
            "use_attend_excite",
            "When the image misses part of the prompt, the round is drawn again with attention on "
            "the missing words; such a round takes about twice as long.",
        )
        self.ae_spin = self._optional_dspin("ae_threshold", 0.0, 1.0, 0.01)
        self._row(
            f,
            "Redraw when the image strays this far (0–1):",
            self.ae_spin,
            "ae_threshold",
            "Lower redraws more often. The lowest position uses the value calibrated for the "
            "profile's models.",
        )
        self.ae_check.setAccessibleName("Attend-and-Excite")
        self.auto_update_check.setAccessibleName("Update automatically")

    def _build_projects_tab(self) -> None:
        f = self._form_tab("projectsTab", "Projects")
        row = QHBoxLayout()
        self.projects_dir_edit = QLineEdit()
        self.projects_dir_edit.setObjectName("projectsDirEdit")
        self.projects_dir_edit.setAccessibleName("Projects folder")
        row.addWidget(self.projects_dir_edit, 1)
        browse = QPushButton("Browse…")
        browse.setObjectName("projectsDirBrowse")
        browse.setAccessibleName("Choose the projects folder")
        browse.clicked.connect(self._browse_projects_dir)
        row.addWidget(browse)
        w = QWidget()
        row.setContentsMargins(0, 0, 0, 0)
        w.setLayout(row)
        f.addRow("Projects folder:", w)
        self.project_path_label = PlainLabel("")
        self.project_path_label.setObjectName("projectPathLabel")
        self.project_path_label.setWordWrap(True)
        self.project_path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        f.addRow("This project:", self.project_path_label)
        self.annotator_edit = QLineEdit()
        self.annotator_edit.setObjectName("annotatorEdit")
        self.annotator_edit.setAccessibleName("Annotator name")
        self.annotator_edit.setPlaceholderText("written into each annotation")
        f.addRow("Your name:", self.annotator_edit)

    # ------------------------------------------------------------------ values
    def _load_values(self) -> None:
        s: EngineSettings = self.store.settings if self.store is not None else EngineSettings()
        self.device_combo.setCurrentText(s.device)
        self.dtype_combo.setCurrentIndex(max(0, self.dtype_combo.findData(s.dtype)))
        self.steps_spin.setValue(s.steps)
        self.guidance_spin.setValue(s.guidance)
        self.width_spin.setValue(s.width)
        self.height_spin.setValue(s.height)
        self.negative_edit.setText(s.negative_prompt)
        self.refine_mode_combo.setCurrentIndex(max(0, self.refine_mode_combo.findData(s.refine_mode)))
        self.edit_strength_spin.setValue(s.edit_strength)
        self.use_pose_check.setChecked(s.use_pose)
        self.pose_strength_spin.setValue(s.pose_strength)
        self.pose_sigma_spin.setValue(s.pose_sigma)
        self.offload_check.setChecked(s.cpu_offload)
        self._set_optional(self.tau_spin, s.tau)
        for a, spin in self.weight_spins.items():
            spin.setValue(float(s.aspect_weights.get(a, 0.0)))
        self.alpha_spin.setValue(s.alpha)
        self.beta_spin.setValue(s.beta)
        self.summarizer_combo.setCurrentIndex(max(0, self.summarizer_combo.findData(s.summarizer)))
        self.questioner_combo.setCurrentIndex(max(0, self.questioner_combo.findData(s.questioner)))
        self.update_every_spin.setValue(s.update_every)
        self.auto_update_check.setChecked(self.prefs.auto_update)
        self.ae_check.setChecked(s.use_attend_excite)
        self._set_optional(self.ae_spin, s.ae_threshold)
        self.projects_dir_edit.setText(str(self.prefs.projects_root()))
        self.annotator_edit.setText(self.prefs.annotator)
        self.project_path_label.setText(
            str(self.store.path) if self.store is not None else "(no project open)"
        )
        from tdri_engine import models

        self.profile_combo.blockSignals(True)
        names = models.list_profiles()
        current = project_profile(self.store) if self.store is not None else "demo"
        if current not in names:
            names.append(current)
        for n in names:
            self.profile_combo.addItem(models.profile_choice_label(n), n)
        self.profile_combo.setCurrentIndex(max(0, self.profile_combo.findData(current)))
        self.profile_combo.blockSignals(False)
        self.profile_combo.currentIndexChanged.connect(lambda _i: self._show_tau_rate())
        self._show_tau_rate()

    def _show_tau_rate(self) -> None:
        """The profile's calibration (tdri_engine.models.Thresholds): tau and its question rate."""
        from tdri_engine import models

        combo = getattr(self, "profile_combo", None)
        try:
            thresholds = models.load_profile((combo.currentData() if combo else None) or "demo").thresholds
        except TdriError:
            self.tau_rate_label.setText("")
            return
        self.tau_rate_label.setText(thresholds.describe(self._optional(self.tau_spin)))

    def collect(self) -> EngineSettings:
        """The engine settings as edited; raises BadInput when a value is invalid."""
        base = self.store.settings if self.store is not None else EngineSettings()
        return EngineSettings.from_dict(
            {
                **base.to_dict(),
                "device": self.device_combo.currentText().strip() or "auto",
                "dtype": self.dtype_combo.currentData(),
                "steps": self.steps_spin.value(),
                "guidance": self.guidance_spin.value(),
                "width": self.width_spin.value(),
                "height": self.height_spin.value(),
                "negative_prompt": self.negative_edit.text(),
                "refine_mode": self.refine_mode_combo.currentData(),
                "edit_strength": self.edit_strength_spin.value(),
                "use_pose": self.use_pose_check.isChecked(),
                "pose_strength": self.pose_strength_spin.value(),
                "pose_sigma": self.pose_sigma_spin.value(),
                "cpu_offload": self.offload_check.isChecked(),
                "tau": self._optional(self.tau_spin),
                "aspect_weights": {a: s.value() for a, s in self.weight_spins.items()},
                "alpha": self.alpha_spin.value(),
                "beta": self.beta_spin.value(),
                "summarizer": self.summarizer_combo.currentData(),
                "questioner": self.questioner_combo.currentData(),
                "update_every": self.update_every_spin.value(),
                "use_attend_excite": self.ae_check.isChecked(),
                "ae_threshold": self._optional(self.ae_spin),
            }
        )

    def save(self) -> bool:
        """Validate and persist everything; keep the dialog open with the reason on failure."""
        changed: dict[str, Any] = {}
        try:
            settings = self.collect()
        except TdriError as exc:
            self._fail(exc.message, exc.what_to_do)
            return False
        profile = self.profile_combo.currentData()
        try:
            if self.store is not None:
                if settings.to_dict() != self.store.settings.to_dict():
                    self.store.save_settings(settings)
                    changed["settings"] = settings
                if profile and profile != project_profile(self.store):
                    self.store.set_meta("model_profile", profile)
                    changed["profile"] = profile
        except TdriError as exc:
            self._fail(f"Settings not saved: {exc.message}", exc.what_to_do)
            return False
        new_dir = self.projects_dir_edit.text().strip()
        prefs_changed = False
        if new_dir and Path(new_dir) != self.prefs.projects_root():
            self.prefs.projects_dir = new_dir
            prefs_changed = True
        if self.auto_update_check.isChecked() != self.prefs.auto_update:
            self.prefs.auto_update = self.auto_update_check.isChecked()
            prefs_changed = True
        if self.annotator_edit.text().strip() != self.prefs.annotator:
            self.prefs.annotator = self.annotator_edit.text().strip()
            prefs_changed = True
        if prefs_changed:
            try:
                self.prefs.save()
            except OSError as exc:
                self._fail(
                    f"Studio preferences not saved: {exc}",
                    f"Check that {StudioPrefs.path().parent} is writable.",
                )
                return False
            changed["prefs"] = self.prefs
        self.saved.emit(changed)
        self.accept()
        return True

    def _fail(self, message: str, what_to_do: str = "") -> None:
        self.error_label.setText(f"⚠ {message}" + (f"\n{what_to_do}" if what_to_do else ""))
        self.error_label.setVisible(True)

    def _browse_projects_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Projects folder", self.projects_dir_edit.text())
        if folder:
            self.projects_dir_edit.setText(folder)

    # ------------------------------------------------------------------ models check
    def start_check(self) -> asyncio.Future:
        """Run the models check off the GUI thread (it walks folders and the HF cache)."""
        name = self.profile_combo.currentData() or "demo"
        self.models_summary.setText(f"Checking the models of profile “{name}”…")
        self.check_button.setEnabled(False)

        async def run() -> None:
            try:
                profile, statuses = await store_io.run(check_models, name)
            except TdriError as exc:
                self.models_summary.setText(f"⚠ {exc.message} {exc.what_to_do}")
                self.statuses = []
                self.models_table.setRowCount(0)
                return
            finally:
                self.check_button.setEnabled(True)
            self._show_statuses(profile, statuses)

        self._check_task = asyncio.ensure_future(run())
        return self._check_task

    def _show_statuses(self, profile: Any, statuses: list[Any]) -> None:
        self._profile = profile
        self.statuses = list(statuses)
        self.models_table.setRowCount(len(statuses))
        for row, st in enumerate(statuses):
            if st.refused:  # the trust policy's word: custom code or only pickled weights
                found = "✗ refused" if st.required else "– optional, refused"
            else:
                found = "✓ found" if st.found else ("✗ missing" if st.required else "– optional, missing")
            cells = (
                st.role,
                st.kind,
                found,
                st.path or st.source,
                (f"Refused: {st.reason} " if st.refused and st.reason else "") + (st.what_to_do or ""),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                tip = text
                if col == 3 and st.looked_in:
                    tip = "Looked in:\n" + "\n".join(st.looked_in)
                item.setToolTip(plain_tooltip(tip))
                if col == 2:
                    item.setForeground(Qt.GlobalColor.green if st.found else Qt.GlobalColor.red)
                self.models_table.setItem(row, col, item)
        self.models_table.resizeRowsToContents()
        missing = [s.role for s in statuses if not s.found and s.required]
        refused = [s.role for s in statuses if s.refused]
        if refused:
            self.models_summary.setText(
                f"⚠ Refused by the trust policy (custom code or pickled weights): {', '.join(refused)}. "
                "Nothing from these folders was loaded; see “What to do”."
            )
            self.models_summary.setProperty("level", "error")
        elif missing:
            self.models_summary.setText(
                f"⚠ {len(missing)} required model(s) missing: {', '.join(missing)}. "
                "See “What to do” for each; generation is disabled until they are found."
            )
            self.models_summary.setProperty("level", "error")
        else:
            demo = (
                " These are tiny random models: images are noise."
                if getattr(profile, "is_demo", False)
                else ""
            )
            self.models_summary.setText(f"✓ All required models of “{profile.name}” found.{demo}")
            self.models_summary.setProperty("level", "ok")
        self.models_summary.style().unpolish(self.models_summary)
        self.models_summary.style().polish(self.models_summary)
        is_demo = getattr(profile, "is_demo", False)
        self.role_folder_button.setEnabled(not is_demo)
        self.role_hint.setText(
            "The demo models are built by the studio; pick another profile to use real weights."
            if is_demo
            else "Point a role at a local folder (diffusers / transformers layout); saved as a user profile."
        )
        self.models_checked.emit(self.statuses)

    def _choose_role_folder(self) -> None:
        row = self.models_table.currentRow()
        if row < 0 or row >= len(self.statuses) or self._profile is None:
            self.role_hint.setText("Select a role in the table first.")
            return
        role = self.statuses[row].role
        folder = QFileDialog.getExistingDirectory(self, f"Folder with the {role} model")
        if folder:
            self.set_role_folder(role, folder)

    def set_role_folder(self, role: str, folder: str) -> None:
        """Save ``folder`` as the source of ``role`` in the user's copy of the profile."""
        import dataclasses

        from tdri_engine import models

        profile = self._profile
        spec = profile.roles[role]
        roles = dict(profile.roles)
        roles[role] = dataclasses.replace(spec, source=str(folder))
        try:
            models.save_profile(dataclasses.replace(profile, roles=roles))
        except (OSError, TdriError) as exc:
            self._fail(f"Could not save the model folder: {exc}")
            return
        self.start_check()
