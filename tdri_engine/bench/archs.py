"""The architectures the benchmarks time, built from configs with random weights (no download).

Time and memory depend on the architecture, the precision and the sizes, not on the values of
the weights, so every model here is the published architecture with seeded random weights:

- ``sd15-controlnet``: Stable Diffusion 1.5 (``stable-diffusion-v1-5``: UNet 860M parameters,
  VAE 84M, CLIP ViT-L/14 text encoder 123M) with the OpenPose ControlNet
  (``lllyasviel/sd-controlnet-openpose``, 361M, the UNet's encoder plus the conditioning embedding).
- ``sdxl``: SDXL base 1.0 (UNet 2.57G, VAE 84M, CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 text
  encoders, 123M + 695M).
- ``tiny``: the demo profile's tiny SD-1.x architectures (``tdri_engine.demo.diffusion``), so a
  benchmark runs on a CPU in seconds.

The configs are the ``config.json`` files of those repositories, written out here (the fields
that change the computation; the rest are diffusers' defaults, which equal the published
values). ``parameter_count`` counts them without allocating (meta device); checked against the
published models: SD-1.5 UNet 859,520,964, VAE 83,653,863, CLIP-L text 123,060,480, OpenPose
ControlNet 361,279,120; SDXL UNet 2,567,463,684, bigG text 694,659,840, SDXL ControlNet (from
the UNet) 1,251,014,160; Qwen2-VL-2B 2,208,985,600; CLIP ViT-B/32 151,277,313. (Counting on
the meta device takes about 6 s per architecture on a busy CPU, too slow for the test suite.)
For the round benchmark: Qwen2-VL-2B (the profile's VLM) and CLIP ViT-B/32 (the profile's
scorer), also from their configs, and the OpenPose body network.

Scheduler: DDIM (eta 0) with SD's training betas on both architectures, as the project loads
them (``generator.load_pipeline`` replaces a repository's scheduler by DDIM unless a profile asks
otherwise); plain and ours always get the same one.

Tokenizers are CLIP's real BPE (from open_clip's bundled vocabulary, ``tokenizers_offline``),
so prompts tokenize exactly as with the published tokenizers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..demo.diffusion import ddim_scheduler
from ..demo.language import TINY_QWEN2_VL_VISION, tiny_clip_config, tiny_qwen2_text

ARCHS: tuple[str, ...] = ("sd15-controlnet", "sdxl", "tiny")

# ---- Stable Diffusion 1.5 --------------------------------------------------------------------

SD15_UNET: dict[str, Any] = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=(320, 640, 1280, 1280),
    center_input_sample=False,
    cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    sample_size=64,
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)

SD_VAE: dict[str, Any] = dict(
    act_fn="silu",
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    in_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    out_channels=3,
    sample_size=512,
    up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)

# openai/clip-vit-large-patch14's text tower, as SD-1.5's and SDXL's first text encoder
CLIP_L_TEXT: dict[str, Any] = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="quick_gelu",
    projection_dim=768,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

# lllyasviel/sd-controlnet-openpose: SD-1.5's encoder plus this conditioning embedding
SD15_CONTROLNET: dict[str, Any] = dict(
    conditioning_embedding_out_channels=(16, 32, 96, 256),
)

# ---- SDXL base 1.0 ---------------------------------------------------------------------------

SDXL_UNET: dict[str, Any] = dict(
    act_fn="silu",
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    attention_head_dim=(5, 10, 20),
    block_out_channels=(320, 640, 1280),
    cross_attention_dim=2048,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    out_channels=4,
    projection_class_embeddings_input_dim=2816,
    sample_size=128,
    transformer_layers_per_block=(1, 2, 10),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    use_linear_projection=True,
)

SDXL_VAE: dict[str, Any] = dict(SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)

# laion/CLIP-ViT-bigG-14's text tower, SDXL's second text encoder (with projection)
OPENCLIP_BIGG_TEXT: dict[str, Any] = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="gelu",
    projection_dim=1280,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

# ---- the demo's tiny SD-1.x (tdri_engine.demo.diffusion.build_sd_pipeline) -------------------

TINY_UNET: dict[str, Any] = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=32,
)
TINY_CONTROLNET: dict[str, Any] = dict(conditioning_embedding_out_channels=(16, 32))

# ---- the round's language-side models ------------------------------------------------------

# Qwen/Qwen2-VL-2B-Instruct (the profile's VLM): 1.5B language model + 675M vision tower
QWEN2_VL_2B_TEXT: dict[str, Any] = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    rms_norm_eps=1e-6,
)
QWEN2_VL_2B_VISION: dict[str, Any] = dict(
    depth=32,
    embed_dim=1280,
    hidden_size=1536,
    num_heads=16,
    mlp_ratio=4,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# its processor's defaults: 56² to 28²·1280 pixels, so a 512² image is 36² patches -> 324 tokens
QWEN2_VL_PIXELS = dict(min_pixels=56 * 56, max_pixels=28 * 28 * 1280)

# openai/clip-vit-base-patch32 (the profile's CLIP scorer)
CLIP_B32: dict[str, Any] = dict(
    text_config=dict(
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=8,
        max_position_embeddings=77,
        vocab_size=49408,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    ),
    vision_config=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=32,
        hidden_act="quick_gelu",
    ),
    projection_dim=512,
)


# --------------------------------------------------------------------------------------------


@dataclass
class Components:
    """One set of diffusion components; ``pipeline_kind`` is the project's generator kind."""

    arch: str
    pipeline_kind: str  # "sd15" | "sdxl" (the generator kinds of tdri_engine.models)
    parts: dict[str, Any]  # vae, text_encoder(s), tokenizer(s), unet, scheduler
    controlnet: Any | None
    parameters: dict[str, int]


