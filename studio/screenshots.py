"""``tdri-studio --screenshots DIR``: pictures of the studio with a project loaded.

Works on a throwaway copy of the project (the user's files never change), runs a short
dialogue on the engine when the project has none (so the refinement view shows real rounds: see
``run_demo_dialogue``), and saves ``annotation.png``, ``refinement.png`` and
``settings.png`` at 1440×900, then ``annotation-1920x1080.png`` and ``refinement-1920x1080.png``.
Each view is shown as it is used: a message in the strip from a real action (the HTML snippet
copied, the round's image copied), the round actions under the images.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget

from tdri_engine import api
from tdri_engine.records import Annotation

log = logging.getLogger(__name__)

SIZE = (1440, 900)
SIZES = (SIZE, (1920, 1080))  # a laptop and a desktop screen; the first keeps the plain names
# The scripted dialogue (run_demo_dialogue), in the Atelier's own words: its world's values, what
# its models were trained on. The prompt leaves the colour open. On the atelier profile at its
# calibrated tau (0.8157), seed 3: round 0 draws a brown checked dress and asks its colour, the
# answer "yellow" comes back as a yellow dress in round 1 (the Atelier judge reads brown, then
# yellow), two typed wishes follow, and round 3 asks again. Edits at strength 0.6 keep most colours
# the generator drew: its judge read an answered red, blue or white in 0 of 9 edits each (seeds 0-5
# of "a dress on a beach", 0, 1, 3 of "a dress in a studio"), black in 7 and yellow in 6 of 9.
DEMO_PROMPT = "a dress in a studio"
DEMO_SEED = 3
# The one-click answer clicked for each aspect: the first of these the question offers (all are
# values of resources/templates/questions_atelier.json), else the question's first option.
DEMO_ANSWERS: dict[str, tuple[str, ...]] = {
    "Color": ("yellow", "black"),
    "Background": ("in a garden", "on a beach"),
    "Style": ("on a mannequin", "on a hanger"),
    "Perspective": ("front view", "side view"),
    "Size": ("long sleeves", "short"),
    "Others": ("with a belt", "with stripes"),
    "Content": ("a dress", "a coat"),
}
# what the designer types while no question is pending (Atelier values too)
DEMO_FEEDBACK = ("long sleeves", "with a belt", "with stripes", "side view")
MAX_EXTRA_ROUNDS = 4  # rounds after round 0 until an answer has come back and a question is pending


async def wait_signal(signal: Any, timeout_s: float = 60.0) -> Any:
    """Await one emission of a Qt signal on the qasync loop."""
    fut: asyncio.Future = asyncio.get_event_loop().create_future()

    def fire(*args: Any) -> None:
        if not fut.done():
            fut.set_result(args[0] if len(args) == 1 else args)

    signal.connect(fire)
    try:
        return await asyncio.wait_for(fut, timeout_s)
    finally:
        signal.disconnect(fire)


async def settle(ms: int = 150) -> None:
    """Let layouts, repaints and queued signals run before a grab. Only by awaiting: the qasync
    loop runs Qt's events meanwhile, while a nested processEvents() inside this coroutine would
    wake other tasks (the annotation view's image loads) inside this one, which asyncio refuses."""
    await asyncio.sleep(ms / 1000)


async def engine_idle(window: Any, timeout_s: float = 300.0) -> None:
    """Wait (at most ``timeout_s``) until the engine's job queue is empty: opening a project loads
    the engine, and a screenshot taken meanwhile shows "Loading the engine" in the status bar."""
    queue = window.bridge.queue
    loop = asyncio.get_event_loop()
    end = loop.time() + timeout_s
    while (queue.active is not None or queue.pending) and loop.time() < end:
        await asyncio.sleep(0.1)


def grab(widget: QWidget, path: Path) -> Path:
    pixmap = widget.grab()
    if not pixmap.save(str(path)):
        raise OSError(f"could not write {path}")
    return path


async def take_screenshots(window: Any, out_dir: Path, *, project: str | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = Path(project) if project else _default_project(window)
    tmp = tempfile.TemporaryDirectory(prefix="tdri-shots-")
    window.destroyed.connect(lambda *_: tmp.cleanup())
    window._screenshot_tmp = tmp  # lives as long as the window

    copy = copy_project_for_screenshots(source, Path(tmp.name))
    window.resize(*SIZE)
    store = await window.open_project(copy)
    if store is None:
        raise RuntimeError(f"could not open {copy}")
    await engine_idle(window)  # the status bar shows the engine loaded, not half-way through it
    saved: list[Path] = []
    for size in SIZES:
        window.resize(*size)
        suffix = "" if size == SIZE else f"-{size[0]}x{size[1]}"
        await settle(200)
        saved.append(await _annotation_shot(window, store, out_dir / f"annotation{suffix}.png"))
        saved.append(await _refinement_shot(window, out_dir / f"refinement{suffix}.png"))
        if size == SIZE:
            shot = await _settings_shot(window, out_dir / "settings.png")
            if shot is not None:
                saved.append(shot)
    window.resize(*SIZE)
    await settle(50)
    return saved


async def _annotation_shot(window: Any, store: Any, path: Path) -> Path:
    """The annotation view on an annotated pair when there is one, its HTML snippet copied."""
    window.tabs.setCurrentWidget(window.annotation_view)
    model = window.annotation_model
    annotated = [a.task_id for a in store.all(Annotation) if any(a.descriptions.values())]
    images_shown = wait_signal(window.annotation_view.images_shown, 30)
    target = annotated[0] if annotated else (model.tasks[0].id if model.tasks else None)
    if target and model.current is not None and model.current.id == target:
        model.images_changed.emit(model.images)  # reload, so the wait below sees the signal
    elif target:
        model.go_to(target)
    else:
        model.images_changed.emit([])
    await images_shown
    window.annotation_view._refresh_html()
    if target:
        window.annotation_view.copy_html()  # a real action's note in the message strip
    await settle(300)
    return grab(window, path)


async def _refinement_shot(window: Any, path: Path) -> Path:
    """The refinement view with a question pending, a round starred and its image copied."""
    window.tabs.setCurrentWidget(window.refinement_view)
    ref = window.refinement_model
    if not ref.rounds and await run_demo_dialogue(ref):
        first, last = ref.rounds[0], ref.rounds[-1]
        if last is not first:
            ref.compare(first, last)  # the prompt's image beside the latest: what the answers changed
            await ref.choose("right")
        if last.image_id not in ref.starred:
            await ref.toggle_star(last.image_id)
    window.refinement_view.copy_image()  # the round actions at work: a note in the strip
    await settle(300)
    # the dialogue from its start (the prompt, the first question and its answer); the pending
    # question stays in view in the question box under it
    window.refinement_view.dialogue_log.verticalScrollBar().setValue(0)
    await settle(50)
    return grab(window, path)


async def run_demo_dialogue(ref: Any) -> bool:
    """The screenshots' dialogue: ``DEMO_PROMPT`` on ``DEMO_SEED``, then each round answers the
    pending question with a one-click option (``DEMO_ANSWERS``) or, when none is pending, types the
    next ``DEMO_FEEDBACK``; it stops once an answer has come back in a round and that round asks a
    question (so the view shows a pending question with its one-click answers), or after
    ``MAX_EXTRA_ROUNDS``. Whether a round asks is the engine's own decision (ambiguity above the
    profile's tau); nothing here forces it. Returns whether round 0 was made."""
    if await ref.generate(DEMO_PROMPT, seed=DEMO_SEED) is None:
        return False
    answered = False
    feedback = iter(DEMO_FEEDBACK)
    for _ in range(MAX_EXTRA_ROUNDS):
        q = ref.pending_question
        if q is not None and answered:
            break
        reply: api.Reply
        if q is not None:
            offered = tuple(q.options)
            pick = next((a for a in DEMO_ANSWERS.get(q.aspect, ()) if a in offered), None)
            if pick is None and not offered:
                reply = api.Skip()
            else:
                reply = api.Answer(q.aspect, pick or offered[0])
                answered = True
        else:
            text = next(feedback, None)
            if text is None:
                break
            reply = api.Feedback(text)
        if await ref.refine(reply) is None:
            break
    return True


async def _settings_shot(window: Any, path: Path) -> Path | None:
    """The settings dialog with the models check done."""
    dlg = window.show_settings()
    if dlg is None:
        return None
    dlg.resize(900, 600)
    if dlg._check_task is not None:
        await dlg._check_task
    await settle(300)
    shot = grab(dlg, path)
    dlg.reject()
    return shot


def _default_project(window: Any) -> Path:
    from tdri_engine import paths

    prefs = window.prefs
    for candidate in (prefs.projects_root() / "sample", paths.default_projects_dir() / "sample"):
        if candidate.is_dir():
            return candidate
    if prefs.last_project and Path(prefs.last_project).is_dir():
        return Path(prefs.last_project)
    raise RuntimeError("No project to show: there is no sample project. Pass --project PATH.")


def copy_project_for_screenshots(src: Path, dest_root: Path) -> Path:
    """A throwaway copy of a project (so screenshots never change the user's files)."""
    dest = dest_root / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest
