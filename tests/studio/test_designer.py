"""The designer: three rounds of dialogue, one answered question, one preference recorded.

Runs on the scripted engine (fast, and lets a round ask exactly the question we want); the
same scenario on the real demo engine is in ``test_real_engine.py``.
"""

from __future__ import annotations

import threading

from fake_engine import FakeEngine, ScriptedRound
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from tdri_engine.records import Dialogue, DialogueTurn, PreferencePair
from tdri_engine.store import open_project

COLOUR_Q = ("Color", "Which colour should the dress be?", ("red", "navy", "emerald"))


def designer_engine(**kw) -> FakeEngine:
    return FakeEngine(
        script=[ScriptedRound(ambiguity=0.6, ask=COLOUR_Q), ScriptedRound(ambiguity=0.2), ScriptedRound(**kw)]
    )


def test_designer_runs_three_rounds_answers_a_question_and_records_a_preference(studio, new_project, qtbot):
    project = new_project("Dresses")
    engine = designer_engine()
    window = studio(project, engine)
    window.tabs.setCurrentWidget(window.refinement_view)
    view = window.refinement_view
    model = window.refinement_model

    # round 0: type a prompt, Generate
    view.input.setPlainText("an evening dress on a model")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
    assert view.question_card.isVisible()
    assert "Which colour" in view.question_label.text()
    # one name for the aspect on screen: the bars', not the engine's key
    assert view.question_label.text().startswith("<b>Colour</b>")
    assert "· Colour" in view.dialogue_log.toPlainText() and "Color" not in view.dialogue_log.toPlainText()
    assert [b.property("option") for b in view._option_buttons] == ["red", "navy", "emerald"]
    assert view._option_buttons[0].text() == "red  [Alt+1]"  # its key on the button
    assert view.chart.ambiguity_of("Color") > view.chart.ambiguity_of("Style")
    assert view.pose_check.isEnabled()  # the fake engine found a pose in round 0

    # round 1: answer with one click
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.mouseClick(view._option_buttons[0], Qt.MouseButton.LeftButton)
    assert not view.question_card.isVisible()
    # the one-click answer reached the engine as an Answer; the studio shows the engine's prompt
    # (how a prompt is made from the dialogue is the engine's business, tested in tests/engine)
    session = engine.sessions[-1]
    assert session._answers == ["red"]
    assert model.prompt == session.rounds[-1].prompt == model.rounds[-1].prompt
    assert view.prompt_edit.toPlainText() == model.prompt

    # round 2: free feedback, Enter sends
    view.input.setFocus()
    qtbot.keyClicks(view.input, "longer sleeves")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.keyClick(view.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.input.toPlainText() == "", timeout=2000)  # sent text is cleared
    assert view.strip.count() == 3
    assert model.comparison.left.round == 1 and model.comparison.right.round == 2
    assert view.left_view.image is not None and view.right_view.image is not None

    # compare round 0 with round 2: click round 0 with Ctrl (left side), then "2": right is better
    qtbot.mouseClick(
        view.strip.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        view.strip.visualItemRect(view.strip.item(0)).center(),
    )
    assert model.comparison.left.round == 0
    window.activateWindow()
    qtbot.waitActive(window)
    view.right_view.setFocus()
    with qtbot.waitSignal(model.choice_recorded, timeout=10000) as recorded:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_2)
    pair = recorded.args[0]
    assert "Round 2 preferred over Round 0" in view.choice_label.text()

    # everything is in the project, and the engine only ever ran in the engine thread
    store = window.store
    dialogue_id = model.dialogue_id
    turns = sorted(store.find(DialogueTurn, lambda d: d["dialogue_id"] == dialogue_id), key=lambda t: t.round)
    assert [(t.kind, t.user_input) for t in turns] == [
        ("prompt", "an evening dress on a model"),
        ("answer", "red"),
        ("feedback", "longer sleeves"),
    ]
    assert turns[0].question == COLOUR_Q[1]
    stored = store.get(PreferencePair, pair.id)
    assert (stored.image_left, stored.image_right, stored.choice) == (
        turns[0].image_id,
        turns[2].image_id,
        "right",
    )
    main = threading.get_ident()
    assert engine.calls and all(tid != main for _name, tid in engine.calls)
    assert {name for name, _ in engine.calls} >= {"start", "refine", "choose", "ensure_models"}

    # the dialogue comes back when the project is opened again
    window.close()
    with open_project(project, read_only=True) as s:
        assert s.get(Dialogue, dialogue_id) is not None
        assert len(s.all(PreferencePair)) == 1
    again = studio(project, FakeEngine())
    assert [r.round for r in again.refinement_model.rounds] == [0, 1, 2]
    assert again.refinement_view.strip.count() == 3


