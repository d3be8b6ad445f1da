"""Diffusion-DPO (Wallace et al.) on a LoRA, as its authors coded it, and the trainer core.

The loss follows the authors' training script line by line: the per-sample squared error of
the noise prediction is averaged over C, H, W; the batch holds the winners first and the losers
second (``chunk(2)``); the same noise and the same timestep are shared by a winner and its loser;
the reference is the same network with the adapter switched off, under ``no_grad``. On a model
profile with a domain LoRA that LoRA stays on, frozen, in both (``attach_lora(frozen=...)``): the
policy is base + domain + trained LoRA, the reference base + domain, the model images come from.

    inside = -0.5 * beta * ((mse_w - mse_l) - (ref_w - ref_l))
    loss   = -logsigmoid(inside).mean()          implicit accuracy = mean(inside > 0)

With a freshly added LoRA (B initialised to zero) the policy equals the reference, so
``inside == 0`` and the loss is exactly log 2.

This module knows tensors, not projects: ``trainer.run_update`` turns a project's preference
pairs into a ``PairTensors`` and calls ``DPOTrainer``; ``accelerate_train.py`` and the benchmark
use the same pieces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput

if TYPE_CHECKING:  # torch is imported lazily so that ``import tdri_engine`` stays cheap
    import torch

# The LoRA targets of the public Diffusion-DPO LoRA script: the attention projections.
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
TRAIN_ADAPTER = "tdri_train"  # adapter name used while training; never the generator's own


def diffusion_dpo_loss(
    model_pred: torch.Tensor, ref_pred: torch.Tensor, target: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Diffusion-DPO loss of a batch laid out as ``[winners; losers]``.

    Returns ``(loss, implicit_accuracy, inside)``; ``inside`` has one value per pair.
    """
    import torch.nn.functional as F

    if model_pred.shape != target.shape or ref_pred.shape != target.shape:
        raise ValueError(
            f"shape mismatch: model {tuple(model_pred.shape)}, ref {tuple(ref_pred.shape)}, "
            f"target {tuple(target.shape)}"
        )
    if target.shape[0] % 2:
        raise ValueError("the batch must hold winners then losers: an even number of samples")
    dims = list(range(1, target.ndim))
    # float32 for the reductions: under autocast the predictions may be bf16/fp16.
    model_losses = (model_pred.float() - target.float()).pow(2).mean(dim=dims)
    model_w, model_l = model_losses.chunk(2)
    ref_losses = (ref_pred.detach().float() - target.float()).pow(2).mean(dim=dims)
    ref_w, ref_l = ref_losses.chunk(2)
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
    loss = -F.logsigmoid(inside).mean()
    implicit_acc = (inside > 0).float().mean()
    return loss, implicit_acc, inside


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DPOConfig:
    """Knobs of one Diffusion-DPO update. Validated on construction (``BadInput``)."""

    beta: float = field(default=5000.0, metadata=_help("DPO KL strength; 5000 for SD as in the paper"))
    # The public Diffusion-DPO LoRA example's learning rate (train_diffusion_dpo.py, rank 8,
    # constant schedule). 1e-4 before was ten times that.
    lr: float = field(default=1e-5, metadata=_help("AdamW learning rate of the LoRA weights"))
    rank: int = field(default=8, metadata=_help("LoRA rank"))
    alpha: float | None = field(default=None, metadata=_help("LoRA alpha; empty for alpha = rank"))
    # Steps re-checked for lr 1e-5: Adam moves each weight about lr per step, so the movement of
    # an update grows with steps (on the test's tiny taste pipeline, beta 5000, 32 pairs, the
    # DPO loss on the update's pairs went 0.6931 -> 0.6918 / 0.6902 / 0.6846 / 0.6753 after
    # 20 / 40 / 100 / 200 steps, implicit accuracy 0.98 / 0.96 / 0.93 / 0.94). 200 steps of 4
    # pairs (20 passes over the paper's 40 choices) move about half as far as the former 40
    # steps at 1e-4, with the public example's step size: short enough against the overfitting
    # and loss spikes users of that code report on small data.
    steps: int = field(default=200, metadata=_help("optimizer steps per update"))
    batch_size: int = field(default=4, metadata=_help("preference pairs per micro-batch"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    grad_checkpointing: bool = field(default=True, metadata=_help("recompute activations to save memory"))
    mixed_precision: str = field(
        default="auto",
        metadata=_help("'auto' (bf16 on CUDA that has it, else fp16; none on CPU), 'no', 'fp16', 'bf16'"),
    )
    seed: int = field(default=0, metadata=_help("seeds noise, timesteps, batches and the VAE sample"))
    lambda_ae: float = field(
        default=0.0, metadata=_help("weight of the Attend-and-Excite term: L = L_DPO + lambda * L_AE")
    )
    spike_factor: float = field(
        default=2.0, metadata=_help("final loss above this times the initial loss marks a spike")
    )
    min_pairs: int = field(default=2, metadata=_help("fewest usable preference pairs an update runs on"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping"))
    weight_decay: float = field(default=1e-2, metadata=_help("AdamW weight decay"))
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES, metadata=_help("module names the LoRA wraps")
    )
    eval_timesteps: int = field(
        default=2, metadata=_help("fixed timesteps per pair for the before/after implicit accuracy")
    )
    train_controlnet: bool = field(
        default=False, metadata=_help("tune a LoRA on the pose ControlNet instead of the UNet (eq. 9)")
    )

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        problems = []
        if not self.beta > 0:
            problems.append("beta must be > 0")
        if not 0 < self.lr < 1:
            problems.append("lr must be in (0, 1)")
        if self.rank < 1:
            problems.append("rank must be >= 1")
        if self.alpha is not None and self.alpha <= 0:
            problems.append("alpha must be > 0")
        if self.steps < 1:
            problems.append("steps must be >= 1")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.grad_accum < 1:
            problems.append("grad_accum must be >= 1")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            problems.append("mixed_precision must be 'auto', 'no', 'fp16' or 'bf16'")
        if self.lambda_ae < 0:
            problems.append("lambda_ae must be >= 0")
        if self.spike_factor <= 1:
            problems.append("spike_factor must be > 1")
        if self.min_pairs < 2:
            problems.append("min_pairs must be >= 2 (one pair cannot be held out of its own update)")
        if not self.target_modules:
            problems.append("target_modules must name at least one module")
        if self.eval_timesteps < 1:
            problems.append("eval_timesteps must be >= 1")
        if problems:
            raise BadInput(
                "Invalid training settings: " + "; ".join(problems), "Fix the values and try again."
            )

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPOConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> DPOConfig:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# LoRA on a diffusers model through peft
# --------------------------------------------------------------------------------------------


def lora_config(config: DPOConfig):  # -> peft.LoraConfig
    from peft import LoraConfig

    # "gaussian" init as the public script: A random, B zero -> the adapter starts as a no-op.
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.lora_alpha,
        init_lora_weights="gaussian",
        target_modules=list(config.target_modules),
    )


def peft_adapter_names(model: Any) -> list[str]:
    return list(getattr(model, "peft_config", {}) or {})


def active_adapter_names(model: Any) -> list[str]:
    if not peft_adapter_names(model):
        return []
    try:
        return list(model.active_adapters())
    except ValueError:
        return []


@dataclass
class LoraAttachment:
    """What ``attach_lora`` changed, so that ``detach_lora`` puts the model back as it was."""

    adapter_name: str
    had_adapters: list[str]
    active_before: list[str]
    requires_grad_before: bool
    training_before: bool
    checkpointing_before: bool


def attach_lora(
    model: Any,
    config: DPOConfig,
    *,
    adapter_name: str = TRAIN_ADAPTER,
    frozen: Mapping[str, float] | None = None,
) -> LoraAttachment:
    """Add a trainable LoRA to ``model`` (UNet or ControlNet), the only adapter active, or on
    top of ``frozen``: adapters already loaded in ``model`` (name -> weight, e.g. a profile's
    domain LoRA) that stay active at their weights, their parameters frozen.

    With ``frozen`` the policy is base + frozen adapters + the trained LoRA, and the reference
    (``adapter_disabled``) is base + frozen adapters: Diffusion-DPO's formula, measured from the
    model the images are made with rather than from the bare base.

    The base weights are frozen; LoRA weights are kept in float32 even when the base is half
    precision (as the public script does), so small updates are not lost to rounding.
    """
    import torch

    had = peft_adapter_names(model)
    frozen = dict(frozen or {})
    missing = [name for name in frozen if name not in had]
    if missing or adapter_name in frozen:
        raise ValueError(f"frozen adapters must be loaded already and not {adapter_name!r}: {missing}")
    state = LoraAttachment(
        adapter_name=adapter_name,
        had_adapters=had,
        active_before=active_adapter_names(model),
        requires_grad_before=any(p.requires_grad for p in model.parameters()),
        training_before=model.training,
        checkpointing_before=bool(getattr(model, "is_gradient_checkpointing", False)),
    )
    if adapter_name in had:  # a previous run died before cleaning up
        model.delete_adapters(adapter_name)
    model.requires_grad_(False)
    model.add_adapter(lora_config(config), adapter_name=adapter_name)
    if frozen:  # weights: the frozen ones' own, 1 for the trained one (its lora_alpha / rank)
        model.set_adapters([*frozen, adapter_name], weights=[*frozen.values(), 1.0])
    else:
        model.set_adapter(adapter_name)
    for name, param in model.named_parameters():
        if _is_adapter_param(name, adapter_name):
            param.data = param.data.to(torch.float32)
    _train_only(model, adapter_name)  # peft's set_adapter(s) made every active adapter trainable
    return state


def _is_adapter_param(name: str, adapter_name: str) -> bool:
    return f".{adapter_name}." in name or name.endswith(f".{adapter_name}")


def _train_only(model: Any, adapter_name: str) -> None:
    """Gradients for ``adapter_name``'s LoRA weights alone (the base was frozen by attach_lora)."""
    for name, param in model.named_parameters():
        param.requires_grad_(_is_adapter_param(name, adapter_name))


def detach_lora(model: Any, state: LoraAttachment) -> None:
    """Remove the training adapter; the model is exactly as before ``attach_lora``."""
    if state.adapter_name in peft_adapter_names(model):
        if state.had_adapters:
            model.delete_adapters(state.adapter_name)
        else:
            model.unload_lora()  # no adapter before: remove the LoRA wrappers too
    if state.had_adapters and state.active_before:
        model.set_adapters(state.active_before)  # the generator's adapter(s), active again
    if state.checkpointing_before != bool(getattr(model, "is_gradient_checkpointing", False)):
        if state.checkpointing_before:
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
    model.requires_grad_(state.requires_grad_before)
    model.train(state.training_before)


def lora_parameters(model: Any, adapter_name: str = TRAIN_ADAPTER) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if p.requires_grad and f".{adapter_name}" in n]


def lora_is_fresh(model: Any, adapter_name: str = TRAIN_ADAPTER) -> bool:
    """True while every LoRA ``B`` matrix is zero: the policy then equals the reference exactly."""
    bs = [p for n, p in model.named_parameters() if "lora_B" in n and f".{adapter_name}" in n]
    return bool(bs) and all(not bool(p.detach().any()) for p in bs)


@contextlib.contextmanager
def adapter_disabled(model: Any, adapter_name: str = TRAIN_ADAPTER) -> Iterator[None]:
    """The reference model: the same network with the trained LoRA switched off (no second copy).

    When other adapters are active beside ``adapter_name`` (``attach_lora(frozen=...)``: a
    profile's domain LoRA) only ``adapter_name`` is switched off, their weights untouched, so
    the reference is base + those adapters. Otherwise every LoRA is switched off, as before.
    """
    active = active_adapter_names(model)
    kept = [name for name in active if name != adapter_name]
    if not kept or adapter_name not in active:
        model.disable_adapters()
        try:
            yield
        finally:
            model.enable_adapters()
        return
    model.set_adapter(kept)  # diffusers' set_adapter changes which are active, not their scales
    try:
        yield
    finally:
        model.set_adapter(active)
        _train_only(model, adapter_name)  # set_adapter made the active ones trainable again


# --------------------------------------------------------------------------------------------
# Data: pairs already encoded
# --------------------------------------------------------------------------------------------


@dataclass
class PairTensors:
    """N preference pairs, encoded: winner/loser latents (N,C,H,W) and the prompt embeddings.

    ``added_cond`` holds SDXL's extra conditioning (``text_embeds``, ``time_ids``), one row per
    pair; ``control`` the ControlNet conditioning image (N,3,H,W) when a ControlNet is tuned;
    ``token_indices`` the subject tokens per pair for the Attend-and-Excite term.
    """

    latents_w: torch.Tensor
    latents_l: torch.Tensor
    embeds: torch.Tensor
    added_cond: dict[str, torch.Tensor] | None = None
    control: torch.Tensor | None = None
    token_indices: list[list[int]] | None = None

    def __len__(self) -> int:
        return int(self.latents_w.shape[0])

    def select(self, idx: torch.Tensor | list[int]) -> PairTensors:
        import torch

        index = torch.as_tensor(idx, dtype=torch.long)
        pick = index.tolist()
        return PairTensors(
            latents_w=self.latents_w[index.to(self.latents_w.device)],
            latents_l=self.latents_l[index.to(self.latents_l.device)],
            embeds=self.embeds[index.to(self.embeds.device)],
            added_cond=None
            if self.added_cond is None
            else {k: v[index.to(v.device)] for k, v in self.added_cond.items()},
            control=None if self.control is None else self.control[index.to(self.control.device)],
            token_indices=None if self.token_indices is None else [self.token_indices[i] for i in pick],
        )

    def to(self, device: Any, dtype: Any = None) -> PairTensors:
        def mv(t):
            return t.to(
                device=device, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype
            )

        return PairTensors(
            latents_w=mv(self.latents_w),
            latents_l=mv(self.latents_l),
            embeds=mv(self.embeds),
            added_cond=None if self.added_cond is None else {k: mv(v) for k, v in self.added_cond.items()},
            control=None if self.control is None else mv(self.control),
            token_indices=self.token_indices,
        )


# --------------------------------------------------------------------------------------------
# One forward of the DPO objective
# --------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    loss: torch.Tensor  # the total objective (DPO + lambda * AE)
    dpo_loss: torch.Tensor
    implicit_acc: torch.Tensor
    inside: torch.Tensor
    ae_loss: torch.Tensor | None = None


def resolve_mixed_precision(config: DPOConfig, device: Any) -> str:
    import torch

    if config.mixed_precision != "auto":
        return config.mixed_precision
    if getattr(device, "type", str(device)) == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def autocast_context(
    device: Any, mixed_precision: str, model_dtype: Any
) -> contextlib.AbstractContextManager:
    """Autocast for the chosen precision; also when the base weights are half precision and
    the LoRA float32 (their product must run in one dtype)."""
    import torch

    dev_type = getattr(device, "type", str(device))
    if mixed_precision in ("fp16", "bf16"):
        dtype = torch.float16 if mixed_precision == "fp16" else torch.bfloat16
        return torch.autocast(dev_type, dtype=dtype)
    if model_dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(dev_type, dtype=model_dtype)
    return contextlib.nullcontext()


def add_noise_shared(
    noise_scheduler: Any,
    batch: PairTensors,
    generator: torch.Generator | None,
    timesteps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy ``[winners; losers]`` with the SAME noise and timestep for a winner and its loser.

    Returns ``(noisy, timesteps, target)``; ``target`` follows the scheduler's prediction type.
    """
    import torch

    latents = torch.cat([batch.latents_w, batch.latents_l])
    n = len(batch)
    noise = torch.randn(
        batch.latents_w.shape, generator=generator, device=generator.device if generator else "cpu"
    ).to(latents.device, latents.dtype)
    noise = noise.repeat(2, 1, 1, 1)
    if timesteps is None:
        timesteps = torch.randint(
            0,
            noise_scheduler.config.num_train_timesteps,
            (n,),
            generator=generator,
            device=generator.device if generator else "cpu",
        )
    timesteps = timesteps.to(latents.device).long().repeat(2)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    elif kind == "sample":
        target = latents
    else:
        raise BadInput(
            f"Unknown prediction type '{kind}' in the scheduler config.", "Use an SD-1.x or SDXL model."
        )
    return noisy, timesteps, target


def predict_noise(
    unet: Any,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    batch: PairTensors,
    *,
    controlnet: Any = None,
    dtype: Any = None,
) -> torch.Tensor:
    """One UNet (and ControlNet) forward on ``[winners; losers]``; conditioning repeated twice."""
    embeds = batch.embeds.repeat(2, 1, 1)
    added = None
    if batch.added_cond is not None:
        added = {k: v.repeat(2, *([1] * (v.ndim - 1))) for k, v in batch.added_cond.items()}
    if dtype is not None:
        noisy = noisy.to(dtype)
        embeds = embeds.to(dtype)
    kwargs: dict[str, Any] = {}
    if added is not None:
        kwargs["added_cond_kwargs"] = added
    if controlnet is not None:
        if batch.control is None:
            raise BadInput(
                "ControlNet tuning needs a conditioning image per pair.", "Give the pairs a pose map."
            )
        control = batch.control.repeat(2, 1, 1, 1)
        down, mid = controlnet(
            noisy,
            timesteps,
            encoder_hidden_states=embeds,
            controlnet_cond=control,
            return_dict=False,
            **kwargs,
        )
        kwargs["down_block_additional_residuals"] = down
        kwargs["mid_block_additional_residual"] = mid
    return unet(noisy, timesteps, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]


def dpo_objective(
    unet: Any,
    noise_scheduler: Any,
    batch: PairTensors,
    beta: float,
    *,
    generator: torch.Generator | None = None,
    timesteps: torch.Tensor | None = None,
    controlnet: Any = None,
    adapter_owner: Any = None,
    autocast: contextlib.AbstractContextManager | None = None,
    ae_store: Any = None,
    lambda_ae: float = 0.0,
    with_grad: bool = True,
    capture_through_backward: bool = False,
) -> StepOutput:
    """The full objective on one batch: reference forward (adapter off, no grad), then policy.

    ``adapter_owner`` is the module that carries the LoRA (the UNet, or the ControlNet when it is
    the one tuned); under DDP pass the unwrapped module here and the wrapper as ``unet``.

    The Attend-and-Excite term reads the cross-attention of the policy forward itself (one
    forward serves both terms, so L = L_DPO + lambda * L_AE costs no extra UNet pass). With
    gradient checkpointing the backward pass recomputes each block, and torch checks that the
    recomputation saves the same tensors as the forward did; the storing processors take their
    explicit path only while ``ae_store`` captures. So with ``capture_through_backward`` the
    capture stays open when this returns and the caller ends it after ``backward()``
    (``DPOTrainer`` does): forward and recomputation then run the same code. Otherwise the
    capture ends here, which is right when no backward follows or nothing is checkpointed.
    """
    import torch

    owner = adapter_owner if adapter_owner is not None else (controlnet if controlnet is not None else unet)
    noisy, t, target = add_noise_shared(noise_scheduler, batch, generator, timesteps)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    # Reference first: no graph is kept, so its activations are freed before the policy's.
    with torch.no_grad(), adapter_disabled(owner), ctx:
        ref_pred = predict_noise(unet, noisy, t, batch, controlnet=controlnet)
    grad_ctx = contextlib.nullcontext() if with_grad else torch.no_grad()
    capture = ae_store is not None and lambda_ae > 0 and batch.token_indices
    if capture:
        ae_store.begin(rows=slice(0, len(batch)))  # the winners' maps only
    ok = False
    try:
        with grad_ctx, ctx:
            model_pred = predict_noise(unet, noisy, t, batch, controlnet=controlnet)
        ok = True
    finally:
        if capture and not (ok and capture_through_backward and with_grad):
            ae_store.end()
    loss, acc, inside = diffusion_dpo_loss(model_pred, ref_pred, target, beta)
    out = StepOutput(loss=loss, dpo_loss=loss, implicit_acc=acc, inside=inside)
    if capture and batch.token_indices is not None:
        from .attend_excite import attend_excite_loss

        maps = ae_store.aggregate()  # (N, h, w, K), float32
        terms = [attend_excite_loss(maps[i], idx) for i, idx in enumerate(batch.token_indices) if idx]
        # a batch whose prompts name no subject noun has nothing to excite: its L_AE is 0
        ae = torch.stack(terms).mean() if terms else maps.new_zeros(())
        out.ae_loss = ae
        out.loss = loss + lambda_ae * ae
    return out


def implicit_accuracy(
    unet: Any,
    noise_scheduler: Any,
    data: PairTensors,
    beta: float,
    *,
    seed: int = 0,
    eval_timesteps: int = 2,
    batch_pairs: int = 8,
    device: Any = None,
    controlnet: Any = None,
    adapter_owner: Any = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[float, float]:
    """DPO loss and implicit accuracy of the adapter(s) loaded in ``unet`` against the same
    network with them switched off, on ``data``.

    Noise is seeded and each pair is scored at ``eval_timesteps`` timesteps spread over the
    schedule, so two calls on the same data are comparable (before/after an update, held-out
    pairs).
    """
    import torch

    device = device if device is not None else next(unet.parameters()).device
    dev_type = getattr(device, "type", str(device))
    gen = torch.Generator(device=device if dev_type == "cuda" else "cpu").manual_seed(seed)
    T = noise_scheduler.config.num_train_timesteps
    grid = torch.linspace(0, T - 1, eval_timesteps + 2)[1:-1].round().long()
    losses: list[torch.Tensor] = []
    insides: list[torch.Tensor] = []
    for t in grid:
        for start in range(0, len(data), max(1, batch_pairs)):
            idx = list(range(start, min(len(data), start + batch_pairs)))
            batch = data.select(idx).to(device)
            out = dpo_objective(
                unet,
                noise_scheduler,
                batch,
                beta,
                generator=gen,
                timesteps=t.repeat(len(idx)),
                controlnet=controlnet,
                adapter_owner=adapter_owner,
                autocast=autocast,
                with_grad=False,
            )
            losses.append(out.dpo_loss.detach() * len(idx))
            insides.append(out.inside.detach())
    inside = torch.cat(insides)
    loss = float(torch.stack(losses).sum() / inside.numel())
    return loss, float((inside > 0).float().mean())


# --------------------------------------------------------------------------------------------
# The trainer core
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    loss_curve: list[float]
    accuracy_curve: list[float]
    ae_curve: list[float]
    steps_done: int
    pairs: int
    eval_before: tuple[float, float] | None = None  # (loss, implicit accuracy), fixed noise
    eval_after: tuple[float, float] | None = None
    mixed_precision: str = "no"

    @property
    def initial_loss(self) -> float:
        return _window_mean(self.loss_curve, first=True)

    @property
    def final_loss(self) -> float:
        return _window_mean(self.loss_curve, first=False)

    @property
    def final_accuracy(self) -> float:
        return _window_mean(self.accuracy_curve, first=False)


def _window_mean(values: list[float], *, first: bool) -> float:
    """Mean of the first/last tenth (at least one step): one step's loss is noisy (random t)."""
    if not values:
        return float("nan")
    k = max(1, len(values) // 10)
    part = values[:k] if first else values[-k:]
    return float(sum(part) / len(part))


class DPOTrainer:
    """Trains the LoRA already attached to ``unet`` (or to ``controlnet``) on encoded pairs.

    ``step_callback(step, total, loss, acc)`` runs after every optimizer step and may raise
    (``Cancelled``) to stop; nothing is written by this class.
    """

    def __init__(
        self,
        unet: Any,
        noise_scheduler: Any,
        config: DPOConfig,
        *,
        device: Any = None,
        controlnet: Any = None,
        ae_store: Any = None,
    ) -> None:
        import torch

        self.unet = unet
        self.controlnet = controlnet
        self.owner = controlnet if config.train_controlnet and controlnet is not None else unet
        if config.train_controlnet and controlnet is None:
            raise BadInput(
                "ControlNet tuning was asked for but no ControlNet is loaded.", "Load the pose ControlNet."
            )
        self.noise_scheduler = noise_scheduler
        self.config = config
        self.device = device if device is not None else next(unet.parameters()).device
        self.ae_store = ae_store
        self.mixed_precision = resolve_mixed_precision(config, self.device)
        model_dtype = unet.dtype  # the frozen base weights' precision
        self.autocast = autocast_context(self.device, self.mixed_precision, model_dtype)
        self.params = lora_parameters(self.owner)
        if not self.params:
            raise RuntimeError("no trainable LoRA parameters: call attach_lora first")
        fused = getattr(self.device, "type", str(self.device)) == "cuda"
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, weight_decay=config.weight_decay, **({"fused": True} if fused else {})
        )
        # fp16 activations can underflow in the backward pass; bf16 and fp32 need no scaler.
        self.scaler = torch.amp.GradScaler("cuda") if self.mixed_precision == "fp16" and fused else None

    def _generator(self, seed: int):
        import torch

        dev = self.device if getattr(self.device, "type", str(self.device)) == "cuda" else "cpu"
        return torch.Generator(device=dev).manual_seed(seed)

    def _objective(self, batch: PairTensors, **kw: Any) -> StepOutput:
        return dpo_objective(
            self.unet,
            self.noise_scheduler,
            batch,
            self.config.beta,
            controlnet=self.controlnet,
            adapter_owner=self.owner,
            autocast=self.autocast,
            ae_store=self.ae_store,
            lambda_ae=self.config.lambda_ae,
            **kw,
        )

    def evaluate(self, data: PairTensors, *, seed: int | None = None) -> tuple[float, float]:
        """DPO loss and implicit accuracy with fixed noise and timesteps (see ``implicit_accuracy``)."""
        was_training = self.owner.training
        self.owner.eval()
        try:
            return implicit_accuracy(
                self.unet,
                self.noise_scheduler,
                data,
                self.config.beta,
                seed=self.config.seed + 7919 if seed is None else seed,
                eval_timesteps=self.config.eval_timesteps,
                batch_pairs=self.config.batch_size * 2,
                device=self.device,
                controlnet=self.controlnet,
                adapter_owner=self.owner,
                autocast=self.autocast,
            )
        finally:
            self.owner.train(was_training)

    def train(
        self,
        data: PairTensors,
        *,
        step_callback: Callable[[int, int, float, float], None] | None = None,
        evaluate: bool = True,
    ) -> TrainResult:
        import torch

        cfg = self.config
        n = len(data)
        if n < 1:
            raise BadInput("No pairs to train on.", "Record some choices first.")
        if cfg.grad_checkpointing and hasattr(self.owner, "enable_gradient_checkpointing"):
            self.owner.enable_gradient_checkpointing()
        result = TrainResult([], [], [], 0, n, mixed_precision=self.mixed_precision)
        if evaluate:
            # A fresh LoRA adds exactly zero, so every "inside" is 0: loss log 2, accuracy 0.
            # Measuring that would cost one more pass over the pairs for a known answer.
            fresh = lora_is_fresh(self.owner)
            result.eval_before = (math.log(2.0), 0.0) if fresh else self.evaluate(data)
        self.owner.train()
        gen = self._generator(cfg.seed)
        order_gen = torch.Generator().manual_seed(cfg.seed)
        order: list[int] = []
        micro = min(cfg.batch_size, n)
        for step in range(cfg.steps):
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=self.device)
            step_acc = torch.zeros((), device=self.device)
            step_ae = torch.zeros((), device=self.device)
            for _ in range(cfg.grad_accum):
                if len(order) < micro:  # epochs over a fresh permutation
                    order += torch.randperm(n, generator=order_gen).tolist()
                idx, order = order[:micro], order[micro:]
                batch = data.select(idx).to(self.device)
                try:
                    # the attention capture stays open until the backward pass has recomputed
                    # the checkpointed blocks (see ``dpo_objective``)
                    out = self._objective(batch, generator=gen, capture_through_backward=True)
                    loss = out.loss / cfg.grad_accum
                    if self.scaler is not None:
                        self.scaler.scale(loss).backward()
                    else:
                        loss.backward()
                finally:
                    if self.ae_store is not None:
                        self.ae_store.end()
                        self.ae_store.maps = []  # the recomputation stored its maps again
                step_loss += out.dpo_loss.detach() / cfg.grad_accum
                step_acc += out.implicit_acc.detach() / cfg.grad_accum
                if out.ae_loss is not None:
                    step_ae += out.ae_loss.detach() / cfg.grad_accum
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            loss_v, acc_v = float(step_loss), float(step_acc)
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"the DPO loss became {loss_v} at step {step + 1}")
            result.loss_curve.append(loss_v)
            result.accuracy_curve.append(acc_v)
            if cfg.lambda_ae > 0:
                result.ae_curve.append(float(step_ae))
            result.steps_done = step + 1
            if step_callback is not None:
                step_callback(step + 1, cfg.steps, loss_v, acc_v)
        self.optimizer.zero_grad(set_to_none=True)
        if evaluate:
            result.eval_after = self.evaluate(data)
        return result
