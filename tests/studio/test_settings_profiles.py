"""Settings > Models lists a fine-tuned profile (tdri finetune) with its trigger words."""

from __future__ import annotations

import json

from tdri_engine import paths


def test_a_fine_tuned_profile_is_offered_with_its_trigger_words(studio, new_project, tmp_path, qtbot):
    folder = paths.profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    profile = {
        "name": "house-teal",
        "extends": "demo",
        "domain_lora": {"path": str(tmp_path / "lora"), "weight": 0.8, "trigger_words": ["teal"]},
    }
    (folder / "house-teal.json").write_text(json.dumps(profile), encoding="utf-8")
    window = studio(new_project())
    dlg = window.show_settings()
    qtbot.waitUntil(lambda: dlg._check_task is not None and dlg._check_task.done(), timeout=10000)
    labels = {
        dlg.profile_combo.itemData(i): dlg.profile_combo.itemText(i) for i in range(dlg.profile_combo.count())
    }
    assert labels["house-teal"] == "house-teal  (fine-tuned: teal)"
    assert labels["demo"] == "demo  (tiny random models)"
