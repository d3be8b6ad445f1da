"""Personalisation: k of N choices, the update in the background, versions, roll back, and
base versus adapted on the same seed (scripted engine; the optimizer's real bookkeeping)."""

from __future__ import annotations

from fake_engine import FakeEngine, ScriptedRound
from PySide6.QtCore import Qt

from tdri_engine.optimizer import adapters
from tdri_engine.records import AdapterVersion, PreferencePair
from tdri_engine.store import open_project


def test_choices_count_down_to_an_update_then_versions_can_be_compared_rolled_back_and_switched(
    studio, new_project, qtbot
):
    project = new_project()
    with open_project(project) as store:
        store.save_settings(store.settings.replace(update_every=2))
    engine = FakeEngine(script=[ScriptedRound()])
    window = studio(project, engine)
    view, model = window.refinement_view, window.refinement_model
    qtbot.waitUntil(lambda: model.personalisation.remaining == 2, timeout=5000)
    assert view.update_label.text() == "2 of 2 choices until the next update"
    assert view.adapter_label.text() == "Active: base model (no adapter)"
    assert not view.compare_button.isEnabled()

    for text in ("a black blazer", "slimmer", "shorter"):
        with qtbot.waitSignal(model.round_finished, timeout=10000):
            view.input.setPlainText(text)
            view.send()
    with qtbot.waitSignal(model.choice_recorded, timeout=5000):
        qtbot.mouseClick(view.choice_buttons["right"], Qt.MouseButton.LeftButton)  # round 2 over 1
    qtbot.waitUntil(lambda: view.update_label.text() == "1 of 2 choices until the next update", timeout=5000)

    # a tie does not bring the update nearer (no preference to learn from)
    model.compare(model.rounds[0], model.rounds[1])
    with qtbot.waitSignal(model.choice_recorded, timeout=5000):
        qtbot.mouseClick(view.choice_buttons["tie"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: model.personalisation.remaining == 1, timeout=5000)

    # the second decisive choice starts the update by itself, in the engine thread
    model.compare(model.rounds[0], model.rounds[2])
    with qtbot.waitSignal(model.training_finished, timeout=15000) as trained:
        qtbot.mouseClick(view.choice_buttons["left"], Qt.MouseButton.LeftButton)
    assert isinstance(trained.args[0], AdapterVersion) and trained.args[0].id == "v0001"
    qtbot.waitUntil(lambda: view.adapter_label.text() == "Active: v0001", timeout=5000)
    assert view.update_label.text() == "2 of 2 choices until the next update"
    assert view.compare_button.isEnabled(), (model.personalisation, model.busy)

    # base versus adapted: same prompt, same seed, one image each, side by side
    with qtbot.waitSignal(model.comparison_changed, timeout=10000):
        qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    comp = model.comparison
    assert comp.left.title == "Base" and comp.right.title == "Adapted v0001"
    assert comp.left.seed == comp.right.seed == model.rounds[-1].seed
    assert engine.generator.calls[-2:] == [
        (model.prompt, comp.left.seed, None),
        (model.prompt, comp.left.seed, "v0001"),
    ]
    with qtbot.waitSignal(model.choice_recorded, timeout=5000) as recorded:
        qtbot.mouseClick(view.choice_buttons["right"], Qt.MouseButton.LeftButton)
    pair = window.store.get(PreferencePair, recorded.args[0].id)
    assert (pair.image_left, pair.image_right, pair.choice) == (
        comp.left.image_id,
        comp.right.image_id,
        "right",
    )

    # roll back to the base model; the version stays, marked, and can be switched to again
    qtbot.mouseClick(view.rollback_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.adapter_label.text() == "Active: base model (no adapter)", timeout=10000)
    assert adapters.get_version(window.store, "v0001").status == "rolled_back"
    view.version_combo.setCurrentIndex(view.version_combo.findData("v0001"))
    qtbot.mouseClick(view.switch_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.adapter_label.text() == "Active: v0001", timeout=20000)
    assert adapters.active_adapter(window.store).id == "v0001"


def test_a_damaged_adapter_is_refused_and_the_active_one_stays(studio, new_project, qtbot):
    project = new_project()
    window = studio(project, FakeEngine())
    store = window.store
    good = AdapterVersion(id="v0001", path="loras/v0001")
    bad = AdapterVersion(id="v0002", path="loras/v0002", parent="v0001")
    from fake_engine import write_tiny_lora

    write_tiny_lora(store.path / good.path)
    (store.path / bad.path).mkdir(parents=True)
    (store.path / bad.path / "pytorch_lora_weights.safetensors").write_bytes(b"not safetensors at all")
    store.put_many([good, bad])
    store.set_meta("active_adapter", "v0001")
    model, view = window.refinement_model, window.refinement_view
    window.spawn(model.refresh_personalisation())
    qtbot.waitUntil(lambda: view.version_combo.findData("v0002") >= 0, timeout=5000)
    view.version_combo.setCurrentIndex(view.version_combo.findData("v0002"))
    qtbot.mouseClick(view.switch_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: any("not a readable safetensors" in t for t in window.message_bar.texts()), timeout=20000
    )
    assert adapters.active_adapter(store).id == "v0001"
    assert view.adapter_label.text() == "Active: v0001"
