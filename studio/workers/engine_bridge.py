"""The engine thread: one long-lived worker owns the engine (and so the models).

The GUI thread never calls the engine. It submits a :class:`~studio.workers.jobs.Job` whose function
runs in the worker with a :class:`WorkerContext`; events and results come back by queued
signals, progress and previews throttled so that a fast denoise loop cannot flood the event
loop. Every exception inside a job becomes an :class:`~tdri_engine.events.Error` value held by
the job; the worker thread itself never dies.

The engine is created lazily inside the worker on the first job that asks for it, so the
window shows before torch is imported, and torch is only ever imported off the GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from studio.error_path import error_from_exception, report
from studio.workers.jobs import Job, JobQueue, JobState
from tdri_engine.api import EngineAPI
from tdri_engine.errors import Cancelled, TdriError
from tdri_engine.events import Error, Preview, Progress, TrainingProgress
from tdri_engine.settings import EngineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """Which engine the worker makes: a profile and the settings that choose its devices.

    Handed to the engine thread by a job (:meth:`EngineBridge.configure`), so the engine thread
    reads no attribute the GUI thread may be changing.
    """

    profile: str = "demo"
    settings: EngineSettings = field(default_factory=EngineSettings)

    @property
    def key(self) -> tuple[Any, ...]:
        """What needs a new engine when it changes (other settings apply per round)."""
        s = self.settings
        return (self.profile, s.device, s.dtype, s.cpu_offload)


EngineFactory = Callable[[EngineSpec], EngineAPI]

PROGRESS_INTERVAL_S = 0.05  # at most 20 progress updates a second reach the GUI
PREVIEW_INTERVAL_S = 0.15  # a preview costs a QImage conversion and a repaint


class JobFailed(Exception):
    """Raised to an awaiting coroutine when its job failed; ``error`` is the value to show."""

    def __init__(self, error: Error):
        super().__init__(error.message)
        self.error = error


class JobCancelled(Exception):
    """Raised to an awaiting coroutine when its job was cancelled."""


class PreviewFrame:
    """A live preview already converted to a QImage in the worker (no decode in the GUI)."""

    __slots__ = ("image", "step", "total")

    def __init__(self, image: QImage, step: int, total: int) -> None:
        self.image, self.step, self.total = image, step, total


def pil_to_qimage(pil: Any) -> QImage:
    """PIL image -> QImage that owns its pixels (safe to hand to another thread)."""
    if pil.mode not in ("RGB", "RGBA"):
        pil = pil.convert("RGBA" if "A" in pil.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if pil.mode == "RGBA" else QImage.Format.Format_RGB888
    data = pil.tobytes()
    bpl = pil.width * (4 if pil.mode == "RGBA" else 3)
    # .copy() detaches from the Python bytes buffer, which would otherwise be freed under it
    return QImage(data, pil.width, pil.height, bpl, fmt).copy()


class WorkerContext:
    """What a job function sees: the engine, the cancel token and an event sink."""

    def __init__(self, worker: EngineWorker, job: Job) -> None:
        self._worker = worker
        self.job = job
        self.cancel = job.cancel_token
        self._last_progress = 0.0
        self._last_stage = ""
        self._last_preview = 0.0

    @property
    def engine(self) -> EngineAPI:
        return self._worker.engine()

    def drop_engine(self) -> None:
        """Forget the engine (its models are freed); the next job that asks makes a new one."""
        self._worker.drop_engine()

    def configure(self, spec: EngineSpec) -> None:
        """Use ``spec`` from now on; an engine made for another key is dropped."""
        self._worker.configure(spec)

    def check_cancelled(self) -> None:
        self.cancel.raise_if_cancelled()

    def emit(self, event: Any) -> None:
        """Forward an engine event to the GUI, throttled and converted off the GUI thread."""
        now = time.monotonic()
        if isinstance(event, (Progress, TrainingProgress)):
            stage = getattr(event, "stage", "train")
            boundary = event.step in (0, event.total) or stage != self._last_stage
            if not boundary and now - self._last_progress < PROGRESS_INTERVAL_S:
                return
            self._last_progress, self._last_stage = now, stage
        elif isinstance(event, Preview):
            if event.step != event.total and now - self._last_preview < PREVIEW_INTERVAL_S:
                return
            self._last_preview = now
            try:
                event = PreviewFrame(pil_to_qimage(event.image), event.step, event.total)
            except Exception:  # a broken preview is not worth failing a round for
                log.exception("preview conversion failed")
                return
        self._worker.job_event.emit(self.job, event)


class EngineWorker(QObject):
    """Lives in the engine thread. Runs jobs one at a time, in the order they were submitted."""

    job_started = Signal(object)
    job_event = Signal(object, object)  # job, event
    job_finished = Signal(object, object)  # job, result
    job_failed = Signal(object, object)  # job, Error
    job_cancelled = Signal(object)
    engine_created = Signal(object)  # the engine object (read its profile_name/is_demo only)

    def __init__(self, factory: EngineFactory) -> None:
        super().__init__()
        self._factory = factory
        self._spec = EngineSpec()
        self._engine: EngineAPI | None = None
        self._ctx: WorkerContext | None = None
        self.thread_ident: int | None = None

    def engine(self) -> EngineAPI:
        if self._engine is None:
            self._engine = self._factory(self._spec)
            self.engine_created.emit(self._engine)
        return self._engine

    def configure(self, spec: EngineSpec) -> None:
        if spec.key != self._spec.key:
            self.drop_engine()
        self._spec = spec

    def drop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def sink(self, event: Any) -> None:
        """A stable event sink for engine objects that outlive a job (sessions)."""
        ctx = self._ctx
        if ctx is not None:
            ctx.emit(event)

    @Slot(object)
    def run(self, job: Job) -> None:
        self.thread_ident = threading.get_ident()
        if job.cancel_token.cancelled:
            self.job_cancelled.emit(job)
            return
        self.job_started.emit(job)
        self._ctx = ctx = WorkerContext(self, job)
        try:
            result = job.fn(ctx)
        except Cancelled:
            self.job_cancelled.emit(job)
        except BaseException as exc:  # errors are values: the thread must survive anything
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                log.warning("job %s interrupted: %r", job.label, exc)
            if not isinstance(exc, TdriError):
                log.error("job %r failed:\n%s", job.label, traceback.format_exc())
            self.job_failed.emit(job, error_from_exception(exc, " in the engine"))
        else:
            self.job_finished.emit(job, result)
        finally:
            self._ctx = None


class EngineBridge(QObject):
    """GUI-side handle on the engine thread: submit jobs, await them, watch their events."""

    event = Signal(object, object)  # job, event — delivered in the GUI thread
    engine_ready = Signal(object)  # the engine, once created in the worker
    _request = Signal(object)

    def __init__(self, engine_factory: EngineFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.queue = JobQueue(self)
        self._engine: Any = None
        self._spec_key: tuple[Any, ...] | None = None
        self._thread = QThread()
        self._thread.setObjectName("tdri-engine")
        self._worker = EngineWorker(engine_factory)
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.run)
        self._worker.job_started.connect(self._on_started)
        self._worker.job_event.connect(self._on_event)
        self._worker.job_finished.connect(self._on_finished)
        self._worker.job_failed.connect(self._on_failed)
        self._worker.job_cancelled.connect(self._on_cancelled)
        self._worker.engine_created.connect(self._on_engine_created)
        self._callbacks: dict[int, Callable[[Job], None]] = {}

    def start(self) -> None:
        """Start the engine thread (separate from __init__ so a failed window build cannot
        leave a running thread behind)."""
        if not self._thread.isRunning():
            self._thread.start()

    # -- public ------------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        """The engine once the worker created it, else None. Read-only use from the GUI."""
        return self._engine

    @property
    def sink(self) -> Callable[[Any], None]:
        """Give this to engine objects as ``on_event``; it routes to the running job."""
        return self._worker.sink

    def submit(
        self,
        kind: str,
        label: str,
        fn: Callable[[WorkerContext], Any],
        *,
        cancellable: bool = True,
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        job = Job(kind=kind, label=label, fn=fn, cancellable=cancellable)
        if on_done is not None:
            self._callbacks[job.id] = on_done
        self.queue.add(job)
        self._request.emit(job)
        return job

    def run(
        self, kind: str, label: str, fn: Callable[[WorkerContext], Any], *, cancellable: bool = True
    ) -> asyncio.Future:
        """Submit and return an awaitable future: result, or JobFailed / JobCancelled."""
        loop = asyncio.get_event_loop()
        future: asyncio.Future = loop.create_future()

        def done(job: Job) -> None:
            if future.done():
                return
            if job.state is JobState.FINISHED:
                future.set_result(job.result)
            elif job.state is JobState.FAILED:
                future.set_exception(JobFailed(job.error or Error("internal", "failed")))
            else:
                future.set_exception(JobCancelled(job.label))

        future.job = self.submit(kind, label, fn, cancellable=cancellable, on_done=done)  # type: ignore[attr-defined]
        return future

    def configure(self, spec: EngineSpec) -> Job:
        """Make the engine from ``spec`` after the jobs already queued; an engine of another
        profile, device or precision is released (its models freed) first."""
        if self._engine is not None and spec.key != self._spec_key:
            self._engine = None
        self._spec_key = spec.key
        return self.submit("reset", "Choosing the models", lambda ctx: ctx.configure(spec), cancellable=False)

    async def drain(self) -> None:
        """Cancel every job, then wait until all of them ended.

        Jobs run in submission order in one thread, so a marker job submitted now runs once
        every earlier job has ended: a cancelled round or update stops at its next check (one
        denoising or training step). Used before a project closes: no job may then hold it.
        """
        self.queue.cancel_all()
        if not self._thread.isRunning():
            return
        try:
            await self.run("drain", "Finishing the running jobs", lambda ctx: None, cancellable=False)
        except (JobCancelled, JobFailed):
            pass  # ended either way: it ran after every earlier job

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel everything, free the models and stop the thread; True when it stopped in time."""
        self.queue.cancel_all()
        if not self._thread.isRunning():
            return True
        self.submit("reset", "Releasing the models", lambda ctx: ctx.drop_engine(), cancellable=False)
        self._thread.quit()
        stopped = self._thread.wait(timeout_ms)
        if not stopped:
            log.error("engine thread did not stop within %d ms", timeout_ms)
        return stopped

    @property
    def worker_thread_ident(self) -> int | None:
        """``threading.get_ident()`` of the engine thread, once it ran a job (diagnostics, tests)."""
        return self._worker.thread_ident

    # -- worker signals (GUI thread) ------------------------------------------------------------
    @Slot(object)
    def _on_engine_created(self, engine: Any) -> None:
        self._engine = engine
        self.engine_ready.emit(engine)

    @Slot(object)
    def _on_started(self, job: Job) -> None:
        self.queue.mark_running(job)

    @Slot(object, object)
    def _on_event(self, job: Job, event: Any) -> None:
        if isinstance(event, Progress):
            self.queue.mark_progress(job, event.stage, event.step, event.total, event.message)
        elif isinstance(event, TrainingProgress):
            msg = f"loss {event.loss:.4f} · implicit accuracy {event.implicit_accuracy:.2f}"
            self.queue.mark_progress(job, "train", event.step, event.total, msg)
        elif isinstance(event, PreviewFrame):
            self.queue.mark_progress(job, job.stage or "generate", event.step, event.total)
        self.event.emit(job, event)

    @Slot(object, object)
    def _on_finished(self, job: Job, result: Any) -> None:
        self.queue.mark_done(job, JobState.FINISHED, result=result)
        self._call_back(job)

    @Slot(object, object)
    def _on_failed(self, job: Job, error: Error) -> None:
        if job.state is JobState.QUEUED:
            self.queue.mark_running(job)
        self.queue.mark_done(job, JobState.FAILED, error=error)
        self._call_back(job)

    @Slot(object)
    def _on_cancelled(self, job: Job) -> None:
        self.queue.mark_done(job, JobState.CANCELLED)
        self._call_back(job)

    def _call_back(self, job: Job) -> None:
        cb = self._callbacks.pop(job.id, None)
        if cb is not None:
            try:
                cb(job)
            except Exception as exc:
                report(exc, f"the callback of job {job.label!r}")
