"""Test-wide setup: no network, Qt offscreen, and a throwaway user folder for every test."""

from __future__ import annotations

import os

import pytest

# Set before any test module imports huggingface_hub / transformers (they read these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The tests run tiny models: on a small shared machine torch's thread pool costs far more than
# it gives (about 100x slower per tiny call when two processes fight over two cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def tdri_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point TDRI_HOME (and the default projects folder) at temporary folders.

    Tests never read or write the real user folder or the repository's projects/.
    """
    home = tmp_path_factory.mktemp("tdri_home")
    monkeypatch.setenv("TDRI_HOME", str(home))
    monkeypatch.setenv("TDRI_PROJECTS", str(home / "projects"))
    return home
