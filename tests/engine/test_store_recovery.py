"""Bad input and damaged files: each gets a clear message, and nothing saved is lost."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tdri_engine.errors import ProjectError, StorageError
from tdri_engine.records import Annotation, ImageRecord, Task
from tdri_engine.store import SCHEMA_VERSION, ProjectStore, create_project, open_project


def abandon(store: ProjectStore) -> None:
    """What a crash leaves: descriptors closed by the OS, no close()/compaction ran."""
    store._db.close()
    if store._lock is not None:
        store._lock.release()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def saved_project(projects_root: Path) -> Path:
    """Ten tasks saved with compaction every 4 saves, then the app died.

    On disk: db.json (saves 1-8), db.json.bak (1-4), db.journal.prev (5-8), db.journal (9-10).
    """
    create_project(projects_root, "Work").close()
    store = open_project(projects_root / "work", compact_every=4)
    for i in range(1, 11):
        store.put(Task(id=f"t{i}", name=f"task {i}"))
        store._db.wait_for_compaction()  # compaction runs in the background: make the layout exact
    abandon(store)
    return store.path


def test_truncated_db_json_is_rebuilt_from_the_backup_and_journals(saved_project: Path):
    db = saved_project / "db.json"
    damaged = db.read_bytes()[: db.stat().st_size // 2]
    db.write_bytes(damaged)

    with open_project(saved_project) as store:
        assert [t.id for t in store.all(Task)] == [f"t{i}" for i in range(1, 11)]
        report = store.recovery
    assert report is not None and report.repaired
    assert report.source == "db.json.bak"
    assert report.good_copy_time  # when the good copy was written
    assert report.journal_entries_replayed == 6  # saves 5-8 from db.journal.prev, 9-10 from db.journal
    assert report.possibly_lost == 0
    assert any("truncated" in p for p in report.problems)
    kept = Path(report.corrupt_file_kept)
    assert kept.parent == saved_project and kept.name.startswith("db.json.corrupt-")
    assert kept.read_bytes() == damaged  # kept aside as found, never overwritten
    summary = report.summary()
    assert "db.json.bak" in summary and "kept as" in summary

    with open_project(saved_project) as again:  # repaired for good
        assert again.recovery is None and again.count(Task) == 10


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b'{"tasks": {"1": {"id": "t1"}, oops}', "not valid JSON"),
        (b"", "empty"),
        (b"\x00\x00\x00\x00", "not valid JSON"),
        (b"\xff\xfe\xfa garbage", "not text"),
        (b'{"tasks": ["not", "a", "table"]}', "not a JSON object"),
    ],
)
def test_invalid_db_json_is_kept_aside_and_recovered(saved_project: Path, content: bytes, phrase: str):
    (saved_project / "db.json").write_bytes(content)
    with open_project(saved_project) as store:
        assert store.count(Task) == 10
        assert any(phrase in p for p in store.recovery.problems), store.recovery.problems
        assert Path(store.recovery.corrupt_file_kept).read_bytes() == content


def test_two_damaged_copies_in_a_row_never_overwrite_the_first(saved_project: Path):
    (saved_project / "db.json").write_bytes(b"first damage")
    open_project(saved_project).close()
    (saved_project / "db.json").write_bytes(b"second damage")
    open_project(saved_project).close()
    kept = sorted(p.read_bytes() for p in saved_project.glob("db.json.corrupt-*"))
    assert kept == [b"first damage", b"second damage"]


def test_read_only_open_of_a_damaged_project_changes_nothing(saved_project: Path):
    (saved_project / "db.json").write_bytes(b"{broken")
    before = files(saved_project)
    with open_project(saved_project, read_only=True) as store:
        assert store.count(Task) == 10
        assert store.recovery is not None and not store.recovery.repaired
        assert store.recovery.corrupt_file_kept is None
        assert "read-only" in store.recovery.summary()
    assert files(saved_project) == before


def test_db_and_backup_both_damaged_and_journal_incomplete_refuses_untouched(saved_project: Path):
    (saved_project / "db.json").write_bytes(b"{broken")
    (saved_project / "db.json.bak").write_bytes(b"")
    before = files(saved_project)
    with pytest.raises(ProjectError) as info:
        open_project(saved_project)
    assert info.value.kind == "project-damaged"
    assert "backup" in info.value.message and "Restore" in info.value.what_to_do
    assert files(saved_project) == before


def test_db_and_backup_both_damaged_but_the_journal_holds_everything(projects_root: Path):
    store = create_project(projects_root, "Young")  # never compacted: the journal has every save
    for i in range(5):
        store.put(Task(id=f"t{i}"))
    abandon(store)
    (store.path / "db.json").write_bytes(b"nope")
    (store.path / "db.json.bak").write_bytes(b"nope")
    with open_project(store.path) as again:
        assert again.count(Task) == 5
        assert again.recovery.source == "the journal alone"
        assert len(again.recovery.kept_files) == 2


def test_a_damaged_middle_journal_line_stops_replay_there_and_is_reported(projects_root: Path):
    store = create_project(projects_root, "Journal")
    for i in range(1, 6):
        store.put(Task(id=f"t{i}"))
    abandon(store)
    journal = store.path / "db.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"t3", b"X3")  # bit rot: the checksum no longer matches
    journal.write_bytes(b"".join(lines))

    with open_project(store.path) as again:
        assert [t.id for t in again.all(Task)] == ["t1", "t2"]
        report = again.recovery
        assert any("line 3" in p and "checksum" in p for p in report.problems)
        assert report.possibly_lost == 3  # the damaged line and the two after it
        assert Path(report.corrupt_file_kept).name.startswith("db.journal.corrupt-")
        assert Path(report.corrupt_file_kept).read_bytes() == b"".join(lines)
        again.put(Task(id="t6"))  # saving works again, on a fresh journal
    with open_project(store.path) as third:
        assert [t.id for t in third.all(Task)] == ["t1", "t2", "t6"] and third.recovery is None


def test_an_unfinished_last_journal_line_is_a_save_that_never_returned(projects_root: Path):
    store = create_project(projects_root, "Torn")
    store.put(Task(id="t1"))
    store.put(Task(id="t2"))
    abandon(store)
    journal = store.path / "db.journal"
    data = journal.read_bytes()
    journal.write_bytes(data + data.splitlines(keepends=True)[-1][:25])  # a crash mid-append

    with open_project(store.path) as again:
        assert again.recovery is None  # nothing acknowledged was lost: no alarm
        assert again.count(Task) == 2
        again.put(Task(id="t3"))
    with open_project(store.path) as third:
        assert [t.id for t in third.all(Task)] == ["t1", "t2", "t3"]


def test_damaged_project_json_falls_back_to_its_previous_copy(projects_root: Path):
    with create_project(projects_root, "Settings") as store:
        store.set_meta("last_task_id", "t1")
        store.put(Task(id="t1"))
    previous = json.loads((store.path / "project.json.bak").read_text())
    (store.path / "project.json").write_text('{"name": "Settings", "schema_ver')
    with open_project(store.path) as again:
        assert again.name == "Settings" and again.count(Task) == 1
        assert again.get_meta("last_task_id") == previous["meta"]["last_task_id"] == "t1"
        assert any("project.json" in p for p in again.recovery.problems)
        assert Path(again.recovery.corrupt_file_kept).name.startswith("project.json.corrupt-")
    assert json.loads((store.path / "project.json").read_text())["name"] == "Settings"


def test_project_json_and_its_backup_damaged_is_a_clear_error(projects_root: Path):
    with create_project(projects_root, "Gone") as store:
        store.put(Task(id="t1"))
    (store.path / "project.json").write_text("")
    (store.path / "project.json.bak").write_text("[]")
    db_before = (store.path / "db.json").read_bytes()
    with pytest.raises(ProjectError) as info:
        open_project(store.path)
    assert info.value.kind == "project-damaged" and "project.json" in info.value.message
    assert "not touched" in info.value.what_to_do
    assert (store.path / "db.json").read_bytes() == db_before


def test_schema_from_the_future_is_refused_and_nothing_is_modified(projects_root: Path):
    with create_project(projects_root, "Future") as store:
        store.put(Task(id="t1"))
    (store.path / ".lock").unlink()
    doc = json.loads((store.path / "project.json").read_text())
    doc["schema_version"] = SCHEMA_VERSION + 5
    (store.path / "project.json").write_text(json.dumps(doc))
    before = files(store.path)
    for read_only in (False, True):
        with pytest.raises(ProjectError) as info:
            open_project(store.path, read_only=read_only)
        assert info.value.kind == "project-too-new"
        assert "made by a newer TDRI Studio" in info.value.message
        assert "Update TDRI Studio" in info.value.what_to_do
    assert files(store.path) == before


def test_database_stamped_by_a_newer_app_is_refused_too(projects_root: Path):
    with create_project(projects_root, "Half") as store:
        store.put(Task(id="t1"))
    db = store.path / "db.json"
    data = json.loads(db.read_text())
    data["_tdri"]["1"]["schema_version"] = SCHEMA_VERSION + 1
    db.write_text(json.dumps(data))
    before = files(store.path)
    with pytest.raises(ProjectError) as info:
        open_project(store.path)
    assert info.value.kind == "project-too-new"
    assert files(store.path) == before


# ------------------------------------------------------------------ read-only folders, full disks


def _fail_writes_under(monkeypatch: pytest.MonkeyPatch, folder: Path, err: int) -> None:
    """Make creating or writing files under ``folder`` fail as a read-only mount would.

    Tests run as root, where chmod does not stop writes, so the OS error is injected.
    """
    real_open = os.open
    prefix = str(folder.resolve())

    def fake_open(path, flags, *args, **kwargs):
        if str(Path(path).resolve()).startswith(prefix) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_read_only_projects_folder_refuses_new_projects_clearly(tmp_path: Path, monkeypatch):
    root = tmp_path / "projects"
    root.mkdir()
    _fail_writes_under(monkeypatch, root, errno.EROFS)
    with pytest.raises(ProjectError) as info:
        create_project(root, "Anything")
    assert "read-only" in info.value.message and str(root) in info.value.message
    assert "another projects folder" in info.value.what_to_do
    monkeypatch.undo()
    assert list(root.iterdir()) == []


def _chmod_stops_writes(folder: Path) -> bool:
    """False for root (and anyone with CAP_DAC_OVERRIDE): permission bits do not stop them."""
    probe = folder / "probe"
    probe.mkdir()
    os.chmod(probe, 0o555)
    try:
        (probe / "x").write_text("x")
    except PermissionError:
        return True
    finally:
        os.chmod(probe, 0o755)
    return False


def test_read_only_projects_folder_by_permissions(tmp_path: Path):
    if os.name != "posix" or not _chmod_stops_writes(tmp_path):
        pytest.skip("permission bits do not stop this user's writes (root); the OS-error tests cover it")
    root = tmp_path / "projects"
    root.mkdir()
    with create_project(root, "Existing") as store:
        store.put(Task(id="t1"))
    os.chmod(store.path, 0o555)
    os.chmod(root, 0o555)
    try:
        with pytest.raises(ProjectError, match="read-only"):
            create_project(root, "New")
        with pytest.raises(ProjectError) as info:
            open_project(store.path)
        assert info.value.kind == "project-read-only"
        with open_project(store.path, read_only=True) as viewer:
            assert viewer.count(Task) == 1
    finally:
        os.chmod(root, 0o755)
        os.chmod(store.path, 0o755)


def test_project_in_a_read_only_folder_opens_read_only_only(projects_root: Path, monkeypatch):
    with create_project(projects_root, "Shelf") as store:
        store.put(Task(id="t1"))
    _fail_writes_under(monkeypatch, store.path, errno.EROFS)
    with pytest.raises(ProjectError) as info:
        open_project(store.path)
    assert info.value.kind == "project-read-only" and "read-only" in info.value.what_to_do
    with open_project(store.path, read_only=True) as viewer:
        assert viewer.get(Task, "t1") is not None


class DiskFull:
    """Patch os.write so that the disk fills up after ``allow`` more bytes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, allow: int = 0):
        self.allow = allow
        self.real = os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd, data):
        if self.allow <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), self.allow)
        self.allow -= n
        return self.real(fd, bytes(data[:n]))


