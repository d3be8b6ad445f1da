"""The project store: durable, crash-safe project folders (see ``project.py`` for the layout).

Public API::

    slugify(name) -> str
    create_project(root, name, *, profile="demo", settings=None) -> ProjectStore
    open_project(path, *, read_only=False) -> ProjectStore
    list_projects(root) -> list[ProjectInfo]
    ProjectStore: put / put_many / get / all / find / count / delete, add_image / import_image /
        import_images / image_path / load_image, save_settings / get_meta / set_meta,
        compact / close (context manager); .recovery is a RecoveryReport or None

Images: ``save_png``, ``read_provenance``, ``load_image_checked`` (``images.py``).
Exports: ``annotations_jsonl``, ``pair_html`` (``export.py``).
Sample project: ``build_sample(root, force=False)`` (``sample.py``).
"""

from __future__ import annotations

from .db import RecoveryReport
from .export import annotations_jsonl, pair_html
from .images import load_image_checked, read_provenance, save_png
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .project import (
    ImportResult,
    ProjectInfo,
    ProjectStore,
    create_project,
    list_projects,
    open_project,
)
from .sample import build_sample
from .slug import slugify

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ImportResult",
    "ProjectInfo",
    "ProjectStore",
    "RecoveryReport",
    "annotations_jsonl",
    "build_sample",
    "create_project",
    "list_projects",
    "load_image_checked",
    "open_project",
    "pair_html",
    "read_provenance",
    "save_png",
    "slugify",
]
