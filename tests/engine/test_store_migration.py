"""Opening a project made by an older version upgrades it, after a backup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinydb import TinyDB

from tdri_engine.errors import ProjectError
from tdri_engine.records import Annotation, ImageRecord, Task
from tdri_engine.store import MIGRATIONS, SCHEMA_VERSION, open_project


def write_v1_project(folder: Path) -> Path:
    """A project as TDRI Studio 0.0.x wrote it: schema 1, plain TinyDB storage, no journal."""
    folder.mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "project.json").write_text(
        json.dumps(
            {
                "name": "Old project",
                "schema_version": 1,
                "created": "2024-03-01T10:00:00+00:00",
                "model_profile": "sd14",
                "settings": {"steps": 20, "tau": 0.4},
                "last_task": "t2",
            }
        )
    )
    db = TinyDB(folder / "db.json")
    db.table("tasks").insert_multiple(
        [
            {
                "id": "t1",
                "name": "pair",
                "image_a": "i1",
                "image_b": "i2",
                "source": "folder",
                "status": "done",
            },
            {"id": "t2", "name": "single", "image_a": "i3", "status": "todo"},
        ]
    )
    db.table("annotations").insert(
        {
            "task_id": "t1",
            "descriptions": {"i1": "red coat"},
            "tags": {"i1": "red, long sleeve, ,red", "i2": ""},
            "choice": "left",
        }
    )
    db.table("images").insert(
        {"id": "i1", "file": "images/i1.png", "prompt": "a red coat", "adapter": "v0002"}
    )
    db.close()
    return folder


def test_v1_project_is_backed_up_then_upgraded(tmp_path: Path):
    folder = write_v1_project(tmp_path / "old-project")
    originals = {name: (folder / name).read_bytes() for name in ("project.json", "db.json")}

    with open_project(folder) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        assert store.name == "Old project" and store.profile == "sd14"
        assert store.get_meta("last_task_id") == "t2"
        assert store.settings.steps == 20 and store.settings.tau == 0.4
        assert store.get(Task, "t1").images == ["i1", "i2"]
        assert store.get(Task, "t2").images == ["i3"] and store.get(Task, "t2").kind == "single"
        assert store.get(Annotation, "t1").tags == {"i1": ["red", "long sleeve"], "i2": []}
        assert store.get(ImageRecord, "i1").adapter_version == "v0002"
        assert any("Upgraded from schema version 1 to 2" in n for n in store.open_notes)
        backup = store.migration_backup

    assert backup is not None and backup.parent == folder / "backups"
    assert backup.name.startswith("schema-v1-")
    for name, content in originals.items():
        assert (backup / name).read_bytes() == content  # the old files, byte for byte

    doc = json.loads((folder / "project.json").read_text())
    assert doc["schema_version"] == 2 and doc["profile"] == "sd14" and "model_profile" not in doc
    assert doc["meta"]["last_task_id"] == "t2" and "last_task" not in doc
    stamp = TinyDB(folder / "db.json", access_mode="r").table("_tdri").get(doc_id=1)
    assert stamp["schema_version"] == 2

    with open_project(folder) as again:  # upgraded once, not again
        assert again.open_notes == [] and again.migration_backup is None
        assert again.get(Annotation, "t1").tags["i1"] == ["red", "long sleeve"]
    assert len(list((folder / "backups").iterdir())) == 1


def test_read_only_open_of_a_v1_project_upgrades_in_memory_only(tmp_path: Path):
    folder = write_v1_project(tmp_path / "old")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with open_project(folder, read_only=True) as store:
        assert store.get(Task, "t1").images == ["i1", "i2"]
        assert store.migration_backup is None
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert not (folder / "backups").exists()


def test_a_failing_migration_leaves_the_project_as_it_was(tmp_path: Path, monkeypatch):
    folder = write_v1_project(tmp_path / "old")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def broken_step(project, tables):
        raise KeyError("image_a")

    monkeypatch.setitem(MIGRATIONS, 1, broken_step)
    with pytest.raises(ProjectError) as info:
        open_project(folder)
    assert info.value.kind == "migration-failed" and "from schema version 1 to 2" in info.value.message
    assert "not changed" in info.value.what_to_do and "backups" in info.value.what_to_do
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before
    monkeypatch.undo()
    with open_project(folder) as store:  # fixed app: the upgrade goes through
        assert store.get(Task, "t1").images == ["i1", "i2"]


def test_upgrade_cut_off_before_project_json_was_rewritten_is_finished(tmp_path: Path):
    folder = write_v1_project(tmp_path / "old")
    with open_project(folder) as store:
        backup = store.migration_backup
    # the crash window: database already upgraded, project.json still the old one
    (folder / "project.json").write_bytes((backup / "project.json").read_bytes())
    with open_project(folder) as store:
        assert store.profile == "sd14" and store.schema_version == 2
        assert store.get(Task, "t1").images == ["i1", "i2"]
    assert json.loads((folder / "project.json").read_text())["schema_version"] == 2
