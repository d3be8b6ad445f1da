"""The designer's scenario on the real engine (tdri_engine.session) with the demo profile.

Tiny random models built offline (once per test session); the studio drives the same
Engine it uses by default, through the engine thread. Slow-ish on 2 CPU cores (~1 min).
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.workers.engine_setup import real_engine_factory
from tdri_engine.records import DialogueTurn, PreferencePair
from tdri_engine.store import create_project

pytestmark = pytest.mark.slow

ROUND_TIMEOUT_S = 240


@pytest.fixture
def demo_project(demo_home, monkeypatch, projects_dir):
    monkeypatch.setenv("TDRI_HOME", str(demo_home))
    store = create_project(projects_dir, "Demo dresses", profile="demo")
    # tau 0 makes the Reflector ask after every round (random models are never clear anyway);
    # Attend-and-Excite off keeps each round one generation on 2 CPU cores.
    store.save_settings(store.settings.replace(tau=0.0, use_attend_excite=False, steps=4, seed=None))
    path = store.path
    store.close()
    return path


def test_designer_on_the_demo_engine_three_rounds_an_answer_and_a_preference(studio, demo_project, qtbot):
    seen_threads: set[int] = set()

    def factory(profile, settings):
        seen_threads.add(threading.get_ident())
        return real_engine_factory(profile, settings)

    window = studio(demo_project, factory=factory, timeout_s=ROUND_TIMEOUT_S)
    assert window.bridge.engine is not None and window.bridge.engine.is_demo
    assert window.demo_banner.isVisible()
    assert seen_threads and threading.get_ident() not in seen_threads  # made in the engine thread
    window.tabs.setCurrentWidget(window.refinement_view)
    view, model = window.refinement_view, window.refinement_model
    wait = ROUND_TIMEOUT_S * 1000

    view.input.setPlainText("a red evening dress on a model")
    view.seed_spin.setValue(11)
    with qtbot.waitSignal(model.round_finished, timeout=wait):
        qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
    q = model.pending_question
    assert q is not None and view.question_card.isVisible() and view._option_buttons
    assert view.chart.summary().startswith("A = ")
    option = view._option_buttons[0].property("option")

    with qtbot.waitSignal(model.round_finished, timeout=wait):
        qtbot.mouseClick(view._option_buttons[0], Qt.MouseButton.LeftButton)
    view.input.setPlainText("longer sleeves")
    with qtbot.waitSignal(model.round_finished, timeout=wait):
        view.send()
    assert [r.round for r in model.rounds] == [0, 1, 2]
    assert view.strip.count() == 3
    assert all(r.image is not None for r in model.rounds)

    window.activateWindow()
    qtbot.waitActive(window)
    view.left_view.setFocus()
    with qtbot.waitSignal(model.choice_recorded, timeout=30000) as recorded:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_1)  # round 1 (left) is better
    pair = window.store.get(PreferencePair, recorded.args[0].id)
    turns = sorted(
        window.store.find(DialogueTurn, lambda d: d["dialogue_id"] == model.dialogue_id),
        key=lambda t: t.round,
    )
    assert [(t.kind, t.user_input) for t in turns] == [
        ("prompt", "a red evening dress on a model"),
        ("answer", option),
        ("answer", "longer sleeves"),  # typed while a question is pending: it answers it
    ]
    assert turns[0].question_aspect == q.aspect
    assert (pair.image_left, pair.image_right, pair.choice) == (turns[1].image_id, turns[2].image_id, "left")
    assert pair.train_meta["seeds"][turns[1].image_id] is not None
    assert "Round 1 preferred over Round 2" in view.choice_label.text()


def test_a_profile_without_weights_says_which_model_is_missing_and_how_to_fix_it(
    studio, new_project, tmp_path, monkeypatch, qtbot
):
    """The real engine on the sd15 profile, on a machine without its weights."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # never the user's cache
    project = new_project()
    from tdri_engine.store import open_project

    with open_project(project) as store:
        store.set_meta("model_profile", "sd15")
    window = studio(project, factory=real_engine_factory, timeout_s=60)
    texts = "\n".join(window.message_bar.texts())
    assert "Model for role 'generator' not found" in texts
    assert "stable-diffusion-v1-5" in texts and "Settings > Models" in texts
    assert not window.demo_banner.isVisible()
    # the studio keeps working: the annotation view, settings, and a clear message on Generate
    window.refinement_view.input.setPlainText("a dress")
    fut = window.refinement_view.generate()
    qtbot.waitUntil(fut.done, timeout=60000)
    assert window.refinement_model.rounds == [] and not window.refinement_model.busy
    assert window.show_settings() is not None
    window.settings_dialog.reject()
