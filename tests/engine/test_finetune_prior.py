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

    from tdri_engine.optimizer.trainer import encode_prompts

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

    empty, _ = encode_prompts(pipe, [""], size, size)
    blank = (probe[0], probe[1], empty.expand_as(probe[2]), probe[3])  # the probe, no caption
    base_probe, base_blank = predict(probe), predict(blank)
    base_teal_error = float(((predict(teal) - teal[3]) ** 2).mean())
    base = resolve_base(str(ATELIER))
    data, prior = scan(folders["teal"]), scan(folders["prior"], what="prior", flag="--prior-data")
    out: dict[tuple[int, bool | str], dict[str, float]] = {}
    results = {}
    # False: no prior; True: the prior; "dropout": the prior, and half the captions empty
    for seed in seeds:
        for variant in (False, True, "dropout"):
            folder = runs / f"s{seed}{variant}"
            settings = FinetuneConfig(
                **config, seed=seed, caption_dropout=0.5 if variant == "dropout" else 0.0
            )
            result = finetune(base, data, settings, folder, prior=prior if variant else None)
            results[(seed, variant)] = result
            pipe.load_lora_weights(str(result.lora_dir), adapter_name="t")
            out[(seed, variant)] = {
                "drift": float(((predict(probe) - base_probe) ** 2).mean()),
                "blank_drift": float(((predict(blank) - base_blank) ** 2).mean()),
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


def test_caption_dropout_keeps_the_unconditional_prediction_guidance_subtracts_close_to_the_base(measured):
    """Classifier-free guidance subtracts the empty prompt's prediction. Trained on captions only,
    the LoRA moves that prediction freely (nothing in the loss holds it), which shifts every
    guided image; with ``caption_dropout`` the empty prompt is trained on the prior's pictures
    too, as the base was trained, and stays near the base's."""
    runs = measured["runs"]
    ratios = [runs[(s, "dropout")]["blank_drift"] / runs[(s, True)]["blank_drift"] for s in SEEDS]
    # Measured (5 seeds, 10 steps at lr 1e-2, half the prior's captions empty): the empty prompt's
    # predictions on the probe drift 0.70-0.91 as far from the base's as without dropout (0.91,
    # 0.70, 0.75, 0.73, 0.84; mean 0.79). Required: below 1 on every seed, below 0.9 on average.
    assert max(ratios) < 1.0 and sum(ratios) / len(ratios) < 0.9, ratios
    # the captioned predictions stay as close as with the prior alone (drift within 1.5x of it)
    for s in SEEDS:
        assert runs[(s, "dropout")]["drift"] < 1.5 * runs[(s, True)]["drift"], s


def test_a_cosine_schedule_ends_at_zero_and_a_run_cannot_resume_under_another_schedule(
    folders: dict[str, Path], tmp_path: Path
):
    from tdri_engine.errors import BadInput, TrainingError

    config = FinetuneConfig(steps=100, lr=1e-3, lr_schedule="cosine")
    assert config.lr_at(0) == pytest.approx(2e-4)  # the warm-up (5 steps) as before
    assert config.lr_at(5) == pytest.approx(1e-3) and config.lr_at(99) < 1e-6
    lrs = [config.lr_at(s) for s in range(5, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # down all the way
    assert FinetuneConfig(steps=100, lr=1e-3).lr_at(99) == 1e-3  # the default stays constant
    with pytest.raises(BadInput, match="lr_schedule"):
        FinetuneConfig(lr_schedule="linear")
    with pytest.raises(BadInput, match="caption_dropout"):
        FinetuneConfig(caption_dropout=1.0)

    base, data = resolve_base(str(ATELIER)), scan(folders["teal"])
    settings = dict(steps=4, lr=1e-3, rank=2, batch_size=2, checkpoint_every=2, validation_steps=1)

    def stop(step: int, total: int, loss: float, eta: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(base, data, FinetuneConfig(**settings, lr_schedule="cosine"), tmp_path / "run", on_step=stop)
    with pytest.raises(TrainingError):  # the schedule is part of what a resumed run must share
        finetune(base, data, FinetuneConfig(**settings), tmp_path / "run")
    done = finetune(base, data, FinetuneConfig(**settings, lr_schedule="cosine"), tmp_path / "run")
    assert done.resumed_from == 2 and done.steps == 4


# --------------------------------------------------------------------------------------------
# Learnt words (--learn-word): the new word's token embedding is learnt; a prompt without it
# goes through exactly the base's text encoder, so its image is the base's.
# --------------------------------------------------------------------------------------------

WORDS = dict(steps=10, lr=1e-2, word_lr=5e-2, rank=4, batch_size=2, checkpoint_every=100, validation_steps=1)


@pytest.fixture(scope="module")
def learnt(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per seed: the teal set's noise-prediction error and the probe's predictions, base and with
    the learnt word (words only: the LoRA stays zero)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from tdri_engine.finetune.words import apply_words, restore_words

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(
        ATELIER, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)

    from tdri_engine.optimizer.trainer import encode_prompts

    def probe_of(folder: Path):
        noisy, t, _, noise = _probe(pipe, folder, 64)
        captions = [ex.caption for ex in scan(folder).examples] * 4
        return noisy, t, captions, noise

    def error_and_prediction(batch):
        noisy, t, captions, noise = batch
        embeds, _ = encode_prompts(pipe, captions, 64, 64)
        with torch.no_grad():
            pred = pipe.unet(noisy, t, encoder_hidden_states=embeds).sample
        return float(((pred - noise) ** 2).mean()), pred

    teal, probe = probe_of(folders["teal"]), probe_of(folders["probe"])
    base_teal, _ = error_and_prediction(teal)
    _, base_probe = error_and_prediction(probe)
    base, data = resolve_base(str(ATELIER)), scan(folders["teal"])
    runs = {}
    root = tmp_path_factory.mktemp("words")
    for seed in SEEDS:
        config = FinetuneConfig(**WORDS, seed=seed, learn_words=("teal",), train_lora=False)
        result = finetune(base, data, config, root / f"s{seed}")
        pipe.load_lora_weights(str(result.lora_dir), adapter_name="w")
        replaced = apply_words(pipe, result.lora_dir)
        teal_error, _ = error_and_prediction(teal)
        _, probe_pred = error_and_prediction(probe)
        restore_words(pipe, replaced)
        pipe.unload_lora_weights()
        _, back = error_and_prediction(probe)
        runs[seed] = {
            "teal_error": teal_error,
            "probe_change": float((probe_pred - base_probe).abs().max()),
            "restored_change": float((back - base_probe).abs().max()),
            "result": result,
        }
    return {"runs": runs, "base_teal_error": base_teal, "base": base, "data": data}


def test_a_learnt_word_lowers_its_pictures_error_and_leaves_every_other_prompt_exactly_the_base(learnt):
    base = learnt["base_teal_error"]
    for seed, run in learnt["runs"].items():
        # the probe's captions have no "teal": their predictions are the base's, bit for bit, and
        # so are they again after the rows are given back
        assert run["probe_change"] == 0.0 and run["restored_change"] == 0.0, (seed, run)
    # ... while the teal pictures' error falls: measured (5 seeds, 10 steps, word lr 5e-2) from the
    # base's 0.1406 to 0.1304-0.1311 (0.927-0.933 of it); required: below 0.95 of it on every seed
    errors = [run["teal_error"] for run in learnt["runs"].values()]
    assert max(errors) < 0.95 * base, (base, errors)


def test_the_learnt_rows_are_saved_with_the_lora_and_a_resumed_run_ends_the_same(
    learnt, folders: dict[str, Path], tmp_path: Path
):
    from safetensors.torch import load_file

    reference = learnt["runs"][0]["result"]
    meta = json.loads((reference.lora_dir / "meta.json").read_text(encoding="utf-8"))
    ids = meta["learned_words"]["teal"]
    rows = load_file(str(reference.lora_dir / "learned_words.safetensors"))
    assert list(rows) == ["teal"] and rows["teal"].shape == (len(ids), 64)
    config = FinetuneConfig(
        **(WORDS | {"checkpoint_every": 4}), seed=0, learn_words=("teal",), train_lora=False
    )

    def stop(step: int, total: int, loss: float, eta: float) -> None:
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(learnt["base"], learnt["data"], config, tmp_path / "run", on_step=stop)
    resumed = finetune(learnt["base"], learnt["data"], config, tmp_path / "run")
    assert resumed.resumed_from == 6 and resumed.losses == pytest.approx(reference.losses, rel=1e-4)
    again = load_file(str(resumed.lora_dir / "learned_words.safetensors"))["teal"]
    assert float((again - rows["teal"]).abs().max()) < 1e-5


def test_a_learnt_words_file_that_does_not_fit_is_refused_and_nothing_is_written(learnt, tmp_path: Path):
    import shutil

    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from tdri_engine.errors import AdapterError
    from tdri_engine.finetune.words import WORDS_FILE, apply_words

    pipe = StableDiffusionPipeline.from_pretrained(
        ATELIER, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    before = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    folder = tmp_path / "lora"
    shutil.copytree(learnt["runs"][0]["result"].lora_dir, folder)
    cases = {
        "wrong width": {"teal": torch.zeros(1, 65), "red": torch.zeros(1, 64)},
        "not finite": {"red": torch.zeros(1, 64), "teal": torch.full((1, 64), float("nan"))},
    }
    for name, rows in cases.items():
        save_file(rows, str(folder / WORDS_FILE))
        with pytest.raises(AdapterError):
            apply_words(pipe, folder)
        after = pipe.text_encoder.get_input_embeddings().weight
        assert torch.equal(after, before), name  # "red" was not written before "teal" failed
    (folder / WORDS_FILE).write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(AdapterError, match="not a readable safetensors"):
        apply_words(pipe, folder)


def test_learn_word_that_no_caption_uses_or_an_sdxl_base_gets_a_clear_message(
    folders: dict[str, Path], capsys, tmp_path: Path
):
    from tdri_engine.demo.diffusion import tiny_sdxl_pipeline

    sdxl = tmp_path / "sdxl"
    tiny_sdxl_pipeline(tmp_path / "tok").save_pretrained(sdxl, safe_serialization=True)
    code = tdri(["finetune", "--data", str(folders["teal"]), "--base", str(sdxl), "--out", "x"]
                + ["--learn-word", "teal", "--dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "--learn-word is for SD-1.x bases" in err, err

    code = tdri(["finetune", "--data", str(folders["teal"]), "--base", str(ATELIER), "--out", "x"]
                + ["--learn-word", "chartreuse"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "No caption" in err and "'chartreuse'" in err and "--learn-word" in err
    code = tdri(["finetune", "--data", str(folders["teal"]), "--base", str(ATELIER), "--out", "x"]
                + ["--words-only"])  # fmt: skip
    assert code == 1 and "name at least one word" in capsys.readouterr().err


def test_a_profile_whose_domain_lora_learnt_a_word_changes_only_the_prompts_that_use_it(learnt):
    """Through the studio's generator: the domain LoRA's learnt word goes into the text encoder
    when the profile's LoRA loads and comes out when it is switched off."""
    from tdri_engine.generator import Generator
    from tdri_engine.models import DomainLora, ModelRegistry, profile_from_dict
    from tdri_engine.settings import EngineSettings

    lora = learnt["runs"][0]["result"].lora_dir
    profile = profile_from_dict(
        {
            "name": "house",
            "roles": {"generator": {"kind": "sd15", "source": str(ATELIER)}},
            "domain_lora": {"path": str(lora), "weight": 1.0, "trigger_words": ["teal"]},
        }
    )
    gen = Generator(ModelRegistry(profile, device="cpu"), EngineSettings(width=64, height=64, steps=4))

    def image(prompt: str, domain: bool, seed: int) -> np.ndarray:
        gen.domain_lora = DomainLora(str(lora), 1.0, ("teal",)) if domain else None
        result = gen.generate(prompt, seed=seed)
        assert not result.warnings, result.warnings
        return np.asarray(result.image, dtype=np.float32)

    for seed in range(3):
        base_teal, base_red = image("a teal dress", False, seed), image("a red dress", False, seed)
        assert np.array_equal(image("a red dress", True, seed), base_red)  # no teal: the base's
        changed = float(np.abs(image("a teal dress", True, seed) - base_teal).mean())
        # measured (mean |difference| in 0-255 levels, seeds 0-2): 51-71; required: above 1
        assert changed > 1.0, (seed, changed)
        assert np.array_equal(image("a teal dress", False, seed), base_teal)  # switched off: the base


def test_the_atelier_fine_tuning_demo_runs_end_to_end_at_a_small_size(tmp_path: Path):
    """The command behind docs/finetune/atelier.json, at 2 steps and 2 prompts of each kind:
    the folders, the training with the prior and the learnt word, both models' pictures and the
    verdict are written."""
    from tdri_engine.finetune import demo_atelier

    out = tmp_path / "figures.json"
    args = ["--out", str(out), "--work", str(tmp_path / "work"), "--images", "4", "--prior", "4"]
    assert demo_atelier.main([*args, "--eval", "2", "--steps", "2", "--grid", str(tmp_path / "g.png")]) == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["training"]["config"]["learn_words"] == ["teal"] and figures["training"]["steps"] == 2
    assert (tmp_path / "work" / "run" / "lora" / "learned_words.safetensors").is_file()
    assert set(figures["verdict"]) >= {
        "both_halves_hold",
        "new_attribute_far_more_often",
        "other_aspects_as_good",
    }
    assert figures["figures"]["novel"]["prompts"] == 2 and (tmp_path / "g.png").is_file()


def test_models_check_reads_a_domain_loras_learnt_words_and_names_what_is_wrong(learnt, tmp_path: Path):
    import shutil

    import torch
    from safetensors.torch import save_file

    from tdri_engine.finetune.profiles import domain_lora_problem
    from tdri_engine.finetune.words import WORDS_FILE
    from tdri_engine.models import profile_from_dict

    folder = tmp_path / "lora"
    shutil.copytree(learnt["runs"][0]["result"].lora_dir, folder)

    def problem() -> str:
        profile = profile_from_dict(
            {
                "name": "house",
                "roles": {"generator": {"kind": "sd15", "source": str(ATELIER)}},
                "domain_lora": {"path": str(folder), "weight": 1.0, "trigger_words": ["teal"]},
            }
        )
        return domain_lora_problem(profile)

    assert problem() == ""
    save_file({"teal": torch.zeros(1, 65)}, str(folder / WORDS_FILE))
    assert "shape (1, 65), not (tokens, 64)" in problem()
    save_file({"teal": torch.full((1, 64), float("inf"))}, str(folder / WORDS_FILE))
    assert "NaN or infinite" in problem()
    (folder / WORDS_FILE).write_bytes(b"not safetensors")
    assert "not a readable safetensors file" in problem()
