"""The Generator on a tiny SDXL pipeline (two text encoders, pooled embeddings, time ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.events import Progress
from tdri_engine.generator import Generator, encode_prompt, encode_prompt_blend
from tdri_engine.models import ModelRegistry, profile_from_dict
from tdri_engine.settings import EngineSettings


@pytest.fixture(scope="module")
def sdxl_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SDXL pipeline and its pose ControlNet, saved as real ones are (built in ~2 s)."""
    from diffusers import ControlNetModel

    from tdri_engine.demo.diffusion import tiny_sdxl_pipeline

    root = tmp_path_factory.mktemp("sdxl")
    pipe = tiny_sdxl_pipeline(root / "tok", layers_per_block=2)
    unet = pipe.unet
    pipe.save_pretrained(root / "generator", safe_serialization=True)
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).save_pretrained(
        root / "controlnet", safe_serialization=True
    )
    return {"generator": root / "generator", "controlnet": root / "controlnet"}


@pytest.fixture(scope="module")
def xl(sdxl_folders: dict[str, Path]) -> Generator:
    profile = profile_from_dict(
        {
            "name": "tiny-sdxl",
            "roles": {
                "generator": {"kind": "sdxl", "source": str(sdxl_folders["generator"])},
                "controlnet": {"kind": "controlnet", "source": str(sdxl_folders["controlnet"])},
            },
        }
    )
    return Generator(ModelRegistry(profile), EngineSettings(steps=3, width=64, height=64))


def test_sdxl_generates_reproducibly_in_every_mode(xl: Generator):
    events: list = []
    a = xl.generate("a red dress", seed=1, on_event=events.append)
    b = xl.generate("a red dress", seed=1)
    c = xl.generate("a red dress", seed=2)
    assert a.image.size == (64, 64) and a.mode == "text2img"
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]
    pose = Image.new("RGB", (64, 64), "white")
    assert xl.generate("a red dress", seed=1, init_image=a.image, strength=0.7).mode == "img2img"
    assert xl.generate("a red dress", seed=1, pose_map=pose).mode == "controlnet"
    assert xl.generate("a red dress", seed=1, pose_map=pose, init_image=a.image).mode == "controlnet-img2img"
    base = xl.pipeline("text2img")
    assert xl.pipeline("controlnet-img2img").text_encoder_2 is base.text_encoder_2


def test_sdxl_prompts_carry_pooled_embeddings_and_long_ones_warn(xl: Generator):
    pipe = xl.base_pipeline()
    short = encode_prompt(pipe, "a red dress")
    assert short.prompt_embeds.shape == (1, 77, 64) and short.pooled_prompt_embeds.shape == (1, 32)
    assert short.warnings == ()
    assert not short.negative_prompt_embeds.any()  # SDXL's zeros for an empty negative prompt
    long = encode_prompt(pipe, "a long red evening dress with lace sleeves, " * 12)
    assert "left out" in long.warnings[0]
    blend = encode_prompt_blend(pipe, "a dress", "a red dress", 0.5, 0.5)
    h, u = encode_prompt(pipe, "a dress"), encode_prompt(pipe, "a red dress")
    # token-aligned (eq. 2): "dress" (position 2 of 'a dress', 3 of 'a red dress') with "dress",
    # the inserted "red" (position 2) keeps the new prompt's embedding, in both encoders' halves
    e, eh, eu = blend.prompt_embeds[0], h.prompt_embeds[0], u.prompt_embeds[0]
    assert torch.allclose(e[3], (eh[2] + eu[3]) / 2, atol=1e-6) and torch.equal(e[2], eu[2])
    assert torch.allclose(blend.pooled_prompt_embeds, (h.pooled_prompt_embeds + u.pooled_prompt_embeds) / 2)
    assert xl.generate("a red dress", seed=3, prompt_embeds=blend).image.size == (64, 64)
