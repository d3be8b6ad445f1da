"""A project on disk: ``project.json``, the durable tables, images, adapters and exports.

::

    projects/<slug>/project.json   name, slug, schema_version, created, profile, settings, meta, stats
    projects/<slug>/db.json        TinyDB-layout snapshot (+ db.json.bak, db.journal, db.journal.prev)
    projects/<slug>/images/        PNGs with provenance in text chunks
    projects/<slug>/loras/         adapter versions (written by the optimizer)
    projects/<slug>/exports/       JSONL, HTML, Parquet exports
    projects/<slug>/backups/       copies made before a schema migration

One process writes a project at a time (an exclusive lock on ``.lock``); others may open it
read-only. A save is durable when ``put`` returns, and the in-memory state changes only after
the disk write succeeded: a full disk costs the save being attempted, nothing else.

Apart from this file: the folder name (``slug.py``), the cross-process lock (``lock.py``), reading
and repairing ``project.json`` (``project_file.py``), schema upgrades (``migrations.py``), the
journal and snapshot (``db.py``, ``journal.py``). This file is the project's records and API:
create, open, list, put/get/find, images and import.

We use tinydb for its file format (``db.json`` opens in plain ``tinydb.TinyDB``) and its query
language: ``store.find(Task, Query().status == "done")`` works, as does any ``callable(dict)``.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BadInput, ProjectError, StorageError, TdriError
from ..records import ALL_RECORDS, ImageRecord, Record, Task, now_iso
from ..settings import EngineSettings
from ..validation import MAX_NAME_CHARS, as_unicode, check_text
from .db import Database, RecoveryReport
from .fsutil import (
    atomic_write,
    fsync_dir,
    probe_writable,
    read_only_project_error,
    storage_error,
    timestamp,
    unique_path,
    write_file_synced,
)
from .images import load_image_checked, provenance_of, save_png
from .lock import ProjectLock
from .migrations import SCHEMA_VERSION, migrate
from .positions import SHOWN_ORDER, balanced_orders
from .project_file import (
    PROJECT_FILE,
    parse_project_json,
    read_project_json,
    repair_report,
    set_damaged_aside,
    too_new,
)
from .slug import slugify

if TYPE_CHECKING:
    from PIL import Image as PILImage

R = TypeVar("R", bound=Record)

SUBDIRS = ("images", "loras", "exports")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_NOUNS = {
    "tasks": "task",
    "annotations": "annotation",
    "dialogues": "dialogue",
    "turns": "dialogue turn",
    "images": "image record",
    "preferences": "preference",
    "adapters": "adapter version",
}


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------- small values


@dataclass(frozen=True)
class ProjectInfo:
    """One entry of the projects list (read from ``project.json`` only).

    ``n_tasks`` is as of the project's last compaction or close (None when unknown);
    ``problem`` says why a folder could not be read as a project.
    """

    name: str
    slug: str
    path: Path
    created: str = ""
    n_tasks: int | None = None
    profile: str = ""
    schema_version: int | None = None
    problem: str | None = None


@dataclass
class ImportResult:
    """What ``import_images`` made: tasks and images, plus per-file notes and errors."""

    tasks: list[Task] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # path -> what was changed
    errors: dict[str, TdriError] = field(default_factory=dict)  # path -> why it was refused
    skipped: list[str] = field(default_factory=list)  # folder entries that are not image files

    def summary(self) -> str:
        lines = [f"Imported {len(self.images)} images as {len(self.tasks)} tasks."]
        for path, err in self.errors.items():
            lines.append(f"Not imported: {path}: {err.message}")
        for path, notes in self.notes.items():
            for note in notes:
                lines.append(f"Note: {Path(path).name}: {note}")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} files that are not images.")
        return "\n".join(lines)


def _key_field(cls: type[Record]) -> str:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if "id" in names:
        return "id"
    if "task_id" in names:  # Annotation: one per task
        return "task_id"
    raise TypeError(f"{cls.__name__} has no id field")


def _table_of(cls: type[Record]) -> str:
    if not getattr(cls, "TABLE", ""):
        raise TypeError(f"{cls.__name__} is not a stored record type (no TABLE)")
    return cls.TABLE


# ---------------------------------------------------------------------------- the store


class ProjectStore:
    """An open project. Create with :func:`create_project` or :func:`open_project`.

    Records are the dataclasses of ``tdri_engine.records``; each lives in its ``TABLE`` and is
    keyed by its ``id`` (an Annotation by its ``task_id``). Every write is durable when the
    call returns and changes nothing in memory if it fails. Safe to call from several threads.
    """

    def __init__(
        self,
        path: Path,
        doc: dict[str, Any],
        db: Database,
        lock: ProjectLock | None,
        *,
        read_only: bool,
    ):
        self.path = path
        self._doc = doc
        self._db = db
        self._lock = lock
        self.read_only = read_only
        self.recovery: RecoveryReport | None = db.recovery
        self.open_notes: list[str] = []  # things to tell the user once (migration, settings reset)
        self.migration_backup: Path | None = None
        self._closed = False
        self._doc_lock = threading.RLock()
        self.settings = self._parse_settings(doc)

    # ---- identity
    @property
    def name(self) -> str:
        return str(self._doc.get("name") or self.path.name)

    @property
    def slug(self) -> str:
        return str(self._doc.get("slug") or self.path.name)

    @property
    def profile(self) -> str:
        return str(self._doc.get("profile") or "demo")

    @property
    def created(self) -> str:
        return str(self._doc.get("created", ""))

    @property
    def schema_version(self) -> int:
        return int(self._doc.get("schema_version", SCHEMA_VERSION))

    @property
    def images_dir(self) -> Path:
        return self.path / "images"

    @property
    def loras_dir(self) -> Path:
        return self.path / "loras"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"<ProjectStore {self.name!r} at {self.path} ({mode})>"

    # ---- project.json
    def _parse_settings(self, doc: dict[str, Any]) -> EngineSettings:
        try:
            return EngineSettings.from_dict(doc.get("settings") or {})
        except (BadInput, TypeError) as exc:
            self.open_notes.append(
                f"The saved engine settings were invalid ({exc}); defaults are used until you save settings."
            )
            return EngineSettings()

    def _check_writable(self, action: str) -> None:
        if self._closed:
            raise ProjectError(f"Could not {action}: the project is closed.", "Open the project again.")
        if self.read_only:
            raise ProjectError(
                f"Could not {action}: the project is open read-only.",
                "Close the other window that has it open, then reopen the project normally.",
                kind="project-read-only",
            )

    def _write_project_doc(self, doc: dict[str, Any], action: str) -> None:
        data = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        try:
            atomic_write(self.path / PROJECT_FILE, data, keep_backup=True)
        except OSError as exc:
            raise storage_error(exc, action, self.path) from exc
        self._doc = doc

    def _update_doc(self, change: Callable[[dict[str, Any]], None], action: str) -> None:
        """Read-modify-write project.json; memory changes only if the write succeeded.

        Under a lock: the background compaction updates the counts from its own thread.
        """
        with self._doc_lock:
            doc = copy.deepcopy(self._doc)
            change(doc)
            self._write_project_doc(doc, action)

    def save_settings(self, settings: EngineSettings) -> None:
        """Store the engine settings in project.json (atomically)."""
        self._check_writable("save the settings")
        self._update_doc(lambda doc: doc.__setitem__("settings", settings.to_dict()), "save the settings")
        self.settings = settings

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A small value kept in project.json (``last_task_id``, ``active_adapter`` ...)."""
        return copy.deepcopy(self._doc.get("meta", {}).get(key, default))

    def set_meta(self, key: str, value: Any) -> None:
        """Set a project.json meta value (JSON-safe); durable when it returns."""
        self._check_writable("save the project state")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"The value for '{key}' cannot be stored in project.json: {exc}.") from exc
        value = copy.deepcopy(value)
        self._update_doc(
            lambda doc: doc.setdefault("meta", {}).__setitem__(key, value), "save the project state"
        )

    def _stats(self) -> dict[str, int]:
        return {
            t: self._db.tables[t].rows.__len__() if t in self._db.tables else 0
            for t in ("tasks", "images", "annotations")
        }

    def _write_stats(self) -> None:
        """Refresh the counts list_projects shows; advisory, so a failure is not an error."""
        if self.read_only or self._closed:
            return
        stats = self._stats()
        if self._doc.get("stats") == stats:
            return
        try:
            self._update_doc(lambda doc: doc.__setitem__("stats", stats), "update the project summary")
        except StorageError:
            pass

    # ---- records
    def _noun(self, table: str) -> str:
        return _NOUNS.get(table, table)

    def put(self, record: R) -> R:
        """Insert or replace ``record`` (by its id). Durable when it returns."""
        self._check_writable("save")
        table = _table_of(type(record))
        self._db.write(
            [("put", table, _key_field(type(record)), record.to_dict())], f"save the {self._noun(table)}"
        )
        return record

    def put_many(self, records: Iterable[Record]) -> None:
        """Save several records as one transaction: after a crash, all of them or none."""
        self._check_writable("save")
        changes = [("put", _table_of(type(r)), _key_field(type(r)), r.to_dict()) for r in records]
        if changes:
            self._db.write(changes, f"save {len(changes)} records")  # type: ignore[arg-type]

    def delete(self, cls: type[Record], id: str) -> None:
        """Remove the record of type ``cls`` with this id (no-op when absent)."""
        self._check_writable("delete")
        table = _table_of(cls)
        self._db.write([("del", table, _key_field(cls), id)], f"delete the {self._noun(table)}")

    def get(self, cls: type[R], id: str) -> R | None:
        """The record with this id, or None. Each call returns a fresh, independent object."""
        table = self._db.tables.get(_table_of(cls))
        if table is None:
            return None
        with self._db.lock:
            table.set_key_field(_key_field(cls))
            doc_id = table.index.get(id)
            if doc_id is None:
                return None
            text = table.rows[doc_id]
        return cls.from_dict(json.loads(text))

    def all(self, cls: type[R]) -> list[R]:
        """Every record of ``cls`` in the order they were first saved."""
        table = self._db.tables.get(_table_of(cls))
        if table is None:
            return []
        with self._db.lock:
            texts = list(table.rows.values())
        return [cls.from_dict(json.loads(text)) for text in texts]

    def find(self, cls: type[R], cond: Callable[[dict[str, Any]], bool]) -> list[R]:
        """Records of ``cls`` whose stored dict satisfies ``cond``, in insertion order.

        ``cond`` is a tinydb query (``Query().status == "done"``, ``where("choice") == "left"``)
        or any callable taking the record's dict.
        """
        table = self._db.tables.get(_table_of(cls))
        if table is None:
            return []
        with self._db.lock:
            texts = list(table.rows.values())
        out = []
        for text in texts:
            doc = json.loads(text)  # a private copy: cond may look at it, nothing else sees it
            if cond(doc):
                out.append(cls.from_dict(doc))
        return out

    def count(self, cls: type[Record]) -> int:
        table = self._db.tables.get(_table_of(cls))
        return 0 if table is None else len(table.rows)

    # ---- images
    def image_path(self, record_or_id: ImageRecord | str) -> Path:
        """Absolute path of an image record's file (which may be missing: see load_image)."""
        record = self._image_record(record_or_id)
        if not record.file:
            raise BadInput(f"The image record {record.id} has no file.", kind="image-missing")
        path = self.path / record.file
        if not _inside(self.path, path):
            raise BadInput(
                f"The image record {record.id} points outside the project ({record.file}).",
                "The database was edited by hand; fix the 'file' entry or re-import the image.",
            )
        return path

    def _image_record(self, record_or_id: ImageRecord | str) -> ImageRecord:
        if isinstance(record_or_id, ImageRecord):
            return record_or_id
        record = self.get(ImageRecord, record_or_id)
        if record is None:
            raise BadInput(
                f"There is no image with id {record_or_id!r} in this project.",
                "The task refers to an image that was deleted; remove the task or import the image again.",
                kind="image-missing",
            )
        return record

    def load_image(self, record_or_id: ImageRecord | str) -> PILImage.Image:
        """The image as RGB; BadInput kind ``image-missing`` naming the path when it is gone."""
        path = self.image_path(record_or_id)
        image, _ = load_image_checked(path)
        return image

    def add_image(self, image: PILImage.Image, record: ImageRecord) -> ImageRecord:
        """Write ``images/<id>.png`` with provenance, fill file/width/height, save the record."""
        self._check_writable("save the image")
        if not _SAFE_ID.match(record.id):
            raise BadInput(
                f"Image id {record.id!r} cannot be used as a file name.", "Use letters, digits, - or _."
            )
        record = record.replace(file=f"images/{record.id}.png", width=image.width, height=image.height)
        path = self.path / record.file
        old = path.read_bytes() if path.exists() else None
        self.images_dir.mkdir(exist_ok=True)
        save_png(path, image, provenance_of(record))
        try:
            self.put(record)
        except BaseException:
            _restore(path, old)
            raise
        return record

    def import_image(self, src: Path) -> tuple[ImageRecord, list[str]]:
        """Validate an outside image, copy it into the project as PNG; return (record, notes)."""
        self._check_writable("import the image")
        src = Path(src)
        image, notes = load_image_checked(src)
        record = ImageRecord(
            origin="imported", source_path=as_unicode(str(src)), name=as_unicode(src.stem), model=""
        )
        return self.add_image(image, record), notes

    def import_images(
        self,
        paths_or_folder: Path | str | Sequence[Path | str],
        *,
        pair: bool = True,
        order_seed: int | None = None,
    ) -> ImportResult:
        """Import files (or every image in a folder, sorted by name) as tasks.

        With ``pair`` consecutive good images make pair tasks (an odd one out becomes a single
        task); otherwise one task per image. Each pair task records the random order its two
        images are shown in (``details["shown_order"]``, balanced over the import and drawn
        from ``order_seed``: see ``store/positions.py``). A file that cannot be imported is listed in
        ``errors`` and skipped. A storage failure (disk full) raises StorageError and leaves
        the project exactly as before: no records and no image files from this import.
        """
        self._check_writable("import images")
        result = ImportResult()
        files = _collect_files(paths_or_folder, result)
        source = str(paths_or_folder) if isinstance(paths_or_folder, (str, Path)) else "import"
        written: list[Path] = []
        try:
            for src in files:
                try:
                    image, notes = load_image_checked(src)
                except BadInput as exc:
                    result.errors[str(src)] = exc
                    continue
                record = ImageRecord(
                    origin="imported", source_path=as_unicode(str(src)), name=as_unicode(src.stem), model=""
                )
                record = record.replace(
                    file=f"images/{record.id}.png", width=image.width, height=image.height
                )
                self.images_dir.mkdir(exist_ok=True)
                path = self.path / record.file
                save_png(path, image, provenance_of(record))
                written.append(path)
                del image  # one decoded image in memory at a time
                result.images.append(record)
                if notes:
                    result.notes[str(src)] = notes
            step = 2 if pair else 1
            groups = [result.images[i : i + step] for i in range(0, len(result.images), step)]
            # Pairs are shown in a random, balanced order per task (store/positions.py).
            orders = iter(balanced_orders(sum(len(g) == 2 for g in groups), order_seed))
            for group in groups:
                details: dict[str, Any] = {"files": [r.source_path for r in group]}
                if len(group) == 2:
                    details[SHOWN_ORDER] = next(orders)
                result.tasks.append(
                    Task(
                        name=" | ".join(r.name for r in group),
                        images=[r.id for r in group],
                        source=source,
                        details=details,
                    )
                )
            self.put_many([*result.images, *result.tasks])
        except BaseException:
            for path in written:
                _restore(path, None)
            raise
        return result

    # ---- lifecycle
    def compact(self) -> None:
        """Rewrite the snapshot now (e.g. when idle) so the journal starts empty."""
        self._check_writable("compact the database")
        self._db.compact()

    def close(self) -> None:
        """Compact if anything changed, record counts, release the lock. Idempotent."""
        if self._closed:
            return
        self._db.wait_for_compaction()
        try:
            if not self.read_only:
                journal = self._db.journal
                if journal is not None and journal.entries:
                    try:
                        self._db.compact()  # calls _write_stats through on_compacted
                    except StorageError:
                        pass  # the journal holds everything; the next open replays it
                else:
                    self._write_stats()
        finally:
            self._closed = True
            self._db.close()
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- migration (called by open_project)
    def _migrate(self, from_version: int) -> None:
        tables = self._db.raw_tables()
        doc = copy.deepcopy(self._doc)
        if not self.read_only:
            self.migration_backup = self._backup_before_migration(from_version)
        try:
            notes = migrate(doc, tables, from_version)
        except Exception as exc:  # noqa: BLE001 - any bug in a step must leave the project alone
            where = f" A copy is in {self.migration_backup}." if self.migration_backup else ""
            raise ProjectError(
                f"Could not upgrade the project from schema version {from_version} to {SCHEMA_VERSION}: {exc}",
                f"The project was not changed.{where} Please report this problem.",
                kind="migration-failed",
            ) from exc
        doc.setdefault("slug", self.path.name)
        self._db.replace_all(tables)
        self._db.schema_version = SCHEMA_VERSION
        if not self.read_only:
            self._db.compact(fresh=True)
            self._write_project_doc(doc, "upgrade the project")
        else:
            self._doc = doc
        self.settings = self._parse_settings(doc)
        where = (
            f"; the old files are in {self.migration_backup}"
            if self.migration_backup
            else " (in memory: read-only)"
        )
        self.open_notes.append(f"Upgraded from schema version {from_version} to {SCHEMA_VERSION}{where}.")
        self.open_notes.extend(notes)

    def _backup_before_migration(self, from_version: int) -> Path:
        dest = unique_path(self.path / "backups" / f"schema-v{from_version}-{timestamp()}")
        try:
            dest.mkdir(parents=True)
            for name in (
                PROJECT_FILE,
                PROJECT_FILE + ".bak",
                "db.json",
                "db.json.bak",
                "db.journal",
                "db.journal.prev",
            ):
                src = self.path / name
                if src.exists():
                    write_file_synced(dest / name, src.read_bytes())
            fsync_dir(dest)
        except OSError as exc:
            raise storage_error(exc, "back up the project before upgrading it", dest) from exc
        return dest


