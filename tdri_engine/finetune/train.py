"""Supervised text-to-image LoRA fine-tuning (the domain LoRA of a model profile).

The objective is the usual one of diffusers' text-to-image LoRA script: encode a captioned
image with the VAE, add noise at a uniformly drawn timestep, and regress the UNet's prediction
(with the LoRA on its attention projections) on the scheduler's target (the noise for
epsilon models, the velocity for v-prediction) with a mean squared error. The VAE and the text
encoders stay frozen; the LoRA weights are float32 even when the base runs in half precision.

Choices the paper leaves open (its fashion task only says "SDXL fine-tuned with LoRA"):

* Images are encoded once before training (the VAE posterior's mean and standard deviation per
  image) and captions once (the frozen text encoder): each step then samples a latent from the
  stored posterior, as the on-the-fly script does, at a fraction of the cost. Memory: 4 x (H/8)
  x (W/8) floats twice per image, 0.5 MB for a 1024 px SDXL image.
* Sizes: ``crop="center"`` centre-crops every image to a square at ``resolution``;
  ``crop="bucket"`` keeps each image's aspect ratio, nearest of five buckets (1:1, 4:3, 3:4,
  16:9, 9:16) at about ``resolution``² pixels, and draws each micro-batch from one bucket.
* Determinism and resuming: micro-batch ``m`` of optimizer step ``k`` draws its images, noise,
  timesteps and latent sample from a generator seeded by ``(seed, process, k, m)``, and the
  learning rate is a function of ``k`` (linear warm-up over the first 5 %, then constant), so a
  run resumed from a checkpoint at step ``k`` goes on exactly as the uninterrupted run would.
  Checkpoints (every ``checkpoint_every`` steps, on cancel and on Ctrl-C) hold the LoRA weights
  and the AdamW moments as safetensors plus a JSON file, written to a temporary folder and
  renamed into place, so a kill at any moment leaves the last checkpoint whole. Nothing is
  pickled, so nothing is unpickled on resume.
* Prior preservation (DreamBooth's prior-preservation loss, the "regularization images" of other
  trainers): trained on its new pictures alone, the model learns that *everything* looks like
  them (on the Atelier, after 1,000 steps on teal pictures, held-out prompts asking orange
  came out teal: Colour 0.575 -> 0.31). With a second captioned folder (``prior``: pictures of
  what the base already draws, e.g. the house's existing catalogue) every micro-batch also
  draws ``batch_size`` prior examples from the same seeded generator (after the instance
  draws, so the instance batches are those of a run without prior), and the loss is
  ``mse(instance) + prior_weight * mse(prior)``: one forward over both halves when their sizes
  match (always under ``crop="center"``), else one forward/backward per half, the same
  gradient. The prior set is checked like the training set, encoded once the same way, and its
  digest and weight are part of what a resumed run must share with its checkpoint.
* Accelerate: the loop runs under ``accelerate.Accelerator`` (as ``optimizer/accelerate_train.py``
  does), so ``accelerate launch -m tdri_engine.finetune ...`` spreads it over GPUs unchanged;
  each process takes its own micro-batches (the process index is part of the seed), the main
  process alone writes checkpoints, validation images and the result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, Cancelled, TdriError, TrainingError
from ..events import CancelToken, EventSink, Progress, ignore_events
from ..optimizer.dpo import DEFAULT_TARGET_MODULES
from ..store.fsutil import previous_dir, replace_dir, staging_dir
from .base import BaseModel
from .dataset import DatasetReport
from .words import WordEmbeddings, check_words_supported, save_words

FINETUNE_ADAPTER = "tdri_finetune"  # the LoRA's name while it trains
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"  # = optimizer.adapters.WEIGHTS_NAME (diffusers')
BUCKETS = ((1, 1), (4, 3), (3, 4), (16, 9), (9, 16))


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneConfig:
    """Knobs of one fine-tune. Validated on construction (``BadInput``)."""

    steps: int = field(default=1000, metadata=_help("optimizer steps"))
    lr: float = field(default=1e-4, metadata=_help("AdamW learning rate (diffusers' LoRA script default)"))
    rank: int = field(default=8, metadata=_help("LoRA rank"))
    alpha: float | None = field(default=None, metadata=_help("LoRA alpha; empty for alpha = rank"))
    batch_size: int = field(default=4, metadata=_help("images per micro-batch (per process)"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    resolution: int | None = field(default=None, metadata=_help("training size; empty: the UNet's own"))
    crop: str = field(default="center", metadata=_help("'center' (square crop) or 'bucket' (aspect buckets)"))
    grad_checkpointing: bool = field(default=False, metadata=_help("recompute activations to save memory"))
    mixed_precision: str = field(
        default="auto", metadata=_help("'auto' (bf16/fp16 on CUDA, none on CPU), 'no', 'fp16', 'bf16'")
    )
    seed: int = field(default=0, metadata=_help("seeds the LoRA init, batches, noise and timesteps"))
    checkpoint_every: int = field(default=100, metadata=_help("steps between checkpoints"))
    validation_prompt: str = field(default="", metadata=_help("rendered every validation_every steps"))
    validation_every: int = field(
        default=0, metadata=_help("steps between validation images; 0: only at the end")
    )
    validation_steps: int = field(default=20, metadata=_help("denoising steps of a validation image"))
    validation_seed: int = field(default=0, metadata=_help("seed of the validation image"))
    prior_weight: float = field(
        default=1.0, metadata=_help("weight of the prior-preservation loss (with prior data only)")
    )
    caption_dropout: float = field(
        default=0.0,
        metadata=_help(
            "share of the prior's captions (without prior data: of the training captions) "
            "replaced by the empty prompt, so that the unconditional prediction classifier-free "
            "guidance subtracts stays what the base knows"
        ),
    )
    lr_schedule: str = field(
        default="constant", metadata=_help("'constant' after the warm-up, or 'cosine' down to zero")
    )
    learn_words: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "words whose token embeddings are learnt with the LoRA (textual inversion): a new "
            "colour or fabric name; prompts without them give the base's images exactly"
        ),
    )
    word_lr: float = field(default=5e-3, metadata=_help("learning rate of the learnt words' embeddings"))
    train_lora: bool = field(
        default=True,
        metadata=_help(
            "False: learn only the learn_words embeddings; the LoRA stays zero, so a prompt without "
            "them gives exactly the base's image"
        ),
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping"))
    weight_decay: float = field(default=1e-2, metadata=_help("AdamW weight decay"))
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES, metadata=_help("module names the LoRA wraps")
    )

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        self.learn_words = tuple(w.strip() for w in self.learn_words if w.strip())
        problems = []
        for name in ("steps", "rank", "batch_size", "grad_accum", "checkpoint_every", "validation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number >= 1")
        if not 0 < self.lr < 1:
            problems.append("lr must be in (0, 1)")
        if not self.train_lora and not self.learn_words:
            problems.append("with the LoRA not trained (words only), name at least one word to learn")
        if not 0 < self.word_lr < 1:
            problems.append("word_lr must be in (0, 1)")
        if not 0 <= self.caption_dropout < 1:
            problems.append("caption_dropout must be from 0 to below 1")
        if not 0 <= self.prior_weight <= 100:
            problems.append("prior_weight must be from 0 to 100")
        if self.alpha is not None and not self.alpha > 0:
            problems.append("alpha must be > 0")
        if self.resolution is not None and not 8 <= self.resolution <= 4096:
            problems.append("resolution must be from 8 to 4096")
        if self.lr_schedule not in ("constant", "cosine"):
            problems.append("lr_schedule must be 'constant' or 'cosine'")
        if self.crop not in ("center", "bucket"):
            problems.append("crop must be 'center' or 'bucket'")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            problems.append("mixed_precision must be 'auto', 'no', 'fp16' or 'bf16'")
        if self.validation_every < 0:
            problems.append("validation_every must be >= 0")
        if not self.target_modules:
            problems.append("target_modules must name at least one module")
        if problems:
            raise BadInput("Invalid fine-tuning settings: " + "; ".join(problems) + ".", "Fix the values.")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over the first 5 % of the steps, then constant, or (``lr_schedule``
        'cosine') down to zero along half a cosine by the last step."""
        warm = max(1, self.steps // 20)
        if step < warm or self.lr_schedule == "constant":
            return self.lr * min(1.0, (step + 1) / warm)
        done = (step - warm) / max(1, self.steps - warm)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * done))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["target_modules"] = list(self.target_modules)
        out["learn_words"] = list(self.learn_words)
        return out

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the checkpoint (the rest may change: e.g. how often
        a validation image is rendered)."""
        keep = ("steps", "lr", "rank", "alpha", "batch_size", "grad_accum", "resolution", "crop", "seed")
        out = {k: v for k, v in self.to_dict().items() if k in keep} | {
            "target_modules": list(self.target_modules)
        }
        if self.caption_dropout:  # absent when off: checkpoints from before it resume as they were
            out["caption_dropout"] = self.caption_dropout
        if self.lr_schedule != "constant":
            out["lr_schedule"] = self.lr_schedule
        if self.learn_words:
            out["learn_words"] = list(self.learn_words)
            out["word_lr"] = self.word_lr
        if not self.train_lora:
            out["train_lora"] = False
        return out


@dataclass
class FinetuneResult:
    folder: Path  # the run folder
    lora_dir: Path  # the diffusers LoRA (pytorch_lora_weights.safetensors + meta.json)
    steps: int
    resumed_from: int
    losses: list[float]
    seconds: float
    sample_image: Path | None
    validation_images: list[Path] = field(default_factory=list)
    prior_losses: list[float] = field(default_factory=list)  # mse(prior) per step, with prior data


# --------------------------------------------------------------------------------------------
# sizes and encoding
# --------------------------------------------------------------------------------------------


def size_multiple(pipe: Any) -> int:
    """Pixel sizes must divide into the VAE's and the UNet's downsamplings."""
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    return vae_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def bucket_size(w: int, h: int, resolution: int, multiple: int, crop: str) -> tuple[int, int]:
    if crop == "center":
        return resolution, resolution
    aspect = w / h
    bw, bh = min(BUCKETS, key=lambda b: abs(math.log(aspect) - math.log(b[0] / b[1])))
    scale = math.sqrt(resolution * resolution / (bw * bh))
    return (
        max(multiple, round(bw * scale / multiple) * multiple),
        max(multiple, round(bh * scale / multiple) * multiple),
    )


@dataclass
class Bucket:
    size: tuple[int, int]  # (width, height)
    mean: Any  # (N, C, h, w) posterior means, scaled
    std: Any  # (N, C, h, w) posterior standard deviations, scaled
    embeds: Any  # (N, L, D)
    added: dict[str, Any] | None  # SDXL: text_embeds, time_ids (N rows)
    empty: tuple[Any, dict[str, Any] | None] | None = None  # the empty prompt's (1, L, D) and added
    ids: Any = None  # (N + 1, L) token ids, the empty prompt's last: with learnt words only


def encode_dataset(
    pipe: Any,
    report: DatasetReport,
    config: FinetuneConfig,
    resolution: int,
    *,
    cancel: CancelToken | None = None,
    on_event: EventSink = ignore_events,
) -> list[Bucket]:
    """Every example through the VAE (posterior mean and std) and its caption through the text
    encoder(s), grouped by training size."""
    import torch
    from PIL import Image

    from ..optimizer.trainer import encode_prompts, image_tensor

    multiple = size_multiple(pipe)
    groups: dict[tuple[int, int], list[Any]] = {}
    for ex in report.examples:
        groups.setdefault(bucket_size(*ex.size, resolution, multiple, config.crop), []).append(ex)
    scale = float(getattr(pipe.vae.config, "scaling_factor", 1.0) or 1.0)
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
    vae = pipe.vae
    buckets = []
    done = 0
    for (w, h), examples in sorted(groups.items()):
        means, stds = [], []
        for start in range(0, len(examples), 8):
            if cancel is not None:
                cancel.raise_if_cancelled()
            part = examples[start : start + 8]
            images = []
            for ex in part:
                with Image.open(ex.path) as im:
                    images.append(image_tensor(im, w, h))
            x = torch.stack(images).to(vae.device, vae.dtype)
            with torch.no_grad():
                dist = vae.encode(x).latent_dist
            means.append(((dist.mean - shift) * scale).float().cpu())
            stds.append((dist.std * scale).float().cpu())
            done += len(part)
            on_event(Progress("finetune-prepare", done, len(report.examples), "encoding the training images"))
        captions = [ex.caption for ex in examples] + ([""] if config.caption_dropout else [])
        embeds, added = encode_prompts(pipe, captions, w, h)
        embeds = embeds.cpu()
        added = None if added is None else {k: v.cpu() for k, v in added.items()}
        empty = None
        if config.caption_dropout:  # the last row is the empty prompt's
            empty = (embeds[-1:], None if added is None else {k: v[-1:] for k, v in added.items()})
            embeds = embeds[:-1]
            added = None if added is None else {k: v[:-1] for k, v in added.items()}
        ids = None
        if config.learn_words:  # encoded again at every step, through the learnt rows
            tok = pipe.tokenizer
            ids = tok(
                [ex.caption for ex in examples] + [""],
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
        buckets.append(Bucket((w, h), torch.cat(means), torch.cat(stds), embeds, added, empty, ids))
    return buckets


def _generator_for(seed: int, process: int, step: int, micro: int) -> Any:
    import numpy as np
    import torch

    state = int(np.random.SeedSequence([seed, process, step, micro]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator("cpu").manual_seed(state & (2**63 - 1))


def draw_batch(buckets: list[Bucket], batch_size: int, gen: Any) -> tuple[Bucket, Any]:
    """A bucket (chosen in proportion to its images) and ``batch_size`` indices into it (without
    replacement while the bucket has enough images)."""
    import torch

    counts = torch.tensor([float(b.mean.shape[0]) for b in buckets])
    b = buckets[int(torch.multinomial(counts, 1, generator=gen).item())] if len(buckets) > 1 else buckets[0]
    n = b.mean.shape[0]
    if n >= batch_size:
        idx = torch.randperm(n, generator=gen)[:batch_size]
    else:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
    return b, idx


# --------------------------------------------------------------------------------------------
# LoRA and checkpoints (safetensors + JSON)
# --------------------------------------------------------------------------------------------


def attach_finetune_lora(unet: Any, config: FinetuneConfig) -> list[Any]:
    """A fresh LoRA (A random, B zero: the model starts as the base) on the attention
    projections, float32, the only trainable weights. Returns its parameters."""
    import torch
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(config.target_modules),
        ),
        adapter_name=FINETUNE_ADAPTER,
    )
    unet.set_adapter(FINETUNE_ADAPTER)
    params = []
    for name, param in unet.named_parameters():
        if f".{FINETUNE_ADAPTER}." in name or name.endswith(f".{FINETUNE_ADAPTER}"):
            param.data = param.data.to(torch.float32)
            param.requires_grad_(True)
            params.append(param)
    return params


def _named_lora(unet: Any) -> dict[str, Any]:
    return {n: p for n, p in unet.named_parameters() if p.requires_grad and f".{FINETUNE_ADAPTER}" in n}


def save_checkpoint(
    folder: Path,
    unet: Any,
    optimizer: Any,
    step: int,
    info: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """LoRA weights and AdamW moments (keyed by parameter name) as safetensors, the rest as JSON;
    through ``<folder>.tmp`` and a rename, the previous checkpoint kept as ``.old`` until then."""
    from safetensors.torch import save_file

    named = _named_lora(unet) | (extra or {})  # extra: the learnt words' offsets
    by_id = {id(p): n for n, p in named.items()}
    tensors = {f"lora.{n}": p.detach().float().contiguous().cpu() for n, p in named.items()}
    scalars: dict[str, dict[str, float]] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            name = by_id.get(id(p))
            if not st or name is None:
                continue
            for key, value in st.items():
                if hasattr(value, "dim") and value.dim() > 0:
                    tensors[f"opt.{key}.{name}"] = value.detach().contiguous().cpu()
                else:
                    scalars.setdefault(name, {})[key] = float(value)
    tmp = staging_dir(folder)
    save_file(tensors, str(tmp / "state.safetensors"))
    meta = {"step": step, "optimizer_scalars": scalars} | info
    (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    for f in tmp.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    replace_dir(tmp, folder)


def read_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint folder, its JSON) or None; a run killed between the two renames left ``.old``."""
    for candidate in (folder, previous_dir(folder)):
        meta_file = candidate / "checkpoint.json"
        if meta_file.is_file() and (candidate / "state.safetensors").is_file():
            try:
                return candidate, json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
    return None


