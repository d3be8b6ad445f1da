"""Tiny, seeded, random diffusion-side models for the demo profile, built offline.

Each builder writes one role's folder in the same layout real weights use, so the demo runs
through exactly the loading code real models take:

- ``generator``: an SD-1.x pipeline folder (UNet, 2-level VAE, CLIP text encoder, DDIM) with a
  real CLIP tokenizer made from the BPE vocabulary open_clip ships (49408 tokens, same ids;
  see ``tdri_engine.tokenizers_offline``).
- ``controlnet``: a pose ControlNet derived from that UNet (diffusers ``from_unet``).
- ``pose``: controlnet_aux's OpenPose body network with random weights, as safetensors.

The images are noise and the pose detector finds nobody; the plumbing is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Sizes from the recipe that runs a 64x64 image in 4 steps in about a third of a second.
TEXT_HIDDEN = 32
UNET_CHANNELS = (32, 64)


def ddim_scheduler() -> Any:
    """SD-1.x's DDIM settings (its scheduler_config.json), as the generator uses by default."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def tiny_text_encoder_config() -> dict:
    return dict(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        projection_dim=TEXT_HIDDEN,
        vocab_size=49408,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        layer_norm_eps=1e-5,
    )


def tiny_vae() -> Any:
    """A 2-level AutoencoderKL: 4 latent channels at half the image size (real ones: 1/8)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def tiny_sdxl_pipeline(tokenizer_dir: Path, *, layers_per_block: int = 1, seed: int = 0) -> Any:
    """A tiny SDXL pipeline built from configs: two text encoders, pooled embeddings and time ids.

    The demo profile stays SD-1.x; this one exercises the SDXL code paths (generator, pose
    ControlNet, Attend-and-Excite, DPO) in tests, with nothing downloaded.
    """
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from ..tokenizers_offline import save_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=layers_per_block,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, layers_per_block),
        projection_class_embeddings_input_dim=80,  # pooled text (32) + 6 time ids x 8
        cross_attention_dim=64,  # both encoders' hidden states side by side (32 + 32)
    )
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        vocab_size=49408,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    tokenizer = CLIPTokenizer.from_pretrained(save_clip_tokenizer(tokenizer_dir))
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        add_watermarker=False,
    )


def build_sd_pipeline(dest: Path, seed: int = 0) -> Path:
    """A tiny SD-1.x pipeline folder (``model_index.json`` + components, safetensors)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from ..tokenizers_offline import save_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=UNET_CHANNELS,
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = tiny_vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_text_encoder_config()))
    tok_dir = save_clip_tokenizer(dest.parent / f".{dest.name}-tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    scheduler = ddim_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(dest, safe_serialization=True)
    _rmtree(tok_dir)
    return dest


def build_pose_controlnet(dest: Path, generator_dir: Path, seed: int = 0) -> Path:
    """A tiny pose ControlNet whose encoder copies the demo UNet (as real ones start out)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(generator_dir / "unet", local_files_only=True)
    torch.manual_seed(seed)
    # Two conditioning stages = one downsample, matching the 2-level VAE (latents at 1/2 size).
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    controlnet.save_pretrained(dest, safe_serialization=True)
    return dest


def build_openpose_body(dest: Path, seed: int = 0) -> Path:
    """controlnet_aux's body network with seeded random weights, as fp16 safetensors.

    The architecture is fixed (the real model has 52M parameters), so the file is ~100 MB;
    fp16 halves it. It loads through the same path as converted real weights.
    """
    import torch
    from safetensors.torch import save_file

    from ..pose import bodypose_model_class

    torch.manual_seed(seed)
    model = bodypose_model_class()()
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    dest.mkdir(parents=True, exist_ok=True)
    save_file(
        state, str(dest / "body_pose_model.safetensors"), metadata={"format": "pt", "source": "tdri-demo"}
    )
    return dest


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
