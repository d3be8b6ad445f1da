"""The project store as annotators and the engine use it: save, close, reopen, find."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from tinydb import Query, TinyDB, where

from tdri_engine.errors import BadInput, ProjectError
from tdri_engine.records import Annotation, Choice, DialogueTurn, PreferencePair, Task
from tdri_engine.settings import EngineSettings
from tdri_engine.store import create_project, list_projects, open_project, slugify


def test_annotator_labels_three_pairs_closes_reopens_and_finds_them(projects_root: Path):
    store = create_project(projects_root, "Summer dresses")
    tasks = [Task(name=f"pair {i}", images=[f"a{i}", f"b{i}"]) for i in range(3)]
    for task in tasks:
        store.put(task)
    for i, task in enumerate(tasks):
        store.put(
            Annotation(
                task_id=task.id,
                descriptions={f"a{i}": f"red dress {i}", f"b{i}": "blue dress"},
                tags={f"a{i}": ["red", "long"], f"b{i}": ["blue"]},
                choice=Choice.LEFT.value,
            )
        )
    store.put(tasks[1].replace(status="done"))
    store.close()

    store = open_project(projects_root / "summer-dresses")
    assert store.name == "Summer dresses"
    assert [t.name for t in store.all(Task)] == ["pair 0", "pair 1", "pair 2"]  # insertion order kept
    assert store.get(Task, tasks[1].id).status == "done"
    ann = store.get(Annotation, tasks[2].id)
    assert ann.descriptions["a2"] == "red dress 2" and ann.tags["a2"] == ["red", "long"]
    assert store.recovery is None
    store.close()


def test_find_accepts_tinydb_queries_and_plain_callables(project):
    for i in range(5):
        project.put(Task(id=f"t{i}", status="done" if i % 2 else "todo", details={"n": i}))
    done = project.find(Task, Query().status == "done")
    assert [t.id for t in done] == ["t1", "t3"]
    assert [t.id for t in project.find(Task, where("details").n >= 3)] == ["t3", "t4"]
    assert [t.id for t in project.find(Task, lambda d: d["id"].endswith("0"))] == ["t0"]
    assert project.count(Task) == 5
    assert project.count(PreferencePair) == 0 and project.all(PreferencePair) == []


def test_records_returned_are_copies_editing_them_changes_nothing_until_put(project):
    project.put(Annotation(task_id="t1", tags={"img": ["red"]}))
    ann = project.get(Annotation, "t1")
    ann.tags["img"].append("changed-without-saving")
    assert project.get(Annotation, "t1").tags == {"img": ["red"]}
    assert project.find(Annotation, Query().tags.img.any(["changed-without-saving"])) == []


def test_put_replaces_by_id_and_delete_removes(project):
    project.put(Task(id="t1", name="first"))
    project.put(Task(id="t2", name="second"))
    project.put(Task(id="t1", name="renamed"))
    assert [(t.id, t.name) for t in project.all(Task)] == [("t1", "renamed"), ("t2", "second")]
    project.delete(Task, "t1")
    project.delete(Task, "no-such-id")  # no-op
    assert project.get(Task, "t1") is None
    assert project.count(Task) == 1


def test_put_many_saves_records_of_several_types_together(projects_root: Path):
    store = create_project(projects_root, "Batch")
    turn = DialogueTurn(dialogue_id="d1", round=1, aspect_scores={"Color": 0.5})
    pref = PreferencePair(image_left="a", image_right="b", choice=Choice.TIE.value)
    store.put_many([Task(id="t1"), turn, pref])
    store.close()
    with open_project(store.path) as store:
        assert store.get(Task, "t1") is not None
        assert store.get(DialogueTurn, turn.id).aspect_scores == {"Color": 0.5}
        assert store.get(PreferencePair, pref.id).label_0 == 0.5


def test_values_json_cannot_hold_are_refused_and_nothing_is_saved(project):
    with pytest.raises(BadInput, match="NaN"):
        project.put(DialogueTurn(id="x", ambiguity=float("nan")))
    assert project.get(DialogueTurn, "x") is None


def test_db_json_is_plain_tinydb_readable(projects_root: Path):
    store = create_project(projects_root, "Tiny")
    store.put(Task(id="t1", name="one"))
    store.put(Annotation(task_id="t1", descriptions={"i": "déjà vu ✓"}))
    store.close()  # close compacts the journal into db.json
    db = TinyDB(store.path / "db.json", access_mode="r")
    assert db.table("tasks").get(Query().id == "t1")["name"] == "one"
    assert db.table("annotations").all()[0]["descriptions"] == {"i": "déjà vu ✓"}
    db.close()


def test_settings_and_meta_live_in_project_json(projects_root: Path):
    store = create_project(projects_root, "Knobs", profile="sd15", settings=EngineSettings(steps=12))
    assert store.settings.steps == 12 and store.profile == "sd15"
    store.save_settings(store.settings.replace(tau=0.5))
    store.set_meta("last_task_id", "t9")
    store.set_meta("active_adapter", "v0003")
    store.close()
    doc = json.loads((store.path / "project.json").read_text())
    assert doc["settings"]["tau"] == 0.5 and doc["meta"]["last_task_id"] == "t9"
    with open_project(store.path) as again:
        assert again.settings.tau == 0.5 and again.settings.steps == 12
        assert again.get_meta("active_adapter") == "v0003"
        assert again.get_meta("missing", "default") == "default"


def test_list_projects_reads_names_and_task_counts(projects_root: Path):
    with create_project(projects_root, "Beta") as beta:
        beta.put_many([Task(), Task()])
    with create_project(projects_root, "alpha") as alpha:
        alpha.put(Task())
    (projects_root / "not-a-project").mkdir()
    infos = list_projects(projects_root)
    assert [(i.name, i.slug, i.n_tasks) for i in infos] == [("alpha", "alpha", 1), ("Beta", "beta", 2)]
    assert infos[0].path == projects_root / "alpha" and infos[0].problem is None
    assert list_projects(projects_root / "nowhere") == []


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Summer Dresses 2025", "summer-dresses-2025"),
        ("../../etc", "etc"),
        ("Été à Paris", "été-à-paris"),
        ("  spaces   and___underscores  ", "spaces-and-underscores"),
        ("服装 设计", "服装-设计"),
        ("hindi हिन्दी", "hindi-हिन्दी"),
        ("CON", "con-project"),
    ],
)
def test_slugify_keeps_letters_and_digits(name: str, slug: str):
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["", "   ", "../..", "///", "..."])
def test_names_without_letters_or_digits_are_refused(projects_root: Path, name: str):
    with pytest.raises(ProjectError) as info:
        create_project(projects_root, name)
    assert info.value.kind == "bad-name" and info.value.what_to_do
    assert list(projects_root.iterdir()) == []


def test_name_like_dot_dot_etc_stays_inside_the_projects_folder(projects_root: Path):
    with create_project(projects_root, "../../etc") as store:
        assert store.path.resolve().parent == projects_root.resolve()
        assert store.path.name == "etc"
    assert not (projects_root.parent.parent / "etc" / "project.json").exists()


def test_a_taken_name_is_refused_and_the_existing_project_is_untouched(projects_root: Path):
    with create_project(projects_root, "Mine") as store:
        store.put(Task(id="keep"))
    with pytest.raises(ProjectError, match="already exists") as info:
        create_project(projects_root, "MINE")
    assert info.value.kind == "project-exists"
    with open_project(projects_root / "mine") as store:
        assert store.get(Task, "keep") is not None


def test_second_window_gets_a_clear_error_but_may_open_read_only(project):
    project.put(Task(id="t1"))
    with pytest.raises(ProjectError, match="open in another window") as info:
        open_project(project.path)
    assert info.value.kind == "project-locked" and "read-only" in info.value.what_to_do
    with open_project(project.path, read_only=True) as viewer:
        assert viewer.get(Task, "t1") is not None
        with pytest.raises(ProjectError, match="read-only"):
            viewer.put(Task(id="t2"))
    project.close()
    with open_project(project.path) as again:  # the lock goes with the first window
        assert again.count(Task) == 1


def test_opening_something_that_is_not_a_project(tmp_path: Path):
    with pytest.raises(ProjectError) as info:
        open_project(tmp_path)
    assert info.value.kind == "not-a-project" and "project.json" in info.value.message
    with pytest.raises(ProjectError) as info:
        open_project(tmp_path / "missing")
    assert info.value.kind == "project-missing"


def test_saves_from_two_threads_all_arrive(projects_root: Path):
    store = create_project(projects_root, "Threads")

    def save(prefix: str) -> None:
        for i in range(50):
            store.put(Task(id=f"{prefix}{i}"))

    threads = [threading.Thread(target=save, args=(p,)) for p in ("gui-", "worker-")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    with open_project(store.path) as again:
        assert again.count(Task) == 100


def test_compaction_keeps_everything_and_rotates_the_journal(projects_root: Path):
    store = create_project(projects_root, "Compact")
    store.close()
    store = open_project(projects_root / "compact", compact_every=3)
    for i in range(10):
        store.put(Task(id=f"t{i}"))
        store._db.wait_for_compaction()  # it runs in the background
    # 10 saves with compaction every 3: three snapshots written, one save left in the journal
    assert (store.path / "db.journal.prev").exists()
    journal_lines = (store.path / "db.journal").read_bytes().count(b"\n")
    assert journal_lines == 1
    store.close()
    with open_project(store.path) as again:
        assert [t.id for t in again.all(Task)] == [f"t{i}" for i in range(10)]
