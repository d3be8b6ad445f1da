"""The Generator on the demo's tiny SD-1.x pipeline, loaded through the real loading code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.errors import AdapterError, BadInput, Cancelled, OutOfMemory
from tdri_engine.events import CancelToken, Preview, Progress
from tdri_engine.generator import (
    CHUNK_TOKENS,
    MAX_CHUNKS,
    encode_prompt,
    encode_prompt_blend,
    latent_preview,
)
from tdri_engine.settings import EngineSettings

TINY = {"steps": 4, "width": 64, "height": 64}


@pytest.fixture
def gen(demo_engine):
    generator = demo_engine.generator
    generator.settings = EngineSettings(**TINY)
    yield generator
    generator.set_adapter(None)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_image_another_seed_another_image(gen):
    a = gen.generate("a red dress", seed=7)
    b = gen.generate("a red dress", seed=7)
    c = gen.generate("a red dress", seed=8)
    assert a.image.size == (64, 64) and a.seed == 7 and a.steps == 4 and a.mode == "text2img"
    assert np.array_equal(_pixels(a.image), _pixels(b.image))
    assert not np.array_equal(_pixels(a.image), _pixels(c.image))
    assert a.model.endswith("generator") and a.adapter is None


def test_editing_keeps_to_the_previous_image_and_runs_strength_times_steps(gen):
    first = gen.generate("a red dress", seed=1)
    pose = Image.new("RGB", (64, 64))
    edit = gen.generate("a red silk dress", seed=2, init_image=first.image, strength=0.5)
    posed_edit = gen.generate("a red silk dress", seed=2, init_image=first.image, strength=0.5, pose_map=pose)
    posed = gen.generate("a red silk dress", seed=2, pose_map=pose)
    assert (edit.mode, edit.steps, edit.strength) == ("img2img", 2, 0.5)
    assert (posed_edit.mode, posed_edit.steps) == ("controlnet-img2img", 2)
    assert (posed.mode, posed.steps) == ("controlnet", 4)
    # a light edit stays closer to the image it edits than a new image does
    scratch = gen.generate("a red silk dress", seed=2)
    near = np.abs(_pixels(edit.image) - _pixels(first.image)).mean()
    far = np.abs(_pixels(scratch.image) - _pixels(first.image)).mean()
    assert near < far


def test_the_pipelines_share_one_set_of_weights(gen, demo_engine):
    base = gen.pipeline("text2img")
    for mode in ("img2img", "controlnet", "controlnet-img2img"):
        pipe = gen.pipeline(mode)
        assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.text_encoder is base.text_encoder
    assert gen.pipeline("controlnet").controlnet is gen.pipeline("controlnet-img2img").controlnet


def test_progress_every_step_and_a_cheap_preview(gen):
    events = []
    gen.generate("a dress", seed=3, on_event=events.append)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == [1, 2, 3, 4]
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and previews[0].step == 1
    assert previews[0].image.size == (32, 32)  # latent resolution: no VAE decode
    assert latent_preview(torch.zeros(1, 4, 8, 8)).getpixel((0, 0)) == (128, 128, 128)


def test_cancel_during_generation_stops_within_one_step(gen):
    token = CancelToken()
    seen = []

    def on_event(event):
        if isinstance(event, Progress):
            seen.append(event.step)
            if event.step == 2:
                token.cancel()  # the user presses Cancel while step 2 is shown

    with pytest.raises(Cancelled):
        gen.generate("a dress", seed=3, cancel=token, on_event=on_event)
    assert seen == [1, 2]
    already = CancelToken()
    already.cancel()
    with pytest.raises(Cancelled):
        gen.generate("a dress", seed=3, cancel=already, on_event=seen.append)
    assert seen == [1, 2]  # not a single step ran


def test_an_extra_step_callback_sees_every_step_and_can_steer_the_latents(gen):
    # the seam Attend-and-Excite uses: called after each step with the latents and the prompt embeddings
    seen = []

    def hook(pipe, step, timestep, kwargs):
        seen.append((step, sorted(kwargs), tuple(kwargs["prompt_embeds"].shape)))
        return {**kwargs, "latents": torch.zeros_like(kwargs["latents"])}

    steered = gen.generate("a dress", seed=3, extra_step_callback=hook)
    plain = gen.generate("a dress", seed=3)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert seen[0][1] == ["latents", "prompt_embeds"] and seen[0][2] == (2, 77, 32)  # CFG: negative + prompt
    assert not np.array_equal(_pixels(steered.image), _pixels(plain.image))


def test_a_short_prompt_is_encoded_exactly_as_the_pipeline_would(gen):
    pipe = gen.base_pipeline()
    ours = encode_prompt(pipe, "a red dress", "blurry")
    theirs, theirs_neg = pipe.encode_prompt("a red dress", pipe._execution_device, 1, True, "blurry")
    assert ours.warnings == ()
    assert torch.allclose(ours.prompt_embeds, theirs) and torch.allclose(
        ours.negative_prompt_embeds, theirs_neg
    )


def test_a_long_prompt_is_chunked_and_the_user_is_told(gen):
    pipe = gen.base_pipeline()
    long = "a long flowing red evening dress with lace sleeves and a silk belt, " * 8
    n_tokens = len(pipe.tokenizer(long, add_special_tokens=False).input_ids)
    assert CHUNK_TOKENS < n_tokens <= CHUNK_TOKENS * MAX_CHUNKS
    embeds = encode_prompt(pipe, long)
    chunks = -(-n_tokens // CHUNK_TOKENS)
    assert embeds.prompt_embeds.shape[1] == 77 * chunks
    assert embeds.negative_prompt_embeds.shape == embeds.prompt_embeds.shape
    assert f"{n_tokens} tokens" in embeds.warnings[0] and f"{chunks} chunks" in embeds.warnings[0]
    # the first chunk is the first 75 tokens, encoded as a prompt of their own would be
    head = pipe.tokenizer.decode(pipe.tokenizer(long, add_special_tokens=False).input_ids[:CHUNK_TOKENS])
    assert torch.allclose(embeds.prompt_embeds[:, :77], encode_prompt(pipe, head).prompt_embeds, atol=1e-5)
    result = gen.generate(long, seed=1)
    assert result.warnings == embeds.warnings


def test_a_prompt_past_the_chunk_limit_is_truncated_with_a_warning(gen):
    huge = "red dress " * 400
    embeds = encode_prompt(gen.base_pipeline(), huge)
    assert embeds.prompt_embeds.shape[1] == 77 * MAX_CHUNKS
    assert "left out" in embeds.warnings[0]


def _word_position(pipe, prompt: str, word: str) -> int:
    """Where ``word``'s (single) token sits in the prompt's encoding: after the start token."""
    ids = pipe.tokenizer(prompt, add_special_tokens=False).input_ids
    (token,) = pipe.tokenizer(word, add_special_tokens=False).input_ids
    return 1 + ids.index(token)


def test_eq2_blends_the_same_words_and_keeps_inserted_words_at_the_new_prompts_positions(gen):
    """An inserted word shifts every later token; the blend must follow the words, not the
    positions, so that token indices computed on the new prompt (Attend-and-Excite) stay valid."""
    pipe = gen.base_pipeline()
    history, latest = "a dress, on a beach", "a red silk dress, on a sunny beach"
    e_h = encode_prompt(pipe, history).prompt_embeds[0]
    e_l = encode_prompt(pipe, latest).prompt_embeds[0]
    blend = encode_prompt_blend(pipe, history, latest, 0.25, 0.75)
    out = blend.prompt_embeds[0]
    assert out.shape == e_l.shape
    for word in ("dress", "beach", "on"):  # in both prompts, at different positions
        i, j = _word_position(pipe, history, word), _word_position(pipe, latest, word)
        assert i != j
        assert torch.allclose(out[j], 0.25 * e_h[i] + 0.75 * e_l[j], atol=1e-5), word
        assert not torch.allclose(out[j], 0.25 * e_h[j] + 0.75 * e_l[j], atol=1e-3), word
    for word in ("red", "silk", "sunny"):  # only in the new prompt: its own embedding
        j = _word_position(pipe, latest, word)
        assert torch.equal(out[j], e_l[j]), word
    # only the ratio counts (normalised by alpha + beta); the same prompt twice is that prompt
    assert torch.allclose(encode_prompt_blend(pipe, history, latest, 1, 3).prompt_embeds[0], out)
    assert torch.allclose(
        encode_prompt_blend(pipe, latest, latest, 0.5, 0.5).prompt_embeds[0], e_l, atol=1e-6
    )
    assert torch.allclose(encode_prompt_blend(pipe, history, latest, 0, 1).prompt_embeds[0], e_l)
    # a skipped question (no latest input) leaves the history prompt as it is
    assert torch.allclose(encode_prompt_blend(pipe, history, "", 0.5, 0.5).prompt_embeds[0], e_h)
    with pytest.raises(BadInput):
        encode_prompt_blend(pipe, history, latest, 0, 0)
    result = gen.generate(latest, seed=4, prompt_embeds=blend)
    plain = gen.generate(latest, seed=4)
    assert not np.array_equal(_pixels(result.image), _pixels(plain.image))


def test_eq2_alignment_holds_across_chunks_of_a_long_prompt(gen):
    pipe = gen.base_pipeline()
    filler = ", ".join(f"detail{i}" for i in range(40))  # past 75 tokens: several chunks
    history, latest = f"a dress, {filler}, on a beach", f"a red dress, {filler}, on a beach"
    e_h = encode_prompt(pipe, history).prompt_embeds[0]
    e_l = encode_prompt(pipe, latest).prompt_embeds[0]
    out = encode_prompt_blend(pipe, history, latest, 0.5, 0.5).prompt_embeds[0]
    assert out.shape == e_l.shape and out.shape[0] % 77 == 0 and out.shape[0] >= 2 * 77
    h_ids = pipe.tokenizer(history, add_special_tokens=False).input_ids
    l_ids = pipe.tokenizer(latest, add_special_tokens=False).input_ids
    (beach,) = pipe.tokenizer("beach", add_special_tokens=False).input_ids
    t_h, t_l = h_ids.index(beach), l_ids.index(beach)
    assert t_h >= 75 and t_l >= 75  # the word sits in a later chunk of both

    def pos(t: int) -> int:
        return (t // 75) * 77 + 1 + t % 75

    assert torch.allclose(out[pos(t_l)], 0.5 * e_h[pos(t_h)] + 0.5 * e_l[pos(t_l)], atol=1e-5)


@pytest.mark.parametrize("prompt", ["一条红色的丝绸连衣裙", "فستان أحمر من الحرير", "👗❤️✨", ""])
def test_any_language_emoji_or_nothing_generates(gen, prompt: str):
    result = gen.generate(prompt, seed=5)
    assert result.image.size == (64, 64)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 1, "pose_map": "pose.png"}, "pose map"),
        ({"seed": 1, "init_image": Image.new("RGB", (64, 64)), "strength": 0.0}, "strength"),
    ],
)
def test_bad_input_is_refused_before_any_compute(gen, kwargs: dict, words: str):
    with pytest.raises(BadInput, match=words):
        gen.generate("a dress", **kwargs)


def _make_lora(demo_models: Path, dest: Path) -> Path:
    """A small LoRA for the demo UNet in diffusers format, with non-zero weights."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(demo_models / "generator" / "unet", local_files_only=True)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(0)
    for name, param in unet.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(dest, unet_lora_layers=state, safe_serialization=True)
    return dest


def test_the_projects_lora_changes_the_image_and_switches_off_cleanly(gen, demo_models: Path, tmp_path: Path):
    plain = gen.generate("a dress", seed=9)
    adapter = _make_lora(demo_models, tmp_path / "v0001")
    tuned = gen.generate("a dress", seed=9, adapter_dir=adapter)
    assert tuned.adapter == "v0001"
    assert not np.array_equal(_pixels(plain.image), _pixels(tuned.image))
    again = gen.generate("a dress", seed=9, adapter_dir=adapter)  # same version: not reloaded
    assert np.array_equal(_pixels(tuned.image), _pixels(again.image))
    back = gen.generate("a dress", seed=9)
    assert back.adapter is None
    assert np.array_equal(_pixels(plain.image), _pixels(back.image))


def test_a_corrupt_adapter_is_refused_and_the_model_stays_as_it_was(gen, tmp_path: Path):
    plain = gen.generate("a dress", seed=9)
    broken = tmp_path / "v0002"
    broken.mkdir()
    (broken / "pytorch_lora_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterError) as info:
        gen.set_adapter(broken)
    assert "v0002" in info.value.message and info.value.what_to_do
    # a generation asked to use it makes the image without it, and says so (issue 12 item 6)
    without = gen.generate("a dress", seed=9, adapter_dir=broken)
    assert without.adapter is None
    assert any("v0002" in w and "generated without it" in w for w in without.warnings)
    assert np.array_equal(_pixels(plain.image), _pixels(without.image))
    after = gen.generate("a dress", seed=9)
    assert np.array_equal(_pixels(plain.image), _pixels(after.image))


def test_running_out_of_memory_says_what_to_change(gen, monkeypatch: pytest.MonkeyPatch):
    unet = gen.base_pipeline().unet

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")

    monkeypatch.setattr(unet, "forward", exhausted)
    with pytest.raises(OutOfMemory) as info:
        gen.generate("a dress", seed=1)
    assert "64x64" in info.value.message
    assert "smaller image size" in info.value.what_to_do and "CPU offload" in info.value.what_to_do
