"""`tdri eval`'s numbers against hand computation: CLIP scores from the model's own embeddings,
the judge's aspect count, satisfaction, and the bootstrap interval."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.atelier import captions, world
from tdri_engine.evaluation.metrics import SATISFIED_ASPECTS, Scorers, bootstrap_ci, overlap
from tdri_engine.evaluation.users import world_targets

TEXTS = [
    "a red dress",
    "a blue coat on a beach",
    "line sketch of a hoodie",
    "a green striped skirt, back view",
    "trousers on a hanger in a forest",
    "a pink t-shirt with a hat",
    "close-up of a black shirt",
    "a jumpsuit on a runway, full body",
]


def _pictures() -> list[Image.Image]:
    rng = random.Random(3)
    return [world.render(world.random_record(rng), seed=i, size=64) for i in range(3)]


def _hand_open_clip(scorer, image: Image.Image, text: str) -> float:
    """Cosine of the L2-normalised open_clip embeddings, computed here from the model itself."""
    b = scorer._backend
    with torch.no_grad():
        fi = b.model.encode_image(b.preprocess(image.convert("RGB")).unsqueeze(0)).float()[0]
        ft = b.model.encode_text(b.tokenizer([text], context_length=b.context_length)).float()[0]
    return float(fi @ ft / (fi.norm() * ft.norm()))


def test_open_clip_scores_equal_the_cosine_computed_by_hand(tiny_language):
    clip = tiny_language.clip
    raw = []
    for image in _pictures():
        assert clip.image_image(image, image) == pytest.approx(1.0, abs=1e-5)
        scores = clip.image_text(image, TEXTS)
        for text, score in zip(TEXTS, scores, strict=True):
            hand = _hand_open_clip(clip, image, text)
            raw.append(hand)
            assert score == pytest.approx(max(0.0, hand), abs=1e-5), text
    # the comparison must have bitten on positive cosines, not only on clipped zeros
    assert sum(h > 0.01 for h in raw) >= 3, raw


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory: pytest.TempPathFactory):
    """The Atelier's transformers CLIP (random weights, real tokenizer), saved and loaded back
    through the engine's loader."""
    from tdri_engine.atelier import clip_train
    from tdri_engine.metrics import load_clip
    from tdri_engine.models import RoleSpec

    torch.manual_seed(0)
    folder = clip_train.save(
        clip_train.build_model(), clip_train.load_tokenizer(), tmp_path_factory.mktemp("clip") / "clip"
    )
    spec = RoleSpec("clip", "hf-clip", str(folder))
    return load_clip(folder, spec, torch.device("cpu"), torch.float32)


def test_transformers_clip_scores_equal_the_cosine_computed_by_hand(hf_clip):
    b = hf_clip._backend
    raw = []
    for image in _pictures():
        assert hf_clip.image_image(image, image) == pytest.approx(1.0, abs=1e-5)
        with torch.no_grad():
            pixels = b.processor(images=[image], return_tensors="pt")["pixel_values"]
            fi = b.model.get_image_features(pixel_values=pixels)
            fi = (fi.pooler_output if hasattr(fi, "pooler_output") else fi).float()[0]
        for text, score in zip(TEXTS, hf_clip.image_text(image, TEXTS), strict=True):
            enc = b.processor.tokenizer([text], return_tensors="pt")
            with torch.no_grad():
                ft = b.model.get_text_features(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
                )
                ft = (ft.pooler_output if hasattr(ft, "pooler_output") else ft).float()[0]
            hand = float(fi @ ft / (fi.norm() * ft.norm()))
            raw.append(hand)
            assert score == pytest.approx(max(0.0, hand), abs=1e-4), text
    assert sum(h > 0.01 for h in raw) >= 3, raw


def test_round_metrics_of_the_target_itself_and_the_judges_count(tiny_language, tmp_path: Path):
    from tdri_engine.atelier import judge

    torch.manual_seed(0)
    j = judge.load(judge.save(judge.build_model(), tmp_path / "judge"))
    target = world_targets(1, seed=0)[0]
    scorers = Scorers(tiny_language.clip, tiny_language.blip, j)
    m = scorers.round_metrics(target.image, target, previous=target.image)
    assert m["i2i_clip"] == pytest.approx(1.0, abs=1e-5)
    assert m["consistency"] == pytest.approx(1.0, abs=1e-5)
    assert m["t2i_clip"] == pytest.approx(tiny_language.clip.image_text(target.image, [target.prompt])[0])
    assert m["t2i_blip"] == pytest.approx(tiny_language.blip.match_probability(target.image, target.prompt))
    assert m["i2i_blip"] == pytest.approx(1.0, abs=1e-4)
    # the judge's count by hand: what it reads, field by field, against the record
    seen = j.read([target.image])[0]
    rec = target.record
    by_hand = sum(
        all(getattr(rec, f) is None or seen[f] == getattr(rec, f) for f in world.ASPECT_FIELDS[a])
        for a in world.ASPECT_FIELDS
    )
    assert m["judge_aspects"] == by_hand
    assert m["satisfied"] == int(by_hand >= SATISFIED_ASPECTS)
    # without a judge (or outside the world) satisfaction is the stated I2I CLIP threshold
    plain = Scorers(tiny_language.clip, None, None, threshold=0.999)
    other = world.render(rec.replace(color="red" if rec.color != "red" else "blue"), seed=1, size=64)
    assert plain.round_metrics(target.image, target)["satisfied"] == 1
    far = plain.round_metrics(other, target)
    assert far["satisfied"] == int(far["i2i_clip"] >= 0.999) and far["t2i_blip"] is None
    assert "I2I CLIP >= 1.00" in plain.satisfaction_rule(True)


def test_bootstrap_interval_matches_normal_theory_over_seeds():
    """For n = 200 draws of a 0/1 variable the percentile bootstrap's 95 % interval should be
    about mean +- 1.96 sqrt(p (1 - p) / n); measured within 15 % of that width on 5 seeds."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        vals = (rng.random(200) < 0.3).astype(float).tolist()
        m, lo, hi = bootstrap_ci(vals, seed=seed)
        p = sum(vals) / len(vals)
        assert m == pytest.approx(p)
        assert lo < m < hi
        theory = 2 * 1.96 * math.sqrt(p * (1 - p) / len(vals))
        assert abs((hi - lo) - theory) < 0.15 * theory, (hi - lo, theory)
    assert bootstrap_ci([0.4]) == (0.4, 0.4, 0.4)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert overlap((0.5, 0.4, 0.6), (0.65, 0.55, 0.7)) and not overlap((0.5, 0.4, 0.5), (0.7, 0.6, 0.8))


def test_world_targets_answer_each_aspect_with_the_records_value():
    targets = world_targets(5, seed=2, size=(64, 64))
    assert len({t.id for t in targets}) == 5
    for t in targets:
        rec = t.record
        # "a dress", "a pair of trousers"
        assert t.start_prompt == captions.aspect_caption(rec, "Content", seed=None)
        assert captions.NAMES["garment"][rec.garment] in t.start_prompt
        assert captions.NAMES["color"][rec.color] in t.answers["Color"]
        assert captions.NAMES["background"][rec.background] in t.answers["Background"]
        assert t.image.size == (64, 64)
        assert np.array_equal(np.asarray(t.image), np.asarray(world.render(rec, seed=_seed_of(t), size=64)))
    assert [t.prompt for t in world_targets(5, seed=2)] == [t.prompt for t in targets]  # deterministic


def _seed_of(target) -> int:
    from tdri_engine.atelier import splits

    index = int(target.id.rsplit("-", 1)[1])
    return splits.sample_one("heldout", index, 2).seed
