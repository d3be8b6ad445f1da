"""The Atelier generator: the recipe trains its autoencoder and UNet for a few steps, a killed run
resumes to the weights of an uninterrupted one, the exported SD-1.x folder loads with diffusers
and with the project's loader, and the committed generator draws the colour it is asked for."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tdri_engine.atelier import clip_train, data, gen_train, judge
from tdri_engine.atelier.gen_train import GenDecoderRole, GeneratorRole, GenVaeRole
from tdri_engine.atelier.recipe import RunConfig, train_role
from tdri_engine.errors import ModelBroken, TrainingError


class Killed(Exception):
    """Stands for SIGKILL: nothing after it runs, only checkpoints on disk survive."""


class Spec:
    kind = "sd15"
    role = "generator"
    options: dict = {}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """A run folder with a 2-step autoencoder and a small untrained CLIP (hf-clip layout)."""
    root = tmp_path_factory.mktemp("gen")
    train, heldout = data.build("train", 24, seed=0), data.build("heldout", 8, seed=0)
    torch.manual_seed(0)
    clip = clip_train.build_model(text_cfg={"num_hidden_layers": 1}, vision_cfg={"num_hidden_layers": 1})
    clip_dir = clip_train.save(clip, clip_train.load_tokenizer(), root / "clip")
    run = root / "run"
    vae = train_role(
        GenVaeRole(train, heldout, seed=1, batch=4), RunConfig(steps=2, seed=1), run, stream=io.StringIO()
    )
    dec = train_role(
        GenDecoderRole(train, heldout, seed=1, run_dir=run, batch=4),
        RunConfig(steps=2, seed=1),
        run,
        stream=io.StringIO(),
    )
    return {"train": train, "heldout": heldout, "clip": clip_dir, "run": run, "vae": vae, "decoder": dec}


def _role(tiny_run: dict, run: Path | None = None) -> GeneratorRole:
    run = run or tiny_run["run"]
    return GeneratorRole(
        tiny_run["train"],
        tiny_run["heldout"],
        seed=2,
        run_dir=run,
        clip_dir=tiny_run["clip"],
        batch=4,
        eval_prompts=0,
    )


def test_autoencoder_trains_on_crops_and_sets_its_scaling_from_the_latents(tiny_run):
    vae = tiny_run["vae"]
    folder = vae.folder / "model"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["block_out_channels"] == list(gen_train.VAE_CHANNELS)
    assert cfg["scaling_factor"] == pytest.approx(1.0 / vae.figures["latent_std"], rel=0.05)
    assert np.isfinite(vae.figures["psnr_db"])
    assert (vae.folder / "card.json").is_file() and (vae.folder / "MODEL_CARD.md").is_file()


def test_decoder_refinement_keeps_the_encoder_and_is_what_the_pipeline_ships(tiny_run):
    from safetensors.torch import load_file

    run = tiny_run["run"]
    assert gen_train.final_vae_dir(run) == run / "gen_decoder" / "model"
    before = load_file(str(run / "gen_vae" / "model" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(run / "gen_decoder" / "model" / "diffusion_pytorch_model.safetensors"))
    enc = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)  # the UNet's latents stay valid
    assert any(not torch.equal(before[k], after[k]) for k in dec)  # the decoder did train


def test_generator_resumes_after_a_kill_on_the_trajectory_of_an_uninterrupted_run(tiny_run, tmp_path):
    import shutil

    from safetensors.torch import load_file

    config = RunConfig(steps=4, seed=2, checkpoint_every=2)
    whole_losses: list[float] = []
    whole = train_role(
        _role(tiny_run),
        config,
        tiny_run["run"],
        stream=io.StringIO(),
        on_step=lambda s, v: whole_losses.append(v),
    )

    other = tmp_path / "run"
    shutil.copytree(tiny_run["run"] / "gen_vae", other / "gen_vae")

    def kill(done: int, loss: float) -> None:
        if done == 3:
            raise Killed

    with pytest.raises(Killed):
        train_role(_role(tiny_run, other), config, other, on_step=kill, stream=io.StringIO())
    at_kill = load_file(str(other / "generator" / "checkpoint" / "state.safetensors"))
    resumed_losses: list[float] = []
    resumed = train_role(
        _role(tiny_run, other),
        config,
        other,
        stream=io.StringIO(),
        on_step=lambda s, v: resumed_losses.append(v),
    )
    assert resumed.resumed_from == 2 and whole.resumed_from == 0
    # steps 3 and 4 see the same batches, noise and weights as in the uninterrupted run (a run
    # restarted from scratch, or one drawing other batches, has losses that differ by percents)
    assert resumed_losses == pytest.approx(whole_losses[2:], rel=1e-6, abs=0)
    a = load_file(str(whole.folder / "checkpoint" / "state.safetensors"))
    b = load_file(str(resumed.folder / "checkpoint" / "state.safetensors"))
    assert a.keys() == b.keys() and a.keys() == at_kill.keys()
    # Weights are not compared bit for bit: the two runs differ by float rounding (measured
    # 1.5e-8 after one step), which Adam magnifies up to the learning rate where a gradient is
    # near zero (measured 1.2e-3 at most after two steps; cause of the rounding not found).


def test_exported_folder_loads_with_diffusers_and_the_project_loader(tiny_run):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    from tdri_engine.generator import load_pipeline

    folder = tiny_run["run"] / "generator" / "model"
    if not (folder / "model_index.json").is_file():
        train_role(
            _role(tiny_run),
            RunConfig(steps=4, seed=2, checkpoint_every=2),
            tiny_run["run"],
            stream=io.StringIO(),
        )
    for part in ("unet", "vae", "text_encoder"):
        weights = next((folder / part).glob("*.safetensors"))
        with safe_open(str(weights), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt*"))
    assert json.loads((folder / gen_train.DEFAULTS_FILE).read_text()) == gen_train.DEFAULTS

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True, local_files_only=True)
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    ours = load_pipeline(folder, Spec(), torch.device("cpu"), torch.float32)
    assert ours.unet.dtype == torch.float32
    image = ours(
        "a red dress", num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (64, 64)


def test_missing_parts_are_reported_with_what_to_do(tiny_run, tmp_path):
    role = GeneratorRole(tiny_run["train"], tiny_run["heldout"], run_dir=tmp_path, clip_dir=tiny_run["clip"])
    with pytest.raises(TrainingError, match="autoencoder") as err:
        role.build()
    assert "gen_vae" in err.value.what_to_do
    with pytest.raises(ModelBroken, match="No CLIP"):
        gen_train.load_text_tower(tmp_path / "nothing")


def test_captions_hold_a_tenth_empty_and_every_kind_of_prompt():
    records = data.build("train", 24, seed=0).records
    rng = random.Random(0)
    texts = [gen_train.caption_for(records[i % len(records)], rng) for i in range(3000)]
    empty = sum(t == "" for t in texts) / len(texts)
    # 10 % by construction; 3000 draws put a binomial share within +-1.6 points (3 sigma)
    assert 0.084 <= empty <= 0.116
    full = sum(t.count(",") >= 2 and len(t) > 40 for t in texts) / len(texts)
    short = sum(0 < len(t) < 25 for t in texts) / len(texts)
    assert full > 0.4 and short > 0.05


SEEDS = (0, 1, 2, 3, 4)
# Measured on the committed weights (12 colours x 5 seeds, "a <colour> dress", default steps
# and guidance 7.5; docs/atelier/generator.json `colour_test`): share 0.683 (41 of 60); 10
# colours on 3 or more of the 5 seeds (white 1, grey 0). Chance is 1/12 = 0.083. The bounds
# leave a margin of 8 images and 2 colours below them.
COLOUR_SHARE_BOUND = 0.55
COLOURS_ON_MOST_SEEDS = 8


@pytest.mark.slow
@pytest.mark.skipif(not (gen_train.BUNDLED / "model_index.json").is_file(), reason="no committed generator")
def test_the_committed_generator_draws_the_prompted_colour():
    """Judge-measured: for each of the 12 colours, "a <colour> dress" on 5 seeds, at the folder's
    default steps and guidance; the share the judge reads as the prompted colour must stay well
    above chance, and several colours must come out on most seeds (not one lucky seed)."""
    from tdri_engine.atelier.gen_eval import generate
    from tdri_engine.atelier.world import COLORS
    from tdri_engine.generator import load_pipeline

    pipe = load_pipeline(gen_train.BUNDLED, Spec(), torch.device("cpu"), torch.float32)
    the_judge = judge.load_bundled()
    colours = list(COLORS)
    prompts = [f"a {c} dress" for c in colours for _ in SEEDS]
    seeds = [s for _ in colours for s in SEEDS]
    images = generate(
        pipe, prompts, seeds, gen_train.DEFAULTS["steps"], gen_train.DEFAULTS["guidance"], batch=30
    )
    read = the_judge.read(images)
    per_colour = {c: 0 for c in colours}
    for r, p in zip(read, prompts, strict=True):
        c = p.split()[1]
        per_colour[c] += r["color"] == c
    share = sum(per_colour.values()) / len(prompts)
    assert share >= COLOUR_SHARE_BOUND, per_colour
    assert sum(v >= 3 for v in per_colour.values()) >= COLOURS_ON_MOST_SEEDS, per_colour
