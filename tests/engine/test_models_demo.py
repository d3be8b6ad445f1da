"""Building the demo models: deterministic, atomic per role, and only what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdri_engine import demo
from tdri_engine.cli import main
from tdri_engine.demo import diffusion
from tdri_engine.models import check_profile, load_profile


def _link_language_roles(dest: Path, demo_models: Path) -> None:
    """The language roles have their own tests; reuse them here to keep the build short."""
    dest.mkdir(parents=True, exist_ok=True)
    for role in demo.LANGUAGE_ROLES:
        (dest / role).symlink_to((demo_models / role).resolve(), target_is_directory=True)


def test_tdri_models_demo_builds_the_same_weights_every_time(demo_models: Path, tdri_home: Path, capsys):
    dest = tdri_home / "models" / "demo"
    _link_language_roles(dest, demo_models)
    assert main(["models", "demo"]) == 0
    assert "generator" in capsys.readouterr().out
    for file in (
        "generator/unet/diffusion_pytorch_model.safetensors",
        "generator/text_encoder/model.safetensors",
        "controlnet/diffusion_pytorch_model.safetensors",
    ):
        assert (dest / file).read_bytes() == (demo_models / file).read_bytes(), file
    marker = json.loads((dest / demo.MARKER).read_text())
    assert marker["version"] == demo.DEMO_VERSION and set(marker["roles"]) == set(demo.DIFFUSION_ROLES) | set(
        demo.LANGUAGE_ROLES
    )
    assert all(s.found for s in check_profile(load_profile("demo")))
    assert demo.demo_models_ready()
    # a second call finds everything there and builds nothing
    before = (dest / "generator").stat().st_ino
    demo.ensure_demo_models()
    assert (dest / "generator").stat().st_ino == before


def test_an_interrupted_build_leaves_no_half_written_model(
    demo_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    dest = tmp_path / "demo"
    _link_language_roles(dest, demo_models)

    def dies_half_way(out: Path, generator_dir: Path, seed: int = 0) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")  # written, then the power goes
        raise KeyboardInterrupt

    monkeypatch.setattr(diffusion, "build_pose_controlnet", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        demo.build_demo_models(dest)
    assert (dest / "generator" / "model_index.json").is_file()  # finished before: kept
    assert not (dest / "controlnet").exists()
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".")]  # no temp folders left
    assert not demo.demo_models_ready(dest)
    monkeypatch.undo()
    demo.build_demo_models(dest)  # the next run builds only what is missing
    assert demo.demo_models_ready(dest)
