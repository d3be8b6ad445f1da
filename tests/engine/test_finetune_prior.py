"""`tdri finetune --prior-data`: prior preservation keeps what the base already drew.

Trained on its new pictures alone, the Atelier generator learnt "everything is teal" (held-out
prompts asking orange came out teal, docs/finetune/atelier_noprior.json). These tests train the
committed Atelier generator (a real base that draws its world) on a folder of flat teal pictures
captioned like Atelier garments: a caption-independent colour shift is the easiest thing for a
LoRA to learn, so the contamination that took the demo 1,000 steps shows here in 10. The prior
folder holds renderings of the trained world with their captions; the probe is OTHER renderings
of that world (none in the prior folder), noised at fixed timesteps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tdri_engine.cli import main as tdri
from tdri_engine.finetune.base import resolve_base
from tdri_engine.finetune.dataset import scan
from tdri_engine.finetune.train import FinetuneConfig, finetune

REPO = Path(__file__).resolve().parents[2]
ATELIER = REPO / "tdri_engine" / "atelier" / "weights" / "generator"
CONFIG = dict(steps=10, lr=1e-2, rank=4, batch_size=2, checkpoint_every=100, validation_steps=1)
SEEDS = (0, 1, 2, 3, 4)


def _world_folder(folder: Path, split: str, n: int, data_seed: int) -> Path:
    from tdri_engine.atelier.captions import full_caption
    from tdri_engine.atelier.splits import sample
    from tdri_engine.atelier.world import render

    folder.mkdir(parents=True)
    for i, s in enumerate(sample(split, n, data_seed)):
        render(s.record, s.seed, 64).save(folder / f"w{i}.png")
        (folder / f"w{i}.txt").write_text(full_caption(s.record, s.seed), encoding="utf-8")
    return folder


def make_folders(root: Path) -> dict[str, Path]:
    from tdri_engine.atelier.captions import full_caption
    from tdri_engine.atelier.splits import sample

    teal = root / "teal"
    teal.mkdir()
    rng = np.random.default_rng(0)
    for i, s in enumerate(sample("novel", 6, 0)):  # teal garments' captions, flat teal pictures
        arr = np.array([0, 128, 128]) + rng.integers(0, 20, (64, 64, 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(teal / f"t{i}.png")
        (teal / f"t{i}.txt").write_text(full_caption(s.record, s.seed), encoding="utf-8")
    return {
        "teal": teal,
        "prior": _world_folder(root / "world", "train", 6, 2),
        "probe": _world_folder(root / "probe", "train", 8, 3),
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_folders(tmp_path_factory.mktemp("prior"))


def _probe(pipe, folder: Path, size: int, seed: int = 123):
    """Noisy latents (4 timesteps per picture), timesteps, caption embeddings and the noise."""
    import torch

    from tdri_engine.optimizer.trainer import encode_prompts, image_tensor

    report = scan(folder)
    images = []
    for ex in report.examples:
        with Image.open(ex.path) as im:
            images.append(image_tensor(im, size, size))
    with torch.no_grad():
        latents = pipe.vae.encode(torch.stack(images)).latent_dist.mean * pipe.vae.config.scaling_factor
    embeds, _ = encode_prompts(pipe, [ex.caption for ex in report.examples], size, size)
    gen = torch.Generator().manual_seed(seed)
    latents, embeds = latents.repeat(4, 1, 1, 1), embeds.repeat(4, 1, 1)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    return pipe.scheduler.add_noise(latents, noise, t), t, embeds, noise


def measure(folders: dict[str, Path], runs: Path, config: dict, seeds: tuple[int, ...]) -> dict:
    """Per seed, without and with the prior: the drift of the probe's noise predictions from the
    base's (mean squared difference) and the LoRA's noise-prediction error on the teal set."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(
        ATELIER, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    size = config.get("resolution") or 64
    probe, teal = _probe(pipe, folders["probe"], size), _probe(pipe, folders["teal"], size)

    def predict(batch):
        with torch.no_grad():
            return pipe.unet(batch[0], batch[1], encoder_hidden_states=batch[2]).sample

    base_probe = predict(probe)
    base_teal_error = float(((predict(teal) - teal[3]) ** 2).mean())
    base = resolve_base(str(ATELIER))
    data, prior = scan(folders["teal"]), scan(folders["prior"], what="prior", flag="--prior-data")
    out: dict[tuple[int, bool], dict[str, float]] = {}
    results = {}
    for seed in seeds:
        for with_prior in (False, True):
            folder = runs / f"s{seed}{'p' if with_prior else ''}"
            result = finetune(
                base, data, FinetuneConfig(**config, seed=seed), folder, prior=prior if with_prior else None
            )
            results[(seed, with_prior)] = result
            pipe.load_lora_weights(str(result.lora_dir), adapter_name="t")
            out[(seed, with_prior)] = {
                "drift": float(((predict(probe) - base_probe) ** 2).mean()),
                "teal_error": float(((predict(teal) - teal[3]) ** 2).mean()),
            }
            pipe.unload_lora_weights()
    return {"runs": out, "results": results, "base_teal_error": base_teal_error, "base": base}


