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


# -- tiny language models (D2P / FR / metrics) -------------------------------------------------


@pytest.fixture(scope="session")
def language_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's tiny VLM, CLIP, BLIP and chat LM, built once per test run (about 10 s)."""
    from tdri_engine.demo.language import build_language_models

    return build_language_models(tmp_path_factory.mktemp("language_models"))


@pytest.fixture(scope="session")
def tiny_language(language_models: dict[str, Path]):
    """Those models loaded back through the real loaders (as the registry would), on the CPU."""
    from types import SimpleNamespace

    import torch

    from tdri_engine.metrics import load_blip, load_clip
    from tdri_engine.models import DEMO_KINDS, RoleSpec
    from tdri_engine.reflector import load_captioner
    from tdri_engine.summarizer import load_llm

    cpu, fp32 = torch.device("cpu"), torch.float32
    loaders = {"vlm": load_captioner, "clip": load_clip, "blip": load_blip, "llm": load_llm}
    loaded = {}
    for role, loader in loaders.items():
        spec = RoleSpec(role, DEMO_KINDS[role], str(language_models[role]))
        loaded[role] = loader(language_models[role], spec, cpu, fp32)
    return SimpleNamespace(**loaded)
