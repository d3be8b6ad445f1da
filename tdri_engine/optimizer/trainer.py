"""One Diffusion-DPO update of a project's LoRA from the user's choices (paper 3.2.3, 4.2.1).

``run_update`` gathers the decisive preference pairs that no accepted version has used, encodes
both images with the pipeline's VAE and the prompt they were made from with its text encoder
(``schedule.pair_prompt``), trains a LoRA on the generator's own UNet, or with
``train_controlnet`` on the pose ControlNet (eq. 9; the reference is the same network with the
adapter switched off), and writes ``loras/vNNNN/`` in one rename. The models are given back
exactly as they were, whatever happens. The configuration comes from the project's ``dpo_*``
settings (``config_from_settings``). With ``lambda_ae > 0`` the loss is L_DPO + lambda L_AE,
L_AE read from the same policy forward, gradient checkpointing on (see ``dpo.dpo_objective``).

On a model profile with a domain LoRA (``tdri finetune``, ``models.DomainLora``) the adapter trains
on top of it: the domain LoRA is loaded frozen at the profile's weight under the trained one, so
the policy is base + domain + adapter and the reference base + domain, the model the images are
made with (the generator stacks the two the same way). Its file is only read.

A ControlNet LoRA is activated on its own line (``adapters.active_controlnet_adapter_dir``):
rounds with a pose load it onto the ControlNet, beside the UNet's active LoRA.

Safety: a loss spike (final loss above ``spike_factor`` times the initial one) or an implicit
accuracy that falls (measured before and after on the update's pairs with fixed noise) marks the
version ``suspect``; it is kept for inspection but the previous version stays active.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Cancelled, OutOfMemory, TdriError, TrainingError
from ..events import AdapterReady, CancelToken, EventSink, Progress, TrainingProgress, Warning_, ignore_events
from ..models import _is_oom
from ..records import AdapterVersion, Dialogue, PreferencePair, now_iso
from . import adapters as ad
from .dpo import (
    TRAIN_ADAPTER,
    DPOConfig,
    DPOTrainer,
    LoraAttachment,
    PairTensors,
    TrainResult,
    active_adapter_names,
    attach_lora,
    detach_lora,
    peft_adapter_names,
)
from .schedule import decisive_pairs, left_out_choices, pair_prompt, trainable_pairs

ENCODE_BATCH = 8
# The profile's domain LoRA while an update trains on top of it: its own name, so that the
# generator's loaded copy ('tdri_domain') is left as it is. Never a prefix of TRAIN_ADAPTER's
# parameter names (``dpo.lora_parameters`` matches ".tdri_train").
FROZEN_DOMAIN_ADAPTER = "tdri_domain_frozen"
FROM_PROFILE = "profile"  # run_update's default: the domain LoRA of the registry's profile


@dataclass
class PairRef:
    """A preference pair and the project that holds its images."""

    store: Any
    pair: PreferencePair


def _pipeline(registry_or_pipe: Any) -> Any:
    if hasattr(registry_or_pipe, "unet"):
        return registry_or_pipe
    if hasattr(registry_or_pipe, "get"):
        return registry_or_pipe.get("generator")
    raise TypeError("run_update needs a diffusers pipeline or a ModelRegistry")


def _domain_lora(registry_or_pipe: Any, domain_lora: Any) -> Any:
    """The domain LoRA the update trains on top of: ``domain_lora`` when given (None: none),
    else the registry's profile's (a bare pipeline has no profile: none)."""
    if domain_lora != FROM_PROFILE:
        return domain_lora
    if hasattr(registry_or_pipe, "unet"):
        return None
    return getattr(getattr(registry_or_pipe, "profile", None), "domain_lora", None)


def _check_domain_lora(domain: Any, unet: Any) -> Path:
    """The domain LoRA's folder, validated against this UNet; ``TrainingError`` if unusable."""
    folder = Path(domain.path).expanduser().resolve()
    try:
        ad.validate_adapter_dir(folder, unet)
    except ad.AdapterError as exc:
        raise TrainingError(
            f"No update: the profile's domain LoRA {folder} cannot be used ({exc.message}). The "
            "project's adapter trains on top of it, so nothing was trained and nothing was written.",
            "Fine-tune it again (`tdri finetune`), or choose another model profile in Settings.",
        ) from exc
    return folder


