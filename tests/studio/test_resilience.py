"""Nothing is lost: a failed save retries and says so, a repaired project says what happened,
and the screenshots command works on a copy of the project."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from studio.screenshots import take_screenshots
from tdri_engine.errors import StorageError
from tdri_engine.records import Annotation
from tdri_engine.store.positions import map_choice


def two_images(folder: Path) -> Path:
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 40), (30 + 100 * i, 60, 90)).save(folder / f"p{i}.png")
    return folder


def test_a_failed_save_is_shown_kept_in_memory_and_retried_until_it_lands(
    studio, new_project, tmp_path, qtbot, run, monkeypatch
):
    window = studio(new_project())
    view, model = window.annotation_view, window.annotation_model
    run(view.import_paths(str(two_images(tmp_path / "in"))))
    store = model.store
    real_put_many = store.put_many
    failures = {"left": 2}

    def flaky_put_many(records):
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("No space left on the disk.", "Free some space on the disk.")
        return real_put_many(records)

    monkeypatch.setattr(store, "put_many", flaky_put_many)
    monkeypatch.setattr("studio.models.annotation_model.RETRY_SAVE_MS", 50)
    view.choice_buttons["right"].click()  # a click: saved at once... and the disk is full
    assert model.saved_state == "failed"
    assert "Not saved yet" in view.saved_label.text()
    message = next(m for m in window.message_bar.messages if m.level == "error")
    assert "not saved yet" in message.title and "Free some space" in message.detail
    assert view.choice_buttons["right"].isChecked()  # the click is still there
    qtbot.waitUntil(lambda: model.saved_state == "saved", timeout=5000)  # retried by itself
    # stored for the image shown on the right, in the task's own order
    assert store.get(Annotation, model.current.id).choice == map_choice("right", model.shown_order())


def test_a_damaged_database_is_repaired_on_open_and_the_user_is_told(studio, new_project, tmp_path, run):
    project = new_project()
    window = studio(project)
    run(window.annotation_view.import_paths(str(two_images(tmp_path / "in"))))
    window.annotation_model.set_description(0, "kept")
    window.close()
    (project / "db.json").write_text('{"tasks": {"1": ')  # cut off mid-write
    again = studio(project)
    warning = next(m for m in again.message_bar.messages if m.level == "warning")
    assert "repaired" in warning.title
    assert again.annotation_model.tasks, "the tasks were recovered"


def test_screenshots_are_taken_from_a_copy_of_the_project(studio, new_project, tmp_path, qtbot, run):
    project = new_project()
    seed_window = studio(project)
    run(seed_window.annotation_view.import_paths(str(two_images(tmp_path / "in"))))
    seed_window.close()
    before = sorted(p.name for p in project.rglob("*") if p.is_file())
    window = studio(None)
    saved = run(take_screenshots(window, tmp_path / "shots", project=str(project)), timeout=60)
    assert [p.name for p in saved] == [
        "annotation.png",
        "refinement.png",
        "settings.png",
        "annotation-1920x1080.png",
        "refinement-1920x1080.png",
    ]
    assert Image.open(saved[3]).size == (1920, 1080) and Image.open(saved[0]).size == (1440, 900)
    for p in saved:
        im = Image.open(p)
        assert im.width >= 800 and len(set(im.convert("L").resize((32, 32)).tobytes())) > 8  # not blank
    window.close()
    assert sorted(p.name for p in project.rglob("*") if p.is_file()) == before  # the project is untouched
