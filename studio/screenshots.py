"""``tdri-studio --screenshots DIR``: pictures of the studio with a project loaded.

Works on a throwaway copy of the project (the user's files never change), runs a short
dialogue on the engine when the project has none (so the refinement view shows real rounds,
and goes on until a question is pending), and saves ``annotation.png``, ``refinement.png`` and
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
# in the Atelier's own words, so its trained models draw what the screenshot says
DEMO_PROMPT = "a red dress on a mannequin at the beach"
MAX_EXTRA_ROUNDS = 4  # rounds added until a question is pending (the profile's tau asks ~ half the time)


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
    if not ref.rounds:
        view = await ref.generate(DEMO_PROMPT, seed=7)
        if view is not None:
            q = ref.pending_question
            reply: api.Reply = (
                api.Answer(q.aspect, q.options[0] if q.options else "deep red")
                if q is not None
                else api.Feedback("long sleeves")
            )
            await ref.refine(reply)
            await ref.choose("right")
            feedback = iter(("long sleeves", "with a belt", "stripes", "side view"))
            for _ in range(MAX_EXTRA_ROUNDS):
                if ref.pending_question is not None or await ref.refine(api.Feedback(next(feedback))) is None:
                    break
            last = ref.rounds[-1] if ref.rounds else None
            if last is not None and last.image_id not in ref.starred:
                await ref.toggle_star(last.image_id)
    window.refinement_view.copy_image()  # the round actions at work: a note in the strip
    await settle(300)
    return grab(window, path)


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