def load_frozen_lora(model: Any, folder: Path, name: str, weight: float) -> LoraAttachment:
    """Load a LoRA folder (diffusers format, safetensors only, its UNet part) into ``model`` as
    ``name``, the only adapter active, at ``weight``, with no gradient; ``detach_lora`` with
    the returned record takes it off and gives back the adapters that were active before.

    Loaded like the generator loads it (same file, same metadata), so the frozen copy predicts
    what the generator's 'tdri_domain' does at the same weight. ``tdri finetune`` trains the
    UNet alone; a text-encoder part of a foreign LoRA is not used for training.
    """
    state = LoraAttachment(
        adapter_name=name,
        had_adapters=peft_adapter_names(model),
        active_before=active_adapter_names(model),
        requires_grad_before=any(p.requires_grad for p in model.parameters()),
        training_before=model.training,
        checkpointing_before=bool(getattr(model, "is_gradient_checkpointing", False)),
    )
    if name in state.had_adapters:  # a previous run died before cleaning up
        model.delete_adapters(name)
        state.had_adapters.remove(name)
    try:
        model.load_lora_adapter(
            str(folder),
            prefix="unet",
            weight_name=ad.WEIGHTS_NAME,
            use_safetensors=True,
            local_files_only=True,
            adapter_name=name,
        )
        model.set_adapters([name], weights=[float(weight)])
        model.requires_grad_(False)
    except BaseException:
        detach_lora(model, state)
        raise
    return state


def _controlnet(registry_or_pipe: Any, pipe: Any) -> Any:
    cn = getattr(pipe, "controlnet", None)
    if cn is None and hasattr(registry_or_pipe, "get") and not hasattr(registry_or_pipe, "unet"):
        cn = registry_or_pipe.get("controlnet")
    return cn


def training_size(pipe: Any, examples: list[PairRef], width: int, height: int) -> tuple[int, int]:
    """Train at the generation size, or at the images' own size when they are smaller (no
    upsampling), rounded down to what the VAE and the UNet divide evenly."""
    from ..records import ImageRecord

    first = examples[0]
    rec = first.store.get(ImageRecord, first.pair.winner) if first.pair.winner else None
    if rec is not None and rec.width and rec.height and rec.width * rec.height < width * height:
        width, height = rec.width, rec.height
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    multiple = vae_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    return max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple)


def noise_scheduler_for(pipe: Any) -> Any:
    """The training noise schedule of the pipeline's (inference) scheduler: same betas."""
    from diffusers import DDPMScheduler

    with contextlib.suppress(Exception):
        return DDPMScheduler.from_config(pipe.scheduler.config)
    return pipe.scheduler


def config_from_settings(settings: Any, **changes: Any) -> DPOConfig:
    """The update's ``DPOConfig`` from a project's settings (``dpo_*`` fields), then ``changes``.

    Settings written before those fields existed give the ``DPOConfig`` defaults.
    """
    from_settings = {
        "lr": getattr(settings, "dpo_lr", None),
        "steps": getattr(settings, "dpo_steps", None),
        "lambda_ae": getattr(settings, "dpo_lambda_ae", None),
        "train_controlnet": getattr(settings, "dpo_train_controlnet", None),
    }
    values = {k: v for k, v in from_settings.items() if v is not None}
    values.update({k: v for k, v in changes.items() if v is not None})
    return DPOConfig(**values)


def _oom_error(config: DPOConfig, what: str) -> OutOfMemory:
    tips = []
    if config.batch_size > 1:
        tips.append(f"lower batch_size (now {config.batch_size}; raise grad_accum to keep the same batch)")
    if not config.grad_checkpointing:
        tips.append("turn on grad_checkpointing")
    if config.mixed_precision in ("no", "auto"):
        tips.append("set mixed_precision to bf16 (or fp16)")
    if config.rank > 4:
        tips.append(f"lower the LoRA rank (now {config.rank})")
    tips.append("or use a smaller image size in the settings")
    return OutOfMemory(
        f"Out of memory while {what}. Nothing was written; the model is as it was.",
        "To fit: " + "; ".join(tips) + ".",
    )