def _restore(path: Path, old: bytes | None) -> None:
    """Undo an image write after the record could not be saved."""
    try:
        if old is None:
            os.unlink(path)
        else:
            atomic_write(path, old)
    except OSError:
        pass


def _collect_files(spec: Path | str | Sequence[Path | str], result: ImportResult) -> list[Path]:
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for child in sorted(p.iterdir(), key=lambda c: c.name.casefold()):
                if child.name.startswith("."):
                    continue
                if not child.is_file():
                    if child.is_dir() and child.suffix.lower() in IMAGE_SUFFIXES:
                        result.errors[str(child)] = BadInput(
                            f"{as_unicode(child.name)} is a folder, not an image file.",
                            "Import the images inside it by choosing that folder.",
                        )
                    continue
                if child.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(child)
                else:
                    result.skipped.append(str(child))
        else:
            files.append(p)  # missing or odd files are reported by load_image_checked
    return files


# ---------------------------------------------------------------------------- entry points


def create_project(
    root: Path,
    name: str,
    *,
    profile: str = "demo",
    settings: EngineSettings | None = None,
    created: str | None = None,
) -> ProjectStore:
    """Make ``root/<slugify(name)>/`` and open it. Nothing half-made is left on failure.

    Raises ProjectError for a bad or taken name and for a projects folder that cannot be
    written (read-only, permissions, disk full).
    """
    root = Path(root)
    clean_name = check_text(
        name, "The project name", max_chars=MAX_NAME_CHARS, what_to_do="Choose another name."
    ).strip()
    slug = slugify(clean_name)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _root_error(root, exc) from exc
    problem = probe_writable(root)
    if problem is not None:
        raise _root_error(root, problem)
    target = root / slug
    if not _inside(root, target) or target.resolve().parent != root.resolve():
        raise ProjectError(
            f"The project name {name!r} would leave the projects folder.",
            "Choose another name.",
            kind="bad-name",
        )
    if target.exists():
        raise ProjectError(
            f"A project folder named {slug!r} already exists in {root}.",
            "Choose another name, or open the existing project.",
            kind="project-exists",
        )
    doc = {
        "format": "tdri-project",
        "name": clean_name,
        "slug": slug,
        "schema_version": SCHEMA_VERSION,
        "created": created or now_iso(),
        "profile": profile,
        "settings": (settings or EngineSettings()).to_dict(),
        "meta": {},
        "stats": {"tasks": 0, "images": 0, "annotations": 0},
    }
    # Build in a hidden staging folder, then one rename: no half-made project is ever visible.
    staging = root / f".creating-{slug}-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        for sub in SUBDIRS:
            (staging / sub).mkdir()
        data = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        write_file_synced(staging / PROJECT_FILE, data)
        write_file_synced(staging / (PROJECT_FILE + ".bak"), data)
        db = Database(staging, schema_version=SCHEMA_VERSION)
        db.load()  # writes db.json, its backup and an empty journal
        db.close()
        fsync_dir(staging)
        os.rename(staging, target)
        fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if target.exists() and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ProjectError(
                f"A project folder named {slug!r} already exists in {root}.",
                "Choose another name, or open the existing project.",
                kind="project-exists",
            ) from exc
        raise _root_error(root, exc) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return open_project(target)


