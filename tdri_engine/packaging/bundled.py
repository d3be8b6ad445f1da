"""The demo models a packaged build carries, and their copy into the user's data folder.

A bundle is read-only (installed under a prefix, maybe owned by root, maybe signed): nothing may
be written inside it. The build (``build.spec``) puts the demo models built by
``tdri models demo`` under ``<bundle>/demo_models``; on first start the app copies them to
``<TDRI_HOME>/models/demo`` (about 130 MB, a second or two), where the engine builds and loads
them in any other install. Copying rather than pointing the demo profile into the bundle keeps one
code path for every install, and the user's folder may be rebuilt (``tdri models demo --force``)
without touching the bundle. Real weights are never bundled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from .. import paths

BUNDLED_DEMO = "demo_models"  # folder name inside the bundle (build.spec writes it)


def bundled_demo_dir() -> Path | None:
    """``<bundle>/demo_models`` when running from a packaged build that carries them, else None.

    ``TDRI_BUNDLED_DEMO`` names another folder (tests, and installs that keep them elsewhere).
    """
    env = os.environ.get("TDRI_BUNDLED_DEMO")
    if env:
        folder = Path(env)
    else:
        frozen = getattr(sys, "_MEIPASS", None)
        if not frozen:
            return None
        folder = Path(frozen) / BUNDLED_DEMO
    return folder if folder.is_dir() else None


def seed_demo_models(dest: Path | None = None) -> Path | None:
    """Copy the bundled demo models into ``dest`` (default ``<TDRI_HOME>/models/demo``) when the
    user has no complete set of the current version; returns the folder copied from, or None.

    The copy goes to a sibling temporary folder renamed into place, so an interrupted first start
    leaves no half copy; an existing incomplete folder is replaced. A bundle whose models are of
    another demo version than this engine's is not used (the engine then builds them).
    """
    from ..demo import DEMO_VERSION, MARKER, demo_models_ready

    source = bundled_demo_dir()
    root = Path(dest) if dest is not None else paths.demo_models_dir()
    if source is None or demo_models_ready(root) or not demo_models_ready(source):
        return None
    try:
        marker = json.loads((source / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("version") != DEMO_VERSION:
        return None
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.{secrets.token_hex(4)}")
    try:
        shutil.copytree(source, tmp, copy_function=shutil.copyfile)  # files: no read-only modes
        for folder, _dirs, _files in os.walk(tmp):  # folders: copytree copies their modes
            os.chmod(folder, 0o755)
        for role in marker.get("roles", {}).values():  # the marker names where each role now lives
            role["path"] = str(root / Path(str(role.get("path", ""))).name)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        if root.is_symlink() or root.is_file():
            root.unlink()
        elif root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return source


def seed_atelier_models() -> list[str]:
    """Install the Atelier's trained models (the bundle carries them in ``atelier_weights``, see
    ``demo.atelier.committed_weights_dir``) into ``<TDRI_HOME>/models/atelier`` when the user's
    copy is missing or stale; returns notes for the log. A failure is a note: the engine
    installs them itself when the Atelier profile first loads."""
    from ..demo.atelier import atelier_models_dir, atelier_models_ready, install_atelier_models
    from ..errors import TdriError

    try:
        if atelier_models_ready():
            return []
        install_atelier_models(demo=False)  # the demo roles were seeded (or are built on first use)
    except (TdriError, OSError, ImportError) as exc:
        return [f"Atelier models not installed: {getattr(exc, 'message', exc)}"]
    return [f"Atelier models installed into {atelier_models_dir()}"]


FIRST_START_MARKER = "first-start.json"  # in the user's data folder, written once


def first_start(projects_dir: Path | None = None) -> list[str]:
    """What a packaged build does before its window opens; returns notes for the log.

    Every start: copy the bundled demo models when the user's copy is missing
    (:func:`seed_demo_models`), and install the Atelier's trained models
    (:func:`seed_atelier_models`). The first start on an account (no ``<TDRI_HOME>/first-start.json``)
    also builds the sample project into the projects folder when it has none, so a designer with
    no weights opens a project with images, tags and a dialogue offline (the source checkout has
    it in ``projects/sample``). A failure here is a note, never a refusal to start: the studio
    then builds the demo models itself and opens a new project.
    """
    from ..errors import TdriError

    notes: list[str] = []
    try:
        copied = seed_demo_models()
        if copied is not None:
            notes.append(f"demo models copied from {copied} to {paths.demo_models_dir()}")
    except (TdriError, OSError) as exc:
        notes.append(f"demo models not copied: {getattr(exc, 'message', exc)}")
    notes.extend(seed_atelier_models())
    marker = paths.tdri_home() / FIRST_START_MARKER
    if marker.exists():
        return notes
    root = Path(projects_dir) if projects_dir is not None else paths.default_projects_dir()
    try:
        if not (root / "sample").exists():
            from ..store.sample import build_sample

            notes.append(f"sample project built at {build_sample(root)}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"projects": str(root), "notes": notes}, indent=2), encoding="utf-8")
    except (TdriError, OSError) as exc:
        notes.append(f"sample project not built: {getattr(exc, 'message', exc)}")
    return notes
