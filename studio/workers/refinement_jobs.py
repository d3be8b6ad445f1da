"""The refinement view's work off the GUI thread: engine results and store records to rounds.

Each function runs in the engine thread (inside a job) or in the store I/O thread; each
returns values of ``studio.models.rounds`` with their images decoded, so the GUI thread
only shows them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from studio.models.rounds import Personalisation, RoundView
from studio.workers.engine_bridge import WorkerContext
from studio.workers.images import read_qimage, thumbnail
from tdri_engine import api
from tdri_engine.records import Dialogue, DialogueTurn, ImageRecord

if TYPE_CHECKING:
    from tdri_engine.store import ProjectStore

log = logging.getLogger(__name__)


def round_from_result(result: api.RoundResult, tau: float | None = None) -> RoundView:
    """RoundResult (engine) -> RoundView, decoding the image. Runs in the engine thread."""
    turn, rec = result.turn, result.image
    refl = result.reflection
    q = result.question
    image = read_qimage(result.image_path)
    return RoundView(
        round=result.round,
        image_id=rec.id,
        image_path=str(result.image_path),
        prompt=result.prompt,
        kind=turn.kind,
        user_input=turn.user_input,
        system_response=turn.system_response,
        question=q.text if q else turn.question,
        question_aspect=q.aspect if q else turn.question_aspect,
        options=tuple(q.options) if q else (),
        scores=dict(refl.scores if refl else turn.aspect_scores),
        captions=dict(refl.captions) if refl else {},
        ambiguity=refl.ambiguity if refl else turn.ambiguity,
        threshold=refl.threshold if refl else tau,
        seed=rec.seed,
        adapter_version=rec.adapter_version,
        warnings=tuple(result.warnings),
        pose_found=result.pose_found,
        image=image,
        thumb=thumbnail(image),
    )


def after_round(store: ProjectStore, session: Any, result: api.RoundResult, tau: float | None) -> RoundView:
    """Engine-thread work after a round: decode its images, remember the dialogue. Keeping
    this off the GUI thread matters: a project.json write is an fsync (tens of ms on a busy disk)."""
    view = round_from_result(result, tau)
    dialogue = getattr(session, "dialogue", None)
    pose_file = getattr(dialogue, "pose_file", None)
    if result.round == 0 and pose_file:
        view.pose_map = read_qimage(store.path / pose_file, 1024)
    dialogue_id = getattr(session, "dialogue_id", None)
    if dialogue_id and store.get_meta("last_dialogue_id") != dialogue_id:
        try:
            store.set_meta("last_dialogue_id", dialogue_id)
        except Exception as exc:  # remembering the dialogue is a convenience, not the work
            log.warning("could not remember the dialogue: %s", exc)
    return view


def rounds_from_store(store: ProjectStore, dialogue_id: str, tau: float | None) -> list[RoundView]:
    """A dialogue's rounds from the project's records (no engine needed). Any thread."""
    turns = store.find(DialogueTurn, lambda d: d.get("dialogue_id") == dialogue_id)
    turns.sort(key=lambda t: (t.round, t.created))
    out: list[RoundView] = []
    for t in turns:
        rec = store.get(ImageRecord, t.image_id) if t.image_id else None
        path = ""
        if rec is not None:
            try:
                path = str(store.image_path(rec))
            except Exception:  # a record pointing nowhere shows as a missing image
                path = ""
        image = read_qimage(path)
        out.append(
            RoundView(
                round=t.round,
                image_id=rec.id if rec else (t.image_id or ""),
                image_path=path,
                prompt=t.prompt,
                kind=t.kind,
                user_input=t.user_input,
                system_response=t.system_response,
                question=t.question,
                question_aspect=t.question_aspect,
                options=tuple(t.question_options or ()),
                scores=dict(t.aspect_scores),
                ambiguity=t.ambiguity,
                threshold=tau,
                seed=rec.seed if rec else None,
                adapter_version=rec.adapter_version if rec else None,
                image=image,
                thumb=thumbnail(image),
            )
        )
    return out


def latest_dialogue(store: ProjectStore) -> Dialogue | None:
    last = store.get_meta("last_dialogue_id")
    if last:
        d = store.get(Dialogue, last)
        if d is not None:
            return d
    dialogues = store.all(Dialogue)
    return max(dialogues, key=lambda d: d.created) if dialogues else None


def personalisation_status(store: ProjectStore, every: int) -> Personalisation:
    """Read the optimizer's view of this project (adapter versions, choices to the next update)."""
    try:
        from tdri_engine.optimizer import adapters, schedule
    except ImportError as exc:  # an engine build without the optimizer: say so, don't guess
        log.info("personalisation unavailable: %s", exc)
        return Personalisation(
            every=every,
            available=False,
            note="Personalisation needs the preference optimizer (tdri_engine.optimizer.adapters and "
            "schedule), which this build does not include. Choices are still recorded.",
        )
    remaining = schedule.choices_until_update(store, every)
    active = adapters.active_adapter(store)
    return Personalisation(
        remaining=int(remaining),
        every=every,
        active=active.id if active is not None else None,
        versions=list(adapters.list_versions(store)),
        scope=adapters.adapter_scope(store),
        can_compare=adapters.active_adapter_dir(store) is not None,
    )


def base_and_adapted(
    ctx: WorkerContext, store: ProjectStore, prompt: str, seed: int | None
) -> tuple[RoundView, RoundView]:
    """Engine thread: the engine's base-vs-adapted pair, decoded for the view."""
    base, adapted = ctx.engine.compare_base_adapted(
        store, prompt, seed=seed, cancel=ctx.cancel, on_event=ctx.emit
    )
    views = []
    for title, rec in (("Base", base), ("Adapted", adapted)):
        path = store.image_path(rec)
        image = read_qimage(path)
        views.append(
            RoundView(
                round=-1,
                image_id=rec.id,
                image_path=str(path),
                prompt=prompt,
                seed=rec.seed,
                adapter_version=rec.adapter_version,
                image=image,
                thumb=thumbnail(image),
                label=f"{title}{' ' + rec.adapter_version if rec.adapter_version else ''}",
            )
        )
    return views[0], views[1]
