"""The refinement view's state: the dialogue, its rounds, the pending question, personalisation.

Everything that touches the engine runs as a job in the engine thread (through
:class:`~studio.workers.engine_bridge.EngineBridge`); this model awaits those jobs on the GUI's asyncio
loop (qasync) and publishes the outcome as observable properties. The session object itself
lives in the engine thread: the GUI holds it only to hand it back to the next job.

A dialogue restored from the project (when the studio opens) is shown from the store's records
at once, without loading any model; the engine session is opened on the first action.

What the designer typed but did not send (the input box, an unsent edit of the D2P prompt) is
kept in the project as a draft (meta ``refine_draft``, with the dialogue it belongs to) when the
project closes or the studio quits, and comes back when the dialogue is shown again. Starred
rounds are image ids in meta ``starred_images``: a mark on an image, not a record of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from studio.models.observable import observable
from studio.models.rounds import Comparison, Personalisation, RoundView
from studio.workers import store_io
from studio.workers.engine_bridge import EngineBridge, JobCancelled, JobFailed, PreviewFrame, WorkerContext
from studio.workers.images import read_qimage
from studio.workers.jobs import Job
from studio.workers.refinement_jobs import (
    after_round,
    base_and_adapted,
    latest_dialogue,
    personalisation_status,
    rounds_from_store,
)
from tdri_engine import api
from tdri_engine.events import (
    AdapterReady,
    Error,
    Finished,
    PoseReady,
    PromptReady,
    Question,
    Reflection,
    TrainingProgress,
    Warning_,
)
from tdri_engine.records import Choice

if TYPE_CHECKING:
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)


def _adapters() -> Any:
    from tdri_engine.optimizer import adapters

    return adapters


# ------------------------------------------------------------------------------ the model
def copy_whole(src: str | Path, out: Path) -> None:
    """Copy ``src`` to ``out`` through a temporary name beside it, then rename: ``out`` appears
    whole or not at all (a viewer, a sync client or a crash never sees half a PNG)."""
    part = out.with_name(f".{out.name}.part")
    try:
        shutil.copyfile(src, part)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


class RefinementModel(QObject):
    rounds_changed = Signal(object)  # list[RoundView]
    comparison_changed = Signal(object)  # Comparison
    pending_question_changed = Signal(object)  # Question | None
    reflection_changed = Signal(object)  # RoundView | None (its scores/ambiguity feed the chart)
    prompt_changed = Signal(object)  # str: the latest D2P prompt
    busy_changed = Signal(object)  # bool
    preview_changed = Signal(object)  # QImage | None
    pose_map_changed = Signal(object)  # QImage | None
    personalisation_changed = Signal(object)  # Personalisation
    dialogue_id_changed = Signal(object)
    last_choice_changed = Signal(object)  # str describing the last recorded preference
    message = Signal(str, str)  # level, text (for the message bar)
    error = Signal(object)  # Error
    round_finished = Signal(object)  # RoundView
    choice_recorded = Signal(object)  # PreferencePair
    training_finished = Signal(object)  # AdapterVersion | None
    reference_changed = Signal(object)  # int | None: the round the next refine edits
    starred_changed = Signal(object)  # frozenset[str]: starred image ids
    draft_restored = Signal(object)  # dict: {"input": str, "d2p": str} typed but not sent

    rounds = observable("rounds")
    comparison = observable("comparison")
    pending_question = observable("pending_question")
    reflection = observable("reflection")
    prompt = observable("prompt")
    busy = observable("busy")
    preview = observable("preview")
    pose_map = observable("pose_map")
    personalisation = observable("personalisation")
    dialogue_id = observable("dialogue_id")
    last_choice = observable("last_choice")

    def __init__(
        self, bridge: EngineBridge, parent: QObject | None = None, *, auto_update: bool = True
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.store: ProjectStore | None = None
        self.auto_update = auto_update
        self._session: Any = None  # lives in the engine thread; only passed back to jobs
        self._rounds: list[RoundView] = []
        self._comparison = Comparison(None, None)
        self._pending_question: Question | None = None
        self._reflection: RoundView | None = None
        self._prompt = ""
        self._busy = False
        self._preview: QImage | None = None
        self._pose_map: QImage | None = None
        self._personalisation = Personalisation()
        self._dialogue_id: str | None = None
        self._last_choice = ""
        self._round_job: Job | None = None
        self._training_job: Job | None = None
        self.reference_round: int | None = None
        self.starred: frozenset[str] = frozenset()
        # what the view holds but has not sent; saved as the project's draft on close
        self.draft_input = ""
        self.draft_d2p = ""
        bridge.event.connect(self._on_event)

    # ------------------------------------------------------------------ project
    @property
    def tau(self) -> float | None:
        return self.store.settings.tau if self.store is not None else None

    async def load(self, store: ProjectStore) -> None:
        """Show the project's latest dialogue from its records; no engine needed."""
        self.store = store
        self._session = None
        self.pending_question = None
        self.set_reference(None)
        self.starred = frozenset(store.get_meta("starred_images", []) or [])
        self.starred_changed.emit(self.starred)
        dialogue = latest_dialogue(store)
        if dialogue is None:
            self._set_rounds([], None)
            self.dialogue_id = None
            self.prompt = ""
        else:
            tau = self.tau
            rounds = await store_io.run(rounds_from_store, store, dialogue.id, tau)
            pose = None
            if dialogue.pose_file:
                pose = await store_io.run(read_qimage, str(store.path / dialogue.pose_file))
            if store is not self.store:
                return  # another project was opened meanwhile
            self.dialogue_id = dialogue.id
            self.pose_map = pose
            last = rounds[-1] if rounds else None
            self._set_rounds(rounds, last)
            if last is not None and last.question:
                self.pending_question = Question(
                    last.question_aspect or "Others",
                    last.question,
                    last.scores,
                    last.ambiguity or 0.0,
                    last.options,
                )
        draft = store.get_meta("refine_draft") or {}
        if isinstance(draft, dict) and draft.get("dialogue_id") == self._dialogue_id:
            restored = {"input": str(draft.get("input") or ""), "d2p": str(draft.get("d2p") or "")}
            if restored["input"] or restored["d2p"]:
                self.draft_restored.emit(restored)
        await self.refresh_personalisation()

    def save_draft(self) -> None:
        """Keep what was typed but not sent (input box, unsent D2P edit) in the project."""
        store = self.store
        if store is None or getattr(store, "read_only", False):
            return
        d2p = self.draft_d2p.strip()
        draft = {
            "dialogue_id": self._dialogue_id,
            "input": self.draft_input,
            "d2p": d2p if d2p and d2p != self._prompt.strip() else "",
        }
        if not draft["input"] and not draft["d2p"]:
            draft = {}
        if (store.get_meta("refine_draft") or {}) == draft:
            return
        try:
            store.set_meta("refine_draft", draft)
        except Exception as exc:  # the draft is a convenience; the rounds are already saved
            log.warning("could not keep the draft: %s", exc)

    def unload(self) -> None:
        self.save_draft()
        self.store = None
        self._session = None
        self._set_rounds([], None)
        self.dialogue_id = None
        self.pending_question = None
        self.pose_map = None

    def new_dialogue(self) -> None:
        """Forget the current dialogue in the view (it stays in the project) and start afresh."""
        self._session = None
        self.dialogue_id = None
        self.pending_question = None
        self.pose_map = None
        self.prompt = ""
        self.last_choice = ""
        self.set_reference(None)
        self._set_rounds([], None)

    # ------------------------------------------------------------------ round actions
    def set_reference(self, round_number: int | None) -> None:
        """The round the next refine edits instead of the latest (None: the latest)."""
        if round_number is not None and self._rounds and round_number == self._rounds[-1].round:
            round_number = None  # the latest is the default
        self.reference_round = round_number
        self.reference_changed.emit(round_number)

    async def toggle_star(self, image_id: str) -> bool:
        """Star or unstar an image; returns whether it is starred now."""
        if self.store is None or not image_id:
            return False
        stars = set(self.starred)
        now = image_id not in stars
        (stars.add if now else stars.discard)(image_id)
        store = self.store
        try:
            await store_io.run(store.set_meta, "starred_images", sorted(stars))
        except Exception as exc:
            self.message.emit("warning", f"Could not keep the star: {exc}")
            return not now
        self.starred = frozenset(stars)
        self.starred_changed.emit(self.starred)
        return now

    async def save_image_as(self, view: RoundView, target: str | Path) -> Path | None:
        """Copy a round's PNG (its provenance text chunks included) to ``target``."""
        from tdri_engine.errors import TdriError
        from tdri_engine.validation import check_output_path

        if not view.image_path:
            self.message.emit("info", f"{view.title} has no image file to save.")
            return None
        out = Path(target)
        if out.suffix.lower() != ".png":
            out = out.with_name(out.name + ".png")
        try:
            check_output_path(out, "The file")
            await store_io.run(copy_whole, view.image_path, out)
        except TdriError as exc:
            self.error.emit(Error(exc.kind, exc.message, exc.what_to_do))
            return None
        except OSError as exc:
            self.error.emit(Error("storage", f"Could not save {out}: {exc}", "Pick another folder."))
            return None
        self.message.emit("info", f"Saved {view.title} as {out}.")
        return out

    async def set_edit_strength(self, value: float) -> bool:
        """Save the project's edit strength; the next round's session uses it."""
        store = self.store
        if store is None or abs(store.settings.edit_strength - value) < 1e-9:
            return False
        try:
            await store_io.run(store.save_settings, store.settings.replace(edit_strength=float(value)))
        except Exception as exc:
            self.message.emit("warning", f"Could not save the edit strength: {exc}")
            return False
        if store is self.store:
            self._session = None  # reopened from the records with the new settings on the next round
        return True

    # ------------------------------------------------------------------ rounds
    async def generate(self, prompt: str, seed: int | None = None) -> RoundView | None:
        """Round 0 of a new dialogue."""
        prompt = prompt.strip()
        if not prompt:
            self.message.emit("info", "Type what you want to see first, then Generate.")
            return None
        if self.store is None:
            return None
        self.new_dialogue()
        store, sink, tau = self.store, self.bridge.sink, self.tau

        def work(ctx: WorkerContext) -> tuple[Any, RoundView]:
            session = ctx.engine.open_session(store, on_event=sink)
            result = session.start(prompt, seed=seed, cancel=ctx.cancel)
            return session, after_round(store, session, result, tau)

        return await self._run_round("Generating round 0", work)

    async def refine(self, reply: api.Reply) -> RoundView | None:
        """Round t ≥ 1 from an answer, a skip, free feedback or an edited prompt."""
        if self.store is None:
            return None
        if not self._rounds:
            self.message.emit("info", "Generate a first image before refining it.")
            return None
        store, sink, tau, dialogue_id = self.store, self.bridge.sink, self.tau, self._dialogue_id
        session = self._session
        label = f"Refining: round {self._rounds[-1].round + 1}"
        reference = self.reference_round
        if reference is not None:
            label += f" from round {reference}"

        def work(ctx: WorkerContext) -> tuple[Any, RoundView]:
            s = session or ctx.engine.open_session(store, dialogue_id=dialogue_id, on_event=sink)
            if reference is None:
                result = s.refine(reply, cancel=ctx.cancel)
            else:
                result = s.refine(reply, cancel=ctx.cancel, reference=reference)
            return s, after_round(store, s, result, tau)

        view = await self._run_round(label, work)
        if view is not None and reference is not None and self.reference_round == reference:
            self.set_reference(None)  # a reference serves one round (unless another was picked meanwhile)
        return view

    async def _run_round(self, label: str, work: Any) -> RoundView | None:
        if self._busy:
            self.message.emit("info", "A round is already running: wait for it or cancel it.")
            return None
        training = self._training_job
        if training is not None and not training.state.done:
            # One engine thread owns the models: the round waits for the update (or its cancel).
            step = f" (step {training.step} of {training.total})" if training.total else ""
            self.message.emit(
                "info",
                f"Your adapter is being updated{step}; this round starts right after. "
                "Cancel the update in the Personalisation panel to go first.",
            )
        self.busy = True
        self.preview = None
        future = self.bridge.run("round", label, work)
        self._round_job = future.job  # type: ignore[attr-defined]
        try:
            session, view = await future
        except JobCancelled:
            self._restore_prompt()
            self.message.emit("info", "Round cancelled. Nothing was lost: the dialogue is as before.")
            return None
        except JobFailed as exc:
            self._restore_prompt()
            self.error.emit(exc.error)
            return None
        finally:
            self.busy = False
            self.preview = None
            self._round_job = None
        self._session = session
        self.dialogue_id = getattr(session, "dialogue_id", None) or self._dialogue_id
        if view.pose_map is not None:
            self.pose_map = view.pose_map
        previous = self._rounds[-1] if self._rounds else None
        self._set_rounds([*self._rounds, view], view, left=previous)
        self.pending_question = (
            Question(
                view.question_aspect or "Others",
                view.question,
                view.scores,
                view.ambiguity or 0.0,
                view.options,
            )
            if view.question
            else None
        )
        for w in view.warnings:
            self.message.emit("warning", w)
        self.round_finished.emit(view)
        return view

    def _restore_prompt(self) -> None:
        """After a round that did not finish, the D2P prompt is the last finished round's again
        (PromptReady already showed the unfinished round's)."""
        self.prompt = self._rounds[-1].prompt if self._rounds else ""

    @property
    def can_cancel(self) -> bool:
        return self._round_job is not None or self._training_job is not None

    def cancel(self) -> None:
        if self._round_job is not None:
            self.bridge.queue.cancel(self._round_job)
        elif self._training_job is not None:
            self.bridge.queue.cancel(self._training_job)

    def _set_rounds(
        self, rounds: list[RoundView], latest: RoundView | None, left: RoundView | None = None
    ) -> None:
        self.rounds = list(rounds)
        self.reflection = latest
        self.prompt = latest.prompt if latest else ""
        self.comparison = Comparison(
            left if left is not None else (rounds[-2] if len(rounds) > 1 else None), latest
        )

    def compare(self, left: RoundView | None, right: RoundView | None) -> None:
        self.comparison = Comparison(left, right)

    # ------------------------------------------------------------------ preferences
    async def choose(self, choice: Choice | str) -> Any:
        """Record the user's choice between the two images shown side by side."""
        comp = self._comparison
        if comp.left is None or comp.right is None or self.store is None:
            self.message.emit("info", "Put two images side by side first (pick rounds in the strip).")
            return None
        if comp.left.image_id == comp.right.image_id:
            self.message.emit("info", "Both sides show the same image: pick another round for one side.")
            return None
        choice = Choice(choice)
        store, sink, dialogue_id = self.store, self.bridge.sink, self._dialogue_id
        session = self._session
        left, right = comp.left, comp.right

        def work(ctx: WorkerContext) -> tuple[Any, Any]:
            s = session or ctx.engine.open_session(store, dialogue_id=dialogue_id, on_event=sink)
            return s, s.choose(left.image_id, right.image_id, choice)

        queued = self._busy
        if queued:
            self.message.emit("info", "Choice noted: it is recorded as soon as the running round ends.")
        try:
            session, pair = await self.bridge.run("choose", "Recording your choice", work, cancellable=False)
        except JobFailed as exc:
            self.error.emit(exc.error)
            return None
        except JobCancelled:
            return None
        if self._session is None:
            self._session = session
        words = {
            Choice.LEFT: f"{left.title} preferred over {right.title}",
            Choice.RIGHT: f"{right.title} preferred over {left.title}",
            Choice.TIE: f"{left.title} and {right.title}: a tie",
            Choice.BOTH_BAD: f"{left.title} and {right.title}: both bad",
        }[choice]
        self.last_choice = f"Recorded: {words}."
        self.choice_recorded.emit(pair)
        await self.refresh_personalisation()
        p = self._personalisation
        if self.auto_update and p.available and p.remaining == 0 and self._training_job is None:
            self.message.emit(
                "info", f"{p.every} choices collected: updating your personal adapter in the background."
            )
            asyncio.ensure_future(self.train())
        return pair

    # ------------------------------------------------------------------ personalisation
    async def refresh_personalisation(self) -> Personalisation:
        if self.store is None:
            return self._personalisation
        store = self.store
        every = store.settings.update_every
        try:
            status = await store_io.run(personalisation_status, store, every)
        except Exception as exc:
            log.exception("personalisation status failed")
            status = Personalisation(every=every, available=False, note=f"Could not read the adapters: {exc}")
        if store is self.store:
            self.personalisation = status
        return status

    async def train(self) -> Any:
        if self.store is None:
            return None
        store, sink = self.store, self.bridge.sink

        def work(ctx: WorkerContext) -> Any:
            return ctx.engine.train(store, cancel=ctx.cancel, on_event=ctx.emit)

        future = self.bridge.run("train", "Updating your personal adapter (Diffusion-DPO)", work)
        self._training_job = future.job  # type: ignore[attr-defined]
        del sink
        version = None
        try:
            version = await future
        except JobFailed as exc:
            self.error.emit(exc.error)
        except JobCancelled:
            self.message.emit("info", "Update cancelled; the active adapter is unchanged.")
        finally:
            self._training_job = None
        await self.refresh_personalisation()
        self.training_finished.emit(version)
        return version

    async def activate(self, version_id: str | None) -> None:
        await self._adapter_op(
            lambda store: _adapters().activate(store, version_id), f"Switching to {version_id or 'base'}"
        )

    async def set_scope(self, scope: str) -> None:
        """Generate with this project's adapter or the user's generalised one (paper table 5)."""
        await self._adapter_op(
            lambda store: _adapters().set_adapter_scope(store, scope), "Choosing the adapter"
        )

    async def rollback(self) -> None:
        await self._adapter_op(lambda store: _adapters().rollback(store), "Rolling back the adapter")

    async def _adapter_op(self, fn: Any, label: str) -> None:
        if self.store is None:
            return
        store = self.store
        try:
            # Through the engine thread: the engine may hold the adapter loaded in its pipeline.
            await self.bridge.run("adapter", label, lambda ctx: fn(store), cancellable=False)
        except JobFailed as exc:
            self.error.emit(exc.error)
        await self.refresh_personalisation()

    async def compare_base_adapted(self, seed: int | None = None) -> Comparison | None:
        """The latest prompt with and without the active adapter, on one seed, side by side."""
        if self.store is None:
            return None
        prompt = self._prompt or (self._rounds[-1].prompt if self._rounds else "")
        if not prompt:
            self.message.emit("info", "Generate something first: the comparison uses the latest prompt.")
            return None
        if seed is None and self._rounds:
            seed = self._rounds[-1].seed
        if self._busy:
            self.message.emit("info", "A round is running: try again when it ends.")
            return None
        store = self.store
        self.busy = True
        future = self.bridge.run(
            "compare",
            "Base vs adapted on the same seed",
            lambda ctx: base_and_adapted(ctx, store, prompt, seed),
        )
        self._round_job = future.job  # type: ignore[attr-defined]
        try:
            left, right = await future
        except JobFailed as exc:
            self.error.emit(exc.error)
            return None
        except JobCancelled:
            return None
        finally:
            self.busy = False
            self._round_job = None
        self.comparison = Comparison(left, right)
        self.message.emit(
            "info", "Base on the left, your adapter on the right: choosing one records a preference."
        )
        return self.comparison

    # ------------------------------------------------------------------ engine events
    def _on_event(self, job: Job, event: Any) -> None:
        if job.kind not in ("round", "compare", "train"):
            return
        if isinstance(event, PreviewFrame):
            self.preview = event.image
        elif isinstance(event, PromptReady):
            self.prompt = event.prompt
            for w in event.warnings:
                self.message.emit("warning", w)
        elif isinstance(event, PoseReady):
            if not event.found:  # the map itself arrives decoded with the round's result
                self.message.emit("info", event.message or "No person found: the pose is not kept.")
        elif isinstance(event, Warning_):
            # Notes said while a session opens (profile caps, demo notice) are worth a glance;
            # a round's own warnings come back with its result and stay on screen.
            self.message.emit("note", event.message)
        elif isinstance(event, AdapterReady):
            level = "warning" if event.suspect else "info"
            text = event.message or f"Adapter {event.version} is ready."
            self.message.emit(level, text)
        elif isinstance(event, (Reflection, TrainingProgress, Finished, Error)):
            pass  # the round's result carries the reflection; the job bar shows training progress
