"""The annotation view's state: tasks, the current task, its annotation, and how saved it is.

Every edit (a description, a tag, a preference, marking a task done) is an undoable command
on one ``QUndoStack``; applying a command updates the annotation in memory and saves it.
Choices, tags and status save at once; typing is saved after a short pause (and always before
moving to another task or closing), so no click is ever lost and a keystroke is not a disk
write. ``saved_state`` tells the UI where it stands: "saved", "pending" or "failed".

Widgets bind to the ``*_changed`` signals; this class never touches a widget.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from studio.models.observable import observable
from studio.models.tags import META_KEY as TAGS_META_KEY
from studio.models.tags import TagVocabulary, guess_set, normalise_tag
from tdri_engine.errors import TdriError
from tdri_engine.events import Error
from tdri_engine.records import Annotation, Choice, ImageRecord, PreferencePair, Task, now_iso
from tdri_engine.store.positions import SHOWN_ORDER, map_choice, shown_order, with_shown_order

if TYPE_CHECKING:
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)

FILTERS = ("all", "todo", "done", "tagged")
DESCRIPTION_SAVE_DELAY_MS = 600
RETRY_SAVE_MS = 3000
THROUGHPUT_WINDOW_S = 3600.0  # tasks per hour over the last hour of this session
THROUGHPUT_MIN_SPAN_S = 60.0  # no rate from the first seconds (one task in 5 s is not 720/h)
_MERGE_DESCRIPTION = 1


@dataclass
class TaskRow:
    """What the task list shows for one task (cheap to build for 10,000 tasks)."""

    task: Task
    done: bool
    tagged: bool
    choice: str | None  # as shown: "left" is the image shown on the left


def preference_id(task_id: str) -> str:
    """One preference record per annotated pair, so choosing again replaces, never duplicates."""
    return f"ann-{task_id}"


class AnnotationEdit(QUndoCommand):
    """One change to one task's annotation (or its status), undoable."""

    def __init__(self, model: AnnotationModel, task_id: str, field: str, key: str | None, old: Any, new: Any):
        super().__init__(_describe(field, key, new))
        self.model, self.task_id, self.field, self.key = model, task_id, field, key
        self.old, self.new = old, new
        self.stamp = time.monotonic()

    def id(self) -> int:  # noqa: A003 - Qt's name
        return _MERGE_DESCRIPTION if self.field == "description" else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        # Consecutive typing in one box within a few seconds is one undo step, as in an editor.
        if not isinstance(other, AnnotationEdit):
            return False
        if (other.task_id, other.field, other.key) != (self.task_id, self.field, self.key):
            return False
        if other.stamp - self.stamp > 3.0:
            return False
        self.new = other.new
        self.stamp = other.stamp
        return True

    def redo(self) -> None:
        self.model._apply(self.task_id, self.field, self.key, self.new)

    def undo(self) -> None:
        self.model._apply(self.task_id, self.field, self.key, self.old)


def _describe(field: str, key: str | None, value: Any) -> str:
    if field == "description":
        return "Edit description"
    if field == "tags":
        return "Change tags"
    if field == "choice":
        return f"Choose {value}" if value else "Clear choice"
    if field == "status":
        return "Mark task done" if value == "done" else "Mark task to do"
    if field == "images":
        return "Replace an image"
    return "Edit"


