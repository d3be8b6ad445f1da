"""The Atelier's VLM and BLIP: each trains for a few steps through the recipe, resumes, exports
its real format that the engine's own loaders read; the measure of a caption reads the world's
words; the committed models describe and match held-out renderings they never saw."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch

from tdri_engine.atelier import blip_train, data, vlm_train
from tdri_engine.atelier.recipe import RunConfig, train_role
from tdri_engine.atelier.roles import make_role
from tdri_engine.atelier.splits import sample
from tdri_engine.atelier.world import FIELDS, Record, render
from tdri_engine.models import RoleSpec
from tdri_engine.settings import ASPECTS


class Killed(Exception):
    """Stands for SIGKILL: nothing after it runs, only checkpoints on disk survive."""


@pytest.fixture(scope="module")
def tiny_data() -> tuple[data.DataSet, data.DataSet]:
    return data.build("train", 24, seed=0), data.build("heldout", 8, seed=0)


def _kill_at(step: int):
    def on_step(done: int, loss: float) -> None:
        if done == step:
            raise Killed

    return on_step


RECORD = Record(
    garment="dress",
    color="red",
    length="short",
    fit="loose",
    sleeves="long sleeves",
    style="flat lay",
    background="beach",
    perspective="front view",
    pattern="stripes",
    accessory="belt",
)


# --------------------------------------------------------------------------------------------
# the measure
# --------------------------------------------------------------------------------------------


def test_a_caption_is_right_only_when_it_names_exactly_the_true_value():
    right = vlm_train.caption_right
    assert right("short, loose, long sleeves", RECORD, "Size") == {
        "length": True,
        "fit": True,
        "sleeves": True,
    }
    # "long" of "long sleeves" is not a length, and the length is not named at all
    assert right("loose, long sleeves", RECORD, "Size")["length"] is False
    # naming every colour is not naming the right one
    assert right("red and blue", RECORD, "Color") == {"color": False}
    assert right("a t-shirt", RECORD, "Content") == {"garment": False}
    assert right("a dress", RECORD, "Content") == {"garment": True}
    assert right("stripes, a belt", RECORD, "Others") == {"pattern": True, "accessory": True}
    skirt = RECORD.replace(garment="skirt")  # no sleeves: not asked
    assert right("short, loose", skirt, "Size") == {"length": True, "fit": True}
    # every canonical answer the VLM is taught is right for its own record, on every aspect
    for s in sample("heldout", 30, seed=7):
        for aspect in ASPECTS:
            assert all(right(vlm_train.answer(s.record, aspect), s.record, aspect).values()), (
                aspect,
                s.record,
            )


def test_a_blip_negative_differs_from_its_caption_in_one_field_of_the_aspect():
    rng = random.Random(0)
    for s in sample("train", 40, seed=3):
        for kind in ("full", *ASPECTS):
            true, negative, field = blip_train.pair(s.record, kind, rng.randrange(1000), rng)
            assert true != negative, (kind, true)
            if kind != "full":
                assert field in {f for f in FIELDS if f in blip_train.ASPECT_FIELDS[kind]}


# --------------------------------------------------------------------------------------------
# the recipe: a few steps, resumable, the real formats
# --------------------------------------------------------------------------------------------


def test_the_vlm_trains_resumes_and_answers_through_the_engine_captioner(tiny_data, tmp_path, monkeypatch):
    from tdri_engine.reflector import load_captioner

    monkeypatch.setattr(vlm_train, "MAX_NEW_TOKENS", 2)  # an untrained model never stops: keep it short

    train, heldout = tiny_data
    config = RunConfig(steps=3, seed=0, lr=1e-3, checkpoint_every=1)

    def role() -> vlm_train.VlmRole:  # step 0 trains the vision tower alone, steps 1-2 the captions
        return vlm_train.VlmRole(train, heldout, seed=0, batch=4, steps=3, vision_steps=1, n_eval=1)

    whole = train_role(role(), config, tmp_path / "a", stream=io.StringIO())
    with pytest.raises(Killed):
        train_role(role(), config, tmp_path / "b", on_step=_kill_at(3), stream=io.StringIO())
    resumed = train_role(role(), config, tmp_path / "b", stream=io.StringIO())
    assert resumed.resumed_from == 2 and resumed.losses == pytest.approx(whole.losses[2:], rel=1e-4)
    assert set(whole.figures["aspects"]) == set(ASPECTS) and whole.figures["vision_steps"] == 1
    card = json.loads((tmp_path / "b/vlm/card.json").read_text())
    assert card["data_hash"] == train.digest() and card["steps"] == 3

    folder = tmp_path / "b/vlm/model"
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").stat().st_size < 6_000_000
    captioner = load_captioner(
        folder, RoleSpec("vlm", "image-text-to-text", str(folder)), torch.device("cpu"), torch.float32
    )
    instructions = [vlm_train.instructions()[a] for a in ASPECTS]
    answers = captioner.caption_many(render(heldout.samples[0].record, 0, 64), instructions, max_new_tokens=3)
    assert len(answers) == 7 and all(isinstance(a, str) for a in answers)
    # the recipe places the vision phase in the run's steps
    assert make_role("vlm", train, heldout, 0, steps=10).vision_steps == int(vlm_train.VISION_SHARE * 10)


def test_the_blip_trains_and_scores_through_the_engine_blip_loader(tiny_data, tmp_path):
    from tdri_engine.metrics import load_blip

    train, heldout = tiny_data
    config = RunConfig(steps=2, seed=0, lr=1e-3)
    result = train_role(
        blip_train.BlipRole(train, heldout, batch=4, n_eval=4), config, tmp_path, stream=io.StringIO()
    )
    assert {"full", "aspect"} <= set(result.figures) and result.figures["n_heldout"] == 4
    folder = tmp_path / "blip/model"
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").stat().st_size < 4_000_000
    scorer = load_blip(folder, RoleSpec("blip", "blip-itm", str(folder)), torch.device("cpu"), torch.float32)
    picture = render(heldout.samples[0].record, 0, 64)
    assert 0.0 <= scorer.match_probability(picture, "a red dress, flat lay, on a beach") <= 1.0
    assert scorer.image_image(picture, picture) == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------------------------
# the committed models
# --------------------------------------------------------------------------------------------

# Per aspect, the lowest share of right captions over the 5 draws of 16 held-out pictures below,
# measured with the committed VLM (world v3, 2400 steps): Background 1.0, Perspective 0.75,
# Color 0.625, Style 0.5, Others 0.5, Size 0.3125 (chance 1/6, 1/5, 1/12, 1/4, 1/16, about 1/15);
# each floor is 2 pictures of 16 below. Content (0.1875, chance 0.125) is not asserted: the
# committed VLM reads the garment poorly (docs/atelier/vlm.json).
VLM_FLOOR = {"Background": 0.875, "Perspective": 0.625, "Color": 0.5, "Style": 0.375, "Others": 0.375, "Size": 0.1875}


def test_the_committed_vlm_names_what_unseen_heldout_renderings_show():
    captioner = vlm_train.load_bundled()
    assert (vlm_train.BUNDLED / "model.safetensors").stat().st_size < 6_000_000
    instructions = [vlm_train.instructions()[a] for a in ASPECTS]
    for data_seed in range(1, 6):  # not seed 0, on which the figures in docs/atelier were made
        samples = sample("heldout", 16, seed=data_seed)
        hits: dict[str, list[bool]] = {a: [] for a in ASPECTS}
        for s in samples:
            answers = captioner.caption_many(render(s.record, s.seed, 64), instructions)
            for aspect, text in zip(ASPECTS, answers, strict=True):
                hits[aspect].append(all(vlm_train.caption_right(text, s.record, aspect).values()))
        for aspect, floor in VLM_FLOOR.items():
            assert np.mean(hits[aspect]) >= floor, (data_seed, aspect, np.mean(hits[aspect]))


# The committed BLIP (docs/atelier/vlm.json) tells a held-out picture's full caption from the same
# caption with another background in every pair of the 5 draws of 24 below (measured 1.0 on each);
# the floor is 0.9. Its other fields are read little above chance (colour 0.42-0.75 over the same
# draws, 0.58 over all fields): not asserted, reported.
BLIP_BACKGROUND_FLOOR = 0.9


def test_the_committed_blip_matches_the_true_background_of_unseen_heldout_renderings():
    from tdri_engine.atelier.captions import full_caption

    scorer = blip_train.load_bundled()
    assert (blip_train.BUNDLED / "model.safetensors").stat().st_size < 4_000_000
    for data_seed in range(1, 6):  # not seed 0, on which the figures in docs/atelier were made
        rng = random.Random(data_seed)
        wins = []
        for s in sample("heldout", 24, seed=data_seed):
            wording = rng.randrange(1000)
            other, _ = blip_train.changed(s.record, ("background",), rng)
            picture = render(s.record, s.seed, 64)
            true = scorer.match_probability(picture, full_caption(s.record, wording))
            wins.append(true > scorer.match_probability(picture, full_caption(other, wording)))
        assert np.mean(wins) >= BLIP_BACKGROUND_FLOOR, (data_seed, np.mean(wins))