def _root_error(root: Path, exc: OSError) -> ProjectError:
    err = storage_error(exc, f"create the project in {root}")
    return ProjectError(
        err.message,
        err.what_to_do.replace("you can still open it read-only. ", "")
        + " Or choose another projects folder.",
        kind="projects-folder",
    )


def open_project(path: Path, *, read_only: bool = False, compact_every: int | None = None) -> ProjectStore:
    """Open the project in ``path``; repair what a crash or a damaged file left, and report it.

    ``read_only`` opens without the lock and changes nothing on disk (a damaged database is
    recovered in memory only). ``compact_every`` (journal entries; default: when the journal
    outgrows the snapshot) is for tests and tuning. Raises ProjectError: not a project
    (``not-a-project``), from a newer app (``project-too-new``), open elsewhere
    (``project-locked``), folder read-only (``project-read-only``), damaged beyond repair
    (``project-damaged``).
    """
    path = Path(path).absolute()  # image paths and exports then say where things really are
    if not path.is_dir():
        raise ProjectError(
            f"There is no project folder at {path}.",
            "Check the path, or create a new project.",
            kind="project-missing",
        )
    doc, pj_problem = read_project_json(path)
    if doc["schema_version"] > SCHEMA_VERSION:
        raise too_new(path, doc["schema_version"])
    lock = None
    if not read_only:
        problem = probe_writable(path)
        if problem is not None:
            raise read_only_project_error(path, problem)
        lock = ProjectLock(path)
    db = Database(
        path,
        read_only=read_only,
        compact_every=compact_every,
        schema_version=doc["schema_version"],
        key_fields={cls.TABLE: _key_field(cls) for cls in ALL_RECORDS},
    )
    try:
        db.load(max_schema_version=SCHEMA_VERSION, too_new=lambda v: too_new(path, v))
        store = ProjectStore(path, doc, db, lock, read_only=read_only)
        if pj_problem is not None:
            store.recovery = _with_project_json_problem(store, pj_problem)
        data_version = db.schema_version
        if data_version < SCHEMA_VERSION:
            store._migrate(data_version)
        elif doc["schema_version"] < data_version:
            # the database was upgraded but project.json not yet (cut off mid-upgrade): finish it
            fixed = copy.deepcopy(doc)
            migrate(fixed, {}, doc["schema_version"])
            fixed.setdefault("slug", path.name)
            if not read_only:
                store._write_project_doc(fixed, "upgrade the project")
            store._doc = fixed
            store.settings = store._parse_settings(fixed)
        if not read_only:
            for sub in SUBDIRS:
                (path / sub).mkdir(exist_ok=True)
            _remove_leftovers(path)
        db.on_compacted = store._write_stats
    except BaseException:
        db.close()
        if lock is not None:
            lock.release()
        raise
    return store


