"""The designer's session, keys only, on the real engine (demo profile, tiny models): the window
opens as ``tdri-studio --project DIR`` opens it, and from the first key press on nothing gets
the focus by hand and nothing is clicked.

A prompt with a seed, a round, a one-click answer, an edited D2P prompt run with Ctrl+Return,
the round actions (star, copy, save as, use as reference, gallery, open folder), a round that
edits the reference, the formula toggle, then text typed and not sent, Ctrl+Q; the window
opens again on the project and finds the rounds, the pending question with its one-click
answers, the stars, the D2P prompt and the unsent text. The only thing not typed is the
check of what the save dialog wrote.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from keys_only import ALT, CTRL, NO, SHIFT, Keys
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from studio.app import load_style
from studio.prefs import StudioPrefs
from studio.ui.main_window import MainWindow
from studio.workers.engine_setup import real_engine_factory
from tdri_engine.records import DialogueTurn, ImageRecord
from tdri_engine.store import create_project, open_project

ROUND_MS = 240_000


@pytest.fixture
def demo_project(demo_home, monkeypatch, projects_dir) -> Path:
    monkeypatch.setenv("TDRI_HOME", str(demo_home))
    store = create_project(projects_dir, "Evening wear", profile="demo")
    # tau 0: the studio asks after every round (the demo's random models are never clear);
    # Attend-and-Excite off and 4 steps keep a round short on 2 CPU cores
    store.save_settings(store.settings.replace(tau=0.0, use_attend_excite=False, steps=4, seed=None))
    path = store.path
    store.close()
    return path


@pytest.fixture
def windows() -> Any:
    """Every window the test opens is closed at the end, also when an assertion fails."""
    opened: list[MainWindow] = []
    yield opened
    for w in opened:
        if w.isVisible():
            w.refinement_model.cancel()
            w.close()
        w.deleteLater()


def start_window(qtbot: Any, project: Path, windows: list[MainWindow]) -> MainWindow:
    load_style(QApplication.instance())
    window = MainWindow(StudioPrefs.load(), engine_factory=real_engine_factory)
    windows.append(window)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.project_opened, timeout=20000):
        window.spawn(window.open_initial(str(project)))
    return window


def test_a_designer_refines_with_keys_only_and_finds_everything_after_reopening(
    demo_project, tmp_path, qtbot, windows
):
    started = time.monotonic()
    window = start_window(qtbot, demo_project, windows)
    view, model = window.refinement_view, window.refinement_model
    keys = Keys(qtbot, window)

    def round_by(key: Qt.Key, mod: Qt.KeyboardModifier = NO) -> Any:
        with qtbot.waitSignal(model.round_finished, timeout=ROUND_MS) as done:
            keys.press(key, mod)
        return done.args[0]

    # the first key: the Refine tab, and the focus is in the prompt box
    keys.press(Qt.Key.Key_2, CTRL)
    assert window.tabs.currentWidget() is view and QApplication.focusWidget() is view.input
    # the empty state: the highlighted button is the one that works now
    assert view.generate_button.property("role") == "primary" and view.generate_button.isEnabled()
    assert view.refine_button.property("role") != "primary"
    keys.type("a red evening dress on a model")
    keys.press(Qt.Key.Key_Tab)  # Tab leaves the prompt box (no tab typed): the seed
    assert QApplication.focusWidget() is view.seed_spin
    assert view.input.toPlainText() == "a red evening dress on a model"
    keys.press(Qt.Key.Key_A, CTRL)
    keys.type("11")
    keys.press(Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is view.strength_spin
    keys.press(Qt.Key.Key_L, CTRL)
    assert QApplication.focusWidget() is view.input
    r0 = round_by(Qt.Key.Key_Return)
    assert r0.round == 0 and r0.seed == 11

    # round 1: the question says why in plain words; Alt+1 answers with its first option
    q0 = model.pending_question
    assert q0 is not None and q0.options and view.question_card.isVisible()
    reason = view.question_reason.text()
    assert "least clear part" in reason and reason.endswith("so the studio asks about it.")
    assert "Σ" not in view.reason_label.text() and not view.formula_label.isVisible()
    first = q0.options[0]
    r1 = round_by(Qt.Key.Key_1, ALT)
    assert (r1.kind, r1.user_input) == ("answer", first)
    # the aspect just answered is asked again only while the image disagrees with the answer
    q1 = model.pending_question
    assert q1 is not None

    # round 2: the D2P prompt edited in its box and run with Ctrl+Return, word for word
    keys.press(Qt.Key.Key_E, CTRL)
    assert QApplication.focusWidget() is view.prompt_edit
    keys.press(Qt.Key.Key_A, CTRL)
    keys.type("a red silk evening dress, long sleeves")
    keys.press(Qt.Key.Key_Tab)  # Tab moves on from the D2P box too
    assert QApplication.focusWidget() is view.use_prompt_button and view.use_prompt_button.isEnabled()
    keys.press(Qt.Key.Key_E, CTRL)
    r2 = round_by(Qt.Key.Key_Return, CTRL)
    assert r2.prompt == "a red silk evening dress, long sleeves" and r2.kind != "skip"
    assert view.prompt_edit.toPlainText() == r2.prompt

    # the round actions act on the round on the right: star round 2, then round 1
    keys.press(Qt.Key.Key_L, CTRL)
    assert model.comparison.right.round == 2
    with qtbot.waitSignal(model.starred_changed, timeout=10000):
        keys.press(Qt.Key.Key_D, CTRL)
    assert r2.image_id in model.starred and "★" in view.right_caption.text()
    keys.press(Qt.Key.Key_Left, ALT)
    assert model.comparison.right.round == 1
    keys.press(Qt.Key.Key_C, CTRL | SHIFT)
    assert not QApplication.clipboard().image().isNull()
    keys.press(Qt.Key.Key_I, CTRL)  # the formula behind the plain words
    assert view.formula_label.isVisible() and "A = Σ wᵢ(1 − sᵢ)" in view.formula_label.text()
    keys.press(Qt.Key.Key_I, CTRL)
    assert not view.formula_label.isVisible()

    # save as: the studio's own file dialog, answered with keys
    target = tmp_path / "keep" / "round-one.png"
    target.parent.mkdir()
    keys.press(Qt.Key.Key_S, CTRL)
    dialog = view.save_dialog
    assert isinstance(dialog, QFileDialog)
    qtbot.waitUntil(lambda: dialog.isActiveWindow() and dialog.isAncestorOf(QApplication.focusWidget()))
    keys.press(Qt.Key.Key_A, CTRL)
    keys.type(str(target))
    keys.press(Qt.Key.Key_Return)
    qtbot.waitUntil(target.exists, timeout=10000)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.input)
    with Image.open(target) as saved:
        assert saved.text.get("tdri:round") == "1"  # the provenance travels with the copy

    # round 1 is the reference of the next round; the gallery shows every round
    keys.press(Qt.Key.Key_U, CTRL)
    assert model.reference_round == 1 and view.reference_label.isVisible()
    keys.press(Qt.Key.Key_G, CTRL)
    gallery = view.gallery
    assert gallery is not None and gallery.isVisible() and gallery.list.count() == 3
    assert gallery.list.item(2).text().startswith("★")
    qtbot.waitUntil(lambda: gallery.isActiveWindow() and QApplication.focusWidget() is gallery.list)
    keys.press(Qt.Key.Key_Home)
    keys.press(Qt.Key.Key_Return)  # round 0 on the right
    assert not gallery.isVisible() and model.comparison.right.round == 0
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.input)
    keys.press(Qt.Key.Key_Right, ALT)  # back to round 1
    keys.press(Qt.Key.Key_F, CTRL | SHIFT)  # its folder (offscreen: the studio says where it is)
    qtbot.waitUntil(lambda: any("images" in t for t in window.message_bar.texts()))
    keys.press(Qt.Key.Key_L, CTRL)
    keys.type("longer sleeves")
    r3 = round_by(Qt.Key.Key_Return)
    store = window.store
    assert store.get(ImageRecord, r3.image_id).parent_id == r1.image_id  # it edited round 1
    qtbot.waitUntil(lambda: model.reference_round is None and not view.reference_label.isVisible())

    # typed and not sent, in both boxes, then Ctrl+Q
    q3 = model.pending_question
    assert q3 is not None and view._option_buttons
    keys.press(Qt.Key.Key_L, CTRL)
    keys.type("gold buttons")
    keys.press(Qt.Key.Key_E, CTRL)
    keys.press(Qt.Key.Key_End, CTRL)
    keys.type(", belted")
    d2p_draft = view.prompt_edit.toPlainText()
    assert d2p_draft == f"{r3.prompt}, belted"
    dialogue_id = model.dialogue_id
    keys.press(Qt.Key.Key_Q, CTRL)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10000)

    with open_project(demo_project, read_only=True) as s:
        turns = sorted(s.find(DialogueTurn, lambda d: d["dialogue_id"] == dialogue_id), key=lambda t: t.round)
    assert [t.kind for t in turns] == ["prompt", "answer", "prompt", "answer"]
    assert turns[0].question_options == list(q0.options)
    assert turns[3].question_options == list(q3.options)

    # reopen: the dialogue, the pending question with its one-click answers, the stars, the
    # D2P prompt and what was typed but not sent are all back; the focus is in the prompt box
    again = start_window(qtbot, demo_project, windows)
    view2, model2 = again.refinement_view, again.refinement_model
    assert again.tabs.currentWidget() is view2 and QApplication.focusWidget() is view2.input
    assert [r.round for r in model2.rounds] == [0, 1, 2, 3]
    q = model2.pending_question
    assert q is not None and (q.aspect, q.text, q.options) == (q3.aspect, q3.text, q3.options)
    assert [b.property("option") for b in view2._option_buttons] == list(q3.options)
    assert r2.image_id in model2.starred and view2.strip.item(2).text().startswith("★")
    assert model2.prompt == r3.prompt
    assert view2.prompt_edit.toPlainText() == d2p_draft and view2.use_prompt_button.isEnabled()
    assert view2.input.toPlainText() == "gold buttons"
    print(f"designer scenario: {time.monotonic() - started:.1f} s")
