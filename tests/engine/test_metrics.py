"""CLIP and BLIP scores on tiny models saved to disk and loaded back through the real loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.errors import BadInput, ModelBroken, ModelMissing
from tdri_engine.llm import load_llm
from tdri_engine.metrics import ClipScorer, load_blip, load_clip
from tdri_engine.models import RoleSpec
from tdri_engine.reflector import load_captioner

CPU, FP32 = torch.device("cpu"), torch.float32
LONG_TEXT = ", ".join(["a long flowing red silk evening dress with golden embroidery"] * 12)


def picture(seed: int, size: tuple[int, int] = (80, 96)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8"))


def test_clip_scores_are_cosines_on_the_0_1_scale(tiny_language) -> None:
    clip: ClipScorer = tiny_language.clip
    image = picture(0)
    texts = ["a red dress", "a navy silk dress on a beach", "一条红色的裙子 👗", ""]
    scores = clip.image_text(image, texts)
    assert len(scores) == len(texts)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # the score is the cosine of the normalised embeddings, clipped below at 0 (not 100x)
    img = clip.embed_images([image])[0]
    txt, _ = clip.embed_texts(texts)
    expected = [max(0.0, float(t @ img)) for t in txt]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert float(img.norm()) == pytest.approx(1.0, abs=1e-5)


def test_clip_identical_images_score_one_and_different_ones_less(tiny_language) -> None:
    clip = tiny_language.clip
    a, b = picture(1), picture(2)
    assert clip.image_image(a, a) == pytest.approx(1.0, abs=1e-5)
    assert clip.image_image(a, a.copy().convert("RGBA")) == pytest.approx(1.0, abs=1e-5)
    assert clip.image_image(a, b) < 0.9999
    assert clip.text_text("a red dress", "a red dress") == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= clip.text_text("a red dress", "a blue hat on a beach") < 0.9999


def test_clip_says_when_a_long_text_is_cut_to_its_context(tiny_language) -> None:
    clip = tiny_language.clip
    scores, warnings = clip.image_text_with_warnings(picture(3), ["a red dress", LONG_TEXT])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert len(warnings) == 1
    assert "77 tokens" in warnings[0] and "a long flowing red silk" in warnings[0]
    assert clip.last_warnings == warnings
    clip.text_text(LONG_TEXT, "a red dress")
    assert len(clip.last_warnings) == 1
    clip.image_text(picture(3), ["a red dress"])
    assert clip.last_warnings == ()


def test_clip_rejects_what_is_not_an_image_or_text(tiny_language) -> None:
    with pytest.raises(BadInput):
        tiny_language.clip.image_text("not an image", ["a dress"])
    with pytest.raises(BadInput):
        tiny_language.clip.image_text(picture(0), [42])


def test_hf_clip_folder_loads_through_the_same_loader(tmp_path: Path) -> None:
    from tdri_engine.demo.language import build_hf_clip

    folder = build_hf_clip(tmp_path / "hf-clip")
    clip = load_clip(folder, RoleSpec("clip", "hf-clip", str(folder)), CPU, FP32)
    image = picture(4)
    assert clip.context_length == 77
    assert clip.image_image(image, image) == pytest.approx(1.0, abs=1e-5)
    scores, warnings = clip.image_text_with_warnings(image, ["a red dress", LONG_TEXT])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(warnings) == 1 and "77 tokens" in warnings[0]


def test_open_clip_bare_config_layout_gives_the_same_scores(
    language_models, tiny_language, tmp_path: Path
) -> None:
    """IT may drop an open_clip config in open_clip's own format (<name>.json) beside the weights."""
    hub = json.loads((language_models["clip"] / "open_clip_config.json").read_text())
    bare = tmp_path / "bare-clip"
    bare.mkdir()
    (bare / "tdri-test-tiny-clip.json").write_text(json.dumps(hub["model_cfg"]))
    shutil.copy(language_models["clip"] / "open_clip_model.safetensors", bare / "weights.safetensors")
    clip = load_clip(bare, RoleSpec("clip", "open_clip", str(bare)), CPU, FP32)
    image = picture(5)
    texts = ["a red dress", "a dress on a beach"]
    a = clip.embed_images([image])[0] @ clip.embed_texts(texts)[0].T
    b = tiny_language.clip.embed_images([image])[0] @ tiny_language.clip.embed_texts(texts)[0].T
    assert a.tolist() == pytest.approx(b.tolist(), abs=1e-5)


