"""``project.json``: reading it, falling back to its backup, and repairing it.

``project.json`` holds a project's name, slug, schema version, profile, settings, meta and stats;
it is written atomically with a ``.bak`` of the previous copy. When it is damaged (empty, not
JSON, no valid schema version) the backup is used, the damaged file is set aside as
``project.json.corrupt-<time>`` (nothing is deleted), a good copy is written back, and the
project's :class:`~tdri_engine.store.db.RecoveryReport` says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ProjectError
from .db import RecoveryReport, _mtime_iso
from .fsutil import read_or_why, storage_error, timestamp, unique_path
from .migrations import SCHEMA_VERSION

PROJECT_FILE = "project.json"


def parse_project_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    raw, why = read_or_why(path)
    if raw is None:
        return None, why
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"is not valid JSON ({exc})" if raw.strip() else "is empty"
    if not isinstance(doc, dict):
        return None, "does not hold a JSON object"
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return None, f"has no valid schema_version (found {version!r})"
    return doc, ""


def read_project_json(folder: Path) -> tuple[dict[str, Any], str | None]:
    """project.json, or its backup when damaged: (doc, problem or None). Raises ProjectError."""
    main = folder / PROJECT_FILE
    doc, why = parse_project_json(main)
    if doc is not None:
        return doc, None
    bak = folder / (PROJECT_FILE + ".bak")
    if why == "is missing" and not bak.exists():
        raise ProjectError(
            f"{folder} is not a TDRI project folder: it has no {PROJECT_FILE}.",
            "Pick the project's own folder (the one holding project.json), or create a new project.",
            kind="not-a-project",
        )
    bak_doc, bak_why = parse_project_json(bak)
    if bak_doc is None:
        raise ProjectError(
            f"The project settings file {main} {why}, and its backup {bak.name} {bak_why}.",
            f"Restore {PROJECT_FILE} from a backup of the project. The database and images in "
            f"{folder} were not touched.",
            kind="project-damaged",
        )
    return bak_doc, f"{PROJECT_FILE} {why}; its previous copy {bak.name} was used."


def too_new(path: Path, version: int) -> ProjectError:
    return ProjectError(
        f"The project {path.name} was made by a newer TDRI Studio (project schema version {version}; "
        f"this version reads up to {SCHEMA_VERSION}).",
        "Update TDRI Studio to open it. The project was not changed.",
        kind="project-too-new",
    )


def set_damaged_aside(folder: Path) -> list[str]:
    """Move a damaged ``project.json`` to ``project.json.corrupt-<time>`` (kept, never deleted);
    the paths kept, none when there was no file."""
    main = folder / PROJECT_FILE
    if not main.exists():
        return []
    dst = unique_path(folder / f"{PROJECT_FILE}.corrupt-{timestamp()}")
    try:
        os.replace(main, dst)
    except OSError as exc:
        raise storage_error(exc, "set the damaged project.json aside", folder) from exc
    return [str(dst)]


def repair_report(
    folder: Path, problem: str, prior: RecoveryReport | None, kept: list[str], *, repaired: bool
) -> RecoveryReport:
    """Fold a damaged project.json (recovered from its backup) into the recovery report
    (``prior``: the database's own report, if any)."""
    bak = folder / (PROJECT_FILE + ".bak")
    if prior is None:
        return RecoveryReport(
            what="The project settings file was damaged; TDRI Studio used its previous copy.",
            source=bak.name,
            good_copy_time=_mtime_iso(bak),
            corrupt_file_kept=kept[0] if kept else None,
            kept_files=tuple(kept),
            problems=(problem,),
            repaired=repaired,
        )
    return dataclasses.replace(
        prior,
        problems=(*prior.problems, problem),
        kept_files=(*prior.kept_files, *kept),
        corrupt_file_kept=prior.corrupt_file_kept or (kept[0] if kept else None),
    )
