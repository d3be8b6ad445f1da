"""The Refine tab's dialogue can be trusted: what a cancelled or failed round showed goes away,
what was typed comes back, Ctrl+Q during a round asks before it drops anything, and Tab from
the prompt box reaches the one-click answers. Scripted engine: fast and exact."""

from __future__ import annotations

from fake_engine import FakeEngine, ScriptedRound
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tdri_engine.records import DialogueTurn
from tdri_engine.store import open_project

COLOUR_Q = ("Color", "Which colour should the coat be?", ("camel", "navy", "black"))
CTRL = Qt.KeyboardModifier.ControlModifier


def key(qtbot, k, mod=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(QApplication.focusWidget(), k, mod)


def first_round(window, qtbot, text: str = "a wool coat") -> None:
    window.activateWindow()
    qtbot.waitActive(window)
    window.show_view(window.refinement_view)  # what Ctrl+2 does
    view = window.refinement_view
    assert QApplication.focusWidget() is view.input
    qtbot.keyClicks(view.input, text)
    with qtbot.waitSignal(window.refinement_model.round_finished, timeout=10000):
        key(qtbot, Qt.Key.Key_Return)


def test_a_cancelled_round_puts_the_last_finished_prompt_back_in_the_d2p_box(studio, new_project, qtbot):
    engine = FakeEngine(
        script=[ScriptedRound(ask=COLOUR_Q), ScriptedRound(steps=200, step_delay=0.02), ScriptedRound()]
    )
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    first_round(window, qtbot)
    finished = model.rounds[-1].prompt
    assert view.prompt_edit.toPlainText() == finished
    key(qtbot, Qt.Key.Key_Tab)  # Tab leaves the prompt box for the first one-click answer
    assert QApplication.focusWidget() is view._option_buttons[0]
    key(qtbot, Qt.Key.Key_L, CTRL)
    qtbot.keyClicks(view.input, "double breasted")
    key(qtbot, Qt.Key.Key_Return)
    # the unfinished round's prompt shows while it runs ...
    qtbot.waitUntil(lambda: "double breasted" in view.prompt_edit.toPlainText(), timeout=5000)
    with qtbot.waitSignal(model.busy_changed, timeout=5000):
        key(qtbot, Qt.Key.Key_Escape)
    # ... and after the cancel the D2P box shows the last finished round's prompt again
    assert view.prompt_edit.toPlainText() == finished == model.prompt
    qtbot.waitUntil(lambda: view.input.toPlainText() == "double breasted", timeout=5000)  # back in its box
    assert not view.use_prompt_button.isEnabled()
    assert [r.round for r in model.rounds] == [0]


def test_an_edited_prompt_comes_back_when_its_round_fails(studio, new_project, qtbot):
    engine = FakeEngine(script=[ScriptedRound(), ScriptedRound(fail=RuntimeError("out of memory"))])
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    first_round(window, qtbot)
    key(qtbot, Qt.Key.Key_E, CTRL)
    key(qtbot, Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(view.prompt_edit, "a camel wool coat, belted")
    with qtbot.waitSignal(model.busy_changed, timeout=10000):
        key(qtbot, Qt.Key.Key_Return, CTRL)  # in the edited D2P box: run the edit
    qtbot.waitUntil(lambda: not model.busy, timeout=10000)
    qtbot.waitUntil(lambda: view.prompt_edit.toPlainText() == "a camel wool coat, belted", timeout=5000)
    assert model.prompt == model.rounds[-1].prompt != "a camel wool coat, belted"
    assert view.use_prompt_button.isEnabled()  # the edit can be run again
    assert engine.sessions[-1]._answers == []  # no Skip or answer went out instead of the edit


def test_ctrl_q_during_a_round_asks_first_and_keeps_what_was_typed(studio, new_project, qtbot):
    project = new_project()
    engine = FakeEngine(script=[ScriptedRound(ask=COLOUR_Q), ScriptedRound(steps=400, step_delay=0.02)])
    window = studio(project, engine)
    view, model = window.refinement_view, window.refinement_model
    first_round(window, qtbot)
    key(qtbot, Qt.Key.Key_L, CTRL)
    qtbot.keyClicks(view.input, "double breasted")
    key(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: model.busy and window.job_progress.job is not None, timeout=5000)
    assert view.input.toPlainText() == ""  # sent: it is in the running round now
    key(qtbot, Qt.Key.Key_Q, CTRL)
    assert window.isVisible() and model.busy  # the first Ctrl+Q only says what would happen
    assert any("round is running" in t for t in window.message_bar.texts())
    key(qtbot, Qt.Key.Key_Q, CTRL)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10000)

    with open_project(project, read_only=True) as store:
        assert len(store.all(DialogueTurn)) == 1  # the stopped round left nothing half-written
        assert store.get_meta("refine_draft")["input"] == "double breasted"
    again = studio(project, FakeEngine())
    assert again.refinement_view.input.toPlainText() == "double breasted"
    assert [r.round for r in again.refinement_model.rounds] == [0]
    # the question of round 0 comes back with its one-click answers
    assert [b.property("option") for b in again.refinement_view._option_buttons] == list(COLOUR_Q[2])


def test_tab_from_the_prompt_box_reaches_every_control_of_the_refine_tab(studio, new_project, qtbot):
    engine = FakeEngine(script=[ScriptedRound(ask=COLOUR_Q), ScriptedRound(ask=COLOUR_Q)])
    window = studio(new_project(), engine)
    view, model = window.refinement_view, window.refinement_model
    first_round(window, qtbot)
    with qtbot.waitSignal(model.round_finished, timeout=10000):
        key(qtbot, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)  # two rounds: every control enabled
    key(qtbot, Qt.Key.Key_L, CTRL)
    wanted = {
        "the one-click answers": view._option_buttons[0],
        "skip": view.skip_button,
        "the seed": view.seed_spin,
        "the edit strength": view.strength_spin,
        "refine": view.refine_button,
        "the left round": view.left_combo,
        "the right round": view.right_combo,
        "a choice": view.choice_buttons["right"],
        "save as": view.action_buttons["save_as"],
        "use as reference": view.action_buttons["reference"],
        "all rounds": view.action_buttons["gallery"],
        "the strip": view.strip,
        "the D2P box": view.prompt_edit,
        "the formula toggle": view.formula_check,
    }
    seen = []
    for _ in range(80):
        key(qtbot, Qt.Key.Key_Tab)
        seen.append(QApplication.focusWidget())
        if seen[-1] is view.input:
            break
    missing = [name for name, w in wanted.items() if w not in seen]
    assert not missing, missing
    assert seen[-1] is view.input  # the round trip comes back to the prompt box
    assert view.input.toPlainText() == "" and "\t" not in view.prompt_edit.toPlainText()


def test_the_edit_strength_beside_the_seed_is_the_projects(studio, new_project, qtbot):
    project = new_project()
    window = studio(project, FakeEngine())
    view = window.refinement_view
    first_round(window, qtbot)
    assert view.strength_spin.value() == window.store.settings.edit_strength == 0.6
    key(qtbot, Qt.Key.Key_Tab)  # the seed
    key(qtbot, Qt.Key.Key_Tab)  # the edit strength
    assert QApplication.focusWidget() is view.strength_spin
    for _ in range(3):
        key(qtbot, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: abs(window.store.settings.edit_strength - 0.45) < 1e-9, timeout=5000)
    window.close()
    with open_project(project, read_only=True) as store:
        assert abs(store.settings.edit_strength - 0.45) < 1e-9
    again = studio(project, FakeEngine())
    assert abs(again.refinement_view.strength_spin.value() - 0.45) < 1e-9
