"""Versioned adapters: a designer trains, switches, rolls back; bad files are refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tdri_engine import cli
from tdri_engine.errors import AdapterError
from tdri_engine.events import AdapterReady
from tdri_engine.optimizer import adapters as ad
from tdri_engine.optimizer.dpo import DPOConfig, DPOTrainer, PairTensors, attach_lora, detach_lora
from tdri_engine.optimizer.schedule import pending_pairs, trainable_pairs
from tdri_engine.optimizer.trainer import noise_scheduler_for, run_update, save_adapter
from tdri_engine.records import ImageRecord, PreferencePair
from tdri_engine.settings import EngineSettings
from tdri_engine.store import create_project, open_project

QUICK = DPOConfig(steps=2, batch_size=2, lr=1e-3, grad_checkpointing=False, eval_timesteps=1)


def _image(seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8), "RGB")


def _pairs(store, n: int, seed: int = 0, prompt: str = "a silk dress") -> list[PreferencePair]:
    pairs = []
    for i in range(n):
        a = store.add_image(_image(seed * 100 + 2 * i), ImageRecord(prompt=prompt))
        b = store.add_image(_image(seed * 100 + 2 * i + 1), ImageRecord(prompt=prompt))
        pairs.append(PreferencePair(prompt=prompt, image_left=a.id, image_right=b.id, choice="left"))
    store.put_many(pairs)
    return pairs


def _generate(pipe, seed: int = 3):
    return pipe(
        "a silk dress",
        num_inference_steps=3,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images


def test_an_exported_adapter_reloads_in_plain_diffusers_and_reproduces_the_output(
    tiny_sd, tiny_sd_dir, tmp_path
):
    from diffusers import StableDiffusionPipeline

    # Train a few steps (large steps so the adapter visibly changes the image).
    config = DPOConfig(steps=3, batch_size=2, lr=5e-2, beta=50.0, grad_checkpointing=False)
    state = attach_lora(tiny_sd.unet, config)
    g = torch.Generator().manual_seed(0)
    data = PairTensors(
        torch.randn(2, 4, 32, 32, generator=g),
        torch.randn(2, 4, 32, 32, generator=g),
        torch.randn(2, 77, 32, generator=g),
    )
    DPOTrainer(tiny_sd.unet, noise_scheduler_for(tiny_sd), config).train(data, evaluate=False)
    tiny_sd.unet.eval()
    trained = _generate(tiny_sd)
    save_adapter(tiny_sd, tiny_sd.unet, tmp_path / "v0001")
    detach_lora(tiny_sd.unet, state)
    base = _generate(tiny_sd)
    assert np.abs(trained - base).max() > 1e-3  # the adapter matters

    plain = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    plain.load_lora_weights(str(tmp_path / "v0001"))
    np.testing.assert_allclose(_generate(plain), trained, atol=1e-5)
    ad.validate_adapter_dir(tmp_path / "v0001", plain.unet)  # and it passes our own check


def test_versions_chain_switch_and_roll_back(tiny_sd, tiny_project):
    _pairs(tiny_project, 2, seed=1)
    v1 = run_update(tiny_project, tiny_sd, tiny_project.settings, config=QUICK)
    _pairs(tiny_project, 2, seed=2)
    assert len(trainable_pairs(tiny_project)) == 2  # only the new ones
    # the generator holds the active version loaded (as "tdri") while the next update trains
    tiny_sd.load_lora_weights(str(ad.active_adapter_dir(tiny_project)), adapter_name="tdri")
    with_v1 = _generate(tiny_sd)
    v2 = run_update(tiny_project, tiny_sd, tiny_project.settings, config=QUICK)
    assert (v1.id, v1.parent, v2.id, v2.parent) == ("v0001", None, "v0002", "v0001")
    assert abs(v2.loss_curve[0] - math.log(2)) > 1e-6  # started from v0001's weights, not from zero
    assert tiny_sd.unet.active_adapters() == ["tdri"]  # the generator's adapter is back, unchanged
    np.testing.assert_allclose(_generate(tiny_sd), with_v1, atol=1e-6)
    assert [v.id for v in ad.list_versions(tiny_project)] == ["v0001", "v0002"]
    assert ad.active_adapter(tiny_project).id == "v0002"
    assert ad.active_adapter_dir(tiny_project) == tiny_project.loras_dir / "v0002"
    assert (tiny_project.loras_dir / "v0002" / "meta.json").is_file()
    assert not [p for p in tiny_project.loras_dir.iterdir() if p.name.startswith(".")]  # no temp folders

    parent = ad.rollback(tiny_project)
    assert parent.id == "v0001" and ad.active_adapter(tiny_project).id == "v0001"
    rolled = ad.get_version(tiny_project, "v0002")
    assert rolled.status == "rolled_back"
    assert (
        len(trainable_pairs(tiny_project)) == 2 and pending_pairs(tiny_project) == []
    )  # retrain, not re-trigger

    ad.activate(tiny_project, None)
    assert ad.active_adapter_dir(tiny_project) is None
    ad.activate(tiny_project, "v0002")
    assert ad.active_adapter(tiny_project).id == "v0002"

    # the state survives closing and reopening the project
    path = tiny_project.path
    tiny_project.close()
    with open_project(path) as again:
        assert ad.active_adapter(again).id == "v0002"
        assert [v.status for v in ad.list_versions(again)] == ["ok", "rolled_back"]


def test_a_corrupt_or_foreign_adapter_is_refused_and_the_active_one_stays(tiny_sd, tiny_project):
    _pairs(tiny_project, 2, seed=1)
    run_update(tiny_project, tiny_sd, tiny_project.settings, config=QUICK)
    _pairs(tiny_project, 2, seed=2)
    run_update(tiny_project, tiny_sd, tiny_project.settings, config=QUICK)
    ad.activate(tiny_project, "v0001")
    weights = tiny_project.loras_dir / "v0002" / ad.WEIGHTS_NAME
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])  # truncated: a crash while copying
    with pytest.raises(AdapterError) as info:
        ad.activate(tiny_project, "v0002")
    assert "not a readable safetensors file" in info.value.message and info.value.what_to_do
    assert ad.active_adapter(tiny_project).id == "v0001"

    save_file({"model.layer.weight": torch.zeros(4, 4)}, str(weights))  # some other model's file
    with pytest.raises(AdapterError, match="not a diffusers LoRA"):
        ad.activate(tiny_project, "v0002")
    assert ad.active_adapter(tiny_project).id == "v0001"

    # a LoRA made for a bigger model (SDXL-like widths) does not fit this UNet
    foreign = {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora.down.weight": torch.zeros(
            4, 2048
        ),
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora.up.weight": torch.zeros(64, 4),
    }
    save_file(foreign, str(weights))
    ad.validate_adapter_dir(weights.parent)  # well-formed on its own ...
    with pytest.raises(AdapterError, match="for another model"):
        ad.activate(tiny_project, "v0002", unet=tiny_sd.unet)  # ... but not for this UNet
    assert ad.active_adapter(tiny_project).id == "v0001"

    with pytest.raises(AdapterError, match="no adapter version 'v0009'"):
        ad.activate(tiny_project, "v0009")


def test_a_user_adapter_learns_from_all_projects_and_a_project_can_use_it(tiny_sd, projects_root, tdri_home):
    settings = EngineSettings(width=64, height=64, steps=3)
    a = create_project(projects_root, "Coats", settings=settings)
    b = create_project(projects_root, "Dresses", settings=settings)
    _pairs(a, 1, seed=1)
    _pairs(b, 2, seed=2)
    ad.set_adapter_scope(a, "user")
    version = run_update(a, tiny_sd, settings, config=QUICK, scope="user")
    assert version.scope == "user" and version.pairs_used == 3  # one from Coats, two from Dresses
    assert ad.active_adapter_dir(a) == tdri_home / "user_adapters" / "v0001"
    assert ad.active_adapter_dir(b) is None  # Dresses still uses its own (none yet)
    ad.set_adapter_scope(b, "user")
    assert ad.active_adapter_dir(b) == tdri_home / "user_adapters" / "v0001"
    assert pending_pairs(a) == [] and all(p.used_in == [] for p in b.all(PreferencePair))
    a.close()
    b.close()


def test_cli_trains_lists_and_rolls_back(tiny_sd_dir, tiny_project, capsys, monkeypatch):
    import dataclasses

    import tdri_engine.models as models

    _pairs(tiny_project, 2, seed=1)
    path = tiny_project.path
    tiny_project.close()
    assert cli.main(["adapters", "list", "--project", str(path)]) == 0
    assert "No adapter versions yet" in capsys.readouterr().out

    # the project's profile points its generator at the tiny pipeline
    profile = models.demo_profile()
    roles = {
        r: dataclasses.replace(s, source=str(tiny_sd_dir)) if r == "generator" else s
        for r, s in profile.roles.items()
    }
    monkeypatch.setattr(models, "load_profile", lambda name: dataclasses.replace(profile, roles=roles))
    assert cli.main(["train", "--project", str(path), "--steps", "2", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "step 2/2" in out and "v0001: ok, 2 pairs, 2 steps" in out

    assert cli.main(["adapters", "list", "--project", str(path)]) == 0
    assert "* v0001  ok" in capsys.readouterr().out
    assert cli.main(["adapters", "rollback", "--project", str(path)]) == 0
    assert "none (base model)" in capsys.readouterr().out
    # the rolled-back version's pairs train again, here with L = L_DPO + lambda L_AE and
    # gradient checkpointing on (the default); after that nothing is new
    assert cli.main(["train", "--project", str(path), "--steps", "1", "--lambda-ae", "0.5"]) == 0
    assert "v0002: ok, 2 pairs" in capsys.readouterr().out
    config = json.loads((path / "loras" / "v0002" / "meta.json").read_text())["config"]
    assert config["lambda_ae"] == 0.5 and config["grad_checkpointing"] and not config["train_controlnet"]
    assert cli.main(["train", "--project", str(path), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "error: No update: 0 new preference pairs where 2 are needed." in err
    assert "what to do: Choose the better image of 2 more pairs" in err
    assert cli.main(["adapters", "activate", "v0042", "--project", str(path)]) == 1
    assert "no adapter version 'v0042'" in capsys.readouterr().err
    assert json.loads((path / "project.json").read_text())["meta"]["active_adapter"] == "v0002"


def test_a_loss_spike_keeps_the_previous_version_active(tiny_sd, tiny_project):
    _pairs(tiny_project, 2, seed=1)
    run_update(tiny_project, tiny_sd, tiny_project.settings, config=QUICK)
    _pairs(tiny_project, 4, seed=3)
    events = []
    overheated = DPOConfig(
        steps=6, batch_size=2, lr=0.3, max_grad_norm=1e9, grad_checkpointing=False, eval_timesteps=1
    )
    v2 = run_update(tiny_project, tiny_sd, tiny_project.settings, config=overheated, on_event=events.append)
    assert v2.status == "suspect" and "spiked" in v2.note
    ready = [e for e in events if isinstance(e, AdapterReady)]
    assert ready and ready[0].suspect and "previous version stays active" in ready[0].message
    assert ad.active_adapter(tiny_project).id == "v0001"
    assert (tiny_project.loras_dir / "v0002" / ad.WEIGHTS_NAME).is_file()  # kept for inspection
    assert len(trainable_pairs(tiny_project)) == 4 and pending_pairs(tiny_project) == []
