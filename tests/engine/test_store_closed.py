"""A closed project refuses writes; its files are TinyDB's format, readable by TinyDB itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdri_engine.errors import ProjectError
from tdri_engine.records import ImageRecord, Task
from tdri_engine.store import create_project, open_project


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_write_after_close_is_refused_with_a_message_and_changes_no_file(tmp_path: Path) -> None:
    store = create_project(tmp_path, "Closed")
    store.put(Task(name="before close"))
    store.close()
    before = _files(store.path)
    with pytest.raises(ProjectError) as err:
        store._db.write([("put", "tasks", "id", {"id": "t-late", "name": "late"})], "save the task")
    assert err.value.kind == "project-closed"
    assert "was closed" in err.value.message and "Open the project again" in err.value.what_to_do
    assert _files(store.path) == before  # the journal was not reopened
    with open_project(store.path) as again:
        assert [t.name for t in again.all(Task)] == ["before close"]


def test_tinydb_itself_opens_and_queries_a_projects_db_json(tmp_path: Path) -> None:
    """The store keeps TinyDB's file format: a user's own script can read it with TinyDB."""
    from tinydb import Query, TinyDB

    with create_project(tmp_path, "Readable") as store:
        store.put_many([Task(name="red dress"), Task(name="blue coat")])
        store.put(ImageRecord(prompt="a red dress", seed=7))
        path = store.path
    db = TinyDB(path / "db.json", access_mode="r")
    try:
        titles = sorted(d["name"] for d in db.table("tasks").search(Query().name.matches(".*dress|.*coat")))
        assert titles == ["blue coat", "red dress"]
        assert db.table("images").get(Query().seed == 7)["prompt"] == "a red dress"
    finally:
        db.close()
    json.loads((path / "db.json").read_text(encoding="utf-8"))  # plain JSON, one document