def _remove_leftovers(path: Path) -> None:
    """Delete temporary files of atomic writes cut off by a crash (we hold the lock: none is live)."""
    for folder in (path, path / "images", path / "exports"):
        for tmp in folder.glob(".*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def _with_project_json_problem(store: ProjectStore, problem: str) -> RecoveryReport:
    """Fold a damaged project.json (recovered from its backup) into the recovery report; a
    writable project gets its damaged file set aside and a good copy written back."""
    kept: list[str] = []
    if not store.read_only:
        kept = set_damaged_aside(store.path)
        store._write_project_doc(copy.deepcopy(store._doc), "repair project.json")
    return repair_report(store.path, problem, store.recovery, kept, repaired=not store.read_only)


def list_projects(root: Path) -> list[ProjectInfo]:
    """Projects under ``root``, by name; reads only each ``project.json`` (cheap)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out: list[ProjectInfo] = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        pj = child / PROJECT_FILE
        if not pj.exists() and not (child / (PROJECT_FILE + ".bak")).exists():
            continue  # not a project folder
        doc, why = parse_project_json(pj)
        if doc is None:
            doc, _ = parse_project_json(child / (PROJECT_FILE + ".bak"))
        if doc is None:
            out.append(
                ProjectInfo(name=child.name, slug=child.name, path=child, problem=f"{PROJECT_FILE} {why}")
            )
            continue
        stats = doc.get("stats")
        if not isinstance(stats, dict):
            stats = {}
        n_tasks = stats.get("tasks")
        version = doc["schema_version"]
        out.append(
            ProjectInfo(
                name=str(doc.get("name") or child.name),
                slug=str(doc.get("slug") or child.name),
                path=child,
                created=str(doc.get("created", "")),
                n_tasks=n_tasks if isinstance(n_tasks, int) else None,
                profile=str(doc.get("profile") or doc.get("model_profile") or ""),
                schema_version=version,
                problem=f"made by a newer TDRI Studio (schema {version})"
                if version > SCHEMA_VERSION
                else None,
            )
        )
    out.sort(key=lambda info: info.name.casefold())
    return out