def test_blip_match_probability_is_the_itm_softmax(tiny_language) -> None:
    blip = tiny_language.blip
    image = picture(6)
    p = blip.match_probability(image, "a red silk dress on a beach")
    assert 0.0 <= p <= 1.0
    # same value as transformers' own ITM forward (our head call builds its mask on the model's device)
    enc = blip.processor(images=image, text="a red silk dress on a beach", return_tensors="pt")
    with torch.inference_mode():
        logits = blip.model(**enc, use_itm_head=True).itm_score
    assert p == pytest.approx(float(torch.softmax(logits, -1)[0, 1]), abs=1e-5)
    assert blip.image_image(image, image) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= blip.image_image(image, picture(7)) <= 1.0
    assert 0.0 <= blip.match_probability(image, "一条红色的裙子 👗") <= 1.0


def test_blip_says_when_a_text_is_cut(tiny_language) -> None:
    blip = tiny_language.blip
    p = blip.match_probability(picture(8), " ".join([LONG_TEXT] * 3))
    assert 0.0 <= p <= 1.0
    assert len(blip.last_warnings) == 1 and "BLIP reads at most 128 tokens" in blip.last_warnings[0]


@pytest.mark.parametrize(
    ("loader", "role", "kind"),
    [
        (load_clip, "clip", "open_clip"),
        (load_clip, "clip", "hf-clip"),
        (load_blip, "blip", "blip-itm"),
        (load_captioner, "vlm", "image-text-to-text"),
        (load_llm, "llm", "causal-lm"),
    ],
)
def test_missing_weights_name_the_role_the_path_and_the_fix(
    loader, role: str, kind: str, tmp_path: Path
) -> None:
    where = tmp_path / "nowhere" / role
    with pytest.raises(ModelMissing) as info:
        loader(where, RoleSpec(role, kind, str(where)), CPU, FP32)
    err = info.value
    assert err.role == role
    assert str(where) in err.message
    assert "tdri models demo" in err.what_to_do


@pytest.mark.parametrize(
    ("loader", "role", "kind"), [(load_blip, "blip", "blip-itm"), (load_llm, "llm", "causal-lm")]
)
def test_pickled_weights_are_refused_with_a_way_out(loader, role: str, kind: str, tmp_path: Path) -> None:
    folder = tmp_path / role
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelBroken) as info:
        loader(folder, RoleSpec(role, kind, str(folder)), CPU, FP32)
    assert "safetensors" in info.value.message and "pytorch_model.bin" in info.value.message
    assert "safe_serialization=True" in info.value.what_to_do


def test_a_broken_folder_says_which_role_and_where(language_models, tmp_path: Path) -> None:
    folder = tmp_path / "blip"
    shutil.copytree(language_models["blip"], folder)
    (folder / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelBroken) as info:
        load_blip(folder, RoleSpec("blip", "blip-itm", str(folder)), CPU, FP32)
    assert "blip" in info.value.message and str(folder) in info.value.message
    assert info.value.what_to_do


def test_features_that_vanish_are_refused_not_scored_zero(language_models) -> None:
    """fp16 can flush a model's features to zero; a cosine of 0 would then look like a real score."""
    folder = language_models["blip"]
    blip = load_blip(folder, RoleSpec("blip", "blip-itm", str(folder)), CPU, FP32)
    with torch.no_grad():
        blip.model.vision_proj.weight.zero_()
        blip.model.vision_proj.bias.zero_()
    with pytest.raises(ModelBroken) as info:
        blip.image_image(picture(0), picture(1))
    assert "bf16 or fp32" in info.value.what_to_do