class AnnotationModel(QObject):
    tasks_changed = Signal(object)  # list[Task]
    filter_changed = Signal(object)
    current_changed = Signal(object)  # Task | None
    images_changed = Signal(object)  # list[ImageRecord | None] of the current task
    annotation_changed = Signal(object)  # Annotation of the current task (after any edit)
    active_image_changed = Signal(object)  # 0 or 1: which image the tag list edits
    saved_state_changed = Signal(object)  # "saved" | "pending" | "failed"
    saved_at_changed = Signal(object)
    progress_changed = Signal(object)  # (done, total)
    throughput_changed = Signal(object)  # tasks per hour (float) or None before there is a rate
    vocabulary_changed = Signal(object)  # TagVocabulary
    error = Signal(object)  # Error for the message bar
    info = Signal(str)

    filter = observable("filter")
    active_image = observable("active_image")
    saved_state = observable("saved_state")
    saved_at = observable("saved_at")
    progress = observable("progress")

    def __init__(self, parent: QObject | None = None, *, annotator: str = "") -> None:
        super().__init__(parent)
        self.store: ProjectStore | None = None
        self.annotator = annotator
        self._filter = "all"
        self._active_image = 0
        self._saved_state = "saved"
        self._saved_at = ""
        self._progress = (0, 0)
        self._tasks: list[Task] = []
        self._index: dict[str, int] = {}
        self._annotations: dict[str, Annotation] = {}
        self._current: Task | None = None
        self._images: list[ImageRecord | None] = []
        self._dirty: set[str] = set()  # task ids whose annotation/status is not on disk yet
        self._last_task_id: str | None = None
        self._vocabulary = TagVocabulary()
        self.clock = time.monotonic  # the throughput's clock (a test may pass its own)
        self._session_start = self.clock()
        self._done_at: dict[str, float] = {}  # task id -> when it was marked done in this session
        self.undo_stack = QUndoStack(self)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.timeout.connect(self.flush)
        self._retry_timer = QTimer(self)
        self._retry_timer.setSingleShot(True)
        self._retry_timer.timeout.connect(self.flush)

    # ------------------------------------------------------------------ loading
    def load(self, store: ProjectStore) -> None:
        """Bind to an open project: read its tasks, annotations and tag vocabulary."""
        self.flush()
        self.store = store
        self.undo_stack.clear()
        self._dirty.clear()
        self._done_at.clear()
        self._session_start = self.clock()
        self._last_task_id = store.get_meta("last_task_id")
        self._current = None
        self._tasks = store.all(Task)
        self._vocabulary = self._read_vocabulary(store)
        self.vocabulary_changed.emit(self._vocabulary)
        self.reload_tasks()
        self.saved_state = "saved"

    def unload(self) -> None:
        self.flush()
        self.store = None
        self.undo_stack.clear()
        self._tasks, self._index, self._annotations = [], {}, {}
        self._current, self._images = None, []
        self.tasks_changed.emit([])
        self.current_changed.emit(None)
        self.images_changed.emit([])
        self._update_progress()

    def reload_tasks(self, *, select: str | None = None) -> None:
        store = self.store
        self._tasks = store.all(Task) if store is not None else []
        self._index = {t.id: i for i, t in enumerate(self._tasks)}
        annotations = store.all(Annotation) if store is not None else []
        # keep in-memory edits that have not reached the disk yet
        fresh = {a.task_id: a for a in annotations}
        for tid in self._dirty:
            if tid in self._annotations:
                fresh[tid] = self._annotations[tid]
        self._annotations = fresh
        self.tasks_changed.emit(self.tasks)
        self._update_progress()
        target = select or (self._current.id if self._current else None)
        if target and target in self._index:
            self.go_to(target)
        elif self._tasks:
            todo = next((t for t in self._tasks if t.status != "done"), self._tasks[0])
            self.go_to(todo.id)
        else:
            self._set_current(None)

    def _read_vocabulary(self, store: ProjectStore) -> TagVocabulary:
        vocab = TagVocabulary.from_meta(store.get_meta(TAGS_META_KEY))
        if vocab is None:
            name = store.get_meta("tag_set") or guess_set(
                [f"{t.category} {t.name}" for t in self._tasks[:200]]
            )
            vocab = TagVocabulary.from_set(name)
        return vocab

    # ------------------------------------------------------------------ read access
    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks)

    @property
    def current(self) -> Task | None:
        return self._current

    @property
    def images(self) -> list[ImageRecord | None]:
        return list(self._images)

    @property
    def vocabulary(self) -> TagVocabulary:
        return self._vocabulary

    # -- what is shown where (store/positions.py): pane p shows task.images[shown_order()[p]]
    def shown_order(self) -> list[int]:
        """Indices into the current task's images from left to right as shown."""
        return shown_order(self._current) if self._current is not None else []

    def index_at(self, position: int) -> int:
        """The index into the task's images of the image shown at ``position`` (0 left, 1 right)."""
        order = self.shown_order()
        return order[position] if 0 <= position < len(order) else position

    def position_of(self, index: int) -> int:
        """Where (0 left, 1 right) the task's image ``index`` is shown."""
        order = self.shown_order()
        return order.index(index) if index in order else index

    def shown_choice(self) -> str | None:
        """The current task's choice as shown ("left" = the image on the left)."""
        if self._current is None:
            return None
        return map_choice(self.annotation().choice, self.shown_order())

    def choose_shown(self, choice: Choice | str | None) -> bool:
        """The user's answer about the images as shown, stored in the task's own order."""
        value = Choice(choice).value if choice else None
        return self.set_choice(map_choice(value, self.shown_order()))

    def tag_counts(self) -> dict[str, int]:
        """How many images of the project carry each tag (for the quick-tag chips)."""
        counts: dict[str, int] = {}
        for ann in self._annotations.values():
            for tags in ann.tags.values():
                for t in tags:
                    counts[t] = counts.get(t, 0) + 1
        return counts

    def annotation(self, task_id: str | None = None) -> Annotation:
        tid = task_id or (self._current.id if self._current else "")
        ann = self._annotations.get(tid)
        if ann is None:
            ann = Annotation(task_id=tid, annotator=self.annotator)
        return ann

    def row(self, task: Task) -> TaskRow:
        ann = self._annotations.get(task.id)
        tagged = bool(ann and any(ann.tags.values()))
        choice = map_choice(ann.choice, shown_order(task)) if ann else None
        return TaskRow(task, task.status == "done", tagged, choice)

    def matches(self, task: Task, flt: str | None = None) -> bool:
        flt = flt or self._filter
        if flt == "todo":
            return task.status != "done"
        if flt == "done":
            return task.status == "done"
        if flt == "tagged":
            return self.row(task).tagged
        return True

    def visible_tasks(self) -> list[Task]:
        return [t for t in self._tasks if self.matches(t)]

    def position(self) -> tuple[int, int]:
        """(1-based position of the current task among the filtered ones or 0, their count)."""
        visible = self.visible_tasks()
        pos = 0
        if self._current is not None:
            for i, t in enumerate(visible):
                if t.id == self._current.id:
                    pos = i + 1
                    break
        return pos, len(visible)

    # ------------------------------------------------------------------ navigation
    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ValueError(name)
        self.filter = name
        self.tasks_changed.emit(self.tasks)
        if self._current is not None and not self.matches(self._current):
            visible = self.visible_tasks()
            if visible:
                self.go_to(visible[0].id)

    def go_to(self, task_id: str) -> bool:
        if task_id not in self._index:
            return False
        if self._current is not None and self._current.id == task_id:
            return True
        self.flush()
        self._set_current(self._tasks[self._index[task_id]])
        return True

    def go_to_position(self, n: int) -> bool:
        """Jump to the n-th (1-based) task of the filtered list."""
        visible = self.visible_tasks()
        if not 1 <= n <= len(visible):
            return False
        return self.go_to(visible[n - 1].id)

    def step(self, delta: int) -> bool:
        """Next (+1) or previous (-1) task that matches the filter, in project order."""
        if not self._tasks:
            return False
        start = self._index.get(self._current.id, -1) if self._current else -1
        i = start + delta
        while 0 <= i < len(self._tasks):
            if self.matches(self._tasks[i]):
                return self.go_to(self._tasks[i].id)
            i += delta
        return False

    def next(self) -> bool:
        return self.step(+1)

    def previous(self) -> bool:
        return self.step(-1)

    def next_todo(self) -> bool:
        """After 'Save Task': the next task not done yet (wrapping around), else stay."""
        if not self._tasks:
            return False
        start = self._index.get(self._current.id, -1) if self._current else -1
        n = len(self._tasks)
        for k in range(1, n + 1):
            t = self._tasks[(start + k) % n]
            if t.status != "done" and self.matches(t):
                return self.go_to(t.id)
        return False

    def load_last(self) -> bool:
        """Go to the task the annotator last worked on (kept in the project)."""
        if self.store is None:
            return False
        last = self.store.get_meta("last_task_id")
        if last and self.go_to(last):
            return True
        self.info.emit("No earlier task to go back to yet: the last task you edit is remembered.")
        return False

    def _set_current(self, task: Task | None) -> None:
        self._current = task
        self._images = []
        if task is not None and self.store is not None:
            self._images = [self.store.get(ImageRecord, iid) for iid in task.images]
        self.active_image = self.index_at(0)  # the image shown on the left
        self.current_changed.emit(task)
        self.images_changed.emit(self.images)
        self.annotation_changed.emit(self.annotation())

    # ------------------------------------------------------------------ edits (undoable)
    def set_description(self, image_index: int, text: str) -> None:
        if self._current is None or image_index >= len(self._current.images):
            return
        image_id = self._current.images[image_index]
        old = self.annotation().descriptions.get(image_id, "")
        if old == text:
            return
        self.undo_stack.push(AnnotationEdit(self, self._current.id, "description", image_id, old, text))

    def set_tags(self, image_index: int, tags: list[str]) -> None:
        if self._current is None or image_index >= len(self._current.images):
            return
        image_id = self._current.images[image_index]
        old = tuple(self.annotation().tags.get(image_id, []))
        new = tuple(dict.fromkeys(normalise_tag(t) for t in tags if normalise_tag(t)))
        if old == new:
            return
        self.undo_stack.push(AnnotationEdit(self, self._current.id, "tags", image_id, old, new))

    def toggle_tag(self, tag: str, image_index: int | None = None) -> None:
        idx = self._active_image if image_index is None else image_index
        if self._current is None or idx >= len(self._current.images):
            return
        tag = normalise_tag(tag)
        if not tag:
            return
        current = list(self.annotation().tags.get(self._current.images[idx], []))
        if tag in current:
            current.remove(tag)
        else:
            current.append(tag)
            if tag not in self._vocabulary:
                self.add_to_vocabulary(tag)
        self.set_tags(idx, current)

    def set_choice(self, choice: Choice | str | None) -> bool:
        if self._current is None:
            return False
        if len(self._current.images) != 2:
            self.info.emit("This task has one image: a preference needs two images side by side.")
            return False
        value = Choice(choice).value if choice else None
        old = self.annotation().choice
        if old == value:
            return True
        self.undo_stack.push(AnnotationEdit(self, self._current.id, "choice", None, old, value))
        return True

    def save_task(self) -> None:
        """The paper's 'Save Task': submit the current task (done) and save everything now."""
        if self._current is None:
            return
        if self._current.status != "done":
            self.undo_stack.push(AnnotationEdit(self, self._current.id, "status", None, "todo", "done"))
        self.flush()

    def reopen_task(self) -> bool:
        """Mark a finished task to do again (undoable); False when there is none to reopen."""
        if self._current is not None and self._current.status == "done":
            self.undo_stack.push(AnnotationEdit(self, self._current.id, "status", None, "done", "todo"))
            self.flush()
            return True
        return False

    def replace_image(self, index: int, record: ImageRecord) -> bool:
        """Put ``record`` (already in the project) in place of the task's image ``index``.

        Undoable. The old image stays in the project (another task or an undo may need it), as
        does what was written about it; the new image starts with no description or tags, since
        those described the old one.
        """
        if self._current is None or not 0 <= index < len(self._current.images):
            return False
        old = tuple(self._current.images)
        new = list(old)
        new[index] = record.id
        if tuple(new) == old:
            return False
        self.undo_stack.push(AnnotationEdit(self, self._current.id, "images", None, old, tuple(new)))
        return True

    def throughput(self) -> float | None:
        """Tasks marked done per hour in this session, over the last hour (None: too early).

        Counted from the marks made here (an undone mark is taken back), divided by the time
        since the project was opened or since an hour ago, whichever is later: the pace of the
        sitting, pauses included, as a team lead would count it. Under a minute gives no rate,
        and neither does an hour without a mark.
        """
        now = self.clock()
        recent = [t for t in self._done_at.values() if now - t <= THROUGHPUT_WINDOW_S]
        if not recent:
            return None
        span = now - max(self._session_start, now - THROUGHPUT_WINDOW_S)
        if span < THROUGHPUT_MIN_SPAN_S:
            return None
        return len(recent) * 3600.0 / span

    def set_active_image(self, index: int) -> None:
        if self._current is not None and 0 <= index < len(self._current.images):
            self.active_image = index

    # ------------------------------------------------------------------ vocabulary
    def add_to_vocabulary(self, tag: str) -> str:
        tag = self._vocabulary.add(tag)
        self._save_vocabulary()
        return tag

    def remove_from_vocabulary(self, tag: str) -> bool:
        """Remove a tag from the project's list; tags already applied to images stay."""
        found = self._vocabulary.remove(tag)
        if found:
            self._save_vocabulary()
        return found

    def use_tag_set(self, name: str) -> None:
        """Switch the project to another shipped set, keeping every tag already there."""
        self._vocabulary = self._vocabulary.merged_with(name)
        self._save_vocabulary()
        if self.store is not None:
            self._guard(lambda: self.store.set_meta("tag_set", name), "save the tag set")

    def _save_vocabulary(self) -> None:
        self.vocabulary_changed.emit(self._vocabulary)
        if self.store is not None:
            self._guard(
                lambda: self.store.set_meta(TAGS_META_KEY, self._vocabulary.to_meta()), "save the tag list"
            )

    # ------------------------------------------------------------------ apply + persist
    def _apply(self, task_id: str, field: str, key: str | None, value: Any) -> None:
        """Called by undo commands: change memory, tell the UI, schedule the save."""
        if task_id not in self._index:
            return
        if self._current is None or self._current.id != task_id:
            # Undoing an edit made on another task shows that task: no invisible changes.
            self.go_to(task_id)
        task = self._tasks[self._index[task_id]]
        ann = self.annotation(task_id)
        if field == "description":
            ann = ann.replace(descriptions={**ann.descriptions, key: value})
        elif field == "tags":
            ann = ann.replace(tags={**ann.tags, key: list(value)})
        elif field == "choice":
            ann = ann.replace(choice=value)
        elif field == "status":
            task = task.replace(status=value, updated=now_iso())
            self._tasks[self._index[task_id]] = task
            if self._current is not None and self._current.id == task_id:
                self._current = task
            if value == "done":
                self._done_at[task_id] = self.clock()
            else:
                self._done_at.pop(task_id, None)
        elif field == "images":
            task = task.replace(images=list(value), updated=now_iso())
            self._tasks[self._index[task_id]] = task
            self._current = task
            store = self.store
            self._images = [store.get(ImageRecord, iid) for iid in task.images] if store else []
        self._annotations[task_id] = ann
        self._dirty.add(task_id)
        if field == "images":
            self.current_changed.emit(self._current)
            self.tasks_changed.emit(self.tasks)
            self.images_changed.emit(self.images)
        elif field == "status":
            self.current_changed.emit(self._current)
            self.tasks_changed.emit(self.tasks)
            self.throughput_changed.emit(self.throughput())
        elif field in ("tags", "choice"):
            self.tasks_changed.emit(self.tasks)
        self.annotation_changed.emit(ann)
        self._update_progress()
        self.saved_state = "pending"
        if field == "description":
            self._save_timer.start(DESCRIPTION_SAVE_DELAY_MS)
        else:
            self.flush()

    def flush(self) -> bool:
        """Write every pending edit now. True when nothing is left unsaved."""
        self._save_timer.stop()
        if not self._dirty or self.store is None:
            return not self._dirty
        last = None
        for task_id in list(self._dirty):
            if task_id not in self._index:
                self._dirty.discard(task_id)
                continue
            task = with_shown_order(self._tasks[self._index[task_id]])  # recorded with the work
            ann = self.annotation(task_id).replace(updated=now_iso(), annotator=self.annotator)
            records: list[Any] = [ann, task]
            pref = self._preference_for(task, ann)
            try:
                self.store.put_many(records + ([pref] if pref is not None else []))
                if pref is None and self.store.get(PreferencePair, preference_id(task_id)) is not None:
                    self.store.delete(PreferencePair, preference_id(task_id))  # the choice was undone
            except TdriError as exc:
                self.saved_state = "failed"
                self.error.emit(
                    Error(
                        exc.kind,
                        f"Your last edits are not saved yet: {exc.message}",
                        (exc.what_to_do + " " if exc.what_to_do else "")
                        + "They are kept in this window and saved again automatically.",
                    )
                )
                self._retry_timer.start(RETRY_SAVE_MS)
                return False
            self._annotations[task_id] = ann
            self._tasks[self._index[task_id]] = task
            if self._current is not None and self._current.id == task_id:
                self._current = task
            self._dirty.discard(task_id)
            last = task_id
        if last is not None and last != self._last_task_id:
            # project.json is rewritten (and synced) for this: only when it changes
            if self._guard(lambda: self.store.set_meta("last_task_id", last), "remember the last task"):
                self._last_task_id = last
        self.saved_state = "saved"
        self.saved_at = time.strftime("%H:%M:%S")
        return True

    def _preference_for(self, task: Task, ann: Annotation) -> PreferencePair | None:
        store = self.store
        if ann.choice is None or len(task.images) != 2 or store is None:
            return None
        existing = store.get(PreferencePair, preference_id(task.id))
        prompts = [r.prompt for r in (store.get(ImageRecord, i) for i in task.images) if r and r.prompt]
        pair = PreferencePair(
            id=preference_id(task.id),
            prompt=prompts[0] if prompts else task.name,
            image_left=task.images[0],
            image_right=task.images[1],
            choice=ann.choice,
            source="annotation",
            task_id=task.id,
            train_meta={SHOWN_ORDER: shown_order(task)},  # which image was on the left
        )
        if existing is not None:  # keep when it was made and what trained on it
            pair = pair.replace(created=existing.created, used_in=existing.used_in)
        return pair

    def _guard(self, fn: Any, what: str) -> bool:
        try:
            fn()
        except TdriError as exc:
            self.error.emit(Error(exc.kind, f"Could not {what}: {exc.message}", exc.what_to_do))
            return False
        return True

    def _update_progress(self) -> None:
        done = sum(1 for t in self._tasks if t.status == "done")
        self.progress = (done, len(self._tasks))

    @property
    def has_unsaved(self) -> bool:
        return bool(self._dirty)
