"""Settings: the models check, engine settings saved in the project, studio preferences."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from studio.prefs import StudioPrefs
from tdri_engine import paths
from tdri_engine.store import open_project


def open_settings(window, qtbot):
    dlg = window.show_settings()
    qtbot.waitUntil(lambda: dlg._check_task is not None and dlg._check_task.done(), timeout=10000)
    return dlg


def test_settings_show_the_models_check_and_persist_engine_settings_and_preferences(
    studio, new_project, tmp_path, qtbot
):
    project = new_project()
    window = studio(project)
    dlg = open_settings(window, qtbot)
    # the project runs on the demo profile; in this fresh home its models are not built yet
    assert dlg.profile_combo.currentData() == "demo"
    assert dlg.models_table.rowCount() == 7
    roles = [dlg.models_table.item(r, 0).text() for r in range(7)]
    assert roles[0] == "generator" and "vlm" in roles
    assert "missing" in dlg.models_summary.text()
    assert "tdri models demo" in dlg.models_table.item(0, 4).text()

    # the profile's calibrated tau and the question rate it implies (docs/calibration/demo.json)
    assert dlg.tau_rate_label.text() == "τ = 0.975: asks in about 50% of rounds (calibrated)"
    dlg.steps_spin.setValue(12)
    dlg.tau_spin.setValue(0.42)
    assert "τ = 0.420 (profile: 0.975): asks in about 100% of rounds" in dlg.tau_rate_label.text()
    dlg.weight_spins["Color"].setValue(0.3)
    dlg.update_every_spin.setValue(10)
    dlg.device_combo.setCurrentText("cpu")
    new_root = tmp_path / "elsewhere"
    dlg.projects_dir_edit.setText(str(new_root))
    dlg.annotator_edit.setText("Ana")
    with qtbot.waitSignal(dlg.saved):
        qtbot.mouseClick(dlg.buttons.button(dlg.buttons.StandardButton.Save), Qt.MouseButton.LeftButton)
    assert not dlg.isVisible()
    s = window.store.settings
    assert (s.steps, s.tau, s.aspect_weights["Color"], s.update_every, s.device) == (12, 0.42, 0.3, 10, "cpu")
    assert window.annotation_model.annotator == "Ana"
    window.close()

    with open_project(project, read_only=True) as store:
        assert (store.settings.steps, store.settings.tau, store.settings.device) == (12, 0.42, "cpu")
    prefs = json.loads(StudioPrefs.path().read_text())
    assert prefs["projects_dir"] == str(new_root) and prefs["annotator"] == "Ana"
    assert StudioPrefs.path().parent == paths.tdri_home()


def test_an_invalid_value_keeps_the_dialog_open_and_saves_nothing(studio, new_project, qtbot):
    window = studio(new_project())
    dlg = open_settings(window, qtbot)
    dlg.width_spin.setValue(100)  # not a multiple of 8
    assert dlg.save() is False
    assert dlg.isVisible() and dlg.error_label.isVisible()
    assert "multiples of 8" in dlg.error_label.text()
    assert window.store.settings.width == 512
    dlg.reject()


def test_a_model_folder_chosen_for_a_role_is_saved_in_the_user_profile_and_checked(
    studio, new_project, tmp_path, qtbot
):
    window = studio(new_project())
    dlg = open_settings(window, qtbot)
    dlg.profile_combo.setCurrentIndex(dlg.profile_combo.findData("sd15"))
    qtbot.waitUntil(
        lambda: dlg._check_task.done() and dlg.statuses and dlg._profile.name == "sd15", timeout=10000
    )
    llm_row = [s.role for s in dlg.statuses].index("llm")
    assert not dlg.statuses[llm_row].found
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0")
    dlg.set_role_folder("llm", str(folder))
    qtbot.waitUntil(lambda: dlg._check_task.done() and dlg.statuses[llm_row].found, timeout=10000)
    assert dlg.statuses[llm_row].path == str(folder)
    saved = json.loads((paths.profiles_dir() / "sd15.json").read_text())
    assert saved["roles"]["llm"]["source"] == str(folder)
    with qtbot.waitSignal(dlg.saved):
        dlg.save()
    assert window.store.get_meta("model_profile") == "sd15"
    assert window.profile_label.text().startswith("Models: sd15")


def test_a_model_folder_with_custom_code_shows_as_refused_with_the_reason(
    studio, new_project, tmp_path, qtbot
):
    """The trust policy's refusal reads as such in Settings > Models, not as 'missing'."""
    window = studio(new_project())
    dlg = open_settings(window, qtbot)
    dlg.profile_combo.setCurrentIndex(dlg.profile_combo.findData("sd15"))
    qtbot.waitUntil(
        lambda: dlg._check_task.done() and dlg.statuses and dlg._profile.name == "sd15", timeout=10000
    )
    vlm_row = [s.role for s in dlg.statuses].index("vlm")
    folder = tmp_path / "shared-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "evil.Model"}}))
    (folder / "evil.py").write_text("open('marker', 'w')\n")
    (folder / "model.safetensors").write_bytes(b"\0")
    dlg.set_role_folder("vlm", str(folder))
    qtbot.waitUntil(lambda: dlg._check_task.done() and dlg.statuses[vlm_row].refused, timeout=10000)
    assert dlg.models_table.item(vlm_row, 2).text() == "✗ refused"
    assert dlg.models_table.item(vlm_row, 4).text().startswith("Refused: ")
    assert "auto_map" in dlg.models_table.item(vlm_row, 4).text()
    assert "trust policy" in dlg.models_summary.text() and "vlm" in dlg.models_summary.text()
    dlg.reject()
