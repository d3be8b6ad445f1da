"""The same refinement loop on real weights: SD-1.5 + OpenPose ControlNet + Qwen2-VL + CLIP.

Skipped unless those models resolve offline on this machine (a folder under
<TDRI_HOME>/models, a user profile, or the Hugging Face cache): `tdri models check` says
what is missing. Run with ``pytest -m real_weights`` on a workstation that has them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tdri_engine.api import Answer, Feedback, Skip
from tdri_engine.models import check_profile, load_profile
from tdri_engine.records import Dialogue, DialogueTurn
from tdri_engine.settings import EngineSettings
from tdri_engine.store import create_project

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]

NEEDED = ("generator", "controlnet", "pose", "vlm", "clip")


def _real_profile():
    """The sd15 profile as this machine resolves it, read from the user's real TDRI_HOME."""
    profile = load_profile(os.environ.get("TDRI_REAL_PROFILE", "sd15"))
    statuses = {s.role: s for s in check_profile(profile)}
    missing = [r for r in NEEDED if not statuses[r].found]
    if missing:
        pytest.skip(f"real weights not found for: {', '.join(missing)} (see `tdri models check`)")
    # pin the resolved folders: the autouse tdri_home fixture points TDRI_HOME elsewhere
    roles = {r: dataclasses.replace(s, source=statuses[r].path or s.source) for r, s in profile.roles.items()}
    return dataclasses.replace(profile, roles=roles)


@pytest.fixture(scope="module")
def real_profile():
    return _real_profile()


def test_the_loop_on_sd15_openpose_qwen2vl_and_clip(real_profile, projects_root: Path):
    import torch

    from tdri_engine.session import Engine

    cuda = torch.cuda.is_available()
    settings = EngineSettings(
        steps=20 if cuda else 8, width=512 if cuda else 256, height=512 if cuda else 256
    )
    engine = Engine(real_profile, settings)
    store = create_project(projects_root, "Real weights", profile=real_profile.name, settings=settings)
    cond_inputs = []
    controlnet = engine.registry.get("controlnet")
    controlnet.register_forward_pre_hook(
        lambda m, args, kwargs: cond_inputs.append(kwargs["controlnet_cond"].shape), with_kwargs=True
    )
    session = engine.open_session(store)
    r0 = session.start(
        "a full-body photo of a woman standing in a red dress, plain studio background", seed=1
    )
    assert r0.image.width == settings.width
    replies = [Answer(r0.question.aspect, "silk") if r0.question else Skip(), Feedback("longer sleeves")]
    results = [r0] + [session.refine(reply) for reply in replies]
    turns = store.find(DialogueTurn, lambda d: d["dialogue_id"] == session.dialogue_id)
    assert sorted(t.round for t in turns) == [0, 1, 2]
    if r0.pose_found:  # a real pose estimator on a real person: the pose conditions rounds 1 and 2
        assert store.get(Dialogue, session.dialogue_id).pose_file
        assert cond_inputs and all(shape[-2:] == (settings.height, settings.width) for shape in cond_inputs)
    clip = engine.registry.get("clip")
    score = clip.image_text(store.load_image(results[-1].image), [results[-1].prompt])[0]
    assert 0.15 < score <= 1.0  # a real image of the prompt (paper's T2I CLIP is about 0.3)
    store.close()
