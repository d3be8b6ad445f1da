"""Shared engine fixtures. Keep this small: fixtures used by one file belong in that file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdri_engine.store import ProjectStore, create_project


@pytest.fixture
def projects_root(tmp_path: Path) -> Path:
    """An empty projects folder."""
    root = tmp_path / "projects"
    root.mkdir()
    return root


@pytest.fixture
def project(projects_root: Path) -> ProjectStore:
    """A new, empty project open for writing; closed after the test."""
    store = create_project(projects_root, "Test project")
    yield store
    store.close()
