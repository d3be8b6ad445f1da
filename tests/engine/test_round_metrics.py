"""The scores of each round (tdri_engine.round_metrics): measured with the profile's own CLIP and
BLIP, equal to the cosine computed by hand, stored with the round and read back without a model."""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw, ImageStat

from tdri_engine import round_metrics as rm
from tdri_engine.errors import BadInput
from tdri_engine.records import Dialogue, DialogueTurn, ImageRecord


def _picture(colour: tuple[int, int, int], shift: int = 0) -> Image.Image:
    img = Image.new("RGB", (64, 64), (235, 235, 230))
    d = ImageDraw.Draw(img)
    d.rectangle([16 + shift, 10, 46 + shift, 58], fill=colour)
    return img


def _dialogue(store, rounds: list[tuple[str, Image.Image, int | None]]) -> list[ImageRecord]:
    """Rounds as a session writes them: (prompt, image, index of the round it edited or None)."""
    dlg = Dialogue(initial_prompt=rounds[0][0])
    store.put(dlg)
    recs: list[ImageRecord] = []
    for i, (prompt, image, parent) in enumerate(rounds):
        rec = store.add_image(
            image,
            ImageRecord(
                prompt=prompt,
                round=i,
                dialogue_id=dlg.id,
                parent_id=recs[parent].id if parent is not None else None,
            ),
        )
        store.put(DialogueTurn(dialogue_id=dlg.id, round=i, prompt=prompt, image_id=rec.id))
        recs.append(rec)
    return recs


def _cos(a, b) -> float:
    return max(0.0, float((a / a.norm()) @ (b / b.norm())))


def test_round_scores_equal_the_cosines_computed_by_hand_and_are_stored_with_the_round(project, demo_engine):
    import torch

    pics = [_picture((200, 30, 40)), _picture((30, 60, 200), 4), _picture((200, 30, 40), 8)]
    prompts = ["a red dress", "a blue dress, long sleeves", "a red dress, long sleeves"]
    recs = _dialogue(
        project, [(prompts[0], pics[0], None), (prompts[1], pics[1], 0), (prompts[2], pics[2], 0)]
    )

    got = [demo_engine.measure_round(project, r.id) for r in recs]

    clip = demo_engine.registry.get("clip")
    blip = demo_engine.registry.get("blip")
    backend = clip._backend
    with torch.inference_mode():
        img = backend.image_features(pics).float()
        txt = backend.text_features(prompts).float()
    for i, m in enumerate(got):
        assert m.values["t2i_clip"] == pytest.approx(_cos(img[i], txt[i]), abs=1e-5)
        assert m.values["t2i_blip"] == pytest.approx(blip.match_probability(pics[i], prompts[i]), abs=1e-6)
        assert 0.0 <= m.values["t2i_blip"] <= 1.0
    # round 0 has no earlier image; rounds 1 and 2 both edited round 0 (parent_id), not round 1
    assert "i2i_prev_clip" not in got[0].values and got[0].previous_round is None
    for i in (1, 2):
        assert got[i].previous_round == 0 and got[i].previous_image_id == recs[0].id
        assert got[i].values["i2i_prev_clip"] == pytest.approx(_cos(img[i], img[0]), abs=1e-5)
    assert got[2].values["i2i_prev_clip"] > 0.0  # the hand check compares numbers, not two zeros
    assert got[0].random_weights and got[0].profile == "demo" and set(got[0].models) == {"clip", "blip"}

    # stored with the round: a fresh read gives the same numbers, and no model is asked again
    def no_model():
        raise AssertionError("a stored round must not load a model")

    for r, m in zip(recs, got, strict=True):
        turn = project.find(DialogueTurn, lambda d, r=r: d.get("image_id") == r.id)[0]
        assert turn.metrics["values"] == pytest.approx(m.values)
        again = rm.measure_round(rm.Scorers(clip=no_model, blip=no_model), project, r.id)
        assert again.values == pytest.approx(m.values) and again.previous_round == m.previous_round


class _Clip:
    """A scorer whose answers are known: text score by prompt, image score by mean brightness."""

    def __init__(self) -> None:
        self.calls = 0

    def image_text_with_warnings(self, image, texts):
        self.calls += 1
        return [0.25 if "red" in texts[0] else 0.125], ("cut to 77 tokens",)

    def image_image(self, a, b):
        ma, mb = (ImageStat.Stat(im.convert("L")).mean[0] / 255 for im in (a, b))
        return 1.0 - abs(ma - mb)


def test_without_blip_and_without_an_earlier_round_the_scores_say_why_they_are_missing(project):
    recs = _dialogue(
        project,
        [("a red coat", _picture((200, 30, 40)), None), ("a navy coat", _picture((20, 30, 90)), None)],
    )
    clip = _Clip()
    scorers = rm.Scorers(clip=lambda: clip, profile="p", models={"clip": "c"})
    first = rm.measure_round(scorers, project, recs[0].id)
    second = rm.measure_round(scorers, project, recs[1].id)
    assert first.values == {"t2i_clip": 0.25} and first.warnings == ("cut to 77 tokens",)
    # no parent: the dialogue's previous round is what the round started from
    assert second.previous_round == 0 and set(second.values) == {"t2i_clip", "i2i_prev_clip"}
    assert second.values["t2i_clip"] == 0.125
    # every score in words with its scale; a missing one with its reason
    assert first.text("t2i_clip").startswith("T2I CLIP 0.250 (image vs this round's prompt; cosine")
    assert "0–1" in first.text("t2i_clip")
    assert first.text("t2i_blip") == "BLIP: not measured (this profile has no BLIP model)"
    assert first.text("i2i_prev_clip") == "I2I CLIP: not measured (the first round has no earlier image)"
    assert "1 = the same picture" in second.text("i2i_prev_clip")
    # measured once: a second request reads the record
    rm.measure_round(scorers, project, recs[1].id)
    assert clip.calls == 2
    rm.measure_round(scorers, project, recs[1].id, remeasure=True)
    assert clip.calls == 3


def test_an_earlier_image_deleted_from_disk_leaves_the_other_scores(project):
    recs = _dialogue(
        project,
        [("a red coat", _picture((200, 30, 40)), None), ("a red coat", _picture((200, 30, 40), 3), 0)],
    )
    project.image_path(recs[0]).unlink()
    m = rm.measure_round(rm.Scorers(clip=_Clip), project, recs[1].id)
    assert m.values == {"t2i_clip": 0.25} and m.previous_round is None


def test_an_image_that_is_not_a_round_is_refused_with_a_message(project):
    rec = project.add_image(_picture((1, 2, 3)), ImageRecord(prompt="x", origin="imported"))
    with pytest.raises(BadInput, match="not a round"):
        rm.measure_round(rm.Scorers(clip=_Clip), project, rec.id)
    assert rm.stored(project, rec.id) is None


def test_turns_of_older_projects_and_damaged_entries_read_as_not_measured():
    old = DialogueTurn.from_dict({"dialogue_id": "d", "round": 1, "prompt": "p", "image_id": "i"})
    assert old.metrics == {} and rm.RoundMetrics.from_turn(old) is None
    damaged = old.replace(metrics={"values": {"t2i_clip": "high", "i2i_prev_clip": math.inf, "bogus": 1.0}})
    m = rm.RoundMetrics.from_turn(damaged)
    assert m is not None and m.values == {}
    assert rm.RoundMetrics.from_turn(old.replace(metrics={"values": [1, 2]})) is None
