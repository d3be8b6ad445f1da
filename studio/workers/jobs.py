"""Background jobs with explicit states, and the one queue object the UI watches.

A job is a function the engine thread runs (``fn(context) -> result``). Its state moves
queued -> running -> finished | failed | cancelled and never back; every change is emitted by
the :class:`JobQueue`, so a progress bar, a Cancel button and a message bar all bind to one
object instead of each job's internals.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from tdri_engine.events import CancelToken, Error


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One unit of background work. Mutated only in the GUI thread (by the queue)."""

    kind: str  # "round", "load-models", "train", "check-models", ...
    label: str  # what the progress bar says: "Generating round 2"
    fn: Callable[[Any], Any]  # runs in the engine thread with a WorkerContext
    id: int = field(default_factory=lambda: next(_ids))
    state: JobState = JobState.QUEUED
    stage: str = ""
    step: int = 0
    total: int = 0
    message: str = ""
    error: Error | None = None
    result: Any = None
    cancel_token: CancelToken = field(default_factory=CancelToken)
    cancellable: bool = True
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


class JobQueue(QObject):
    """Every job the studio ran this session, and which one runs now.

    ``job_changed(job)`` fires on any state or progress change; ``active_changed(job|None)``
    when the running job changes. Jobs run one at a time, in order, in the engine thread.
    """

    job_changed = Signal(object)
    active_changed = Signal(object)
    job_done = Signal(object)  # finished, failed or cancelled

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[Job] = []
        self._active: Job | None = None

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    @property
    def active(self) -> Job | None:
        return self._active

    @property
    def pending(self) -> list[Job]:
        return [j for j in self._jobs if not j.state.done]

    def add(self, job: Job) -> Job:
        self._jobs.append(job)
        # keep the history bounded: an annotator's day must not grow memory without end
        done = [j for j in self._jobs if j.state.done]
        if len(done) > 200:
            drop = set(map(id, done[: len(done) - 200]))
            self._jobs = [j for j in self._jobs if id(j) not in drop]
        self.job_changed.emit(job)
        return job

    def cancel(self, job: Job | None = None) -> None:
        """Ask the job (default: the running one) to stop at its next check."""
        job = job or self._active
        if job is None or job.state.done or not job.cancellable:
            return
        job.cancel_token.cancel()
        job.message = "Cancelling…"
        self.job_changed.emit(job)

    def cancel_all(self) -> None:
        for job in self.pending:
            job.cancel_token.cancel()

    # -- transitions, called by the engine bridge in the GUI thread --------------------------
    def mark_running(self, job: Job) -> None:
        if job.state is not JobState.QUEUED:
            return
        job.state = JobState.RUNNING
        job.started_at = time.monotonic()
        self._active = job
        self.job_changed.emit(job)
        self.active_changed.emit(job)

    def mark_progress(self, job: Job, stage: str, step: int, total: int, message: str = "") -> None:
        if job.state is not JobState.RUNNING:
            return
        job.stage, job.step, job.total = stage, step, total
        if message:
            job.message = message
        self.job_changed.emit(job)

    def mark_done(self, job: Job, state: JobState, *, result: Any = None, error: Error | None = None) -> None:
        if job.state.done:
            return
        job.state = state
        job.result = result
        job.error = error
        job.finished_at = time.monotonic()
        self.job_changed.emit(job)
        self.job_done.emit(job)
        if self._active is job:
            self._active = None
            self.active_changed.emit(None)