@pytest.mark.parametrize("partial", [0, 40], ids=["nothing-written", "half-a-line-written"])
def test_disk_full_during_a_save_changes_nothing_and_says_what_to_do(
    projects_root: Path, monkeypatch, partial
):
    store = create_project(projects_root, "Full")
    store.put(Annotation(task_id="t1", descriptions={"a": "saved before"}))
    DiskFull(monkeypatch, allow=partial)
    with pytest.raises(StorageError) as info:
        store.put(Annotation(task_id="t1", descriptions={"a": "never saved"}))
    assert info.value.kind == "disk-full" and "disk is full" in info.value.message
    assert "Free some disk space" in info.value.what_to_do
    assert store.get(Annotation, "t1").descriptions == {"a": "saved before"}  # memory unchanged
    with pytest.raises(StorageError):
        store.set_meta("last_task_id", "t1")
    assert store.get_meta("last_task_id") is None
    with pytest.raises(StorageError):
        store.save_settings(store.settings.replace(steps=5))
    assert store.settings.steps == 30
    monkeypatch.undo()  # space freed
    store.put(Annotation(task_id="t1", descriptions={"a": "saved after"}))
    abandon(store)
    with open_project(store.path) as again:
        assert again.recovery is None  # the failed save left no half line behind
        assert again.get(Annotation, "t1").descriptions == {"a": "saved after"}


def test_disk_full_while_adding_an_image_leaves_no_record_and_no_file(project, monkeypatch):
    from PIL import Image

    DiskFull(monkeypatch)
    with pytest.raises(StorageError, match="disk is full"):
        project.add_image(Image.new("RGB", (32, 32), "red"), ImageRecord(id="img1"))
    monkeypatch.undo()
    assert project.get(ImageRecord, "img1") is None
    assert list(project.images_dir.iterdir()) == []
