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


# -- the Atelier's committed weights ---------------------------------------------------------


@pytest.fixture
def committed_atelier(tmp_path: Path, demo_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed-weights folder holding a generator (the tiny one: the install copies any SD-1.x
    folder the same way), as TDRI_ATELIER_WEIGHTS points the installer at it."""
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(demo_models / "generator", weights / "generator")
    monkeypatch.setenv("TDRI_ATELIER_WEIGHTS", str(weights))
    return weights


def test_the_atelier_install_copies_the_committed_weights_verified_and_only_once(
    committed_atelier: Path, demo_home: Path
):
    from tdri_engine.demo import atelier

    roles = atelier.install_atelier_models()
    root = demo_home / "models" / "atelier"
    assert roles["generator"] == root / "generator" and roles["controlnet"] == root / "controlnet"
    assert roles["pose"] == demo_home / "models" / "demo" / "pose"  # no trained pose model: the demo's
    for file in ("unet/diffusion_pytorch_model.safetensors", "model_index.json"):
        assert (root / "generator" / file).read_bytes() == (
            committed_atelier / "generator" / file
        ).read_bytes()
    marker = json.loads((root / atelier.MARKER).read_text())
    assert marker["roles"]["generator"]["files"] == atelier.manifest(committed_atelier / "generator")
    profile = load_profile("atelier")
    assert profile.spec("generator").source == str(root / "generator") and not profile.is_demo
    assert all(s.found for s in check_profile(profile))
    assert atelier.atelier_models_ready()
    before = (root / "generator").stat().st_ino
    atelier.ensure_atelier_models()  # everything there: nothing copied again
    assert (root / "generator").stat().st_ino == before
    # a damaged copy is seen and replaced
    (root / "generator" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 8)
    assert not atelier.atelier_models_ready()
    atelier.ensure_atelier_models()
    assert atelier.manifest(root / "generator") == atelier.manifest(committed_atelier / "generator")
    # an upgrade that ships retrained weights of the same architecture (same file sizes, other
    # numbers) is seen too, and the user's copy is replaced by the new weights
    unet = committed_atelier / "generator" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(unet.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: the same size, a valid header
    unet.write_bytes(bytes(data))
    assert not atelier.atelier_models_ready()
    atelier.ensure_atelier_models()
    assert (root / "generator" / "unet" / unet.name).read_bytes() == bytes(data)
    assert atelier.atelier_models_ready()


def test_a_git_lfs_pointer_in_the_committed_weights_is_refused_with_a_message(
    committed_atelier: Path, demo_home: Path
):
    from tdri_engine.demo import atelier
    from tdri_engine.errors import ModelBroken

    weights = committed_atelier / "generator" / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(ModelBroken) as err:
        atelier.install_atelier_models()
    assert "Git LFS pointer" in err.value.message and "git lfs pull" in err.value.message
    assert not (demo_home / "models" / "atelier" / "generator").exists()  # nothing half installed


def test_without_committed_weights_the_atelier_profile_reads_the_demo_models(
    tmp_path: Path, demo_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TDRI_ATELIER_WEIGHTS", str(tmp_path / "nothing"))
    profile = load_profile("atelier")
    assert {s.source for s in profile.roles.values()} == {
        str(demo_home / "models" / "demo" / r) for r in profile.roles
    }
    assert all(s.found for s in check_profile(profile))


def test_a_packaged_builds_first_start_installs_the_atelier_models(
    committed_atelier: Path, demo_home: Path, tmp_path: Path
):
    from tdri_engine.demo import atelier
    from tdri_engine.packaging.bundled import first_start

    notes = first_start(tmp_path / "projects")
    assert any("Atelier models installed" in n for n in notes), notes
    assert atelier.atelier_models_ready()
    assert first_start(tmp_path / "projects") == []  # the next start finds them there
