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
    env = os.environ.get("TDRI_RESOURCES")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)  # PyInstaller bundle
    if frozen:
        return Path(frozen) / "resources"
    return _REPO_ROOT / "resources"


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
