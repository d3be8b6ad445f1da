"""A progress bar with the step count and a Cancel button, bound to the job queue."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from studio.ui.plain_label import PlainLabel, plain_tooltip
from studio.workers.jobs import Job, JobQueue, JobState


class JobProgress(QWidget):
    """Shows the running job (of the given kinds, or any); idle text when nothing runs."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        kinds: tuple[str, ...] | None = None,
        idle_text: str = "Ready",
        name: str = "jobProgress",
        compact: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName("Progress of the running job")
        self.queue = queue
        self.kinds = kinds
        self.idle_text = idle_text
        self._job: Job | None = None
        # compact: label above the bar, for narrow side panels
        outer = QVBoxLayout(self) if compact else QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.label = PlainLabel(idle_text)
        self.label.setObjectName(f"{name}Label")
        self.label.setWordWrap(compact)
        # a long job message must never widen the window: let the label shrink (and clip)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(120)
        outer.addWidget(self.label, 1)
        layout = QHBoxLayout()
        layout.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(layout)
        self.bar = QProgressBar()
        self.bar.setObjectName(f"{name}Bar")
        self.bar.setAccessibleName("Step count")
        self.bar.setMinimumWidth(80 if compact else 160)
        self.bar.setMaximumWidth(16777215 if compact else 320)
        self.bar.setFormat("idle")
        self.bar.setValue(0)
        layout.addWidget(self.bar)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName(f"{name}Cancel")
        self.cancel_button.setAccessibleName("Cancel the running job")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.cancel_button)
        queue.job_changed.connect(self._on_job)
        queue.active_changed.connect(self._on_active)
        self._idle()

    @property
    def job(self) -> Job | None:
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self.queue.cancel(self._job)

    def _wanted(self, job: Job | None) -> bool:
        return job is not None and (self.kinds is None or job.kind in self.kinds)

    def _on_active(self, job: Job | None) -> None:
        if job is not None and self._wanted(job):
            self._job = job
            self._render(job)
        elif job is None and self._job is not None and self._job.state.done:
            self._idle()

    def _on_job(self, job: Job) -> None:
        if job is self._job:
            if job.state.done:
                self._idle(job)
            else:
                self._render(job)
        elif self._job is None and self._wanted(job) and job.state is JobState.QUEUED:
            self._set_text(f"Queued: {job.label}")

    def _set_text(self, text: str) -> None:
        self.label.setText(text)
        self.label.setToolTip(plain_tooltip(text))

    def _render(self, job: Job) -> None:
        if not self.bar.isVisible():  # a relayout per progress step would cost more than the step
            self.bar.setVisible(True)
            self.cancel_button.setVisible(True)
        text = job.label
        if job.message:
            text += f" — {job.message}"
        self._set_text(text)
        if job.total:
            self.bar.setRange(0, job.total)
            self.bar.setValue(job.step)
            stage = f"{job.stage}: " if job.stage else ""
            self.bar.setFormat(f"{stage}step {job.step} of {job.total}")
        else:
            self.bar.setRange(0, 0)  # busy indicator until the first step count arrives
            self.bar.setFormat(job.stage or "working")
        self.cancel_button.setEnabled(job.cancellable and not job.cancel_token.cancelled)

    def _idle(self, job: Job | None = None) -> None:
        self._job = None
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        self.cancel_button.setEnabled(False)
        # an empty bar and a dead button say nothing: show them only while a job runs
        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)
        if job is not None and job.state is JobState.FAILED:
            self._set_text(f"Failed: {job.label}")
        elif job is not None and job.state is JobState.CANCELLED:
            self._set_text(f"Cancelled: {job.label}")
        else:
            self._set_text(self.idle_text)