# --------------------------------------------------------------------------------------------
# Gathering and encoding pairs
# --------------------------------------------------------------------------------------------


def _gather(store: Any, scope: str, opened: list[Any]) -> list[PairRef]:
    """The pairs to train on; projects opened here (read-only) are added to ``opened``."""
    if scope == "project":
        return [PairRef(store, p) for p in trainable_pairs(store, "project")]
    # the generalised adapter learns from every project of this projects folder
    from ..store import list_projects, open_project

    used = ad.user_used_pairs(accepted_only=True)
    out: list[PairRef] = []
    for info in list_projects(store.path.parent):
        if info.problem:
            continue
        other = store if Path(info.path).resolve() == Path(store.path).resolve() else None
        if other is None:
            try:
                other = open_project(info.path, read_only=True)
            except TdriError:
                continue  # damaged or from a newer build: its pairs wait
            opened.append(other)
        for pair in decisive_pairs(other):
            if ad.user_pair_key(other, pair) not in used:
                out.append(PairRef(other, pair))
    return out


def image_tensor(image: Any, width: int, height: int) -> Any:
    """PIL -> (3, H, W) in [-1, 1], centre-cropped to the aspect ratio, then resized."""
    import numpy as np
    import torch
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:
            nw = round(h * target)
            image = image.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
        else:
            nh = round(w / target)
            image = image.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))
    if image.size != (width, height):
        image = image.resize((width, height), Image.BICUBIC)
    arr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return arr.permute(2, 0, 1).contiguous()


def _control_tensor(image: Any, width: int, height: int) -> Any:
    return (image_tensor(image, width, height) + 1.0) / 2.0  # ControlNets take [0, 1]


def encode_images(vae: Any, images: Any, generator: Any = None) -> Any:
    """VAE latents (scaled as the UNet sees them), in batches, without gradients.

    AutoencoderKL: a sample of the posterior (seeded), as the authors' script; the tiny
    autoencoder (TAESD) is deterministic.
    """
    import torch

    out = []
    scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    shift = getattr(vae.config, "shift_factor", None)
    with torch.no_grad():
        for start in range(0, images.shape[0], ENCODE_BATCH):
            x = images[start : start + ENCODE_BATCH].to(vae.device, vae.dtype)
            enc = vae.encode(x)
            if hasattr(enc, "latent_dist"):
                lat = enc.latent_dist.sample(generator=generator)
            else:
                lat = enc.latents if hasattr(enc, "latents") else enc[0]
            if shift:
                lat = lat - shift
            out.append((lat * scale).float())
    return torch.cat(out)


def encode_prompts(
    pipe: Any, prompts: list[str], width: int, height: int
) -> tuple[Any, dict[str, Any] | None]:
    """Text embeddings (and SDXL's pooled embeddings + time ids) for the prompts, no CFG."""
    import torch

    device = pipe.unet.device
    with torch.no_grad():
        if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            proj = pipe.text_encoder_2.config.projection_dim
            time_ids = pipe._get_add_time_ids(
                (height, width), (0, 0), (height, width), dtype=embeds.dtype, text_encoder_projection_dim=proj
            )
            time_ids = time_ids.to(device).repeat(len(prompts), 1)
            return embeds.float(), {"text_embeds": pooled.float(), "time_ids": time_ids.float()}
        embeds = pipe.encode_prompt(prompts, device, 1, False)[0]
        return embeds.float(), None


