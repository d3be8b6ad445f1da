"""The scores of each round in the refinement view, each with its scale in words.

A table (one row per round: T2I CLIP, BLIP where the profile has a BLIP model, I2I CLIP against
the image the round started from) and, under it, the round shown on the right spelled out with
every score's scale (``tdri_engine.round_metrics``). The row of that round is selected.

The scores are the engine's: a job in the engine thread (``EngineAPI.measure_round``) measures a
round once, after it is shown, and stores them with the round, so a reopened dialogue reads
them from the project without loading a model (the job reads the store first and never asks
for the engine then). One job at a time; rounds that arrive while it runs wait for the next.
A round that cannot be measured (a missing CLIP model, a deleted image) says why in the panel,
not in the message bar: the scores are an aid, the dialogue goes on without them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.models.rounds import Comparison, RoundView
from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.workers.jobs import Job, JobState
from tdri_engine import round_metrics as rm
from tdri_engine.errors import Cancelled, TdriError

if TYPE_CHECKING:
    from studio.models.refinement_model import RefinementModel
    from studio.workers.engine_bridge import WorkerContext
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)

JOB_KIND = "metrics"
MEASURING = "…"
ABSENT = "—"
COLUMNS: tuple[str, ...] = ("Round", *(rm.LABELS[k] for k in rm.KEYS))


def measure_rounds(ctx: WorkerContext, store: ProjectStore, image_ids: list[str]) -> dict[str, Any]:
    """Engine thread: image id -> RoundMetrics, or the reason (str) it has none.

    Stored scores are read first; the engine (and its models) is asked only for the rest."""
    out: dict[str, Any] = {}
    for image_id in image_ids:
        ctx.check_cancelled()
        try:
            known = rm.stored(store, image_id)
            out[image_id] = (
                known if known is not None else ctx.engine.measure_round(store, image_id, cancel=ctx.cancel)
            )
        except Cancelled:
            raise
        except TdriError as exc:
            out[image_id] = f"{exc.message} {exc.what_to_do}".strip()
        except Exception as exc:  # one round's failure leaves the others' scores
            log.exception("measuring round image %s failed", image_id)
            out[image_id] = f"{type(exc).__name__}: {exc}"
    return out


class RoundMetricsPanel(QGroupBox):
    """ "Scores of each round": see the module docstring."""

    def __init__(self, model: RefinementModel, parent: QWidget | None = None) -> None:
        super().__init__("Scores of each round", parent)
        self.setObjectName("roundMetricsBox")
        self.model = model
        self.results: dict[str, Any] = {}  # image id -> RoundMetrics | reason str
        self._store: Any = None
        self._job: Job | None = None
        self._waiting: list[str] = []
        v = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("roundMetricsTable")
        self.table.setAccessibleName("Scores of each round")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setMaximumHeight(150)
        for i, key in enumerate(rm.KEYS, start=1):
            item = QTableWidgetItem(COLUMNS[i])
            item.setToolTip(plain_tooltip(f"{rm.LABELS[key]}: {rm.WHAT[key]}; {rm.SCALES[key]}."))
            self.table.setHorizontalHeaderItem(i, item)
        v.addWidget(self.table)
        self.detail = PlainLabel("After a round, its scores appear here with their scales.")
        self.detail.setObjectName("roundMetricsDetail")
        self.detail.setAccessibleName("The shown round's scores and their scales")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.detail)
        model.rounds_changed.connect(self._on_rounds)
        model.comparison_changed.connect(self._on_comparison)
        self._on_rounds(model.rounds)

    # ------------------------------------------------------------------ state
    def _rounds(self) -> list[RoundView]:
        return [r for r in self.model.rounds if r.round >= 0 and r.image_id]

    def _on_rounds(self, _rounds: list[RoundView]) -> None:
        if self.model.store is not self._store:  # another project: nothing of the last one holds
            self._store = self.model.store
            self.results.clear()
            self._waiting.clear()
        self._render()
        self._request([r.image_id for r in self._rounds() if r.image_id not in self.results])

    def _on_comparison(self, _comp: Comparison) -> None:
        self._render()

    def _request(self, image_ids: list[str]) -> None:
        for i in image_ids:
            if i not in self._waiting:
                self._waiting.append(i)
        if self._job is not None or not self._waiting or self._store is None:
            return
        store, ids = self._store, list(self._waiting)
        self._waiting.clear()
        self._job = self.model.bridge.submit(
            JOB_KIND,
            "Measuring the rounds' scores",
            lambda ctx: measure_rounds(ctx, store, ids),
            on_done=lambda job: self._on_done(job, store, ids),
        )

    def _on_done(self, job: Job, store: Any, ids: list[str]) -> None:
        self._job = None
        if store is self._store:
            if job.state is JobState.FINISHED and isinstance(job.result, dict):
                self.results.update(job.result)
            elif job.state is JobState.FAILED and job.error is not None:
                for i in ids:
                    self.results[i] = f"{job.error.message} {job.error.what_to_do}".strip()
            # cancelled (a project closing, Stop): measured again when the rounds are shown again
            self._render()
        if self._store is not None:
            self._request([r.image_id for r in self._rounds() if r.image_id not in self.results])

    # ------------------------------------------------------------------ view
    def cell_text(self, image_id: str, key: str) -> str:
        """What the table shows for one score: the value, "…" while measuring, "—" when absent."""
        got = self.results.get(image_id)
        if got is None:
            return MEASURING
        if isinstance(got, rm.RoundMetrics) and key in got.values:
            return f"{got.values[key]:.3f}"
        return ABSENT

    def _render(self) -> None:
        rounds = self._rounds()
        right = self.model.comparison.right
        self.table.setRowCount(len(rounds))
        selected = -1
        for row, r in enumerate(rounds):
            got = self.results.get(r.image_id)
            head = QTableWidgetItem(str(r.round))
            self.table.setItem(row, 0, head)
            for col, key in enumerate(rm.KEYS, start=1):
                item = QTableWidgetItem(self.cell_text(r.image_id, key))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if isinstance(got, rm.RoundMetrics):
                    item.setToolTip(plain_tooltip(got.text(key)))
                elif isinstance(got, str):
                    item.setToolTip(plain_tooltip(f"Not measured: {got}"))
                self.table.setItem(row, col, item)
            if right is not None and right.image_id == r.image_id:
                selected = row
        if selected >= 0:
            self.table.selectRow(selected)
        else:
            self.table.clearSelection()
        self.detail.setText(self.detail_text(right))

    def detail_text(self, r: RoundView | None) -> str:
        """The round on the right in words: every score with its scale, and why one is missing."""
        if r is None or r.round < 0:
            return "After a round, its scores appear here with their scales."
        got = self.results.get(r.image_id)
        if got is None:
            return f"Round {r.round}: measuring its scores…"
        if isinstance(got, str):
            return f"Round {r.round}: not measured. {got}"
        lines = [f"Round {r.round}:"]
        for key in rm.KEYS:
            if key == "i2i_prev_clip" and key in got.values and got.previous_round is not None:
                lines.append(
                    "• " + got.text(key).replace(rm.WHAT[key], f"image vs round {got.previous_round}'s image")
                )
            else:
                lines.append("• " + got.text(key))
        if got.random_weights:
            lines.append(rm.RANDOM_NOTE)
        lines.extend(got.warnings)
        return "\n".join(lines)
