"""Pose: OpenPose loading without unpickling, the pose map, and the smoothing G_sigma."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.errors import BadInput, ModelBroken
from tdri_engine.models import ModelRegistry, RoleSpec
from tdri_engine.pose import (
    N_KEYPOINTS,
    PoseExtractor,
    PoseResult,
    draw_pose_map,
    load_openpose,
    smooth_pose_map,
)
from tdri_engine.settings import EngineSettings


def _spread(image: Image.Image) -> tuple[int, float]:
    """(pixels lit, intensity-weighted variance around the centre of mass) of a map."""
    a = np.asarray(image, dtype=np.float64).sum(axis=2)
    ys, xs = np.indices(a.shape)
    mass = a.sum()
    cy, cx = (a * ys).sum() / mass, (a * xs).sum() / mass
    return int((a > 0).sum()), float((a * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum() / mass)


def test_smoothing_widens_the_pose_map_as_sigma_grows_and_keeps_its_mass(standing_person):
    pose_map = draw_pose_map([standing_person], 128, 128)
    mass = np.asarray(pose_map, dtype=np.int64).sum(axis=(0, 1))
    assert mass.sum() > 0
    lit, spread = _spread(pose_map)
    for sigma in (1.0, 3.0, 6.0):
        smoothed = smooth_pose_map(pose_map, sigma)
        assert smoothed.size == pose_map.size
        # the same total intensity per channel (nothing clipped: blurring lowers the peaks)
        assert (np.asarray(smoothed, dtype=np.int64).sum(axis=(0, 1)) == mass).all()
        new_lit, new_spread = _spread(smoothed)
        assert new_lit > lit and new_spread > spread
        lit, spread = new_lit, new_spread
    assert smooth_pose_map(pose_map, 0).tobytes() == pose_map.tobytes()
    with pytest.raises(BadInput):
        smooth_pose_map(pose_map, -1)


def test_injected_keypoints_give_a_pose_map_and_its_smoothed_version(standing_person):
    extractor = PoseExtractor(None, EngineSettings(pose_sigma=2.0), detector=lambda image: [standing_person])
    result = extractor.extract(Image.new("RGB", (96, 128), "white"))
    assert result.found
    assert result.keypoints == [standing_person]
    assert result.pose_map.size == (96, 128) and result.smoothed.size == (96, 128)
    assert np.asarray(result.pose_map).any()
    assert "1 person" in result.message and "18 of 18" in result.message


def test_no_person_is_said_plainly_and_gives_no_map():
    extractor = PoseExtractor(None, EngineSettings(), detector=lambda image: [])
    result = extractor.extract(Image.new("RGB", (64, 64)))
    assert result == PoseResult(found=False, message=result.message)
    assert "No person found" in result.message and "without a pose constraint" in result.message


def test_a_detector_with_the_wrong_layout_is_refused():
    extractor = PoseExtractor(None, EngineSettings(), detector=lambda image: [[(0.5, 0.5, 1.0)] * 5])
    with pytest.raises(BadInput, match=f"{N_KEYPOINTS} are expected"):
        extractor.extract(Image.new("RGB", (64, 64)))


def test_the_openpose_model_loads_from_safetensors_and_runs_on_random_weights(demo_profile):
    registry = ModelRegistry(demo_profile, device="cpu")
    extractor = PoseExtractor(registry, EngineSettings())
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    result = extractor.extract(image)
    assert isinstance(result, PoseResult)
    # random weights find nobody: the session is told so and carries on without the pose
    assert result.found is False and "No person found" in result.message
    body = registry.get("pose")
    people = body(image)
    assert isinstance(people, list)


def test_the_original_pth_checkpoint_is_read_as_plain_tensors(demo_models: Path, tmp_path: Path):
    from safetensors.torch import load_file

    # the Annotators file stores layers without their block prefix ("conv1_1.weight")
    state = load_file(str(demo_models / "pose" / "body_pose_model.safetensors"))
    flat = {k.split(".", 1)[1]: v.float() for k, v in state.items()}
    folder = tmp_path / "Annotators"
    folder.mkdir()
    torch.save(flat, folder / "body_pose_model.pth")
    spec = RoleSpec("pose", "openpose", str(folder))
    body = load_openpose(folder, spec, torch.device("cpu"), torch.float32)
    loaded = body._body.model.state_dict()
    assert torch.equal(loaded["model0.conv1_1.weight"], flat["conv1_1.weight"])


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_a_pickle_that_runs_code_is_refused_not_executed(tmp_path: Path):
    _Payload.marker = str(tmp_path / "pwned")
    folder = tmp_path / "evil"
    folder.mkdir()
    with open(folder / "body_pose_model.pth", "wb") as fh:
        pickle.dump({"conv1_1.weight": _Payload()}, fh, protocol=2)
    with pytest.raises(ModelBroken, match="not a plain tensor checkpoint"):
        load_openpose(folder, RoleSpec("pose", "openpose", str(folder)), torch.device("cpu"), torch.float32)
    assert not (tmp_path / "pwned").exists()