def build_pair_tensors(
    pipe: Any,
    examples: list[PairRef],
    width: int,
    height: int,
    *,
    seed: int,
    with_control: bool = False,
    with_tokens: bool = False,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
) -> tuple[PairTensors, list[PairRef]]:
    """Encode the usable pairs; a pair whose image is missing is skipped with a warning.

    Each pair is conditioned on the prompt its images were made from (``schedule.pair_prompt``).
    """
    import torch

    from .attend_excite import subject_token_indices

    winners, losers, controls, kept = [], [], [], []
    for i, ex in enumerate(examples):
        if cancel is not None:
            cancel.raise_if_cancelled()
        on_event(Progress("train-prepare", i, len(examples), "reading the chosen images"))
        try:
            w = image_tensor(ex.store.load_image(ex.pair.winner), width, height)
            l_ = image_tensor(ex.store.load_image(ex.pair.loser), width, height)
            control = _pair_control(ex, width, height) if with_control else None
        except TdriError as exc:
            on_event(Warning_(f"Preference pair {ex.pair.id} skipped: {exc.message}"))
            continue
        if with_control and control is None:
            on_event(
                Warning_(f"Preference pair {ex.pair.id} skipped: it has no pose map for the ControlNet.")
            )
            continue
        winners.append(w)
        losers.append(l_)
        if control is not None:
            controls.append(control)
        kept.append(ex)
    if not kept:
        return PairTensors(torch.zeros(0), torch.zeros(0), torch.zeros(0)), kept
    gen = torch.Generator(device="cpu").manual_seed(seed)
    vae_gen = (
        gen if pipe.vae.device.type == "cpu" else torch.Generator(device=pipe.vae.device).manual_seed(seed)
    )
    lat = encode_images(pipe.vae, torch.stack(winners + losers), vae_gen)
    n = len(kept)
    prompts = [pair_prompt(ex.store, ex.pair)[0] for ex in kept]  # the images' own prompts
    embeds, added = encode_prompts(pipe, prompts, width, height)
    tokens = None
    if with_tokens:
        tokens = [subject_token_indices(pipe.tokenizer, prompt) for prompt in prompts]
    data = PairTensors(
        latents_w=lat[:n],
        latents_l=lat[n:],
        embeds=embeds,
        added_cond=added,
        control=torch.stack(controls) if controls else None,
        token_indices=tokens,
    )
    return data, kept