def load_checkpoint(folder: Path, unet: Any, optimizer: Any, extra: dict[str, Any] | None = None) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "state.safetensors"))
    meta = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))
    named = _named_lora(unet) | (extra or {})
    missing = [n for n in named if f"lora.{n}" not in tensors]
    if missing:
        raise TrainingError(
            f"The checkpoint in {folder} does not fit this LoRA ({len(missing)} weights missing).",
            "Start again in another --out (or delete the run folder).",
        )
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(tensors[f"lora.{n}"].to(p.device, p.dtype))
    by_id = {id(p): n for n, p in named.items()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = by_id.get(id(p))
            if name is None or name not in meta["optimizer_scalars"]:
                continue
            st: dict[str, Any] = {
                k: torch.tensor(v, dtype=torch.float32) for k, v in meta["optimizer_scalars"][name].items()
            }
            for key in ("exp_avg", "exp_avg_sq"):
                t = tensors.get(f"opt.{key}.{name}")
                if t is not None:
                    st[key] = t.to(p.device)
            optimizer.state[p] = st


def save_lora(pipe: Any, unet: Any, folder: Path, meta: dict[str, Any], words: Any = None) -> Path:
    """The trained LoRA in diffusers' format (``load_lora_weights`` reads it), with meta.json,
    through a temporary folder and one rename."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = get_peft_model_state_dict(unet, adapter_name=FINETUNE_ADAPTER)
    layers = {
        k: v.detach().float().contiguous().cpu() for k, v in convert_state_dict_to_diffusers(state).items()
    }
    type(pipe).save_lora_weights(
        save_directory=str(tmp),
        unet_lora_layers=layers,
        safe_serialization=True,
        unet_lora_adapter_metadata=unet.peft_config[FINETUNE_ADAPTER].to_dict(),
    )
    if words is not None:
        save_words(tmp, words)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def _fmt_s(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def load_base_pipeline(base: BaseModel, dtype: Any) -> Any:
    """The base pipeline from its (already trust-checked) folder: safetensors only, no code."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging

    from ..trust import check_folder

    check_folder(base.path, base.kind, "generator")
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # our own progress line says what happens
    transformers_logging.disable_progress_bar()
    cls = StableDiffusionXLPipeline if base.kind == "sdxl" else StableDiffusionPipeline
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "local_files_only": True,
        "use_safetensors": True,
        "trust_remote_code": False,
    }
    if base.kind == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(str(base.path), **kwargs)
    except TdriError:
        raise
    except Exception as exc:
        raise BadInput(
            f"The base model in {base.path} could not be loaded: {type(exc).__name__}: {exc}",
            "Check that the folder holds a complete diffusers pipeline (re-copy it).",
            kind="finetune-base",
        ) from exc
    # validation images the way the studio renders: DDIM (eta 0)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def finetune(
    base: BaseModel,
    report: DatasetReport,
    config: FinetuneConfig,
    out: Path,
    *,
    trigger_words: tuple[str, ...] = (),
    prior: DatasetReport | None = None,
    cancel: CancelToken | None = None,
    on_event: EventSink | None = None,
    on_step: Callable[[int, int, float, float], None] | None = None,
) -> FinetuneResult:
    """Train the LoRA into ``out`` (resuming from ``out/checkpoint``), see the module docstring.

    ``prior``: the prior-preservation set (already checked, like ``report``); the recorded loss
    of a step is then ``mse(instance) + prior_weight * mse(prior)``, and ``prior_losses`` holds
    ``mse(prior)`` alone.

    ``on_step(step, total, loss, eta_s)`` runs after every optimizer step (an exception there
    stops the run as a kill would: only the last checkpoint stays). Raises Cancelled (after
    saving a checkpoint at the step reached), TrainingError, BadInput, OutOfMemory.
    """
    import torch
    from accelerate import Accelerator

    from ..models import _is_oom, out_of_memory
    from ..optimizer.dpo import autocast_context
    from ..optimizer.trainer import noise_scheduler_for

    emit = on_event or ignore_events
    out = Path(out)
    ckpt_dir = out / "checkpoint"
    lora_dir = out / "lora"
    info: dict[str, Any] = {"config": config.fingerprint(), "data": report.digest(), "base": str(base.path)}
    if prior is not None:  # absent without prior data: older checkpoints resume as they were
        info["prior"] = {"data": prior.digest(), "weight": config.prior_weight}
    found = read_checkpoint(ckpt_dir)
    if found is not None:
        for key in ("config", "data", "base", "prior"):
            if found[1].get(key) != info.get(key):
                what = {"data": "training set", "prior": "prior set or prior weight"}.get(key, key)
                raise TrainingError(
                    f"The run in {out} was started with another {what} "
                    f"({key}: {found[1].get(key)!r}, now {info.get(key)!r}).",
                    "Resume it with the same data, base and settings, or give another --out name "
                    "(or --restart to throw the old run away).",
                    kind="finetune-resume",
                )
    mixed = config.mixed_precision
    accelerator = Accelerator(mixed_precision="no", gradient_accumulation_steps=config.grad_accum)
    device = accelerator.device
    if mixed == "auto":
        mixed = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "no"
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)
    if device.type == "cpu" and mixed == "fp16":
        weight_dtype = torch.float32  # no fp16 kernels on the CPU: bf16 autocast is the CPU's
        mixed = "bf16"
    pipe = load_base_pipeline(base, weight_dtype)
    check_words_supported(pipe, config.learn_words)
    pipe.to(device)
    for name in ("vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)
    resolution = config.resolution or int(pipe.unet.config.sample_size) * 2 ** (
        len(pipe.vae.config.block_out_channels) - 1
    )
    multiple = size_multiple(pipe)
    resolution = max(multiple, resolution // multiple * multiple)
    started = time.monotonic()
    try:
        buckets = encode_dataset(pipe, report, config, resolution, cancel=cancel, on_event=emit)
        prior_buckets = (
            encode_dataset(pipe, prior, config, resolution, cancel=cancel, on_event=emit)
            if prior is not None
            else []
        )
        unet = pipe.unet
        torch.manual_seed(config.seed)  # the LoRA's A matrices
        params = attach_finetune_lora(unet, config)
        if config.grad_checkpointing:
            unet.enable_gradient_checkpointing()
        if not config.train_lora:  # words only: the LoRA stays zero (B starts at zero), an exact no-op
            for param in params:
                param.requires_grad_(False)
            params = []
        groups: list[dict[str, Any]] = [{"params": params}] if params else []
        words = None
        if config.learn_words:
            words = WordEmbeddings(pipe.text_encoder, pipe.tokenizer, config.learn_words)
            words.delta.data = words.delta.data.to(device)
            groups.append(
                {"params": [words.delta], "weight_decay": 0.0, "lr_scale": config.word_lr / config.lr}
            )
        extra_params = {"words.delta": words.delta} if words is not None else {}
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        start = 0
        losses: list[float] = []
        prior_losses: list[float] = []
        if found is not None:
            load_checkpoint(found[0], unet, optimizer, extra_params)
            start = int(found[1]["step"])
            losses = [float(v) for v in found[1].get("losses", [])][:start]
            prior_losses = [float(v) for v in found[1].get("prior_losses", [])][:start]
        model, optimizer = accelerator.prepare(unet, optimizer)
        scheduler = noise_scheduler_for(pipe)
        autocast = autocast_context(device, mixed, weight_dtype)
        process = accelerator.process_index
        validation_images: list[Path] = []

        def checkpoint(step: int) -> None:
            if accelerator.is_main_process:
                extra: dict[str, Any] = {"losses": losses[:step]}
                if prior is not None:
                    extra["prior_losses"] = prior_losses[:step]
                save_checkpoint(ckpt_dir, unet, optimizer, step, info | extra, extra_params)

        step = completed = start
        t0 = time.monotonic()
        model.train()
        try:
            for step in range(start, config.steps):
                if cancel is not None and cancel.cancelled:
                    checkpoint(step)
                    raise Cancelled(
                        f"Fine-tuning cancelled at step {step}/{config.steps}; the checkpoint is saved.",
                        "Run the same command again to continue from there.",
                    )
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(step) * group.get("lr_scale", 1.0)
                total = prior_total = 0.0
                for micro in range(config.grad_accum):
                    gen = _generator_for(config.seed, process, step, micro)
                    # the empty prompt learns what the base knows (the prior), not the new pictures
                    drop = config.caption_dropout
                    halves = [
                        _noisy_batch(
                            buckets, config.batch_size, gen, scheduler, 0.0 if prior_buckets else drop
                        )
                    ]
                    if prior_buckets:  # drawn after the instance half: its batches stay as without
                        halves.append(_noisy_batch(prior_buckets, config.batch_size, gen, scheduler, drop))
                    weights = (1.0, config.prior_weight)
                    if words is not None:  # through the learnt rows (the text encoder stays frozen)
                        for half in halves:
                            half.embeds = pipe.text_encoder(half.ids.to(device))[0]
                    with accelerator.accumulate(model):
                        parts = _predict_halves(
                            model, halves, weights, device, weight_dtype, autocast, accelerator
                        )
                        if accelerator.sync_gradients:
                            if params:
                                accelerator.clip_grad_norm_(params, config.max_grad_norm)
                            if words is not None:
                                accelerator.clip_grad_norm_([words.delta], config.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    total += sum(w * v for w, v in zip(weights, parts, strict=False)) / config.grad_accum
                    if len(parts) > 1:
                        prior_total += parts[1] / config.grad_accum
                value = float(accelerator.gather(torch.tensor([total], device=device)).mean())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"The loss became {value} at step {step + 1}.",
                        f"Lower the learning rate (now {config.lr:g}) and run again (it resumes from the "
                        "last checkpoint), or use mixed precision bf16 instead of fp16.",
                    )
                losses.append(value)
                if prior_buckets:
                    prior_losses.append(
                        float(accelerator.gather(torch.tensor([prior_total], device=device)).mean())
                    )
                done = completed = step + 1
                rate = (done - start) / max(1e-9, time.monotonic() - t0)
                eta = (config.steps - done) / rate if rate > 0 else float("inf")
                emit(
                    Progress(
                        "finetune",
                        done,
                        config.steps,
                        f"loss {value:.4f}, {rate:.2f} step/s, eta {_fmt_s(eta) if math.isfinite(eta) else '?'}",
                    )
                )
                if done % config.checkpoint_every == 0 and done < config.steps:
                    checkpoint(done)
                if (
                    config.validation_prompt
                    and config.validation_every
                    and done % config.validation_every == 0
                    and done < config.steps
                    and accelerator.is_main_process
                ):
                    validation_images.append(_validate(pipe, config, resolution, out, done, autocast))
                    model.train()
                if on_step is not None:
                    on_step(done, config.steps, value, eta)
        except KeyboardInterrupt:
            checkpoint(completed)  # the steps whose update was applied and recorded
            raise
        step = config.steps
        accelerator.wait_for_everyone()
        sample: Path | None = None
        if accelerator.is_main_process:
            checkpoint(config.steps)
            model.eval()
            prompt = config.validation_prompt or report.examples[0].caption
            sample = _validate(
                pipe, config.replace(validation_prompt=prompt), resolution, out, step, autocast
            )
            validation_images.append(sample)
            meta = {
                "kind": "domain-lora",
                "base_model": base.name,
                "base_path": str(base.path),
                "base_kind": base.kind,
                "steps": step,
                "resumed_from": start,
                "loss_curve": [round(v, 6) for v in losses],
                "config": config.to_dict(),
                "resolution": resolution,
                "images": len(report.examples),
                "data_hash": info["data"],
                "trigger_words": list(trigger_words),
                "learned_words": {} if words is None else dict(words.token_ids),
                "prior": None
                if prior is None
                else {
                    "folder": str(prior.folder),
                    "images": len(prior.examples),
                    "data_hash": info["prior"]["data"],
                    "weight": config.prior_weight,
                    "loss_curve": [round(v, 6) for v in prior_losses],
                },
                "mixed_precision": mixed,
                "processes": accelerator.num_processes,
                "seconds": round(time.monotonic() - started, 2),
            }
            save_lora(pipe, unet, lora_dir, meta, words)
        accelerator.end_training()
    except Cancelled:
        raise
    except TdriError:
        raise
    except Exception as exc:
        if _is_oom(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise out_of_memory(
                f"fine-tuning at {resolution} px, batch {config.batch_size}", exc
            ) from exc  # the checkpoint on disk is kept: lower batch/resolution and run again
        raise
    return FinetuneResult(
        out,
        lora_dir,
        config.steps,
        start,
        losses,
        round(time.monotonic() - started, 2),
        sample,
        validation_images,
        prior_losses,
    )


@dataclass
class _Half:
    """One half of a micro-batch (instance or prior), noised and ready for the UNet."""

    noisy: Any
    t: Any
    target: Any
    embeds: Any
    added: dict[str, Any] | None
    ids: Any = None  # token ids (with learnt words): the embeds are computed from them per step


def _noisy_batch(
    buckets: list[Bucket], batch_size: int, gen: Any, scheduler: Any, caption_dropout: float = 0.0
) -> _Half:
    """Draw a batch (``draw_batch``), sample its latents from the stored posteriors, noise them
    at uniform timesteps; the target is the noise (epsilon) or the velocity (v-prediction). With
    ``caption_dropout``, that share of the captions (drawn last, so the rest of the batch is the
    same as without) is the empty prompt's, as the base model was trained for guidance."""
    import torch

    bucket, idx = draw_batch(buckets, batch_size, gen)
    mean, std = bucket.mean[idx], bucket.std[idx]
    latents = mean + std * torch.randn(mean.shape, generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t)
    kind = scheduler.config.prediction_type
    target = scheduler.get_velocity(latents, noise, t) if kind == "v_prediction" else noise
    embeds = bucket.embeds[idx]
    ids = None if bucket.ids is None else bucket.ids[idx]
    added = None if bucket.added is None else {k: v[idx] for k, v in bucket.added.items()}
    if caption_dropout and bucket.empty is not None:
        drop = torch.rand(len(idx), generator=gen) < caption_dropout
        if ids is not None:
            ids = torch.where(drop[:, None], bucket.ids[-1:], ids)
        empty_embeds, empty_added = bucket.empty
        embeds = torch.where(drop[:, None, None], empty_embeds, embeds)
        if added is not None and empty_added is not None:  # SDXL: the pooled embedding too
            added = dict(
                added,
                text_embeds=torch.where(drop[:, None], empty_added["text_embeds"], added["text_embeds"]),
            )
    return _Half(noisy, t, target, embeds, added, ids)


def _predict_halves(
    model: Any,
    halves: list[_Half],
    weights: tuple[float, ...],
    device: Any,
    dtype: Any,
    autocast: Any,
    accelerator: Any,
) -> list[float]:
    """Forward and backward ``sum(weight * mse(half))``; returns each half's mse. Halves of one
    size go through the UNet together (one forward, as DreamBooth concatenates them); halves of
    different sizes (aspect buckets) one after the other, each with its own backward (DDP pairs
    every forward with a backward), which adds up to the same gradient."""
    import torch
    import torch.nn.functional as F

    def forward(hs: list[_Half]) -> Any:
        kwargs: dict[str, Any] = {}
        if hs[0].added is not None:
            kwargs["added_cond_kwargs"] = {
                k: torch.cat([h.added[k] for h in hs if h.added is not None]).to(device) for k in hs[0].added
            }
        with autocast:
            return model(
                torch.cat([h.noisy for h in hs]).to(device, dtype),
                torch.cat([h.t for h in hs]).to(device),
                encoder_hidden_states=torch.cat([h.embeds for h in hs]).to(device, dtype),
                return_dict=False,
                **kwargs,
            )[0]

    def mse(pred: Any, h: _Half) -> Any:
        return F.mse_loss(pred.float(), h.target.to(device).float())

    together = len(halves) == 1 or (
        len({tuple(h.noisy.shape[1:]) for h in halves}) == 1
        and len({tuple(h.embeds.shape[1:]) for h in halves}) == 1
    )
    if together:
        pred = forward(halves)
        losses = [mse(p, h) for p, h in zip(pred.split([len(h.t) for h in halves]), halves, strict=True)]
        accelerator.backward(sum(w * loss for w, loss in zip(weights, losses, strict=False)))
        return [float(loss.detach()) for loss in losses]
    out = []
    for w, h in zip(weights, halves, strict=False):
        loss = mse(forward([h]), h)
        accelerator.backward(w * loss)
        out.append(float(loss.detach()))
    return out


def _validate(
    pipe: Any, config: FinetuneConfig, resolution: int, out: Path, step: int, autocast: Any
) -> Path:
    """Render the validation prompt with the LoRA as it is now; ``validation/step_NNNNNN.png``."""
    import torch

    folder = out / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    pipe.unet.eval()
    with torch.no_grad(), autocast:
        image = pipe(
            config.validation_prompt,
            num_inference_steps=config.validation_steps,
            height=resolution,
            width=resolution,
            generator=torch.Generator("cpu").manual_seed(config.validation_seed),
        ).images[0]
    path = folder / f"step_{step:06d}.png"
    image.save(path)
    return path
