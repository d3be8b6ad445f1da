"""SDXL: Attend-and-Excite and a DPO update take the added conditioning (pooled text, time ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tdri_engine.optimizer import adapters as ad
from tdri_engine.optimizer.attend_excite import AttendExcite, choose_attention_resolution
from tdri_engine.optimizer.dpo import DPOConfig
from tdri_engine.optimizer.trainer import run_update
from tdri_engine.records import ImageRecord, PreferencePair
from tdri_engine.settings import EngineSettings

PROMPT = "a cat and a dog on a red sofa"


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL pipeline (two text encoders, text_time embedding), saved as real ones are."""
    from tdri_engine.demo.diffusion import tiny_sdxl_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sdxl_ae")
    pipe = tiny_sdxl_pipeline(root / "tok", layers_per_block=1)
    pipe.save_pretrained(root / "generator", safe_serialization=True)
    return root / "generator"


@pytest.fixture
def sdxl(sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, ae):
    return pipe(
        PROMPT, num_inference_steps=4, height=64, width=64, generator=torch.Generator().manual_seed(0),
        output_type="np", callback_on_step_end=ae.callback, callback_on_step_end_tensor_inputs=["latents"],
    ).images  # fmt: skip


def test_attend_and_excite_runs_on_sdxl_and_raises_the_neglected_subject(sdxl):
    assert choose_attention_resolution(sdxl.unet, (32, 32)) == (16, 16)
    processors = {k: type(v) for k, v in sdxl.unet.attn_processors.items()}
    options = dict(scale_factor=1e4, max_refinement_steps=3, record=True)
    probe = AttendExcite.for_prompt(sdxl, PROMPT, EngineSettings(), excite=False, **options)
    plain = _run(
        sdxl, probe
    )  # only "latents" in the callback: the added conditioning comes from the UNet call
    excited = AttendExcite.for_prompt(sdxl, PROMPT, EngineSettings(), **options)
    changed = _run(sdxl, excited)
    base, after = probe.history[-1]["after"][0], excited.history[-1]["after"][0]
    neglected = int(base.argmin())
    assert after[neglected] > base[neglected]
    assert abs(changed - plain).max() > 1e-4
    assert {k: type(v) for k, v in sdxl.unet.attn_processors.items()} == processors


def test_a_dpo_update_trains_an_sdxl_lora(sdxl, tiny_project):
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(2):
        a, b = (
            tiny_project.add_image(
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
                ImageRecord(prompt="a coat"),
            )
            for _ in range(2)
        )
        pairs.append(PreferencePair(prompt="a coat", image_left=a.id, image_right=b.id, choice="right"))
    tiny_project.put_many(pairs)
    config = DPOConfig(steps=2, batch_size=2, grad_checkpointing=False, eval_timesteps=1)
    version = run_update(tiny_project, sdxl, tiny_project.settings, config=config)
    assert version.status == "ok" and version.loss_curve[0] == pytest.approx(0.6931, abs=1e-4)
    folder = ad.active_adapter_dir(tiny_project)
    ad.validate_adapter_dir(folder, sdxl.unet)
    sdxl.load_lora_weights(str(folder))  # the SDXL pipeline's own loader takes it