def _pair_control(ex: PairRef, width: int, height: int) -> Any:
    from PIL import Image

    meta = ex.pair.train_meta or {}
    if meta.get("control_image"):
        return _control_tensor(ex.store.load_image(meta["control_image"]), width, height)
    if ex.pair.dialogue_id:
        dialogue = ex.store.get(Dialogue, ex.pair.dialogue_id)
        if dialogue is not None and dialogue.pose_file:
            path = Path(ex.store.path) / dialogue.pose_file
            if path.is_file():
                with Image.open(path) as im:
                    return _control_tensor(im, width, height)
    return None


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def save_adapter(pipe: Any, owner: Any, folder: Path, *, controlnet: bool = False) -> Path:
    """Write the training adapter of ``owner`` into ``folder`` (diffusers format, safetensors)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    if controlnet:
        owner.save_lora_adapter(
            str(folder), adapter_name=TRAIN_ADAPTER, weight_name=ad.CONTROLNET_WEIGHTS_NAME
        )
        return folder / ad.CONTROLNET_WEIGHTS_NAME
    state = get_peft_model_state_dict(owner, adapter_name=TRAIN_ADAPTER)
    layers = convert_state_dict_to_diffusers(state)
    metadata = owner.peft_config[TRAIN_ADAPTER].to_dict()
    type(pipe).save_lora_weights(
        save_directory=str(folder),
        unet_lora_layers=layers,
        safe_serialization=True,
        unet_lora_adapter_metadata=metadata,
    )
    return folder / ad.WEIGHTS_NAME


def load_parent(owner: Any, folder: Path, *, controlnet: bool = False) -> None:
    """Start from the parent version: its weights go into the training adapter."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    name = ad.CONTROLNET_WEIGHTS_NAME if controlnet else ad.WEIGHTS_NAME
    state = load_file(str(folder / name))
    if not controlnet:
        state = {k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")}
    state = convert_unet_state_dict_to_peft(state)
    result = set_peft_model_state_dict(owner, state, adapter_name=TRAIN_ADAPTER)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ad.AdapterError(
            f"The parent adapter in {folder} does not fit this model ({len(unexpected)} unknown layers).",
            "Roll back to the base model or activate another version before training.",
        )


def _fsync_tree(folder: Path) -> None:
    from ..store.fsutil import fsync_dir

    for p in folder.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _write_version(
    pipe: Any,
    owner: Any,
    root: Path,
    vid: str,
    meta: dict[str, Any],
    *,
    controlnet: bool,
) -> Path:
    """Write ``root/vid`` through a hidden temporary folder and one rename."""
    from ..store.fsutil import fsync_dir, storage_error

    final = root / vid
    tmp = root / f".tmp-{vid}-{secrets.token_hex(4)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        save_adapter(pipe, owner, tmp, controlnet=controlnet)
        (tmp / ad.META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        os.rename(tmp, final)
        fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise storage_error(exc, "save the adapter", final) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --------------------------------------------------------------------------------------------
# The update
# --------------------------------------------------------------------------------------------


def _verdict(result: TrainResult, config: DPOConfig) -> tuple[bool, str]:
    problems = []
    if result.final_loss > config.spike_factor * result.initial_loss:
        problems.append(
            f"the loss spiked (final {result.final_loss:.4f} > {config.spike_factor:g} x initial {result.initial_loss:.4f})"
        )
    if result.eval_before is not None and result.eval_after is not None:
        (_, acc0), (_, acc1) = result.eval_before, result.eval_after
        if acc1 < acc0:
            problems.append(f"the implicit accuracy fell ({acc0:.2f} -> {acc1:.2f})")
    return bool(problems), "; ".join(problems)


def run_update(
    store: Any,
    registry_or_pipe: Any,
    settings: Any,
    *,
    config: DPOConfig | None = None,
    scope: str = "project",
    cancel: CancelToken | None = None,
    on_event: EventSink | None = None,
    domain_lora: Any = FROM_PROFILE,
) -> AdapterVersion:
    """Train one adapter version on the pairs not yet used; see the module docstring.

    ``domain_lora`` (a ``models.DomainLora``, or None for none) is what the adapter trains on
    top of; by default the profile's of a ``ModelRegistry`` (a bare pipeline: none). An unusable
    one raises ``TrainingError`` before anything trains.

    Raises TrainingError (too few pairs, diverged), Cancelled, OutOfMemory; in every one of
    those cases nothing is written and the UNet is as it was.
    """

    config = config or config_from_settings(settings)
    emit = on_event or ignore_events
    if scope not in ad.SCOPES:
        raise TrainingError(f"Unknown adapter scope {scope!r}.", "Use 'project' or 'user'.")
    if getattr(store, "read_only", False):
        raise TrainingError("The project is open read-only: no adapter can be saved.", "Open it normally.")

    opened: list[Any] = []
    try:
        return _run_update(
            store, registry_or_pipe, settings, config, scope, cancel, emit, opened, domain_lora
        )
    finally:
        for other in opened:
            other.close()


def _run_update(
    store: Any,
    registry_or_pipe: Any,
    settings: Any,
    config: DPOConfig,
    scope: str,
    cancel: CancelToken | None,
    emit: EventSink,
    opened: list[Any],
    domain_lora: Any = FROM_PROFILE,
) -> AdapterVersion:
    import torch

    examples = _gather(store, scope, opened)
    if len(examples) < config.min_pairs:
        ties, both_bad = left_out_choices(store)
        extra = []
        if ties:
            extra.append(f"{ties} tie{'s' if ties != 1 else ''}")
        if both_bad:
            extra.append(f"{both_bad} 'both bad'")
        note = f" ({' and '.join(extra)} recorded, which carry no preference)" if extra else ""
        need = config.min_pairs - len(examples)
        raise TrainingError(
            f"No update: {len(examples)} new preference pair{'s' if len(examples) != 1 else ''} where "
            f"{config.min_pairs} are needed{note}.",
            f"Choose the better image of {need} more pair{'s' if need != 1 else ''} (left or right), then train.",
            kind="training-too-few-pairs",
        )

    pipe = _pipeline(registry_or_pipe)
    controlnet = _controlnet(registry_or_pipe, pipe) if config.train_controlnet else None
    if config.train_controlnet and controlnet is None:
        raise TrainingError(
            "ControlNet tuning needs the pose ControlNet, which is not loaded.", "Add one to the profile."
        )
    owner = controlnet if config.train_controlnet else pipe.unet
    domain = _domain_lora(registry_or_pipe, domain_lora)
    domain_dir = _check_domain_lora(domain, pipe.unet) if domain is not None else None
    width, height = training_size(pipe, examples, int(settings.width), int(settings.height))

    if config.train_controlnet and scope != "project":
        raise TrainingError(
            "ControlNet tuning is per project: the user's generalised adapter is a UNet LoRA.",
            "Switch the project to its own adapters (`tdri adapters scope project`), or train without --controlnet.",
        )
    if config.train_controlnet:  # the ControlNet's own line of versions
        cn_vid = store.get_meta(ad.CONTROLNET_ACTIVE_META, None)
        parent = next((v for v in ad.list_versions(store, "project") if v.id == cn_vid), None)
    else:
        parent = ad.active_adapter(store, scope)
    parent_dir = ad.version_dir(store, parent) if parent is not None else None
    if parent is not None and parent_dir is not None:
        pmeta = ad.read_meta(parent_dir).get("config", {})
        if pmeta.get("train_controlnet", False) != config.train_controlnet:
            parent, parent_dir = None, None  # a ControlNet LoRA cannot seed a UNet LoRA
        elif pmeta.get("rank") and (pmeta.get("rank") != config.rank or pmeta.get("alpha") != config.alpha):
            config = config.replace(
                rank=int(pmeta["rank"]), alpha=pmeta.get("alpha")
            )  # keep the parent's shape

    if cancel is not None:
        cancel.raise_if_cancelled()
    state = None
    domain_state = None
    domain_words: dict[int, Any] = {}
    ae_store = None
    unet_grad = None
    started = time.monotonic()
    try:
        if domain_dir is not None:  # its learnt words (tdri finetune --learn-word), as the generator has them
            from ..finetune.words import apply_words

            domain_words = apply_words(pipe, domain_dir)
        data, kept = build_pair_tensors(
            pipe,
            examples,
            width,
            height,
            seed=config.seed,
            with_control=config.train_controlnet,
            with_tokens=config.lambda_ae > 0,
            on_event=emit,
            cancel=cancel,
        )
        if len(kept) < config.min_pairs:
            raise TrainingError(
                f"No update: only {len(kept)} of {len(examples)} preference pairs could be read.",
                "Re-import the missing images or record more choices.",
                kind="training-too-few-pairs",
            )
        frozen: dict[str, float] = {}
        if domain is not None and domain_dir is not None:
            domain_state = load_frozen_lora(pipe.unet, domain_dir, FROZEN_DOMAIN_ADAPTER, domain.weight)
            frozen = {FROZEN_DOMAIN_ADAPTER: float(domain.weight)}
        # tuning the ControlNet, the domain LoRA stays active on the UNet the ControlNet feeds
        state = attach_lora(owner, config, frozen=frozen if owner is pipe.unet else None)
        if owner is not pipe.unet:  # tuning the ControlNet: the UNet only passes gradients through
            unet_grad = any(p.requires_grad for p in pipe.unet.parameters())
            pipe.unet.requires_grad_(False)
        if parent_dir is not None:
            load_parent(owner, parent_dir, controlnet=config.train_controlnet)
        if config.lambda_ae > 0:
            from .attend_excite import AttentionStore, choose_attention_resolution

            ae_store = AttentionStore(
                choose_attention_resolution(pipe.unet, tuple(data.latents_w.shape[-2:]))
            )
            ae_store.install(pipe.unet)
        trainer = DPOTrainer(
            pipe.unet,
            noise_scheduler_for(pipe),
            config,
            controlnet=controlnet,
            ae_store=ae_store,
        )

        def on_step(step: int, total: int, loss: float, acc: float) -> None:
            emit(TrainingProgress(step, total, loss, acc))
            if cancel is not None:
                cancel.raise_if_cancelled()

        result = trainer.train(data, step_callback=on_step)
        suspect, why = _verdict(result, config)
        ties_left, both_bad_left = left_out_choices(store)
        differing = sum(pair_prompt(ex.store, ex.pair)[1] for ex in kept)
        vid = ad.next_version_id(store, scope)
        root = ad.versions_root(store, scope)
        acc_after = result.eval_after[1] if result.eval_after else result.final_accuracy
        created = now_iso()
        meta = {
            "version": vid,
            "parent": parent.id if parent else None,
            "scope": scope,
            "pairs_used": len(kept),
            "pair_ids": [ex.pair.id for ex in kept],
            # what was not trained and why (schedule's module docstring)
            "ties_left_out": ties_left,
            "both_bad_left_out": both_bad_left,
            "pairs_with_two_prompts": differing,
            "prompt_rule": "the images' own prompt; the winner's when the two differ",
            "steps": result.steps_done,
            "loss_curve": result.loss_curve,
            "accuracy_curve": result.accuracy_curve,
            "ae_curve": result.ae_curve,
            "eval_before": result.eval_before,
            "eval_after": result.eval_after,
            "implicit_accuracy": acc_after,
            "suspect": suspect,
            "why_suspect": why,
            "config": config.to_dict(),
            "mixed_precision": result.mixed_precision,
            "base_model": str(getattr(pipe, "name_or_path", "") or getattr(pipe.config, "_name_or_path", "")),
            # what the adapter was trained on top of (it is meant to be used with it)
            "domain_lora": None
            if domain is None
            else {"path": str(domain_dir), "weight": float(domain.weight)},
            "image_size": [width, height],
            "seconds": round(time.monotonic() - started, 2),
            "created": created,
        }
        folder = _write_version(pipe, owner, root, vid, meta, controlnet=config.train_controlnet)
    except Cancelled:
        raise
    except TdriError:
        raise
    except Exception as exc:
        if _is_oom(exc):  # CUDA, MPS or host memory
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise _oom_error(config, "training the adapter") from exc
        if isinstance(exc, FloatingPointError):
            raise TrainingError(
                f"The update diverged: {exc}. Nothing was saved.",
                f"Lower the learning rate (now {config.lr:g}) or beta (now {config.beta:g}) and train again.",
            ) from exc
        raise
    finally:
        if ae_store is not None:
            ae_store.remove(pipe.unet)
        if state is not None:
            detach_lora(owner, state)
        if unet_grad is not None:
            pipe.unet.requires_grad_(unet_grad)
        if domain_state is not None:  # after the trained adapter: the UNet as it was before both
            detach_lora(pipe.unet, domain_state)
        if domain_words:  # the text encoder as it was (unchanged when the generator had them on)
            from ..finetune.words import restore_words

            restore_words(pipe, domain_words)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    rel = str(folder.relative_to(store.path)) if scope == "project" else folder.name
    version = AdapterVersion(
        id=vid,
        parent=parent.id if parent else None,
        scope=scope,
        path=rel,
        pairs_used=len(kept),
        steps=result.steps_done,
        loss_curve=[round(v, 6) for v in result.loss_curve],
        implicit_accuracy=acc_after,
        status="suspect" if suspect else "ok",
        note=(f"Suspect: {why}. The previous version stays active." if suspect else "")
        + (" ControlNet LoRA." if config.train_controlnet else ""),
        created=created,
    )
    key = ad.usage_key(version, scope)
    used = []
    if scope == "project":
        for ex in kept:
            pair = ex.store.get(PreferencePair, ex.pair.id) or ex.pair
            if key not in pair.used_in:
                used.append(pair.replace(used_in=[*pair.used_in, key]))
    ad.record_version(store, version, used)
    if scope == "user":
        ad.record_user_pairs(version.id, [ad.user_pair_key(ex.store, ex.pair) for ex in kept])
    if suspect:
        message = f"Adapter {vid} is suspect: {why}. The previous version stays active; inspect or delete it."
    elif config.train_controlnet:
        ad.activate(store, vid, scope=scope)
        message = (
            f"ControlNet adapter {vid} trained on {len(kept)} pairs and activated: "
            "rounds with a pose load it onto the pose ControlNet."
        )
    else:
        ad.activate(store, vid, scope=scope)
        message = f"Adapter {vid} trained on {len(kept)} pairs and activated."
    left_out = []
    if ties_left:
        left_out.append(f"{ties_left} tie{'s' if ties_left != 1 else ''}")
    if both_bad_left:
        left_out.append(f"{both_bad_left} 'both bad'")
    if left_out:
        message += f" Not trained on: {' and '.join(left_out)} (they name no winner)."
    if differing:
        message += (
            f" {differing} pair{'s' if differing != 1 else ''} compared images made from different "
            "prompts: trained with the winner's prompt."
        )
    emit(AdapterReady(vid, suspect=suspect, message=message))
    return version
