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

    from tdri_engine.llm import load_llm
    from tdri_engine.metrics import load_blip, load_clip
    from tdri_engine.models import DEMO_KINDS, RoleSpec
    from tdri_engine.reflector import load_captioner

    cpu, fp32 = torch.device("cpu"), torch.float32
    loaders = {"vlm": load_captioner, "clip": load_clip, "blip": load_blip, "llm": load_llm}
    loaded = {}
    for role, loader in loaders.items():
        spec = RoleSpec(role, DEMO_KINDS[role], str(language_models[role]))
        loaded[role] = loader(language_models[role], spec, cpu, fp32)
    return SimpleNamespace(**loaded)


# -- the demo profile: every role's tiny model (models, generator, pose, session, CLI tests) ----

TINY = {"steps": 4, "width": 64, "height": 64}  # small enough for 2 busy CPU cores


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory, language_models: dict[str, Path]) -> Path:
    """The demo models of every role, built once per run by ``build_demo_models`` (about 10 s).

    The language roles are the ``language_models`` fixture's folders (same builder, same seed),
    linked in so they are not built twice; the diffusion roles are built here.
    """
    import torch

    from tdri_engine.demo import build_demo_models

    torch.set_num_threads(1)  # tiny models: a second thread only contends for the busy cores
    root = tmp_path_factory.mktemp("demo_models")
    for role, folder in language_models.items():
        (root / role).symlink_to(folder, target_is_directory=True)
    build_demo_models(root)
    return root


@pytest.fixture(scope="session")
def demo_profile(demo_models: Path):
    """The built-in demo profile, pointed at the models built once for this run."""
    import dataclasses

    from tdri_engine.models import demo_profile as builtin_demo

    base = builtin_demo()
    roles = {r: dataclasses.replace(s, source=str(demo_models / r)) for r, s in base.roles.items()}
    return dataclasses.replace(base, roles=roles)


@pytest.fixture(scope="session")
def demo_engine(demo_profile):
    """One Engine on the demo profile for the whole run: its models load once."""
    from tdri_engine.session import Engine
    from tdri_engine.settings import EngineSettings

    return Engine(demo_profile, EngineSettings(**TINY))


@pytest.fixture
def demo_home(tdri_home: Path, demo_models: Path) -> Path:
    """A TDRI_HOME where `tdri models demo` has already run (its models/demo is the built one)."""
    (tdri_home / "models").mkdir(exist_ok=True)
    (tdri_home / "models" / "demo").symlink_to(demo_models, target_is_directory=True)
    return tdri_home


@pytest.fixture
def tiny_project(projects_root: Path):
    """A new project whose settings suit the tiny models (64 px, 4 steps); closed after the test.

    Attend-and-Excite is off: it regenerates every round on the demo (its random CLIP finds
    every image far from its prompt), doubling the cost; the tests that want it turn it on.
    """
    from tdri_engine.settings import EngineSettings

    store = create_project(
        projects_root, "Dialogue", settings=EngineSettings(**TINY, use_attend_excite=False)
    )
    yield store
    store.close()


@pytest.fixture
def standing_person() -> list[tuple[float, float, float]]:
    """Keypoints of a person standing mid-frame: OpenPose COCO-18 order, normalised (x, y, conf)."""
    return [
        (0.50, 0.15, 0.9),  # nose
        (0.50, 0.25, 0.9),  # neck
        (0.40, 0.26, 0.9),
        (0.36, 0.42, 0.9),
        (0.34, 0.56, 0.9),  # right arm
        (0.60, 0.26, 0.9),
        (0.64, 0.42, 0.9),
        (0.66, 0.56, 0.9),  # left arm
        (0.45, 0.55, 0.9),
        (0.45, 0.74, 0.9),
        (0.45, 0.92, 0.9),  # right leg
        (0.55, 0.55, 0.9),
        (0.55, 0.74, 0.9),
        (0.55, 0.92, 0.9),  # left leg
        (0.48, 0.13, 0.9),
        (0.52, 0.13, 0.9),
        (0.46, 0.14, 0.9),
        (0.54, 0.14, 0.9),  # eyes, ears
    ]


# -- adaptive optimization (DPO, adapters, Attend-and-Excite) -----------------------------------


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny SD-1.x pipeline folder alone (64 px images, cross-attention at 16x16)."""
    import torch

    from tdri_engine.demo.diffusion import build_sd_pipeline

    torch.set_num_threads(1)
    return build_sd_pipeline(tmp_path_factory.mktemp("tiny_sd") / "generator")


@pytest.fixture
def tiny_sd(tiny_sd_dir: Path):
    """A fresh copy of that pipeline loaded from disk (training and adapters change it)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe
