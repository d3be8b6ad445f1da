"""Attend-and-Excite: subject nouns found in the prompt, a neglected one excited, the pipeline restored."""

from __future__ import annotations

import pytest
import torch

from tdri_engine.optimizer.attend_excite import (
    AttendExcite,
    attend_excite_loss,
    choose_attention_resolution,
    max_attention_per_token,
    subject_nouns,
    subject_token_indices,
)
from tdri_engine.settings import EngineSettings

PROMPT = "a cat and a dog on a red sofa"


@pytest.mark.parametrize(
    ("prompt", "nouns"),
    [
        (PROMPT, ["cat", "dog", "sofa"]),
        ("a red silk dress with long sleeves on a beach", ["dress", "sleeves", "beach"]),
        ("A photo of a woman wearing a black leather jacket, studio lighting", ["woman", "jacket"]),
        ("very elegant", []),
        ("two dogs and two dogs", ["dogs"]),
    ],
)
def test_subject_nouns_are_found_without_a_language_model(prompt, nouns):
    assert [w for _, w in subject_nouns(prompt)] == nouns


def test_token_indices_point_at_the_nouns(tiny_sd):
    tok = tiny_sd.tokenizer
    indices = subject_token_indices(tok, "a red silk dress with long sleeves")
    ids = tok("a red silk dress with long sleeves")["input_ids"]
    assert [tok.convert_ids_to_tokens(ids[i]) for i in indices] == ["dress</w>", "sleeves</w>"]
    # a word cut into several BPE pieces is represented by its last piece
    indices = subject_token_indices(tok, "a xylophonist")
    ids = tok("a xylophonist")["input_ids"]
    assert len(ids) > 4 and indices == [len(ids) - 2]


def test_the_loss_is_low_when_every_subject_has_a_peak():
    maps = torch.full((16, 16, 77), -5.0)  # pre-softmax scores: the 1:-1 slice is softmaxed
    maps[4:8, 4:8, 2] = 5.0  # token 2 owns a region
    maps[10:14, 10:14, 5] = 5.0  # token 5 another
    peaked = attend_excite_loss(maps, [2, 5])
    neglected = attend_excite_loss(maps, [2, 7])  # token 7 has no region
    assert peaked.item() < 0.05 and neglected.item() > 0.9
    m = max_attention_per_token(maps, [2, 5, 7])
    assert m[0] > 0.9 and m[2] < 0.1
    x = maps.clone().requires_grad_(True)
    attend_excite_loss(x[None], [2, 7]).backward()  # batched, and differentiable for L = L_DPO + l * L_AE
    assert x.grad.abs().sum() > 0


def test_attention_resolution_follows_the_paper(tiny_sd):
    assert choose_attention_resolution(tiny_sd.unet, (32, 32)) == (16, 16)  # tiny UNet, 64 px images


def _run(pipe, ae: AttendExcite | None, seed: int = 0):
    kwargs = {}
    if ae is not None:
        kwargs = dict(
            callback_on_step_end=ae.callback, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"]
        )
    return pipe(
        PROMPT,
        num_inference_steps=5,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kwargs,
    ).images


def test_attend_and_excite_raises_the_neglected_subject(tiny_sd):
    processors = {k: type(v) for k, v in tiny_sd.unet.attn_processors.items()}
    # The tiny random UNet's attention gradients are ~1000x weaker than SD's: a larger step size.
    options = dict(scale_factor=1e4, max_refinement_steps=5, record=True)
    probe = AttendExcite.for_prompt(tiny_sd, PROMPT, EngineSettings(), excite=False, **options)
    plain = _run(tiny_sd, probe)
    excited = AttendExcite.for_prompt(tiny_sd, PROMPT, EngineSettings(), **options)
    changed = _run(tiny_sd, excited)

    base = probe.history[-1]["after"][0]  # max attention per subject, latents of the last step
    after = excited.history[-1]["after"][0]
    neglected = int(base.argmin())
    print(f"subject max attention: without {base.tolist()}, with {after.tolist()}")
    assert after[neglected] > base[neglected] + 0.002
    assert excited.subject_attention()[neglected] > probe.subject_attention()[neglected]
    assert abs(changed - plain).max() > 1e-3  # the image changed too
    # the pipeline is as it was: original processors, no hooks
    assert {k: type(v) for k, v in tiny_sd.unet.attn_processors.items()} == processors
    assert not tiny_sd.unet._forward_pre_hooks
    again = _run(tiny_sd, None)
    assert abs(again - plain).max() < 1e-6


def test_no_subject_or_switched_off_gives_no_hook(tiny_sd):
    assert AttendExcite.for_prompt(tiny_sd, "very elegant", EngineSettings()) is None
    assert AttendExcite.for_prompt(tiny_sd, PROMPT, EngineSettings(use_attend_excite=False)) is None
