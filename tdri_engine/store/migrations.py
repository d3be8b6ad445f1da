"""Schema migrations, one function per version step, run on the raw documents.

A project records its ``schema_version`` in ``project.json`` (and the database stamps its own
in ``db.json``'s ``_tdri`` table). Opening an older project copies its files to
``backups/schema-v<N>-<time>/`` and then runs every step from its version up to
``SCHEMA_VERSION``; a project from a newer build is refused untouched.

To add version 3: bump ``SCHEMA_VERSION``, write ``_v2_to_v3(project, tables)`` below and
register it in ``MIGRATIONS[2]``. A step mutates the dicts in place and returns notes for people.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 2

Tables = dict[str, dict[int, dict[str, Any]]]
Migration = Callable[[dict[str, Any], Tables], list[str]]


def _split_tags(value: str) -> list[str]:
    out: list[str] = []
    for tag in value.split(","):
        tag = tag.strip()
        if tag and tag not in out:
            out.append(tag)
    return out


def _v1_to_v2(project: dict[str, Any], tables: Tables) -> list[str]:
    """Version 1 (TDRI Studio 0.0.x, plain TinyDB files) to version 2.

    - project.json: ``model_profile`` became ``profile``; the top-level ``last_task`` moved
      into ``meta.last_task_id``.
    - tasks: ``image_a``/``image_b`` became the list ``images`` (single-image tasks allowed).
    - annotations: tags per image were one comma-separated string, now a list of tags.
    - images: ``adapter`` became ``adapter_version``.
    """
    notes: list[str] = []
    if "model_profile" in project:
        project["profile"] = project.pop("model_profile")
    meta = project.setdefault("meta", {})
    if "last_task" in project:
        meta["last_task_id"] = project.pop("last_task")

    n = 0
    for doc in tables.get("tasks", {}).values():
        if "images" not in doc and ("image_a" in doc or "image_b" in doc):
            doc["images"] = [doc[k] for k in ("image_a", "image_b") if doc.get(k)]
            doc.pop("image_a", None)
            doc.pop("image_b", None)
            n += 1
    if n:
        notes.append(f"{n} tasks: image_a/image_b became an image list")

    n = 0
    for doc in tables.get("annotations", {}).values():
        tags = doc.get("tags")
        if isinstance(tags, dict):
            for image_id, value in list(tags.items()):
                if isinstance(value, str):
                    tags[image_id] = _split_tags(value)
                    n += 1
    if n:
        notes.append(f"{n} tag lists: comma-separated text became lists")

    n = 0
    for doc in tables.get("images", {}).values():
        if "adapter" in doc:
            adapter = doc.pop("adapter")
            doc.setdefault("adapter_version", adapter)
            n += 1
    if n:
        notes.append(f"{n} images: 'adapter' renamed to 'adapter_version'")
    return notes


MIGRATIONS: dict[int, Migration] = {
    1: _v1_to_v2,  # key: the version migrated from
}

assert all(v in MIGRATIONS for v in range(1, SCHEMA_VERSION)), "a schema step has no migration"


def migrate(project: dict[str, Any], tables: Tables, from_version: int) -> list[str]:
    """Run every step from ``from_version`` to ``SCHEMA_VERSION`` in place; return notes."""
    notes: list[str] = []
    for version in range(from_version, SCHEMA_VERSION):
        step_notes = MIGRATIONS[version](project, tables)
        notes += [f"v{version}->v{version + 1}: {n}" for n in step_notes]
    project["schema_version"] = SCHEMA_VERSION
    return notes
