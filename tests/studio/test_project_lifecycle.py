"""Switching projects while the engine thread holds the old one.

The main window closes a project only after the jobs that hold it ended: a round and a DPO
update are cancelled and end at their next step, the store closes after them, and nothing
reaches the old project's folder after its close.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fake_engine import FakeEngine, ScriptedRound

from studio.workers.jobs import JobState
from tdri_engine.errors import ProjectError
from tdri_engine.records import DialogueTurn, PreferencePair

STEP_S = 0.02  # one fake denoising / training step
STEPS = 500  # 10 s of work each: far longer than the switch may take


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_switching_projects_while_a_round_and_an_update_run(studio, new_project, run, qtbot):
    a, b = new_project("Project A"), new_project("Project B")
    engine = FakeEngine(
        script=[ScriptedRound(steps=STEPS, step_delay=STEP_S), ScriptedRound(steps=2)],
        train_steps=STEPS,
        train_step_delay=STEP_S,
    )
    window = studio(a, engine)
    old = window.store
    old.put_many([PreferencePair(image_left=f"l{i}", image_right=f"r{i}", choice="left") for i in range(2)])
    at_close: dict[str, tuple[int, int]] = {}
    states_at_close: list[JobState] = []
    close = old.close

    def close_and_record() -> None:  # the jobs' states and the folder the moment the store closes
        states_at_close.extend(j.state for j in (round_job, train_job))
        close()
        at_close.update(files(old.path))

    old.close = close_and_record

    round_fut = asyncio.ensure_future(window.refinement_model.generate("a red dress"))
    queue = window.bridge.queue
    qtbot.waitUntil(
        lambda: queue.active is not None and queue.active.kind == "round" and queue.active.step >= 2
    )
    train_fut = asyncio.ensure_future(window.refinement_model.train())
    qtbot.waitUntil(lambda: any(j.kind == "train" for j in queue.jobs))
    round_job = next(j for j in queue.jobs if j.kind == "round")
    train_job = next(j for j in queue.jobs if j.kind == "train")

    started = time.monotonic()
    new = run(window.open_project(b), timeout=10)
    switch_s = time.monotonic() - started

    # both ended, cancelled, before the old project closed; the new one is open
    assert states_at_close == [JobState.CANCELLED, JobState.CANCELLED]
    assert at_close, "the old project was not closed"
    assert new is not None and window.store is new and new.path == b
    assert switch_s < 3.0, switch_s  # the round's next step is 20 ms away; 3 s leaves room for 2 busy cores
    qtbot.waitUntil(lambda: round_fut.done() and train_fut.done())
    assert old.get_meta("active_adapter") is None  # the cancelled update activated nothing

    # the new project works; the old folder stays exactly as it was at its close
    run(window.refinement_model.generate("a blue coat"))
    assert [t.prompt for t in new.all(DialogueTurn)] == ["a blue coat"]
    assert files(old.path) == at_close
    try:
        old.put(PreferencePair(image_left="x", image_right="y"))
    except ProjectError as exc:
        assert "closed" in exc.message
    else:
        raise AssertionError("a closed project accepted a write")
