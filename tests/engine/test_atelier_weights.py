"""The trained judge and CLIP committed with the project read held-out renderings they never saw.

Each check draws 5 held-out samples of 40 renderings (data seeds 1-5; the figures in
docs/atelier were made on seed 0) and asserts a floor per draw; the floors sit below the lowest
per-draw share measured on the committed weights by the margin written beside them, and far
above chance (Content 1/8, Size about 1/15, Others 1/16, Color 1/12).
"""

from __future__ import annotations

import numpy as np
import pytest

from tdri_engine.atelier import clip_train, judge
from tdri_engine.atelier.data import labels_of
from tdri_engine.atelier.splits import sample
from tdri_engine.atelier.world import NOVEL, render
from tdri_engine.settings import ASPECTS

DRAWS = range(1, 6)
N = 40

# judge (world v3, 5000 steps; 2000 held-out renderings: every aspect 0.955-1.0): lowest
# per-draw share over the 5 draws of 40, measured; floor = that - 0.1 (4 pictures of 40)
JUDGE_MEASURED = {
    "Content": 0.95,
    "Style": 0.9,
    "Background": 1.0,
    "Size": 0.95,
    "Color": 0.975,
    "Perspective": 0.95,
    "Others": 0.85,
}
JUDGE_FLOOR = {a: round(v - 0.1, 2) for a, v in JUDGE_MEASURED.items()}
# the NOVEL colour on 5 draws of 20 renderings of the `novel` split: lowest share measured
NOVEL_MEASURED = 1.0

# CLIP zero-shot (committed 01:15, 1200 steps), measured on the same 5 draws: lowest per-draw
# Background 1.0 and Color 0.725 (floors 0.9 and 0.6); pooled over the 200 pictures Style 0.44
# and Perspective 0.48 (floors 0.34 and 0.38; chance 0.25 and 0.2). Its garment (0.035), Size
# and Others are not asserted: they are below the targets (docs/atelier/README.md says why).
CLIP_DRAW_FLOOR = {"Background": 0.9, "Color": 0.6}
CLIP_POOLED_FLOOR = {"Style": 0.34, "Perspective": 0.38}


def _draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
    samples = sample("heldout", N, seed=seed)
    images = np.stack([np.asarray(render(s.record, s.seed, 64)) for s in samples])
    return images, np.array([labels_of(s.record) for s in samples])


@pytest.fixture(scope="module")
def draws() -> list[tuple[np.ndarray, np.ndarray]]:
    return [_draw(seed) for seed in DRAWS]


def test_the_committed_judge_reads_every_aspect_of_unseen_heldout_renderings(draws):
    reader = judge.load_bundled()
    assert (judge.BUNDLED / "model.safetensors").stat().st_size < 2_000_000
    for seed, (images, labels) in zip(DRAWS, draws, strict=True):
        aspects = judge.accuracy(judge.predict_indices(reader.model, images), labels)["aspects"]
        for aspect in ASPECTS:
            assert aspects[aspect] >= JUDGE_FLOOR[aspect], (seed, aspect, aspects[aspect])
    # it reads the NOVEL colour that no other model is trained on
    for seed in DRAWS:
        novel = sample("novel", 20, seed=seed)
        seen = reader.read([render(s.record, s.seed, 64) for s in novel])
        right = np.mean([r["color"] == NOVEL["color"] for r in seen])
        assert right >= NOVEL_MEASURED - 0.15, (seed, right)


def test_the_committed_clip_picks_the_right_value_prompt_on_unseen_heldout_renderings(draws):
    from transformers import CLIPModel, CLIPTokenizer

    folder = judge.BUNDLED.parent / "clip"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 15_000_000
    model = CLIPModel.from_pretrained(folder).float().eval()
    tokenizer = CLIPTokenizer.from_pretrained(folder)  # the folder's own tokenizer, as loaders read it
    preds = []
    for seed, (images, labels) in zip(DRAWS, draws, strict=True):
        pred = clip_train.zero_shot_predict(model, tokenizer, images)
        aspects = judge.accuracy(pred, labels)["aspects"]
        for aspect, floor in CLIP_DRAW_FLOOR.items():
            assert aspects[aspect] >= floor, (seed, aspect, aspects[aspect])
        preds.append(pred)
    pooled = judge.accuracy(np.concatenate(preds), np.concatenate([lab for _, lab in draws]))["aspects"]
    for aspect, floor in CLIP_POOLED_FLOOR.items():
        assert pooled[aspect] >= floor, (aspect, pooled[aspect])
