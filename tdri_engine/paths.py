"""Where things live on disk: resources shipped with the app, the user's data folder, projects.

Override with environment variables (useful for tests, kiosks and packaged installs):
``TDRI_HOME`` (user data: demo models, profiles, settings), ``TDRI_PROJECTS`` (projects folder),
``TDRI_RESOURCES`` (resources folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def resources_dir() -> Path:
    """The resources folder: ``TDRI_RESOURCES``, else the frozen app's, else the source tree's,
    else the installed package ``tdri_resources`` (a wheel maps ``resources/`` to it)."""
    env = os.environ.get("TDRI_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)  # PyInstaller bundle
    if frozen:
        return Path(frozen) / "resources"
    source = _REPO_ROOT / "resources"
    if source.is_dir():  # a checkout, or an editable install of one
        return source
    return _installed_resources() or source


def _installed_resources() -> Path | None:
    """``tdri_resources`` as a folder on disk (a wheel installs it as plain files).

    It is a data-only package (no ``__init__.py``, so ``resources/`` holds nothing but the
    product's files): found through the import system's spec, whose search location is the folder.
    """
    from importlib.util import find_spec

    spec = find_spec("tdri_resources")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    folder = Path(locations[0]) if locations else None
    return folder if folder is not None and folder.is_dir() else None


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def tdri_home() -> Path:
    env = os.environ.get("TDRI_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tdri-studio"


def demo_models_dir() -> Path:
    return tdri_home() / "models" / "demo"


def profiles_dir() -> Path:
    return tdri_home() / "profiles"


def default_projects_dir() -> Path:
    env = os.environ.get("TDRI_PROJECTS")
    if env:
        return Path(env)
    # Running from a source checkout: the repository's projects/ folder (holds the sample).
    if (_REPO_ROOT / "projects").is_dir() and (_REPO_ROOT / "pyproject.toml").exists():
        return _REPO_ROOT / "projects"
    return Path.home() / "TDRI Projects"
