"""Generator: the prompt-conditioned diffusion model G of the paper, on diffusers pipelines.

Round 0 is text-to-image. From round 1 on the smoothed pose map from round 0 conditions the
image through the pose ControlNet, either editing the previous image (image-to-image at a
strength, the default: the paper found editing more consistent) or generating anew.

All pipelines are built from the one loaded generator (``Pipeline(**base.components, ...)``),
so the UNet, VAE and text encoders are shared, never loaded twice. Generation is seeded with a
CPU ``torch.Generator`` (identical images for identical inputs on any device), reports every
step, offers a cheap latent preview, and stops within one step when cancelled.

Prompt encoding lives here too: CLIP reads 77 tokens; longer SD-1.x prompts are encoded in
75-token chunks concatenated along the sequence (SDXL prompts are truncated), and either way
the user is told. ``encode_prompt_blend`` is eq. (2): alpha*E(history) + beta*E(latest input),
token by token at the latest prompt's positions (the same words blended, inserted words kept).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import AdapterError, BadInput, Cancelled, TdriError
from .events import CancelToken, EventSink, Preview, Progress, ignore_events
from .models import _is_oom, model_name, out_of_memory

CHUNK_TOKENS = 75  # CLIP's 77 positions minus the start and end tokens
MAX_CHUNKS = 4  # past 300 tokens a prompt is truncated (with a warning): attention cost grows
PREVIEW_EVERY_S = 0.25  # throttle for Preview events; the first step always gets one
DOMAIN_ADAPTER = "tdri_domain"  # the model profile's domain LoRA (tdri finetune)
PROJECT_ADAPTER = "tdri"  # the project's (or user's) DPO adapter, stacked on the domain LoRA

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]

# Fixed linear maps from the 4 latent channels to RGB (approximations of the VAE decoder that
# are common in SD front-ends). Cheap: no VAE decode for a preview.
_LATENT_RGB = {
    "sd15": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}


def latent_preview(latents: Any, kind: str = "sd15") -> Image.Image:
    """An RGB picture of the first latent in a batch, by a fixed linear map (no VAE decode)."""
    import torch

    factors, bias = _LATENT_RGB.get(kind, _LATENT_RGB["sd15"])
    lat = latents[0].detach().to("cpu", torch.float32)  # (4, h, w)
    weight = torch.tensor(factors, dtype=torch.float32)  # (4, 3)
    rgb = torch.einsum("chw,cr->hwr", lat[:4], weight) + torch.tensor(bias)
    rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(rgb)


# --------------------------------------------------------------------------------------------
# Loaders (registered in tdri_engine.models for kinds sd15, sdxl, controlnet)


def _pipeline_classes(kind: str) -> dict[str, Any]:
    import diffusers as d

    if kind == "sdxl":
        return {
            "text2img": d.StableDiffusionXLPipeline,
            "img2img": d.StableDiffusionXLImg2ImgPipeline,
            "controlnet": d.StableDiffusionXLControlNetPipeline,
            "controlnet-img2img": d.StableDiffusionXLControlNetImg2ImgPipeline,
        }
    return {
        "text2img": d.StableDiffusionPipeline,
        "img2img": d.StableDiffusionImg2ImgPipeline,
        "controlnet": d.StableDiffusionControlNetPipeline,
        "controlnet-img2img": d.StableDiffusionControlNetImg2ImgPipeline,
    }


def load_pipeline(path: Path, spec: Any, device: Any, dtype: Any) -> Any:
    """Loader for kinds ``sd15`` and ``sdxl``: the text-to-image pipeline, local files only.

    Trust policy (``tdri_engine.trust``): the folder is checked before diffusers reads it (a
    custom pipeline or component, ``auto_map``, or a component with only pickled weights is
    refused), and diffusers is asked for safetensors only and no code from the folder.
    """
    from .trust import check_spec

    check_spec(path, spec, "generator")  # before diffusers is even imported
    from diffusers import DDIMScheduler

    cls = _pipeline_classes(spec.kind)["text2img"]
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "local_files_only": True,
        "use_safetensors": True,
        "trust_remote_code": False,
    }
    if spec.options.get("variant"):
        kwargs["variant"] = spec.options["variant"]
    if spec.kind == "sd15" and not spec.options.get("safety_checker", False):
        # The SD-1.5 safety checker is a 1.2 GB CLIP; a design studio opts in through the profile.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if spec.kind == "sdxl":
        kwargs["add_watermarker"] = False
    pipe = cls.from_pretrained(str(path), **kwargs)
    if spec.options.get("scheduler", "ddim") == "ddim":
        # DDIM (eta 0) is deterministic and edits well; the repository's own scheduler on request.
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    if spec.options.get("cpu_offload") and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    from .fastpath import from_options

    from_options(spec.options).apply(pipe)  # the profile's fast-path levers (none unless named)
    return pipe


def load_controlnet(path: Path, spec: Any, device: Any, dtype: Any) -> Any:
    """Loader for kind ``controlnet``: the pose ControlNet model (shared by both ControlNet pipelines)."""
    from .trust import check_spec

    check_spec(path, spec, "controlnet")  # custom code or only pickled weights: refused first
    from diffusers import ControlNetModel

    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "use_safetensors": True}
    if spec.options.get("variant"):
        kwargs["variant"] = spec.options["variant"]
    model = ControlNetModel.from_pretrained(str(path), **kwargs)
    if not (spec.options.get("cpu_offload") and device.type == "cuda"):
        model.to(device)
    from .fastpath import from_options

    from_options(spec.options).apply(model)  # the profile's fast-path levers (none unless named)
    return model


# --------------------------------------------------------------------------------------------
# Prompt encoding


@dataclass(frozen=True)
class PromptEmbeds:
    """Text conditioning ready for a pipeline, with what the user should know about it.

    ``pooled`` fields are SDXL's; SD-1.x leaves them None.
    """

    prompt_embeds: Any
    negative_prompt_embeds: Any
    pooled_prompt_embeds: Any = None
    negative_pooled_prompt_embeds: Any = None
    warnings: tuple[str, ...] = ()

    def pipeline_kwargs(self) -> dict[str, Any]:
        out = {"prompt_embeds": self.prompt_embeds, "negative_prompt_embeds": self.negative_prompt_embeds}
        if self.pooled_prompt_embeds is not None:
            out["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            out["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return out


def _is_xl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def _token_ids(pipe: Any, text: str) -> list[int]:
    # verbose=False: the length is reported to the user as a warning of ours, not a library log line
    return list(pipe.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK_TOKENS] for i in range(0, len(ids), CHUNK_TOKENS)] or [[]]


def _long_text_warning(label: str, n_tokens: int, n_chunks: int, truncated: bool) -> str:
    if truncated:
        return (
            f"The {label} is {n_tokens} tokens long; CLIP reads at most {CHUNK_TOKENS * n_chunks} here, "
            f"so everything after token {CHUNK_TOKENS * n_chunks} was left out. Shorten it to keep all of it."
        )
    return (
        f"The {label} is {n_tokens} tokens long, more than CLIP's {CHUNK_TOKENS}; it was encoded in "
        f"{n_chunks} chunks of {CHUNK_TOKENS} tokens, which the model reads less precisely than one."
    )


def _encode_sd_chunked(pipe: Any, texts: list[tuple[str, str]]) -> tuple[list[Any], list[str]]:
    """Encode several texts with SD-1.x's CLIP, all padded to the same number of 77-token chunks.

    ``texts`` holds (label, text). Returns one (1, 77*k, D) tensor per text, and warnings.
    """
    import torch

    tok = pipe.tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    width = tok.model_max_length if tok.model_max_length and tok.model_max_length < 10_000 else 77
    warnings: list[str] = []
    all_chunks = []
    for label, text in texts:
        ids = _token_ids(pipe, text)
        chunks = _chunks(ids)
        if len(chunks) > MAX_CHUNKS:
            chunks = chunks[:MAX_CHUNKS]
            warnings.append(_long_text_warning(label, len(ids), MAX_CHUNKS, True))
        elif len(chunks) > 1:
            warnings.append(_long_text_warning(label, len(ids), len(chunks), False))
        all_chunks.append(chunks)
    k = max(len(c) for c in all_chunks)
    device = pipe._execution_device
    out = []
    for chunks in all_chunks:
        chunks = chunks + [[]] * (k - len(chunks))  # empty chunks encode "nothing more"
        rows = [[bos] + c + [eos] + [pad] * (width - 2 - len(c)) for c in chunks]
        ids = torch.tensor(rows, dtype=torch.long, device=device)
        with torch.no_grad():
            hidden = pipe.text_encoder(ids)[0]  # (k, 77, D)
        out.append(hidden.reshape(1, -1, hidden.shape[-1]).to(dtype=pipe.unet.dtype))
    return out, warnings


def _encode_xl(pipe: Any, texts: list[tuple[str, str]]) -> tuple[list[tuple[Any, Any]], list[str]]:
    """SDXL's two encoders through the pipeline's own encode_prompt (77 tokens, truncated openly)."""
    import torch

    warnings = []
    out = []
    for label, text in texts:
        n = len(_token_ids(pipe, text))
        if n > CHUNK_TOKENS:
            warnings.append(
                f"The {label} is {n} tokens long; SDXL's CLIP encoders read {CHUNK_TOKENS}, so the rest "
                "was left out. Shorten it to keep all of it."
            )
        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=text,
                device=pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
        out.append((embeds, pooled))
    return out, warnings


def encode_prompt(pipe: Any, prompt: str, negative_prompt: str = "") -> PromptEmbeds:
    """The pipeline conditioning of one prompt (chunked past 75 tokens on SD-1.x, with warnings)."""
    if _is_xl(pipe):
        (pos, neg), warnings = _encode_xl(pipe, [("prompt", prompt), ("negative prompt", negative_prompt)])
        if not negative_prompt and pipe.config.get("force_zeros_for_empty_prompt", True):
            import torch

            neg = (torch.zeros_like(pos[0]), torch.zeros_like(pos[1]))
        return PromptEmbeds(pos[0], neg[0], pos[1], neg[1], tuple(warnings))
    (pos, neg), warnings = _encode_sd_chunked(
        pipe, [("prompt", prompt), ("negative prompt", negative_prompt)]
    )
    return PromptEmbeds(pos, neg, warnings=tuple(warnings))


def blend_sources(
    history_ids: list[int],
    latest_ids: list[int],
    width: int,
    n_chunks: int,
    max_tokens: int,
    per: int = CHUNK_TOKENS,
) -> list[int | None]:
    """For each position of the latest prompt's encoding (``n_chunks`` rows of ``width``), the
    position of the history prompt's encoding blended into it, or None (the latest alone).

    Token ids are aligned with difflib (longest matching blocks, no junk heuristic): a token of
    the latest prompt that matches one of the history is blended with THAT token, wherever it
    sits; an inserted token has no counterpart. The start, end and padding positions of each
    chunk hold the sentence as a whole (CLIP's causal encoder sums the text up at the end token
    and after): they are blended with the history's at the same distance from its end token.
    Only the first ``max_tokens`` tokens of either text are encoded (later ones are cut);
    each chunk holds ``per`` of them between its start and end tokens.
    """
    import difflib

    def pos(t: int) -> int:
        return (t // per) * width + 1 + t % per

    h_ids, l_ids = history_ids[:max_tokens], latest_ids[:max_tokens]
    out: list[int | None] = [None] * (width * n_chunks)
    matcher = difflib.SequenceMatcher(None, h_ids, l_ids, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            out[pos(block.b + k)] = pos(block.a + k)
    for c in range(n_chunks):
        start = c * width
        out[start] = start  # the start token
        end_l = start + 1 + min(per, max(0, len(l_ids) - c * per))
        end_h = start + 1 + min(per, max(0, len(h_ids) - c * per))
        for p in range(end_l, start + width):
            out[p] = min(end_h + (p - end_l), start + width - 1)
    return out


def _blend_rows(h: Any, u: Any, sources: list[int | None], a: float, b: float) -> Any:
    """(1, L, D) tensors: a*h[src] + b*u at every position with a source, u elsewhere."""
    import torch

    out = u.clone()
    dst = [i for i, s in enumerate(sources) if s is not None and i < u.shape[1]]
    src = [sources[i] for i in dst]
    if dst:
        d = torch.tensor(dst, device=u.device)
        out[:, d] = a * h[:, torch.tensor(src, device=h.device)] + b * u[:, d]
    return out


def encode_prompt_blend(
    pipe: Any,
    history_prompt: str,
    latest_text: str,
    alpha: float,
    beta: float,
    *,
    negative_prompt: str = "",
) -> PromptEmbeds:
    """Eq. (2) on prompt embeddings, token by token at the LATEST prompt's positions.

    The paper writes P_t = S(alpha E_h(H_t) + beta E_u(u_t)) and leaves the embedding space
    open. Here E is the pipeline's text encoder (one vector per token) and the sum is taken per
    token: every token of the latest prompt that also occurs in the history prompt (aligned by
    :func:`blend_sources`, so "dress" is blended with "dress" even after "red silk" was
    inserted before it) becomes (alpha E_h[i] + beta E_u[j]) / (alpha + beta); a token that only
    the latest prompt has keeps its own embedding E_u[j] (the history has nothing to mix in
    there; with alpha = 0 the result is E_u exactly). The start, end and padding positions, which
    carry the whole sentence, are blended with the history's at the same distance from its end
    token. The result has the latest prompt's length and token positions, so indices computed
    on the latest prompt (Attend-and-Excite's) point at the same words in the blend. Averaging
    position by position instead would mix unrelated words after any insertion.

    SDXL's two encoders share CLIP's BPE vocabulary, so one alignment serves both; the pooled
    embedding (one vector per text) is blended as a whole. An empty latest input (a skipped
    question) gives E(history) alone; an empty history gives E(latest) alone.
    """
    if alpha < 0 or beta < 0 or alpha + beta == 0:
        raise BadInput("alpha and beta must be >= 0 and not both 0.", "Fix alpha and beta in Settings.")
    history_prompt, latest_text = history_prompt.strip(), latest_text.strip()
    if not latest_text:
        return encode_prompt(pipe, history_prompt, negative_prompt)
    if not history_prompt:
        return encode_prompt(pipe, latest_text, negative_prompt)
    a, b = alpha / (alpha + beta), beta / (alpha + beta)
    texts = [
        ("dialogue history prompt", history_prompt),
        ("latest input", latest_text),
        ("negative prompt", negative_prompt),
    ]
    h_ids, u_ids = _token_ids(pipe, history_prompt), _token_ids(pipe, latest_text)
    if _is_xl(pipe):
        (h, u, neg), warnings = _encode_xl(pipe, texts)
        if not negative_prompt and pipe.config.get("force_zeros_for_empty_prompt", True):
            import torch

            neg = (torch.zeros_like(h[0]), torch.zeros_like(h[1]))
        width = int(u[0].shape[1])
        sources = blend_sources(h_ids, u_ids, width, 1, width - 2, per=width - 2)
        embeds = _blend_rows(h[0], u[0], sources, a, b)
        return PromptEmbeds(embeds, neg[0], a * h[1] + b * u[1], neg[1], tuple(warnings))
    (h, u, neg), warnings = _encode_sd_chunked(pipe, texts)
    max_len = pipe.tokenizer.model_max_length
    width = max_len if max_len and max_len < 10_000 else 77  # as _encode_sd_chunked pads
    n_chunks = int(u.shape[1]) // width
    sources = blend_sources(h_ids, u_ids, width, n_chunks, CHUNK_TOKENS * MAX_CHUNKS)
    return PromptEmbeds(_blend_rows(h, u, sources, a, b), neg, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# The generator


@dataclass(frozen=True)
class GenerationResult:
    image: Image.Image
    seed: int
    steps: int  # denoising steps actually run (img2img runs steps * strength)
    width: int
    height: int
    model: str  # the generator's name: its HF id or folder name, never a path (models.model_name)
    adapter: str | None  # LoRA version name, when one was active
    warnings: tuple[str, ...] = ()
    mode: str = "text2img"  # "text2img" | "img2img" | "controlnet" | "controlnet-img2img"
    strength: float | None = None

    def image_record(self, prompt: str, settings: Any, **fields: Any) -> Any:
        """This image's provenance as a store record (the store writes it into the PNG too).

        ``fields`` adds what only the caller knows: round, dialogue, parent, name.
        """
        from .records import ImageRecord

        return ImageRecord(
            prompt=prompt,
            negative_prompt=settings.negative_prompt,
            seed=self.seed,
            model=self.model,
            adapter_version=self.adapter,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=settings.guidance,
            origin="generated",
            **fields,
        )


MAX_SEED = 2**63 - 1


def _check_image(image: Any, what: str) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise BadInput(
            f"The {what} is not an image ({type(image).__name__}).", f"Pass a PIL image as the {what}."
        )
    if min(image.size) < 1:
        raise BadInput(f"The {what} is empty ({image.size[0]}x{image.size[1]}).", f"Use a non-empty {what}.")
    return image


class Generator:
    """Seeded text-to-image, image-to-image and pose-ControlNet generation on one loaded model."""

    def __init__(self, registry: Any, settings: Any) -> None:
        self.registry = registry
        self.settings = settings
        self._pipes: dict[str, Any] = {}
        self._adapter_dir: Path | None = None
        self._offloaded: str | None = None
        # The ControlNet LoRA (eq. 9) pose-conditioned generations use: the session sets the
        # wanted folder; it is loaded onto the ControlNet when a ControlNet mode runs.
        self.controlnet_adapter_dir: Path | None = None
        self._controlnet_adapter_loaded: Path | None = None
        # The profile's domain LoRA (``tdri finetune``, models.DomainLora) under the project's
        # DPO adapter: both active at once (diffusers ``set_adapters``) with their weights.
        # Set ``domain_lora`` to switch it (None: the bare generator); loaded on the next image.
        self.domain_lora: Any = getattr(getattr(registry, "profile", None), "domain_lora", None)
        self.adapter_weight = 1.0  # the project adapter's weight beside the domain LoRA
        self._domain_loaded: tuple[Path, float] | None = None
        self._domain_words: dict[int, Any] = {}  # text-encoder rows its learnt words replaced

    # -- pipelines ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.registry.profile.spec("generator").kind

    def base_pipeline(self) -> Any:
        return self.pipeline("text2img")

    def pipeline(self, mode: str) -> Any:
        """The pipeline for a mode, built once from the shared components of the generator."""
        if mode in self._pipes:
            return self._pipes[mode]
        base = self.registry.get("generator")
        if mode == "text2img":
            pipe = base
        else:
            classes = _pipeline_classes(self.kind)
            if mode not in classes:
                raise BadInput(f"Unknown generation mode '{mode}'.", f"Modes: {', '.join(classes)}.")
            cls = classes[mode]
            accepted = inspect.signature(cls.__init__).parameters
            parts = {k: v for k, v in base.components.items() if k in accepted}
            if mode.startswith("controlnet"):
                parts["controlnet"] = self.registry.get("controlnet")
            if "requires_safety_checker" in accepted:
                parts["requires_safety_checker"] = False
            if "add_watermarker" in accepted:
                parts["add_watermarker"] = False
            pipe = cls(**parts)
            pipe.set_progress_bar_config(disable=True)
        self._pipes[mode] = pipe
        return pipe

    @staticmethod
    def mode_for(pose_map: Any, init_image: Any) -> str:
        if pose_map is not None:
            return "controlnet-img2img" if init_image is not None else "controlnet"
        return "img2img" if init_image is not None else "text2img"

    def _ready(self, mode: str, pipe: Any) -> None:
        """With CPU offload, the offload hooks follow the pipeline in use (they chain its modules)."""
        if not self.registry.cpu_offload or self.registry.device.type != "cuda":
            return
        if self._offloaded != mode:
            pipe.enable_model_cpu_offload(device=self.registry.device)
            self._offloaded = mode

    # -- adapters ----------------------------------------------------------------------------

    def set_adapter(self, adapter_dir: Path | None) -> None:
        """Activate a LoRA folder (diffusers format), or none; switches only when it changes.

        The folder is validated first (``optimizer.adapters.validate_adapter_dir``: safetensors
        only, a pickle-only folder is refused, shapes must fit this UNet) and loaded with
        ``use_safetensors=True``. On any failure the model is left without an adapter and
        ``AdapterError`` says so; :meth:`generate` then makes the image without it and says that.
        """
        target = Path(adapter_dir).resolve() if adapter_dir else None
        if target == self._adapter_dir:
            return
        base = self.base_pipeline()
        if self._adapter_dir is not None:
            self._remove_lora(base, PROJECT_ADAPTER)
            self._adapter_dir = None
        if target is None:
            self._apply_adapter_weights(base)
            return
        try:
            self._load_lora(base, target, PROJECT_ADAPTER)
        except Exception as exc:
            why = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
            raise AdapterError(
                f"The LoRA adapter {target.name} could not be loaded ({why}).",
                "Roll back to an earlier adapter version (`tdri adapters rollback`, or the studio's "
                "adapter list), or train again.",
            ) from exc
        self._adapter_dir = target
        self._apply_adapter_weights(base)

    def _loaded_loras(self) -> list[str]:
        return [
            n for n, on in ((DOMAIN_ADAPTER, self._domain_loaded), (PROJECT_ADAPTER, self._adapter_dir)) if on
        ]

    def _remove_lora(self, base: Any, name: str) -> None:
        """Take one named LoRA off the UNet, keeping the other; with none left, the LoRA layers
        go too (``unload_lora_weights``), so the bare model is exactly the base again."""
        if [n for n in self._loaded_loras() if n != name]:
            if name in (getattr(base.unet, "peft_config", None) or {}):
                base.delete_adapters(name)
        else:
            base.unload_lora_weights()

    def _load_lora(self, base: Any, target: Path, name: str) -> None:
        """Validate (safetensors only, shapes of this UNet) and load one LoRA folder as ``name``;
        on failure nothing of it stays loaded and the exception propagates."""
        validate: Callable[[Path, Any], None] | None
        try:
            from .optimizer.adapters import WEIGHTS_NAME
            from .optimizer.adapters import validate_adapter_dir as validate
        except ImportError:  # a build without the optimizer: diffusers' own checks only
            WEIGHTS_NAME, validate = "pytorch_lora_weights.safetensors", None
        try:
            if validate is not None:
                validate(target, getattr(base, "unet", None))
            base.load_lora_weights(
                str(target), weight_name=WEIGHTS_NAME, use_safetensors=True, adapter_name=name
            )
        except Exception:
            try:  # leave the model as it was: no half-loaded adapter
                if name in (getattr(base.unet, "peft_config", None) or {}):
                    self._remove_lora(base, name)
                elif not self._loaded_loras():
                    base.unload_lora_weights()
            except Exception:  # pragma: no cover - nothing more can be done
                pass
            raise

    def _apply_adapter_weights(self, base: Any) -> None:
        """Activate the loaded LoRAs together with their weights (domain, then project).

        Re-applied before every image: a DPO update switches the UNet's adapters while it trains
        and gives them back at weight 1.
        """
        weights = {DOMAIN_ADAPTER: self._domain_loaded[1] if self._domain_loaded else 0.0}
        weights[PROJECT_ADAPTER] = self.adapter_weight
        names = self._loaded_loras()
        if names:
            base.set_adapters(names, adapter_weights=[weights[n] for n in names])

    def sync_domain_lora(self) -> None:
        """Load the wanted domain LoRA (``domain_lora``) when it changed; raises ``AdapterError``,
        leaving the generator without one (the project adapter stays)."""
        wanted = self.domain_lora
        target = (Path(wanted.path).expanduser().resolve(), float(wanted.weight)) if wanted else None
        if target == self._domain_loaded:
            return
        base = self.base_pipeline()
        from .finetune.words import apply_words, restore_words

        if self._domain_loaded is not None and (target is None or target[0] != self._domain_loaded[0]):
            restore_words(base, self._domain_words)
            self._domain_words = {}
            self._remove_lora(base, DOMAIN_ADAPTER)
            self._domain_loaded = None
        if target is not None and self._domain_loaded is None:
            try:
                self._load_lora(base, target[0], DOMAIN_ADAPTER)
                try:  # the words it learnt (tdri finetune --learn-word), into the text encoder
                    self._domain_words = apply_words(base, target[0])
                except Exception:
                    self._remove_lora(base, DOMAIN_ADAPTER)
                    raise
            except Exception as exc:
                why = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
                raise AdapterError(
                    f"The profile's domain LoRA {target[0]} could not be loaded ({why}).",
                    "Fine-tune it again (`tdri finetune`), or choose another model profile in Settings.",
                ) from exc
        self._domain_loaded = target
        self._apply_adapter_weights(base)

    @property
    def adapter_version(self) -> str | None:
        return self._adapter_dir.name if self._adapter_dir else None

    def _sync_controlnet_adapter(self, controlnet: Any) -> None:
        """Load ``controlnet_adapter_dir`` onto the ControlNet (or take the loaded one off) when
        it changed; safetensors only. Raises ``AdapterError``, leaving the ControlNet without one."""
        target = Path(self.controlnet_adapter_dir).resolve() if self.controlnet_adapter_dir else None
        if target == self._controlnet_adapter_loaded:
            return
        if self._controlnet_adapter_loaded is not None:
            controlnet.delete_adapters("tdri_controlnet")
            self._controlnet_adapter_loaded = None
        if target is None:
            return
        from .optimizer.adapters import CONTROLNET_WEIGHTS_NAME, validate_controlnet_adapter_dir

        try:
            validate_controlnet_adapter_dir(target)
            controlnet.load_lora_adapter(
                str(target),
                weight_name=CONTROLNET_WEIGHTS_NAME,
                prefix=None,
                use_safetensors=True,
                adapter_name="tdri_controlnet",
            )
        except Exception as exc:
            if "tdri_controlnet" in (getattr(controlnet, "peft_config", None) or {}):
                controlnet.delete_adapters("tdri_controlnet")
            why = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
            raise AdapterError(
                f"The ControlNet LoRA {target.name} could not be loaded ({why}).",
                "Activate another version (`tdri adapters activate`), or train again.",
            ) from exc
        self._controlnet_adapter_loaded = target

    # -- generation --------------------------------------------------------------------------

    def encode(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        neg = self.settings.negative_prompt if negative_prompt is None else negative_prompt
        return encode_prompt(self.base_pipeline(), prompt, neg)

    def generate(
        self,
        prompt: str,
        *,
        seed: int,
        negative_prompt: str | None = None,
        pose_map: Image.Image | None = None,
        init_image: Image.Image | None = None,
        strength: float | None = None,
        prompt_embeds: PromptEmbeds | None = None,
        adapter_dir: Path | None = None,
        extra_step_callback: StepCallback | None = None,
        cancel: CancelToken | None = None,
        on_event: EventSink | None = None,
    ) -> GenerationResult:
        """One image. ``pose_map`` turns on the pose ControlNet; ``init_image`` edits that image.

        ``prompt_embeds`` (e.g. from ``encode_prompt_blend``) replaces encoding ``prompt``; the
        prompt text is still what the result records. Raises Cancelled, BadInput, OutOfMemory.
        """
        import torch

        s = self.settings
        emit = on_event or ignore_events
        if not isinstance(prompt, str):
            raise BadInput("The prompt must be text.", "Type a prompt.")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise BadInput(
                f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}.", "Pick another seed."
            )
        if pose_map is not None:
            _check_image(pose_map, "pose map")
        if init_image is not None:
            _check_image(init_image, "image to edit")
        strength = s.edit_strength if strength is None else float(strength)
        if init_image is not None and not 0.0 < strength <= 1.0:
            raise BadInput(
                f"The edit strength must be in (0, 1], got {strength}.", "Set edit_strength between 0 and 1."
            )
        if cancel is not None:
            cancel.raise_if_cancelled()

        width, height = int(s.width), int(s.height)
        mode = self.mode_for(pose_map, init_image)
        adapter_notes: list[str] = []
        try:
            self.sync_domain_lora()
        except AdapterError as exc:
            self.domain_lora = None  # made without it, and said so
            adapter_notes.append(f"{exc.message} This image was generated without it. {exc.what_to_do}")
        try:
            self.set_adapter(adapter_dir)
        except AdapterError as exc:
            # A broken adapter must not cost the round: the image is made without it, and the
            # warning (and the provenance's empty adapter) says exactly that.
            self.set_adapter(None)
            adapter_notes.append(f"{exc.message} This image was generated without it. {exc.what_to_do}")
        if self._loaded_loras():
            self._apply_adapter_weights(self.base_pipeline())
        pipe = self.pipeline(mode)
        if mode.startswith("controlnet"):
            try:
                self._sync_controlnet_adapter(pipe.controlnet)
            except AdapterError as exc:
                self.controlnet_adapter_dir = None  # made without it, and said so
                adapter_notes.append(f"{exc.message} This image was generated without it. {exc.what_to_do}")
        self._ready(mode, pipe)

        neg = s.negative_prompt if negative_prompt is None else negative_prompt
        embeds = prompt_embeds if prompt_embeds is not None else encode_prompt(pipe, prompt, neg)
        warnings = adapter_notes + list(embeds.warnings)

        steps = int(s.steps)
        if init_image is not None and steps * strength < 1:
            steps = math.ceil(1 / strength)  # img2img runs steps*strength steps: at least one
        kwargs: dict[str, Any] = dict(
            embeds.pipeline_kwargs(),
            num_inference_steps=steps,
            guidance_scale=float(s.guidance),
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="pil",
        )
        if mode in ("text2img", "controlnet"):
            kwargs.update(width=width, height=height)
        if init_image is not None:
            kwargs.update(
                image=init_image.convert("RGB").resize((width, height), Image.LANCZOS), strength=strength
            )
        if pose_map is not None:
            control = pose_map.convert("RGB").resize((width, height), Image.BILINEAR)
            kwargs["controlnet_conditioning_scale"] = float(s.pose_strength)
            if init_image is not None:
                kwargs["control_image"] = control
            else:
                kwargs["image"] = control

        wanted = [k for k in ("latents", "prompt_embeds") if k in pipe._callback_tensor_inputs]
        last_preview = [0.0]

        def on_step_end(p: Any, step: int, timestep: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
            if extra_step_callback is not None:
                cb_kwargs = extra_step_callback(p, step, timestep, cb_kwargs) or cb_kwargs
            total = int(getattr(p, "_num_timesteps", None) or steps)
            emit(Progress("generate", step + 1, total))
            now = time.monotonic()
            if "latents" in cb_kwargs and (step == 0 or now - last_preview[0] >= PREVIEW_EVERY_S):
                last_preview[0] = now
                emit(Preview(latent_preview(cb_kwargs["latents"], self.kind), step + 1, total))
            if cancel is not None and cancel.cancelled:
                p._interrupt = True  # in case the exception is swallowed: skip the remaining steps
                raise Cancelled("Generation cancelled.")
            return cb_kwargs

        kwargs.update(callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=wanted)
        try:
            out = pipe(**kwargs)
        except TdriError:
            raise
        except Exception as exc:
            if _is_oom(exc):
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # give the next, smaller attempt the memory back
                raise out_of_memory(f"generating a {width}x{height} image", exc) from exc
            raise
        image = out.images[0]
        ran = int(getattr(pipe, "_num_timesteps", steps) or steps)
        return GenerationResult(
            image=image,
            seed=seed,
            steps=ran,
            width=image.width,
            height=image.height,
            model=model_name(self.registry.profile, "generator"),
            adapter=self.adapter_version,
            warnings=tuple(warnings),
            mode=mode,
            strength=strength if init_image is not None else None,
        )