def test_the_window_keeps_processing_events_while_a_round_runs(studio, new_project, qtbot):
    engine = FakeEngine(script=[ScriptedRound(steps=25, step_delay=0.04)])
    window = studio(new_project(), engine)
    model = window.refinement_model
    ticks: list[int] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(1) if model.busy else None)
    timer.start()
    steps_seen: set[int] = set()
    window.bridge.queue.job_changed.connect(
        lambda job: steps_seen.add(job.step) if job.kind == "round" else None
    )
    window.refinement_view.input.setPlainText("a linen shirt")
    with qtbot.waitSignal(model.round_finished, timeout=15000):
        window.refinement_view.generate()
    timer.stop()
    # ~1 s of engine work in the other thread; the GUI thread kept running its timers and
    # received the progress steps as they happened (not in one burst at the end)
    assert len(ticks) >= 20, len(ticks)
    assert len(steps_seen) >= 5, steps_seen
    assert window.job_progress.bar.format() == "idle"


def test_cancel_stops_the_round_and_leaves_the_dialogue_as_it_was(studio, new_project, qtbot):
    engine = FakeEngine(script=[ScriptedRound(), ScriptedRound(steps=200, step_delay=0.02), ScriptedRound()])
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    view.input.setPlainText("a wool coat")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        view.generate()
    view.input.setPlainText("double breasted")
    view.send()
    qtbot.waitUntil(
        lambda: window.job_progress.cancel_button.isEnabled() and window.job_progress.job.step > 2
    )
    with qtbot.waitSignal(model.busy_changed, timeout=5000):
        qtbot.mouseClick(view.round_progress.cancel_button, Qt.MouseButton.LeftButton)
    assert not model.busy
    assert [r.round for r in model.rounds] == [0]
    assert any("cancelled" in t.lower() for t in window.message_bar.texts())
    assert len(window.store.all(DialogueTurn)) == 1  # nothing half-written
    # and the studio goes on: the next round works
    view.input.setPlainText("double breasted")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        view.send()
    assert [r.round for r in model.rounds] == [0, 1]


def test_an_edited_prompt_is_used_verbatim_and_the_pose_overlay_and_live_preview_show(
    studio, new_project, qtbot
):
    engine = FakeEngine(script=[ScriptedRound(steps=8, step_delay=0.01)])
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    previews: list[object] = []
    model.preview_changed.connect(lambda img: previews.append(img) if img is not None else None)
    view.input.setPlainText("a blue shirt dress")
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        view.generate()
    assert previews, "no live preview reached the view"

    # the pose kept from round 0 can be laid over both images
    assert not view.left_view.overlay_shown
    view.pose_check.setChecked(True)
    assert view.right_view.overlay_shown

    # the prompt the studio made is editable; the edit is the next prompt, verbatim
    assert not view.use_prompt_button.isEnabled()
    view.prompt_edit.setPlainText("a pale blue cotton shirt dress, belted, on a model")
    assert view.use_prompt_button.isEnabled()
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        qtbot.mouseClick(view.use_prompt_button, Qt.MouseButton.LeftButton)
    assert model.rounds[-1].prompt == "a pale blue cotton shirt dress, belted, on a model"
    last = window.store.find(DialogueTurn, lambda d: d["round"] == 1)[0]
    assert last.prompt == "a pale blue cotton shirt dress, belted, on a model"