def clip_tokenizer() -> Any:
    """CLIP's real BPE tokenizer (49408 tokens), built from open_clip's bundled vocabulary."""
    from transformers import CLIPTokenizer

    from ..tokenizers_offline import save_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(save_clip_tokenizer(Path(tmp)))


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _modules(arch: str) -> dict[str, Any]:
    """The modules of ``arch`` (built on the current default device, seeded by the caller)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if arch == "sd15-controlnet":
        unet = UNet2DConditionModel(**SD15_UNET)
        return {
            "unet": unet,
            "vae": AutoencoderKL(**SD_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)),
            "controlnet": ControlNetModel.from_unet(unet, **SD15_CONTROLNET),
        }
    if arch == "sdxl":
        return {
            "unet": UNet2DConditionModel(**SDXL_UNET),
            "vae": AutoencoderKL(**SDXL_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG_TEXT)),
        }
    if arch == "tiny":
        from ..demo.diffusion import tiny_text_encoder_config, tiny_vae

        unet = UNet2DConditionModel(**TINY_UNET)
        return {
            "unet": unet,
            "vae": tiny_vae(),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**tiny_text_encoder_config())),
            "controlnet": ControlNetModel.from_unet(unet, **TINY_CONTROLNET),
        }
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")


def parameter_count(arch: str) -> dict[str, int]:
    """Parameters per module of ``arch``, counted on the meta device (nothing is allocated)."""
    import torch

    with torch.device("meta"):
        return {name: _count(m) for name, m in _modules(arch).items()}


def build_components(arch: str, device: Any, dtype: Any, *, seed: int = 0) -> Components:
    """``arch``'s modules with seeded random weights, on ``device`` in ``dtype``, in eval mode.

    Built directly on the device (initialising 2.6G parameters on a CPU takes minutes). The same
    seed on the same device gives the same weights, so two calls give two identical sets.
    """
    import torch

    torch.manual_seed(seed)
    with torch.device(device):
        mods = _modules(arch)
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()  # .to(dtype) warns that no module asked to stay in float32
    try:
        for m in mods.values():
            m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    finally:
        dlog.set_verbosity(level)
    params = {name: _count(m) for name, m in mods.items()}
    controlnet = mods.pop("controlnet", None)
    tok = clip_tokenizer()
    parts: dict[str, Any] = dict(mods, tokenizer=tok, scheduler=ddim_scheduler())
    if "text_encoder_2" in mods:
        parts["tokenizer_2"] = tok
    return Components(arch, "sdxl" if arch == "sdxl" else "sd15", parts, controlnet, params)


def text2img_pipeline(c: Components) -> Any:
    """The generator role's pipeline as ``generator.load_pipeline`` returns it (text-to-image)."""
    import diffusers as d

    if c.pipeline_kind == "sdxl":
        pipe = d.StableDiffusionXLPipeline(**c.parts, add_watermarker=False)
    else:
        pipe = d.StableDiffusionPipeline(
            **c.parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_pipeline(c: Components, mode: str) -> Any:
    """A plain diffusers pipeline of ``mode`` ("text2img" or "controlnet") from ``c``'s parts."""
    import diffusers as d

    if mode == "controlnet":
        if c.controlnet is None:
            raise ValueError(f"architecture {c.arch} has no ControlNet")
        if c.pipeline_kind == "sdxl":
            pipe = d.StableDiffusionXLControlNetPipeline(
                **c.parts, controlnet=c.controlnet, add_watermarker=False
            )
        else:
            pipe = d.StableDiffusionControlNetPipeline(
                **c.parts,
                controlnet=c.controlnet,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return text2img_pipeline(c)


# ---- the round's other roles -----------------------------------------------------------------


def build_vlm(arch: str, device: Any, dtype: Any, *, seed: int = 0) -> Any:
    """The ``vlm`` role as ``reflector.load_captioner`` returns it: a Captioner over Qwen2-VL.

    ``arch`` "qwen2-vl-2b" is the 2B model's architecture (its processor's pixel bounds too);
    "tiny" is the demo's. The tokenizer is a small byte-level BPE with Qwen's special tokens
    (ids below the model's vocabulary): prompts are a few tokens shorter or longer than with
    Qwen's own 151k vocabulary, the image tokens are the same. Random weights never emit the end
    token, so every caption runs to the captioner's token limit: an upper bound on decode time.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from ..reflector import Captioner
    from ..tokenizers_offline import QWEN_CHAT_TEMPLATE, make_qwen2_tokenizer

    tok = make_qwen2_tokenizer(2000)
    special = {
        name: tok.convert_tokens_to_ids(f"<|{name}|>")
        for name in ("image_pad", "video_pad", "vision_start", "vision_end", "im_end", "endoftext")
    }
    if arch == "qwen2-vl-2b":
        text, vision, pixels = dict(QWEN2_VL_2B_TEXT), dict(QWEN2_VL_2B_VISION), QWEN2_VL_PIXELS
    elif arch == "tiny":
        text, vision = tiny_qwen2_text(len(tok), mrope=True), dict(TINY_QWEN2_VL_VISION)  # the demo's
        pixels = dict(min_pixels=56 * 56, max_pixels=112 * 112)
    else:
        raise ValueError(f"unknown VLM architecture {arch!r}")
    text.update(
        bos_token_id=special["endoftext"], eos_token_id=special["im_end"], pad_token_id=special["endoftext"]
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=special["image_pad"],
        video_token_id=special["video_pad"],
        vision_start_token_id=special["vision_start"],
        vision_end_token_id=special["vision_end"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(config)
    model = model.to(device=device, dtype=dtype).eval()
    model.generation_config.eos_token_id = [special["im_end"], special["endoftext"]]
    model.generation_config.pad_token_id = special["endoftext"]
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return Captioner(model, processor, device)


def build_clip(arch: str, device: Any, dtype: Any, *, seed: int = 0) -> Any:
    """The ``clip`` role as ``metrics.load_clip`` returns it for an ``hf-clip`` folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from ..metrics import ClipScorer, _HfClipBackend

    if arch == "clip-vit-b32":
        cfg, size = CLIP_B32, 224
    elif arch == "tiny":
        cfg, size = tiny_clip_config(), 64  # the demo's hf-clip
    else:
        raise ValueError(f"unknown CLIP architecture {arch!r}")
    torch.manual_seed(seed)
    with torch.device(device):
        model = CLIPModel(CLIPConfig(**cfg))
    model = model.to(device=device, dtype=dtype).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=[0.48145466, 0.4578275, 0.40821073],
            image_std=[0.26862954, 0.26130258, 0.27577711],
        ),
        tokenizer=clip_tokenizer(),
    )
    return ClipScorer(_HfClipBackend(model, processor, device, dtype))


def build_pose(device: Any, *, seed: int = 0) -> Any:
    """The ``pose`` role as ``pose.load_openpose`` returns it (the body network is fixed, fp32)."""
    import torch

    from ..pose import OpenPoseBody, bodypose_model_class

    torch.manual_seed(seed)
    return OpenPoseBody(bodypose_model_class()(), device)