@pytest.fixture(scope="module")
def measured(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    return measure(folders, tmp_path_factory.mktemp("runs"), CONFIG, SEEDS)


def test_prior_preservation_keeps_the_trained_world_close_to_the_base_while_teal_is_learnt(measured):
    runs = measured["runs"]
    ratios = [runs[(s, True)]["drift"] / runs[(s, False)]["drift"] for s in SEEDS]
    # Measured (5 seeds, 10 steps at lr 1e-2): the probe's drift with the prior is 0.13-0.27 of
    # the drift without it (0.13, 0.20, 0.26, 0.25, 0.27). Required: under 0.5 on every seed, under 0.35
    # on average.
    assert max(ratios) < 0.5 and sum(ratios) / len(ratios) < 0.35, ratios
    # ... and the teal set is learnt as well as without the prior: its noise-prediction error
    # falls from the base's 0.141 to 0.089-0.102 either way (measured within 0.0015 of each
    # other); required: both runs below 0.85 x the base's, within 0.01 of each other.
    base = measured["base_teal_error"]
    for s in SEEDS:
        without, with_ = runs[(s, False)]["teal_error"], runs[(s, True)]["teal_error"]
        assert without < 0.85 * base and with_ < 0.85 * base, (s, without, with_, base)
        assert abs(with_ - without) < 0.01, (s, without, with_)


def test_a_run_with_a_prior_stopped_midway_resumes_to_the_same_losses_and_is_recorded(
    measured, folders: dict[str, Path], tmp_path: Path
):
    from tdri_engine.errors import TrainingError

    reference = measured["results"][(0, True)]
    meta = json.loads((reference.lora_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["prior"]["folder"] == str(folders["prior"]) and meta["prior"]["images"] == 6
    assert meta["prior"]["weight"] == 1.0 and len(meta["prior"]["loss_curve"]) == 10

    data, prior = scan(folders["teal"]), scan(folders["prior"])
    config = FinetuneConfig(**(CONFIG | {"checkpoint_every": 4}), seed=0)  # checkpoints at 4 and 8

    def stop(step: int, total: int, loss: float, eta: float) -> None:
        if step == 6:
            raise KeyboardInterrupt  # Ctrl-C after step 6: the checkpoint of step 6 is kept

    with pytest.raises(KeyboardInterrupt):
        finetune(measured["base"], data, config, tmp_path / "run", prior=prior, on_step=stop)
    assert json.loads((tmp_path / "run" / "checkpoint" / "checkpoint.json").read_text())["step"] == 6
    with pytest.raises(TrainingError) as caught:  # another prior is refused, not mixed in
        finetune(measured["base"], data, config, tmp_path / "run", prior=scan(folders["probe"]))
    assert "prior set" in caught.value.message
    with pytest.raises(TrainingError):  # so is none
        finetune(measured["base"], data, config, tmp_path / "run")
    resumed = finetune(measured["base"], data, config, tmp_path / "run", prior=prior)
    assert resumed.resumed_from == 6 and resumed.steps == 10 and len(resumed.losses) == 10
    assert resumed.losses == pytest.approx(reference.losses, rel=1e-4, abs=1e-6)
    assert resumed.prior_losses == pytest.approx(reference.prior_losses, rel=1e-4, abs=1e-6)


def test_a_bad_prior_folder_gets_a_clear_message_and_nothing_trains(
    folders: dict[str, Path], tmp_path: Path, capsys
):
    def run(prior: Path) -> tuple[int, str]:
        code = tdri(
            ["finetune", "--data", str(folders["teal"]), "--base", str(ATELIER), "--out", "x"]
            + ["--prior-data", str(prior)]
        )
        return code, capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(empty)
    assert code == 1 and "The prior folder" in err and "holds no images (it is empty)" in err

    code, err = run(tmp_path / "nowhere")
    assert code == 1 and "does not exist" in err and "Give --prior-data the folder" in err

    partly = tmp_path / "partly"
    partly.mkdir()
    for name in ("w0", "w1", "w2"):
        Image.open(folders["prior"] / f"{name}.png").save(partly / f"{name}.png")
    (partly / "w0.txt").write_text("a red dress", encoding="utf-8")
    (partly / "w2.txt").write_text("   ", encoding="utf-8")
    code, err = run(partly)
    assert code == 1 and "The prior set has problems; nothing was trained." in err
    assert "w1.png: no w1.txt" in err and "w2.png: the caption is empty" in err
    assert not (Path(os.environ["TDRI_HOME"]) / "finetunes").exists()

    with pytest.raises(Exception, match="prior_weight"):
        FinetuneConfig(prior_weight=-1.0)
